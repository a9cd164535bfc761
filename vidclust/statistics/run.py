"""`vidclust stats SOURCE`: data-set statistics of a corpus before any embedding.

It probes every video's container metadata (no frame decoding) as a Ray Data map, so a corpus of
any size is fine, and returns (and writes) what `vidclust.statistics.video_stats` makes of the probed table;
the command line prints it with `format_stats`. The report computes the same numbers from
OUT/videos.parquet, which the embed stage already filled, without touching the videos again.

Plain functions: `probe_row` (one path -> one row of PROBE_SCHEMA), `probe_table` (a table of
paths -> probed rows), `format_stats` (summary dict -> text table).
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from vidclust.store.contract import PROBE_SCHEMA
from vidclust.formatting import number
from vidclust.statistics.video_stats import plot_stats, summarise_stats, write_files

log = logging.getLogger("vidclust")


# ----------------------------------------------------------------------------------------------
# probing


def probe_row(path: str) -> dict:
    """Container metadata of one video (local path or URI) as a row of PROBE_SCHEMA (less
    video_id). A video that cannot be read gives status "failed" and the reason in `error`."""
    from vidclust.embedding.decode import probe_video
    from vidclust.errors import DecodeError
    from vidclust.store.storage import local_file

    row: dict[str, Any] = {"path": path, "status": "ok", "error": None, "duration_s": None,
                           "fps": None, "width": None, "height": None, "codec": None, "n_frames": None}
    try:
        with local_file(path) as local:
            info = probe_video(local)
    except DecodeError as exc:
        row.update(status="failed", error=str(exc) or "not a readable video")
        return row
    except Exception as exc:  # anything else about one file must not end the job
        row.update(status="failed", error=f"{type(exc).__name__}: {str(exc).strip()[:300]}")
        return row
    row.update(duration_s=number(info.duration_s), fps=number(info.fps), width=info.width,
               height=info.height, codec=info.codec, n_frames=info.n_frames)
    return row


def probe_batch(batch: pa.Table) -> pa.Table:
    """Ray Data `map_batches` function: a batch with `path` (and `video_id`) -> probed rows."""
    paths = batch.column("path").to_pylist()
    ids = batch.column("video_id").to_pylist() if "video_id" in batch.column_names else paths
    rows = []
    for video_id, path in zip(ids, paths):
        row = probe_row(path)
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
    from vidclust.runtime import apply_stage, collect_table, dataset_of_tables, repartition
    from vidclust.stage import Stage

    # Small batches: a probe is cheap but I/O bound, and many small tasks spread over the nodes.
    n_blocks = max(1, min(videos.num_rows // 16, 1000))
    ds = repartition(dataset_of_tables(videos), blocks=n_blocks)
    probed = collect_table(apply_stage(ds, Stage("probe", probe_batch, batch_size=16, batch_format="pyarrow")),
                           schema=PROBE_SCHEMA)
    order = {v: i for i, v in enumerate(videos.column("video_id").to_pylist())}
    idx = np.argsort([order.get(v, len(order)) for v in probed.column("video_id").to_pylist()], kind="stable")
    return probed.take(pa.array(idx))


# ----------------------------------------------------------------------------------------------
# summarising


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
# the command


def run_stats(cfg, source: str, out_dir: Optional[str] = None) -> dict:
    """`vidclust stats SOURCE [--out DIR]`: probe every video of SOURCE (Ray Data map) and return
    the summary; with out_dir, write stats.json, stats.parquet (one row per video) and the PNGs
    there (their names in the summary's `files`). Prints nothing: the command line does."""
    from vidclust.store.runinfo import timed
    from vidclust.runtime import init_ray
    from vidclust.store.sources import list_videos

    with timed() as t:
        videos = list_videos(source)
        init_ray(cfg)
        probed = probe_table(videos, use_ray=True)
        summary = summarise_stats(probed)
    summary["seconds"] = t["seconds"]
    if out_dir is not None:
        from vidclust.store.contract import write_json, write_parquet
        from vidclust.store.layout import OutputLayout

        layout = OutputLayout.open(out_dir)
        pngs = plot_stats(probed)
        write_files(layout, pngs)
        write_parquet(layout, probed, layout.path("stats.parquet"))
        write_json(layout, summary, layout.path("stats.json"))
        summary["files"] = sorted([*pngs, "stats.json", "stats.parquet"])
    return summary
