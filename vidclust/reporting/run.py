"""The report: OUT/report/index.html with its scripts, images and data beside it.

It shows what people judge clusters by: a map of every video (the 2-D t-SNE projection, drawn by
the page's own script: pan, zoom, hover a video for its caption and frames, click it to open its
cluster) with a search by video id, caption, file name or keyword; the cluster sizes, largest
first; for each cluster its keywords, frames of the videos nearest its centre with their first
caption (the notebook's visualize_random_files) and the list of all its videos, a page at a time;
the k-sweep curves and scores, failed videos with their reasons, and the data-set statistics.

The folder is self-contained on disk: no server, no network, relative paths; untrusted text is
escaped in the page (vidclust.page) and made script-safe in its data (vidclust.explorer).

The command `run_report(cfg, out)` is four steps, each kind of work in its own module:
read OUT (`report_inputs.read_report_inputs` -> ReportInputs, through vidclust.contract's
readers), compute (`compute_report` -> ReportParts: the map from vidclust.projection, the figures
from vidclust.plots, the frame strips from vidclust.frame_strips, the data set from
vidclust.video_stats, the page's data from `explorer.page_data_files`), render
(`page.render_html(report_context(inputs, parts))`) and write (`write_report`: report/ only).
"""
from __future__ import annotations

import logging
import posixpath
import time
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import pyarrow as pa

from vidclust.store.contract import clear_report, clear_staging, write_projection, write_report_file, write_report_page
from vidclust.reporting.explorer import page_data_files
from vidclust.reporting.frame_strips import FrameStrips, frame_strips
from vidclust.store.layout import REPORT_PAGE_FILE, STATS_PLOTS, SWEEP_PLOT, TSNE_PLOT, VIDEO_VECTORS_FILE, OutputLayout
from vidclust.reporting.page import data_set_rows, overview_and_scores, render_html
from vidclust.reporting.palette import NOISE_ID, cluster_colors, hex_color
from vidclust.reporting.plots import plot_sweep, plot_tsne
from vidclust.reporting.projection import VideoMap, map_videos
from vidclust.reporting.inputs import ReportInputs, read_report_inputs

log = logging.getLogger("vidclust")


@dataclass(frozen=True, eq=False)
class ReportParts:
    """What the report computes of its `ReportInputs`: besides the files, the parts of the page
    (`tsne`, `sweep`, `stats`, `failed`: sections of `render_html`'s context)."""
    cluster_ids: list[int]  # every cluster shown, noise too, in the report's order
    sizes_by_id: dict[int, int]
    colors: dict[int, tuple]  # RGBA per cluster id
    files: dict[str, bytes]  # report/ file name -> bytes (images, the page's scripts), not the page
    notes: list[str]  # what the page says is left out
    timings: dict[str, float]
    video_map: Optional[VideoMap]  # None without video vectors
    projection: Optional[pa.Table]  # report/projection.parquet (PROJECTION_SCHEMA), None without a map
    sweep: Optional[dict]  # {image, rows, chosen_k} when metrics.json has a k sweep
    strips: FrameStrips
    stats: Optional[dict]  # {rows, images}: the data set, from videos.parquet
    failed: Optional[dict]  # {rows, n_total, reasons}
    stats_summary: dict  # vidclust.video_stats' summary of videos.parquet ({} without it)

    @property
    def n_clusters(self) -> int:
        return len([c for c in self.cluster_ids if c != NOISE_ID])


def compute_report(inputs: ReportInputs, cfg) -> ReportParts:
    """What the page needs beyond the inputs: the t-SNE map (and its projection table), the plots,
    the frame strips, the data-set statistics, the page's data."""
    rc = cfg.report
    sizes_by_id = {int(c): int(n) for c, n in zip(*np.unique(inputs.labels, return_counts=True))}
    cluster_ids = sorted(set(sizes_by_id) | set(inputs.center_ids))
    colors = cluster_colors(cluster_ids)
    files: dict[str, bytes] = {}
    notes: list[str] = []
    timings: dict[str, float] = {}
    video_map = _video_map(inputs, cfg, files, notes, timings)
    ts = time.perf_counter()
    sweep = _sweep(inputs.metrics, files)
    timings["plots_s"] = round(time.perf_counter() - ts, 3)
    ts = time.perf_counter()
    strips = frame_strips(inputs.video_ids, inputs.labels, inputs.distance, inputs.video_info, cluster_ids, rc)
    files.update(strips.files)
    timings["frames_s"] = round(time.perf_counter() - ts, 3)
    ts = time.perf_counter()
    stats, failed, stats_summary = _data_set(inputs.videos, rc, files, notes)
    timings["stats_s"] = round(time.perf_counter() - ts, 3)
    ts = time.perf_counter()
    centers_xy = video_map.center_positions() if video_map is not None else {}
    clusters = [{"cluster_id": c, "color": hex_color(colors[c]), "keywords": inputs.keywords.get(c, []),
                 "center_xy": centers_xy.get(c)} for c in cluster_ids]
    xy = video_map.xy if video_map is not None else np.full((len(inputs.video_ids), 2), np.nan, np.float32)
    files.update(page_data_files(inputs.video_ids, inputs.labels, inputs.distance, xy, clusters,
                                 inputs.video_info, strips.images(), inputs.local_report_dir, rc.members_per_page))
    timings["explorer_s"] = round(time.perf_counter() - ts, 3)
    return ReportParts(cluster_ids=cluster_ids, sizes_by_id=sizes_by_id, colors=colors, files=files, notes=notes,
                       timings=timings, video_map=video_map,
                       projection=video_map.table(inputs.video_ids) if video_map is not None else None,
                       sweep=sweep, strips=strips, stats=stats, failed=failed, stats_summary=stats_summary)


def _video_map(inputs: ReportInputs, cfg, files: dict, notes: list, timings: dict) -> Optional[VideoMap]:
    """The t-SNE projection of the videos with a vector and of the centres, and its plot."""
    have = inputs.has_vector
    if inputs.vectors is None or not len(inputs.video_ids):
        notes.append(f"No {VIDEO_VECTORS_FILE}: the t-SNE map is left out.")
        return None
    if not have.all():
        notes.append(f"{int((~have).sum())} clustered videos have no vector in "
                     f"{posixpath.basename(VIDEO_VECTORS_FILE)} and are not on the map.")
    video_map = map_videos(inputs.vectors, have, inputs.labels, inputs.centers, inputs.center_ids, cfg.seed,
                           cfg.report)
    timings["tsne_s"] = video_map.info.get("seconds", 0.0)
    ts = time.perf_counter()
    files[TSNE_PLOT] = plot_tsne(video_map.xy[have], inputs.labels[have], video_map.centers_xy,
                                 video_map.center_ids, inputs.keywords,
                                 note="sample fitted, rest placed by transform" if video_map.info.get("sampled")
                                 else "")
    timings["tsne_plot_s"] = round(time.perf_counter() - ts, 3)
    return video_map


def _sweep(metrics: dict, files: dict) -> Optional[dict]:
    """When metrics.json has a k sweep, its curves."""
    sweep = metrics.get("k_sweep")
    if not (isinstance(sweep, list) and sweep and all(isinstance(r, dict) for r in sweep)):
        return None
    chosen = metrics.get("k") if isinstance(metrics.get("k"), int) else None
    files[SWEEP_PLOT] = plot_sweep(sweep, chosen)
    return {"image": SWEEP_PLOT, "rows": sweep, "chosen_k": chosen}


def _data_set(videos: Optional[pa.Table], rc, files: dict, notes: list) -> tuple[Optional[dict], Optional[dict],
                                                                                  dict]:
    """(the data-set section, the failed videos' section, the summary), from videos.parquet."""
    from vidclust.statistics.video_stats import plot_stats, summarise_stats

    if videos is None:
        notes.append("No videos.parquet: no data set statistics, captions or frames.")
        return None, None, {}
    summary = summarise_stats(videos, max_failures=rc.max_failed_listed)
    pngs = plot_stats(videos)
    files.update(pngs)
    failed = None
    if summary["n_failed"]:
        failed = {"rows": summary["failures"], "n_total": summary["n_failed"],
                  "reasons": summary.get("failure_reasons") or {}}
    return {"rows": data_set_rows(summary), "images": [p for p in STATS_PLOTS if p in pngs]}, failed, summary


def report_context(inputs: ReportInputs, parts: ReportParts) -> dict:
    """The context `render_html` takes, from the inputs and what was computed of them."""
    sizes_by_id = parts.sizes_by_id
    overview, scores = overview_and_scores(inputs.out, inputs.metrics, len(inputs.video_ids), parts.n_clusters,
                                           sizes_by_id.get(NOISE_ID, 0), parts.stats_summary)
    clusters = [{"cluster_id": c, "size": sizes_by_id.get(c, 0), "color": hex_color(parts.colors[c]),
                 "keywords": inputs.keywords.get(c, []), "summaries": inputs.summaries.get(c, []),
                 "videos": [asdict(card) for card in parts.strips.cards.get(c, [])]}
                for c in parts.cluster_ids]
    tsne = None
    if parts.video_map is not None:
        tsne = {"image": TSNE_PLOT, "note": parts.video_map.note}
    return {
        "title": "vidclust report",
        "subtitle": f"{inputs.out} — generated {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "overview": overview, "scores": scores, "notes": parts.notes, "tsne": tsne,
        "sizes": [{"cluster_id": c["cluster_id"], "size": c["size"], "color": c["color"], "keywords": c["keywords"]}
                  for c in clusters],
        "sweep": parts.sweep, "clusters": clusters, "failed": parts.failed, "stats": parts.stats,
    }


def write_report(layout: OutputLayout, page: str, parts: ReportParts) -> str:
    """report/: the previous report's files go, then the images, the projection, and last the page
    (a complete page or none). Returns the page's path."""
    clear_report(layout)  # the page lists only this report's files
    for name, data in parts.files.items():
        write_report_file(layout, name, data)
    if parts.projection is not None:
        write_projection(layout, parts.projection)
    return write_report_page(layout, page)


# ----------------------------------------------------------------------------------------------
# the command


def run_report(cfg, out: str) -> dict:
    """`vidclust report OUT`: read OUT, write OUT/report/ (index.html, its images, projection.parquet),
    record the stage in run.json. Writes nothing outside report/ but run.json."""
    from vidclust.store.runinfo import record_stage

    layout = OutputLayout.open(out)
    clear_staging(layout, "report")
    t0 = time.perf_counter()
    inputs = read_report_inputs(layout)
    parts = compute_report(inputs, cfg)
    ts = time.perf_counter()
    index = write_report(layout, render_html(report_context(inputs, parts)), parts)
    timings = {**parts.timings, "write_s": round(time.perf_counter() - ts, 3)}
    n_clusters = parts.n_clusters
    n_images = sum(name.endswith((".png", ".jpg")) for name in parts.files)
    info = {"seconds": round(time.perf_counter() - t0, 3), **timings, "n_videos": len(inputs.video_ids),
            "n_clusters": n_clusters, "n_images": n_images, "n_thumbnails": parts.strips.n_thumbnails,
            "n_thumbnail_failures": parts.strips.n_failures,
            "tsne": dict(parts.video_map.info) if parts.video_map is not None else {}}
    record_stage(layout, cfg, "report", info)
    where = index if "://" not in out else f"{out.rstrip('/')}/{REPORT_PAGE_FILE}"
    print(f"report: {where} ({n_clusters} clusters, {len(inputs.video_ids)} videos; {info['seconds']:.1f}s, "
          f"t-SNE {timings.get('tsne_s', 0):.1f}s)")
    return {"report": where, **info}
