"""Numbers and plots of a table of videos (`vidclust stats`'s probe or OUT/videos.parquet): how
many, how many hours, how their durations, frame rates, resolutions and codecs are spread, which
failed and why (the notebook's EDA). Plain functions over Arrow tables: `summarise_stats` (table
-> dict), `plot_stats` (table -> PNG files); the stats command and the report both use them.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from vidclust.store.contract import write_bytes
from vidclust.store.layout import CODEC_PLOT, DURATION_PLOT, FPS_PLOT, RESOLUTION_PLOT, OutputLayout
from vidclust.reporting.plots import figure, png

def summarise_stats(table: pa.Table, max_failures: Optional[int] = None) -> dict:
    """Counts and distributions of a video table (probe output or OUT/videos.parquet).

    Uses whichever of status, error, duration_s, fps, width, height, codec it has; missing
    columns give missing entries, never an error. Distributions count decoded ("ok") videos.
    """
    cols = set(table.column_names)
    n = table.num_rows
    status = _col(table, "status") if "status" in cols else ["ok"] * n
    ok = np.array([s == "ok" for s in status], dtype=bool)
    durations = _floats(table, "duration_s")[ok] if "duration_s" in cols else np.zeros(0)
    durations = durations[np.isfinite(durations)]
    fps = _floats(table, "fps")[ok] if "fps" in cols else np.zeros(0)
    fps = fps[np.isfinite(fps)]

    summary: dict[str, Any] = {
        "count": int(n),
        "n_ok": int(ok.sum()),
        "n_failed": int(n - ok.sum()),
        "total_hours": round(float(durations.sum()) / 3600.0, 4),
        "duration_s": _describe(durations),
        "fps": _describe(fps),
        "fps_counts": _top_counts(f"{_round_fps(v):g}" for v in fps),
        "resolution_counts": {},
        "codec_counts": {},
    }
    if "width" in cols and "height" in cols:
        widths, heights = _col(table, "width"), _col(table, "height")
        summary["resolution_counts"] = _top_counts(
            f"{w}x{h}" for w, h, o in zip(widths, heights, ok) if o and w and h)
    if "codec" in cols:
        summary["codec_counts"] = _top_counts(c for c, o in zip(_col(table, "codec"), ok) if o and c)
    failures = []
    if not ok.all():
        ids = _col(table, "video_id") if "video_id" in cols else [None] * n
        paths = _col(table, "path") if "path" in cols else [None] * n
        errors = _col(table, "error") if "error" in cols else [None] * n
        for i in np.flatnonzero(~ok):
            failures.append({"video_id": ids[i], "path": paths[i], "error": errors[i] or "unknown error"})
            if max_failures is not None and len(failures) >= max_failures:
                break
    summary["failures"] = failures
    summary["failure_reasons"] = _top_counts(
        _reason(e) for e, o in zip(_col(table, "error") if "error" in cols else [None] * n, ok) if not o)
    return summary


def plot_stats(table: pa.Table, out_dir: Optional[str] = None) -> dict[str, bytes]:
    """Histograms of duration and frame rate, bar charts of resolution and codec (decoded videos).

    Returns {file name: PNG bytes}; with `out_dir` (a local path or URI) also writes them there.
    Panels with no data are skipped."""
    summary = summarise_stats(table)
    cols = set(table.column_names)
    n = table.num_rows
    ok = np.array([s == "ok" for s in _col(table, "status")], bool) if "status" in cols else np.ones(n, bool)
    pngs: dict[str, bytes] = {}
    if "duration_s" in cols:
        d = _floats(table, "duration_s")[ok]
        d = d[np.isfinite(d)]
        if len(d):
            pngs[DURATION_PLOT] = _histogram(d, "duration (s)", "Video duration", log_x=_spread(d))
    if "fps" in cols:
        f = _floats(table, "fps")[ok]
        f = f[np.isfinite(f)]
        if len(f):
            pngs[FPS_PLOT] = _bars(_top_counts((f"{_round_fps(v):g}" for v in f), limit=30),
                                 "frame rate (fps)", "Frame rate")
    if summary["resolution_counts"]:
        res = summary["resolution_counts"]
        pngs[RESOLUTION_PLOT] = _bars(
            dict(list(res.items())[:30]), "resolution (width x height)",
            "Resolution" + (f" (30 most common of {len(res)})" if len(res) > 30 else ""))
    if summary["codec_counts"]:
        pngs[CODEC_PLOT] = _bars(summary["codec_counts"], "codec", "Codec")
    if out_dir is not None:
        write_files(OutputLayout.open(out_dir), pngs)
    return pngs


def _histogram(values: np.ndarray, xlabel: str, title: str, log_x: bool = False) -> bytes:
    fig, ax = figure(7, 3.6)
    if log_x:
        lo = max(values[values > 0].min() if (values > 0).any() else 0.1, 0.05)
        bins = np.geomspace(lo, max(values.max(), lo * 1.01), 40)
        ax.set_xscale("log")
        values = np.clip(values, lo, None)
    else:
        bins = min(40, max(5, int(np.sqrt(len(values)))))
    ax.hist(values, bins=bins, color="#4477aa", edgecolor="white", linewidth=0.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("videos")
    ax.set_title(f"{title} (n={len(values)}, median {np.median(values):.3g})")
    return png(fig)


def _bars(counts: dict[str, int], xlabel: str, title: str) -> bytes:
    labels, values = list(counts.keys()), list(counts.values())
    horizontal = len(labels) > 8 or max((len(str(x)) for x in labels), default=0) > 10
    if horizontal:
        fig, ax = figure(7, max(2.5, 0.28 * len(labels) + 1.2))
        y = np.arange(len(labels))[::-1]
        ax.barh(y, values, color="#4477aa")
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlabel("videos")
        ax.set_ylabel(xlabel)
    else:
        fig, ax = figure(7, 3.6)
        ax.bar(np.arange(len(labels)), values, color="#4477aa")
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("videos")
    ax.set_title(title)
    return png(fig)


def write_files(layout: OutputLayout, files: dict[str, bytes]) -> None:
    """Each {name: bytes} into the root of `layout`, each whole or not at all."""
    layout.makedirs(layout.root)
    for name, data in files.items():
        write_bytes(layout, data, layout.path(name))


def _col(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in _col(table, name)], dtype=np.float64)


def _describe(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"n": 0}
    q = np.percentile(values, [0, 25, 50, 75, 100])
    return {"n": int(len(values)), "min": float(q[0]), "p25": float(q[1]), "median": float(q[2]),
            "mean": float(values.mean()), "p75": float(q[3]), "max": float(q[4]),
            "sum": float(values.sum())}


def _top_counts(items, limit: Optional[int] = None) -> dict:
    counts = Counter(items).most_common(limit)
    return {str(k): int(v) for k, v in counts}


def _round_fps(v: float) -> float:
    """29.97002997 -> 29.97, 25.0 -> 25: frame rates as people write them."""
    return round(float(v), 2)


def _spread(values: np.ndarray) -> bool:
    """True when durations span orders of magnitude (a log axis reads better)."""
    pos = values[values > 0]
    return len(pos) > 1 and pos.max() / max(pos.min(), 1e-3) > 50


def _reason(error: Optional[str]) -> str:
    """A failure's kind: its message up to the first colon (for grouping)."""
    text = (error or "unknown error").strip()
    return text.split(":", 1)[0][:80] or "unknown error"
