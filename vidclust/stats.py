"""Data-set statistics: how many videos, how many hours, and how their durations, frame rates,
resolutions and codecs are spread; which videos cannot be decoded and why (the notebook's EDA).

`vidclust stats SOURCE` probes every video's container metadata (no frame decoding) as a Ray Data
map, so a corpus of any size is fine; the report computes the same numbers from OUT/videos.parquet,
which the embed stage already filled, without touching the videos again.

Plain functions over Arrow tables: `probe_video` (one path -> one row), `summarize_stats`
(table -> dict), `format_stats` (dict -> text table), `plot_stats` (table -> PNG files).
"""
from __future__ import annotations

import io
import json
import logging
import math
from collections import Counter
from typing import Any, Optional

import numpy as np
import pyarrow as pa

log = logging.getLogger("vidclust")

PROBE_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("duration_s", pa.float64()),
    ("fps", pa.float64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("codec", pa.string()),
    ("n_frames", pa.int64()),
])

STATS_PLOTS = ("stats_duration.png", "stats_fps.png", "stats_resolution.png", "stats_codec.png")


# ----------------------------------------------------------------------------------------------
# probing


def probe_video(path: str) -> dict:
    """Container metadata of one video (local path or URI) as a row of PROBE_SCHEMA (less
    video_id). A video that cannot be read gives status "failed" and the reason in `error`."""
    from vidclust.decode import DecodeError, local_file
    from vidclust.decode import probe_video as probe_container

    row: dict[str, Any] = {"path": path, "status": "ok", "error": None, "duration_s": None,
                           "fps": None, "width": None, "height": None, "codec": None, "n_frames": None}
    try:
        with local_file(path) as local:
            info = probe_container(local)
    except DecodeError as exc:
        row.update(status="failed", error=str(exc) or "not a readable video")
        return row
    except Exception as exc:  # anything else about one file must not end the job
        row.update(status="failed", error=f"{type(exc).__name__}: {str(exc).strip()[:300]}")
        return row
    row.update(duration_s=_finite(info.duration_s), fps=_finite(info.fps), width=info.width,
               height=info.height, codec=info.codec, n_frames=info.n_frames)
    return row


def probe_batch(batch: pa.Table) -> pa.Table:
    """Ray Data `map_batches` function: a batch with `path` (and `video_id`) -> probed rows."""
    paths = batch.column("path").to_pylist()
    ids = batch.column("video_id").to_pylist() if "video_id" in batch.column_names else paths
    rows = []
    for video_id, path in zip(ids, paths):
        row = probe_video(path)
        row["video_id"] = video_id
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=PROBE_SCHEMA)


def probe_table(videos: pa.Table, use_ray: bool = True) -> pa.Table:
    """Probe every video of a table with `path` (and `video_id`): one row each, in input order.

    With `use_ray`, as a Ray Data map over all the cluster's CPUs; without, in this process."""
    if "path" not in videos.column_names:
        raise ValueError("the video list needs a `path` column")
    if "video_id" not in videos.column_names:
        videos = videos.append_column("video_id", videos.column("path"))
    videos = videos.select(["video_id", "path"])
    if videos.num_rows == 0:
        return PROBE_SCHEMA.empty_table()
    if not use_ray:
        return probe_batch(videos)
    import ray

    from vidclust.runtime import apply_stage
    from vidclust.stage import Stage

    ds = ray.data.from_arrow(videos)
    # Small batches: a probe is cheap but I/O bound, and many small tasks spread over the nodes.
    n_blocks = max(1, min(videos.num_rows // 16, 1000))
    ds = apply_stage(ds.repartition(n_blocks), Stage("probe", probe_batch, batch_size=16, batch_format="pyarrow"))
    parts = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    probed = pa.concat_tables([t.cast(PROBE_SCHEMA) for t in parts]) if parts else PROBE_SCHEMA.empty_table()
    probed = probed.cast(PROBE_SCHEMA)
    order = {v: i for i, v in enumerate(videos.column("video_id").to_pylist())}
    idx = np.argsort([order.get(v, len(order)) for v in probed.column("video_id").to_pylist()], kind="stable")
    return probed.take(pa.array(idx))


# ----------------------------------------------------------------------------------------------
# summarising


def summarize_stats(table: pa.Table, max_failures: Optional[int] = None) -> dict:
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


def format_stats(summary: dict, max_failures: int = 20) -> str:
    """The summary as a plain text table for the terminal."""
    lines = [
        f"videos          {summary['count']}  (decoded {summary['n_ok']}, failed {summary['n_failed']})",
        f"total hours     {summary['total_hours']:.2f}",
    ]
    for key, label, unit in (("duration_s", "duration", "s"), ("fps", "frame rate", "fps")):
        d = summary.get(key) or {}
        if d.get("n"):
            lines.append(f"{label:<16}min {d['min']:.2f}  median {d['median']:.2f}  mean {d['mean']:.2f}"
                         f"  max {d['max']:.2f} {unit}")
    for key, label in (("fps_counts", "frame rates"), ("resolution_counts", "resolutions"),
                       ("codec_counts", "codecs")):
        counts = summary.get(key) or {}
        if counts:
            lines.append(f"{label:<16}" + ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:8])
                         + (f", ... ({len(counts)} distinct)" if len(counts) > 8 else ""))
    failures = summary.get("failures") or []
    if failures:
        lines.append(f"failed videos   {summary['n_failed']}")
        for f in failures[:max_failures]:
            lines.append(f"  {f.get('video_id') or f.get('path')}: {f.get('error')}")
        if summary["n_failed"] > max_failures:
            lines.append(f"  ... and {summary['n_failed'] - max_failures} more")
    width = max(len(line) for line in lines)
    return "\n".join(["-" * width, *lines, "-" * width])


# ----------------------------------------------------------------------------------------------
# plotting


def plot_stats(table: pa.Table, out_dir: Optional[str] = None, fs=None) -> dict[str, bytes]:
    """Histograms of duration and frame rate, bar charts of resolution and codec (decoded videos).

    Returns {file name: PNG bytes}; with `out_dir` also writes them there (through `fs`, a pyarrow
    FileSystem, when given; else the local disk). Panels with no data are skipped."""
    summary = summarize_stats(table)
    cols = set(table.column_names)
    n = table.num_rows
    ok = np.array([s == "ok" for s in _col(table, "status")], bool) if "status" in cols else np.ones(n, bool)
    pngs: dict[str, bytes] = {}
    if "duration_s" in cols:
        d = _floats(table, "duration_s")[ok]
        d = d[np.isfinite(d)]
        if len(d):
            pngs["stats_duration.png"] = _histogram(d, "duration (s)", "Video duration", log_x=_spread(d))
    if "fps" in cols:
        f = _floats(table, "fps")[ok]
        f = f[np.isfinite(f)]
        if len(f):
            pngs["stats_fps.png"] = _bars(_top_counts((f"{_round_fps(v):g}" for v in f), limit=30),
                                          "frame rate (fps)", "Frame rate")
    if summary["resolution_counts"]:
        res = summary["resolution_counts"]
        pngs["stats_resolution.png"] = _bars(
            dict(list(res.items())[:30]), "resolution (width x height)",
            "Resolution" + (f" (30 most common of {len(res)})" if len(res) > 30 else ""))
    if summary["codec_counts"]:
        pngs["stats_codec.png"] = _bars(summary["codec_counts"], "codec", "Codec")
    if out_dir is not None:
        _write_files(out_dir, pngs, fs)
    return pngs


def _histogram(values: np.ndarray, xlabel: str, title: str, log_x: bool = False) -> bytes:
    fig, ax = _figure(7, 3.6)
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
    return _png(fig)


def _bars(counts: dict[str, int], xlabel: str, title: str) -> bytes:
    labels, values = list(counts.keys()), list(counts.values())
    horizontal = len(labels) > 8 or max((len(str(x)) for x in labels), default=0) > 10
    if horizontal:
        fig, ax = _figure(7, max(2.5, 0.28 * len(labels) + 1.2))
        y = np.arange(len(labels))[::-1]
        ax.barh(y, values, color="#4477aa")
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlabel("videos")
        ax.set_ylabel(xlabel)
    else:
        fig, ax = _figure(7, 3.6)
        ax.bar(np.arange(len(labels)), values, color="#4477aa")
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("videos")
    ax.set_title(title)
    return _png(fig)


def _figure(w: float, h: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _write_files(out_dir: str, files: dict[str, bytes], fs=None) -> None:
    from vidclust.layout import OutputLayout

    if fs is None:
        layout = OutputLayout.open(out_dir)
        fs, out_dir = layout.fs, layout.root
    fs.create_dir(out_dir, recursive=True)
    for name, data in files.items():
        path = f"{out_dir.rstrip('/')}/{name}"
        with fs.open_output_stream(path + ".tmp") as f:
            f.write(data)
        fs.move(path + ".tmp", path)


# ----------------------------------------------------------------------------------------------
# the command


def run_stats(cfg, source: str, out_dir: Optional[str] = None) -> dict:
    """`vidclust stats SOURCE [--out DIR]`: probe every video of SOURCE (Ray Data map), print the
    table, and with out_dir write stats.json, stats.parquet (one row per video) and the PNGs."""
    from vidclust.runinfo import timed
    from vidclust.runtime import init_ray
    from vidclust.sources import list_videos

    with timed() as t:
        videos = list_videos(source)
        init_ray(cfg)
        probed = probe_table(videos, use_ray=True)
        summary = summarize_stats(probed)
    print(format_stats(summary))
    summary["seconds"] = t["seconds"]
    if out_dir is not None:
        import pyarrow.parquet as pq

        from vidclust.layout import OutputLayout

        layout = OutputLayout.open(out_dir)
        layout.makedirs(layout.root)
        pngs = plot_stats(probed)
        buf = pa.BufferOutputStream()
        pq.write_table(probed, buf)
        files = {**pngs, "stats.json": json.dumps(summary, indent=2, default=str).encode(),
                 "stats.parquet": buf.getvalue().to_pybytes()}
        _write_files(layout.root, files, layout.fs)
        summary["files"] = sorted(files)
        print(f"wrote {', '.join(sorted(files))} to {out_dir}")
    return summary


# ----------------------------------------------------------------------------------------------
# helpers


def _col(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in _col(table, name)], dtype=np.float64)


def _finite(v: Optional[float]) -> Optional[float]:
    return float(v) if v is not None and math.isfinite(v) else None


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
