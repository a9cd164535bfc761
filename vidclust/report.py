"""The report: OUT/report/index.html with its scripts, images and data beside it.

It shows what people judge clusters by: a map of every video (the 2-D t-SNE projection, drawn by
the page's own script: pan, zoom, hover a video for its caption and frames, click it to open its
cluster) with a search by video id, caption, file name or keyword; the cluster sizes, largest
first; for each cluster its keywords, frames of the videos nearest its centre with their first
caption (the notebook's visualize_random_files) and the list of all its videos, a page at a time;
the k-sweep curves and scores, failed videos with their reasons, and the data-set statistics.

The folder is self-contained on disk: no server, no network, relative paths. Everything that
comes from the data (captions, file names, keywords, errors) is untrusted text: it goes through
`html.escape` in the page, through script-safe JSON in points.js (vidclust.explorer), and through
textContent in explore.js. The Content-Security-Policy allows scripts only from the report's
folder (none inline, no eval), images from it, and the one inline style sheet by its hash.

Plain functions: `plot_tsne` (the static map: shown when scripts are off), `plot_sweep` (arrays ->
PNG bytes), `grab_frames`/`thumbnail_strip` (video -> thumbnails), `render_html(context) -> str`.
The command `run_report(cfg, out)` is four parts: `gather_report_inputs` (reads OUT into a dict),
`compute_report` (t-SNE projection, plots, thumbnails, statistics, the explorer's data),
`render_html(report_context(inputs, computed))`, `write_report` (report/ only: the page, its
files, projection.parquet).
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import logging
import math
import os
import posixpath
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence

import numpy as np
import pyarrow as pa

from vidclust.contract import (PROJECTION_SCHEMA, clear_report, clear_staging, embedding_matrix, read_assignments,
                               read_centers, read_cluster_descriptions, read_descriptions, read_metrics,
                               read_video_vectors, read_videos, write_projection, write_report_file,
                               write_report_page)
from vidclust.errors import StaleOutputs, first_line
from vidclust.explorer import explore_script, explorer_data, points_script
from vidclust.formatting import fmt, number
from vidclust.layout import (EXPLORE_SCRIPT, POINTS_SCRIPT, REPORT_PAGE_FILE, STATS_PLOTS, SWEEP_PLOT, TSNE_PLOT,
                             VIDEO_VECTORS_FILE, OutputLayout, thumbnail_file)
from vidclust.plots import figure, png
from vidclust.storage import local_file

log = logging.getLogger("vidclust")

NOISE_ID = -1  # cluster id of points a density method left unclustered


# ----------------------------------------------------------------------------------------------
# colours and labels


def cluster_colors(cluster_ids: Sequence[int]) -> dict[int, tuple]:
    """A distinct RGBA colour per cluster id (grey for noise): tab10 without its grey, then
    farthest-point colours in OKLab (vidclust.palette), so 100 clusters get 100 distinct ones."""
    from vidclust.palette import distinct_colors

    ids = sorted(set(int(c) for c in cluster_ids) - {NOISE_ID})
    out: dict[int, tuple] = {c: (*rgb, 1.0) for c, rgb in zip(ids, distinct_colors(len(ids)))}
    out[NOISE_ID] = (0.6, 0.6, 0.6, 1.0)
    return out


def _plain(text: Any, limit: int = 60) -> str:
    """Untrusted text made safe for matplotlib: one line, no mathtext, at most `limit` chars."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def cluster_label(cluster_id: int, keywords: Optional[Sequence[str]], n_keywords: int = 3,
                  limit: int = 42) -> str:
    if cluster_id == NOISE_ID:
        return "noise"
    kws = [str(k) for k in (keywords or [])][:n_keywords]
    return _plain(f"{cluster_id}: {', '.join(kws)}" if kws else str(cluster_id), limit)


# ----------------------------------------------------------------------------------------------
# plots (arrays in, PNG bytes out)


def plot_tsne(xy: np.ndarray, labels: np.ndarray, centers_xy: np.ndarray, center_ids: Sequence[int],
              keywords: Optional[dict] = None, title: str = "t-SNE of videos and cluster centres",
              note: str = "") -> bytes:
    """Videos as dots coloured by cluster, centres as crosses labelled with their top keywords.

    Up to 30 clusters a centre's label holds its id and keywords; above, only its id (the keywords
    are in the legend). Each label goes where it covers the fewest points and no other label,
    joined to its centre by a thin line; the legend sits outside the axes (up to 120 clusters;
    above, the cluster sizes plot names each id's keywords)."""
    xy = np.asarray(xy, np.float32).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    centers_xy = np.asarray(centers_xy, np.float32).reshape(-1, 2)
    center_ids = [int(c) for c in center_ids]
    keywords = keywords or {}
    all_ids = sorted(set(labels.tolist()) | set(center_ids))
    colors = cluster_colors(all_ids)
    k = len([c for c in all_ids if c != NOISE_ID])
    n = len(xy)
    many = k > 30
    legend_rows = 40 if many else 35
    with_legend = len(all_ids) <= 120
    ncol = max(1, math.ceil(len(all_ids) / legend_rows)) if with_legend else 0
    side = 9.0 if k <= 40 else 11.0
    fig, ax = figure(side + 3.3 * ncol, max(side, 0.2 * min(len(all_ids), legend_rows) + 1.5),
                      layout="constrained")
    size = float(np.clip(60000.0 / max(n, 1), 1.0, 28.0))
    alpha = 0.75 if n < 5000 else 0.5
    point_colors = np.array([colors[int(c)] for c in labels]) if n else np.zeros((0, 4))
    order = np.random.default_rng(0).permutation(n)  # no cluster is always drawn on top
    if n:
        ax.scatter(xy[order, 0], xy[order, 1], c=point_colors[order], s=size, alpha=alpha,
                   linewidths=0, rasterized=True)
    handles = []
    from matplotlib.lines import Line2D

    for c in all_ids:
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=6, color=colors[c],
                              label=cluster_label(c, keywords.get(c), 3, 40)))
    texts = []
    if len(centers_xy):
        ax.scatter(centers_xy[:, 0], centers_xy[:, 1], marker="X", s=90 if not many else 50,
                   c=[colors.get(c, colors[NOISE_ID]) for c in center_ids], edgecolors="black",
                   linewidths=0.9, zorder=3)
        for (cx, cy), c in zip(centers_xy, center_ids):
            text = str(c) if many else cluster_label(c, keywords.get(c), 2, 30)
            texts.append(ax.annotate(
                text, xy=(cx, cy), xytext=(cx, cy), textcoords="data", ha="center", va="center",
                fontsize=7 if many else 8, zorder=4, annotation_clip=False,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=colors.get(c, "0.5"), lw=0.8, alpha=0.8),
                arrowprops=dict(arrowstyle="-", color="0.25", lw=0.6, shrinkA=0, shrinkB=3)))
    if n or len(centers_xy):
        pts = np.concatenate([xy, centers_xy]) if len(centers_xy) else xy
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pad = (hi - lo) * 0.06 + 1e-3
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(_plain(title, 120) + (f"\n{_plain(note, 160)}" if note else ""), fontsize=11)
    if with_legend:
        fig.legend(handles=handles, loc="outside right upper", ncol=ncol, fontsize=7 if many else 8,
                   frameon=False, handletextpad=0.3, columnspacing=1.0, title="cluster: keywords")
    if texts:
        _place_labels(fig, ax, texts, centers_xy, xy)
    return png(fig, dpi=110)


def _place_labels(fig, ax, texts: list, anchors: np.ndarray, points: np.ndarray) -> None:
    """Put each centre label (an annotation) where it covers the fewest points: candidate spots
    on rings around its centre are scored by the points under the label box (a summed-area table
    of the points' pixel positions), with a large cost for covering a label placed before, or a
    centre marker, or leaving the axes, and a small cost for distance. A thin line joins a label
    to its centre."""
    fig.canvas.draw()  # lays the figure out, so display coordinates are final
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData
    axbox = ax.get_window_extent(renderer)
    x0, y0 = axbox.x0, axbox.y0
    width, height = int(np.ceil(axbox.width)) + 1, int(np.ceil(axbox.height)) + 1
    cell = 3.0
    gw, gh = int(width / cell) + 2, int(height / cell) + 2
    grid = np.zeros((gh, gw), np.float32)
    if len(points):
        px = to_px.transform(points)
        gx = np.clip(((px[:, 0] - x0) / cell).astype(int), 0, gw - 1)
        gy = np.clip(((px[:, 1] - y0) / cell).astype(int), 0, gh - 1)
        np.add.at(grid, (gy, gx), 1.0)
    sat = np.zeros((gh + 1, gw + 1), np.float32)
    sat[1:, 1:] = grid.cumsum(0).cumsum(1)

    def covered(cx: float, cy: float, w: float, h: float) -> float:
        a, b = int(max(0, (cx - w / 2 - x0) / cell)), int(min(gw, (cx + w / 2 - x0) / cell + 1))
        c, d = int(max(0, (cy - h / 2 - y0) / cell)), int(min(gh, (cy + h / 2 - y0) / cell + 1))
        if a >= b or c >= d:
            return 0.0
        return float(sat[d, b] - sat[c, b] - sat[d, a] + sat[c, a])

    anchors_px = to_px.transform(anchors)
    sizes = [t.get_window_extent(renderer) for t in texts]
    sizes = np.array([[b.width + 4.0, b.height + 4.0] for b in sizes])
    placed: list[tuple[float, float, float, float]] = []
    marker = 12.0
    angles = np.deg2rad(np.arange(0, 360, 30) + 90)
    new_pos = anchors_px.copy()
    # Labels of crowded places first: they have the fewest good spots.
    crowd = [covered(ax_, ay_, 60, 60) for ax_, ay_ in anchors_px]
    for i in np.argsort(crowd)[::-1]:
        w, h = sizes[i]
        ax_, ay_ = anchors_px[i]
        best, best_cost = (ax_, ay_ + h / 2 + marker / 2), np.inf
        for r in (0.6, 1.0, 1.6, 2.5, 4.0, 6.0):
            for ang in angles:
                cx = ax_ + np.cos(ang) * (w / 2 + marker / 2) * r
                cy = ay_ + np.sin(ang) * (h / 2 + marker / 2) * r
                if cx - w / 2 < x0 or cx + w / 2 > x0 + width or cy - h / 2 < y0 or cy + h / 2 > y0 + height:
                    continue
                cost = covered(cx, cy, w, h) + 0.02 * r
                for (px_, py_, pw, ph) in placed:
                    if abs(cx - px_) * 2 < w + pw and abs(cy - py_) * 2 < h + ph:
                        cost += 1e4
                hits = (np.abs(anchors_px[:, 0] - cx) * 2 < w + marker) & \
                       (np.abs(anchors_px[:, 1] - cy) * 2 < h + marker)
                cost += 1e3 * float(hits.sum())
                if cost < best_cost:
                    best, best_cost = (cx, cy), cost
            if best_cost < 1.0:  # (almost) nothing covered: the nearest such ring wins
                break
        new_pos[i] = best
        placed.append((best[0], best[1], w, h))
    data = to_px.inverted().transform(new_pos)
    for t, p in zip(texts, data):
        t.xyann = (float(p[0]), float(p[1]))


def plot_sweep(sweep: Sequence[dict], chosen_k: Optional[int] = None) -> bytes:
    """The k-sweep curves: one panel per score, the chosen k marked."""
    metrics = [("silhouette", "silhouette (higher is better)"),
               ("davies_bouldin", "Davies-Bouldin (lower is better)"),
               ("calinski_harabasz", "Calinski-Harabasz (higher is better)")]
    metrics = [(m, t) for m, t in metrics if any(number(r.get(m)) is not None for r in sweep)]
    fig = figure(4.2 * max(1, len(metrics)), 3.4, layout="constrained", axes=False)
    rows = sorted((r for r in sweep if number(r.get("k")) is not None), key=lambda r: r["k"])
    for i, (m, title) in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        pts = [(int(r["k"]), number(r.get(m))) for r in rows if number(r.get(m)) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color="#4477aa")
        if chosen_k is not None:
            ax.axvline(chosen_k, color="#cc6677", linestyle="--", linewidth=1, label=f"chosen k={chosen_k}")
            ax.legend(fontsize=8, loc="best")
        ax.set_xlabel("k")
        ax.set_title(title, fontsize=10)
    return png(fig, dpi=100)


# ----------------------------------------------------------------------------------------------
# frames


def grab_frames(path: str, n_frames: int, width: int = 160) -> list:
    """`n_frames` evenly spaced frames of a video (local path or URI) as PIL images `width` wide.
    Raises an exception with a readable message when the file cannot be read."""
    import av

    if n_frames <= 0:
        return []
    images = []
    with local_file(path) as local:
        if not os.path.exists(local):
            raise FileNotFoundError("file not found")
        with av.open(local) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = stream.time_base
            if stream.duration is not None and tb is not None:
                duration = float(stream.duration * tb)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = None
            start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
            if duration and tb:
                for i in range(n_frames):
                    t = start + duration * (i + 0.5) / n_frames
                    frame = None
                    try:
                        container.seek(int(t / tb), stream=stream, backward=True)
                        for frame in container.decode(stream):
                            if frame.time is None or frame.time >= t - 1e-3:
                                break
                    except av.error.FFmpegError:
                        frame = None
                    if frame is not None:
                        images.append(_thumb(frame.to_image(), width))
            if not images:  # no duration, or seeking failed: decode from the start
                container.seek(0) if duration else None
                frames = []
                for i, frame in enumerate(container.decode(stream)):
                    frames.append(frame)
                    if i >= 300:
                        break
                if frames:
                    idx = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
                    images = [_thumb(frames[j].to_image(), width) for j in sorted(set(idx.tolist()))]
    if not images:
        raise ValueError("no frames could be decoded")
    return images


def _thumb(image, width: int):
    w, h = image.size
    height = max(1, round(h * width / max(w, 1)))
    return image.convert("RGB").resize((width, height))


def thumbnail_strip(path: str, n_frames: int, width: int = 160, quality: int = 82) -> bytes:
    """The frames of `grab_frames` side by side, as one JPEG."""
    from PIL import Image

    images = grab_frames(path, n_frames, width)
    gap = 2
    h = max(im.size[1] for im in images)
    strip = Image.new("RGB", (sum(im.size[0] for im in images) + gap * (len(images) - 1), h), "white")
    x = 0
    for im in images:
        strip.paste(im, (x, 0))
        x += im.size[0] + gap
    buf = io.BytesIO()
    strip.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _strip_or_error(args) -> tuple[Optional[bytes], Optional[str]]:
    path, n, width = args
    if not path:
        return None, "no path recorded"
    try:
        return thumbnail_strip(path, n, width), None
    except Exception as exc:  # any one file's trouble only costs its thumbnail
        return None, first_line(exc)[:200]


# ----------------------------------------------------------------------------------------------
# HTML

def _package_text(name: str) -> str:
    """A file of vidclust/data/ (the page's style sheet)."""
    from importlib import resources

    return resources.files("vidclust").joinpath("data", name).read_text("utf-8")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _src(name: str) -> str:
    return _e(urllib.parse.quote(name))


def _rgb(color: Sequence[float]) -> str:
    r, g, b = (int(round(255 * c)) for c in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def render_html(context: dict) -> str:
    """The report page from a plain context dict; every value is escaped on the way in.

    Keys (all optional but `title`): title, subtitle, overview [(name, value)], scores
    [(name, value)], tsne {image, note}, sizes [{cluster_id, size, color, keywords}], sweep
    {image, rows [dict], chosen_k}, clusters [{cluster_id, size, color, keywords [str],
    summaries [str], videos [{video_id, file, caption, image, error}]}], failed {rows
    [{video_id, path, error}], n_total}, stats {rows [(name, value)], images [str],
    failure_reasons {reason: n}}, notes [str].

    The page's scripts are files beside it: points.js (the data, vidclust.explorer) and
    explore.js (the map, search, the member lists, the image check); it has no inline script."""
    parts = [_page_head(context), _explorer_html(context.get("tsne")), '<h2 id="overview">Overview</h2>',
             '<div class="overview"><div>', _kv_table(context.get("overview") or []), "</div>"]
    if context.get("scores"):
        parts += ["<div><h3>Scores</h3>", _kv_table(context["scores"]), "</div>"]
    parts.append("</div>")
    parts += [f'<p class="note">{_e(note)}</p>' for note in context.get("notes") or []]
    parts += [_sizes_html(context.get("sizes") or []),
              _clusters_html(context.get("clusters") or []), _sweep_html(context.get("sweep")),
              _failed_html(context.get("failed")), _stats_html(context.get("stats")), "</main>",
              f'<script src="{_src(POINTS_SCRIPT)}"></script>', f'<script src="{_src(EXPLORE_SCRIPT)}"></script>',
              "</body>\n</html>\n"]
    return "\n".join(p for p in parts if p)


def content_security_policy(style: str) -> str:
    """Nothing from anywhere but: scripts from the report's own folder (no inline script, no
    eval), its images and data: URLs, and the one inline style sheet (by its hash)."""
    style_hash = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return (f"default-src 'none'; script-src 'self'; img-src 'self' data:; style-src 'sha256-{style_hash}'; "
            f"base-uri 'none'; form-action 'none'")


def _page_head(context: dict) -> str:
    """Everything up to <main>: the head with its Content-Security-Policy, the title, the contents."""
    style = f"\n{_package_text('report.css').strip()}\n"
    title = _e(context.get("title", "vidclust report"))
    out = ["<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">",
           f'<meta http-equiv="Content-Security-Policy" content="{_e(content_security_policy(style))}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{title}</title>", f"<style>{style}</style>\n</head>\n<body>\n<header>", f"<h1>{title}</h1>"]
    if context.get("subtitle"):
        out.append(f'<p class="note">{_e(context["subtitle"])}</p>')
    out.append('<p id="image-check" data-loaded="" data-total=""></p>')
    sections = [("map", "Map and search" if context.get("tsne") else "Search"), ("overview", "Overview")] + [
        (anchor, name) for key, anchor, name in (
            ("sizes", "sizes", "Sizes"), ("clusters", "clusters", "Clusters"), ("sweep", "sweep", "k sweep"),
            ("failed", "failed", "Failed videos"), ("stats", "stats", "Data set")) if context.get(key)]
    out.append('<nav class="toc">' + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in sections) + "</nav>")
    out.append("</header>\n<main>")
    return "\n".join(out)


def _explorer_html(tsne: Optional[dict]) -> str:
    """The map with search beside it; explore.js draws it (it stays hidden without scripts, and
    the static t-SNE image shows instead)."""
    out = ['<h2 id="map">' + ("Map of the videos (t-SNE) and search" if tsne else "Search") + "</h2>"]
    if tsne and tsne.get("note"):
        out.append(f'<p class="note">{_e(tsne["note"])}</p>')
    out += ['<div id="explorer" hidden>',
            '<div class="map-tools"><input id="search" type="search" autocomplete="off" spellcheck="false" '
            'placeholder="Search: video id, words of a caption, file name or cluster keyword" '
            'aria-label="search the videos">',
            '<button type="button" id="zoom-in" title="zoom in">+</button>'
            '<button type="button" id="zoom-out" title="zoom out">\u2212</button>'
            '<button type="button" id="reset-view" title="show the whole map">reset</button>'
            '<span id="map-status" class="note"></span></div>',
            '<div class="explore-body"><div id="map-pane" class="map-pane">',
            '<canvas id="map-canvas" aria-label="map of the videos, coloured by cluster"></canvas>',
            '<div id="map-tooltip" class="tooltip" hidden><img class="tooltip-image" alt="frames of the video">'
            '<div class="tooltip-caption"></div><div class="tooltip-meta"></div><div class="tooltip-cluster"></div>'
            "</div></div>",
            '<aside class="search-panel"><p id="search-summary" class="note">Matches are listed here and '
            'highlighted on the map.</p><ol id="search-results"></ol></aside></div>',
            '<p class="note">Drag to pan; scroll or + and \u2212 to zoom; hover a dot for its caption, frames and '
            "cluster; click it to open its cluster. Only the videos nearest each centre have frames.</p>",
            "</div>"]
    if tsne and tsne.get("image"):
        out.append("<noscript>" + _plot_img(tsne["image"], "t-SNE map of videos and cluster centres") + "</noscript>")
    return "\n".join(out)


def _sizes_html(sizes: list) -> str:
    """The clusters as bars, largest first, each linked to its section."""
    if not sizes:
        return ""
    rows = sorted(sizes, key=lambda c: (-int(c.get("size") or 0), c["cluster_id"]))
    top = max(1, max(int(c.get("size") or 0) for c in rows))
    total = sum(int(c.get("size") or 0) for c in rows)
    n_clusters = len([c for c in rows if c["cluster_id"] != NOISE_ID])
    out = ['<h2 id="sizes">Cluster sizes</h2>',
           f'<p class="note">{_e(_count(n_clusters, "cluster", "clusters"))}, '
           f'{_e(_count(total, "video", "videos"))}; largest first.</p>',
           '<table class="sizes"><tr><th>cluster</th><th>keywords</th><th>videos</th><th></th></tr>']
    for c in rows:
        cid, size = c["cluster_id"], int(c.get("size") or 0)
        name = "noise" if cid == NOISE_ID else str(cid)
        width = max(1, round(320 * size / top)) if size else 0
        out.append(f'<tr><td><a href="#cluster-{_e(cid)}">{_swatch_svg(c.get("color"))}{_e(name)}</a></td>'
                   f'<td>{_e(", ".join(str(k) for k in (c.get("keywords") or [])[:4]))}</td>'
                   f'<td class="num">{_e(_count(size, "video", "videos"))}</td>'
                   f'<td><svg class="bar" width="320" height="12" aria-hidden="true"><rect width="{width}" '
                   f'height="12" fill="{_e(c.get("color") or "#999999")}"/></svg></td></tr>')
    out.append("</table>")
    return "\n".join(out)


def _count(n: int, one: str, many: str) -> str:
    """'1 video', '1,234 videos'."""
    return f"{fmt(int(n))} {one if int(n) == 1 else many}"


def _swatch_svg(color: Optional[str]) -> str:
    """A small square of `color` (an SVG fill: no style attribute, which the page's policy forbids)."""
    if not color:
        return ""
    return (f'<svg class="swatch" width="12" height="12" aria-hidden="true"><rect width="12" height="12" rx="2" '
            f'fill="{_e(color)}"/></svg>')


def _clusters_html(clusters: list) -> str:
    if not clusters:
        return ""
    toc = " ".join(f'<a href="#cluster-{_e(c["cluster_id"])}">{_e(c["cluster_id"])}</a>' for c in clusters)
    return "\n".join(['<h2 id="clusters">Clusters</h2>', f'<nav class="toc">{toc}</nav>',
                      *(_cluster_section(c) for c in clusters)])


def _sweep_html(sweep: Optional[dict]) -> str:
    if not sweep:
        return ""
    out = ['<h2 id="sweep">k sweep</h2>']
    if sweep.get("chosen_k") is not None:
        out.append(f'<p>Chosen k: <b>{_e(sweep["chosen_k"])}</b></p>')
    if sweep.get("image"):
        out.append(_plot_img(sweep["image"], "scores for each k"))
    rows = sweep.get("rows") or []
    if rows:
        cols = [c for c in ("k", "silhouette", "davies_bouldin", "calinski_harabasz") if any(c in r for r in rows)]
        cols += sorted({c for r in rows for c in r} - set(cols))
        out.append("<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>")
        out += ["<tr>" + "".join(f'<td class="num">{_e(fmt(r.get(c)))}</td>' for c in cols) + "</tr>" for r in rows]
        out.append("</table>")
    return "\n".join(out)


def _failed_html(failed: Optional[dict]) -> str:
    if not failed:
        return ""
    rows = failed.get("rows") or []
    total = failed.get("n_total", len(rows))
    out = [f'<h2 id="failed">Failed videos ({_e(fmt(total))})</h2>']
    if failed.get("reasons"):
        out.append(_kv_table(list(failed["reasons"].items()), head=("reason", "videos")))
    if rows:
        out.append("<table><tr><th>video</th><th>path</th><th>error</th></tr>")
        out += [f"<tr><td>{_e(r.get('video_id'))}</td><td>{_e(r.get('path'))}</td><td>{_e(r.get('error'))}</td></tr>"
                for r in rows]
        out.append("</table>")
    if total > len(rows):
        out.append(f'<p class="note">{_e(total - len(rows))} more are not listed here; all are in '
                   f"videos.parquet (status failed).</p>")
    return "\n".join(out)


def _stats_html(stats: Optional[dict]) -> str:
    if not stats:
        return ""
    return "\n".join(['<h2 id="stats">Data set</h2>', _kv_table(stats.get("rows") or []), '<div class="stats">',
                      *(_plot_img(img, img) for img in stats.get("images") or []), "</div>"])


def _plot_img(name: str, alt: str) -> str:
    """A plot, shrunk to the page's width; a click opens it at full size."""
    return f'<a href="{_src(name)}"><img class="plot" src="{_src(name)}" alt="{_e(alt)}"></a>'


def _kv_table(rows, head: Optional[tuple] = None) -> str:
    if not rows:
        return ""
    parts = ["<table>"]
    if head:
        parts.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for name, value in rows:
        cls = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        parts.append(f"<tr><th>{_e(name)}</th><td{cls}>{_e(fmt(value))}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


def _cluster_section(c: dict) -> str:
    """A cluster: its keywords and summaries, frames of the videos nearest its centre, and a box
    where explore.js lists every member, a page at a time."""
    cid = c["cluster_id"]
    parts = [f'<section id="cluster-{_e(cid)}" class="cluster">']
    title = "Noise (not in any cluster)" if cid == NOISE_ID else f"Cluster {cid}"
    parts.append(f"<h3>{_swatch_svg(c.get('color'))}{_e(title)} — {_e(_count(c.get('size') or 0, 'video', 'videos'))}</h3>")
    kws = c.get("keywords") or []
    if kws:
        parts.append("<p>" + "".join(f'<span class="kw">{_e(k)}</span>' for k in kws) + "</p>")
    else:
        parts.append('<p class="note">no keywords</p>')
    for s in (c.get("summaries") or [])[:3]:
        parts.append(f'<p class="note">{_e(s)}</p>')
    videos = c.get("videos") or []
    if videos:
        parts.append('<div class="grid">')
        for v in videos:
            parts.append('<figure class="card">')
            if v.get("image"):
                parts.append(f'<img src="{_src(v["image"])}" alt="frames of {_e(v.get("video_id"))}">')
            else:
                parts.append(f'<div class="missing">frames unavailable: {_e(v.get("error") or "unknown")}</div>')
            parts.append("<figcaption>")
            if v.get("caption"):
                parts.append(f'<div class="caption">{_e(v["caption"])}</div>')
            parts.append(f'<div class="file">{_e(v.get("video_id"))} · {_e(v.get("file"))}'
                         + (f" · distance {_e(fmt(v['distance']))}" if v.get("distance") is not None else "")
                         + "</div>")
            parts.append("</figcaption></figure>")
        parts.append("</div>")
    parts.append(f'<div class="members" data-cluster="{_e(cid)}"><p class="note">The list of all its videos '
                 "needs the page's scripts.</p></div>")
    parts.append('<p class="note"><a href="#map">back to the map</a></p>')
    parts.append("</section>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# the parts of the command: gather (read OUT), compute, render, write


def gather_report_inputs(layout: OutputLayout, cfg) -> dict:
    """Everything the report shows, read from OUT, as a plain dict (no file is written):
    out, video_ids [n], labels int64 [n] (noise -1), distance float [n] (NaN unknown),
    center_ids [k], centers float32 [k, D] or None, vectors float32 [m, D] of the videos that have
    one and has_vector bool [n] (vectors None without video_vectors.parquet), metrics {},
    keywords {cluster_id: [str]}, summaries {cluster_id: [str]}, videos (videos.parquet or None),
    video_info {video_id: {path, captions}}, local_report_dir (report/ when OUT is on local disk)."""
    out = layout.root
    assignments = read_assignments(layout, ("video_id", "cluster_id"))  # a half-written clusters/ is refused
    video_ids = assignments.column("video_id").to_pylist()
    labels = np.array([NOISE_ID if c is None else int(c) for c in assignments.column("cluster_id").to_pylist()],
                      np.int64)
    distance = (np.array([np.nan if d is None else float(d) for d in assignments.column("distance").to_pylist()])
                if "distance" in assignments.column_names else np.full(len(labels), np.nan))
    centers_t = read_centers(layout, required=False)
    center_ids, centers = [], None
    if centers_t is not None and "cluster_id" in centers_t.column_names:
        center_ids = [int(c) for c in centers_t.column("cluster_id").to_pylist()]
        if "center" in centers_t.column_names:
            centers = embedding_matrix(centers_t.column("center"))
    vectors, has_vector = _vectors_of(read_video_vectors(layout, required=False), video_ids)
    metrics = read_metrics(layout, required=False)
    videos = read_videos(layout, required=False)
    keywords, summaries = _words_of(layout)
    return {
        "out": out, "video_ids": video_ids, "labels": labels, "distance": distance,
        "center_ids": center_ids, "centers": centers, "vectors": vectors, "has_vector": has_vector,
        "metrics": metrics if isinstance(metrics, dict) else {},
        "keywords": keywords, "summaries": summaries,
        "videos": videos, "video_info": _video_info(videos),
        "local_report_dir": layout.report_dir if layout.is_local else None,
    }


def _words_of(layout: OutputLayout) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """({cluster_id: key phrases}, {cluster_id: summaries}) of the descriptions of the clustering
    there now; none, with a warning, for descriptions of another clustering or a stopped
    describe (left out rather than refused: the rest of the report holds, and words shown over
    another cluster's videos would be wrong without a word)."""
    try:
        return (_keywords_by_cluster(read_cluster_descriptions(layout, required=False)),
                _summaries_by_cluster(read_descriptions(layout, required=False)))
    except StaleOutputs as exc:
        log.warning("%s (this report shows no words)", exc)
        return {}, {}


def _video_info(videos: Optional[pa.Table]) -> dict[str, dict]:
    """{video_id: {path, captions}} from videos.parquet (empty without it)."""
    if videos is None or "video_id" not in videos.column_names:
        return {}
    cols = [c for c in ("video_id", "path", "captions") if c in videos.column_names]
    return {row["video_id"]: row for row in videos.select(cols).to_pylist()}


def _vectors_of(table: Optional[pa.Table], video_ids: list) -> tuple[Optional[np.ndarray], np.ndarray]:
    """(the vectors of those of `video_ids` that have one, in their order; which have one)."""
    if table is None or not {"video_id", "vector"} <= set(table.column_names):
        return None, np.zeros(len(video_ids), bool)
    pos = {v: i for i, v in enumerate(table.column("video_id").to_pylist())}
    rows = np.array([pos.get(v, -1) for v in video_ids], np.int64)
    return embedding_matrix(table.column("vector"))[rows[rows >= 0]], rows >= 0


def _keywords_by_cluster(data: Any) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            try:
                cid = int(key)
            except (TypeError, ValueError):
                continue
            if isinstance(value, (list, tuple)):
                out[cid] = [str(v[0] if isinstance(v, (list, tuple)) and v else v) for v in value]
            elif isinstance(value, str):
                out[cid] = [value]
    return out


def _summaries_by_cluster(descriptions: Optional[pa.Table]) -> dict[int, list[str]]:
    if descriptions is None or "summaries" not in descriptions.column_names \
            or "cluster_id" not in descriptions.column_names:
        return {}
    out = {}
    for cid, s in zip(descriptions.column("cluster_id").to_pylist(), descriptions.column("summaries").to_pylist()):
        if cid is None:
            continue
        if isinstance(s, str):
            s = [s]
        out[int(cid)] = [str(x) for x in (s or []) if x]
    return out


def compute_report(inputs: dict, cfg) -> dict:
    """What the page needs beyond the inputs: the t-SNE map (and its projection table), the plots,
    the thumbnails, the data-set statistics, the explorer's data. Returns a dict: files {name:
    bytes}, projection (a PROJECTION_SCHEMA table or None), xy [n, 2] and centers_xy {cluster_id:
    (x, y)} (map positions), tsne, sweep, cards, stats, failed, stats_summary, notes, cluster_ids,
    sizes_by_id, colors, counts, timings."""
    labels, center_ids = inputs["labels"], inputs["center_ids"]
    sizes_by_id = {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True))}
    cluster_ids = sorted(set(sizes_by_id) | set(center_ids))
    computed: dict = {"files": {}, "notes": [], "timings": {}, "cluster_ids": cluster_ids,
                      "sizes_by_id": sizes_by_id, "colors": cluster_colors(cluster_ids)}
    computed.update(_tsne_map(inputs, cfg, computed))
    ts = time.perf_counter()
    computed.update(_sweep_plot(inputs, computed))
    computed["timings"]["plots_s"] = round(time.perf_counter() - ts, 3)
    ts = time.perf_counter()
    computed.update(_thumbnails(inputs, cfg.report, computed))
    computed["timings"]["frames_s"] = round(time.perf_counter() - ts, 3)
    ts = time.perf_counter()
    computed.update(_data_set(inputs["videos"], cfg.report, computed))
    computed["timings"]["stats_s"] = round(time.perf_counter() - ts, 3)
    ts = time.perf_counter()
    computed["files"].update(_explorer_files(inputs, cfg.report, computed))
    computed["timings"]["explorer_s"] = round(time.perf_counter() - ts, 3)
    return computed


def _tsne_map(inputs: dict, cfg, computed: dict) -> dict:
    """The t-SNE projection of the videos with a vector and of the centres, and its plot."""
    from vidclust.projection import project_tsne

    video_ids, labels, have = inputs["video_ids"], inputs["labels"], inputs["has_vector"]
    vec, centers, center_ids = inputs["vectors"], inputs["centers"], inputs["center_ids"]
    if vec is None or not len(video_ids):
        computed["notes"].append(f"No {VIDEO_VECTORS_FILE}: the t-SNE map is left out.")
        return {"tsne": None, "tsne_info": {}, "projection": None,
                "xy": np.full((len(video_ids), 2), np.nan, np.float32), "centers_xy": {}}
    if not have.all():
        computed["notes"].append(f"{int((~have).sum())} clustered videos have no vector in "
                                 f"{posixpath.basename(VIDEO_VECTORS_FILE)} and are not on the map.")
    rc = cfg.report
    use_centers = centers if centers is not None and len(centers) and centers.shape[1] == vec.shape[1] else None
    shown_ids = center_ids if use_centers is not None else []
    xy_have, cxy, info = project_tsne(vec, use_centers, seed=cfg.seed, sample_above=rc.tsne_sample,
                                      perplexity=rc.tsne_perplexity, n_jobs=rc.tsne_n_jobs, labels=labels[have],
                                      center_ids=np.array(center_ids) if use_centers is not None else None)
    computed["timings"]["tsne_s"] = info.get("seconds", 0.0)
    xy = np.full((len(video_ids), 2), np.nan, np.float32)
    xy[have] = xy_have
    ts = time.perf_counter()
    computed["files"][TSNE_PLOT] = plot_tsne(
        xy_have, labels[have], cxy, shown_ids, inputs["keywords"],
        note="sample fitted, rest placed by transform" if info.get("sampled") else "")
    computed["timings"]["tsne_plot_s"] = round(time.perf_counter() - ts, 3)
    return {"tsne": {"image": TSNE_PLOT, "note": _tsne_note(info, cfg.seed)}, "tsne_info": info,
            "projection": projection_table(video_ids, xy, shown_ids, cxy), "xy": xy,
            "centers_xy": {int(c): (float(p[0]), float(p[1])) for c, p in zip(shown_ids, cxy)}}


def projection_table(video_ids: Sequence[str], xy: np.ndarray, center_ids: Sequence[int],
                     centers_xy: np.ndarray) -> pa.Table:
    """report/projection.parquet: a row per video (kind video), then one per centre (kind center)."""
    n, k = len(video_ids), len(center_ids)
    xy = np.asarray(xy, np.float32).reshape(-1, 2)
    cxy = np.asarray(centers_xy, np.float32).reshape(-1, 2)
    return pa.table({
        "kind": pa.array(["video"] * n + ["center"] * k, pa.string()),
        "video_id": pa.array(list(video_ids) + [None] * k, pa.string()),
        "cluster_id": pa.array([None] * n + [int(c) for c in center_ids], pa.int32()),
        "x": pa.array(np.concatenate([xy[:, 0], cxy[:, 0]]), pa.float32()),
        "y": pa.array(np.concatenate([xy[:, 1], cxy[:, 1]]), pa.float32()),
    }, schema=PROJECTION_SCHEMA)


def _sweep_plot(inputs: dict, computed: dict) -> dict:
    """When metrics.json has a k sweep, its curves."""
    metrics = inputs["metrics"]
    sweep = metrics.get("k_sweep")
    if not (isinstance(sweep, list) and sweep and all(isinstance(r, dict) for r in sweep)):
        return {"sweep": None}
    chosen = metrics.get("k") if isinstance(metrics.get("k"), int) else None
    computed["files"][SWEEP_PLOT] = plot_sweep(sweep, chosen)
    return {"sweep": {"image": SWEEP_PLOT, "rows": sweep, "chosen_k": chosen}}


def _thumbnails(inputs: dict, rc, computed: dict) -> dict:
    """For each cluster, frames of the videos nearest its centre (a pool of threads decodes them):
    {cards: {cluster_id: [card]}, counts: {n_thumbnails, n_thumbnail_failures}}."""
    video_ids, labels, distance = inputs["video_ids"], inputs["labels"], inputs["distance"]
    video_info = inputs["video_info"]
    per_video = max(1, rc.frames_per_video)
    n_show = math.ceil(rc.frames_per_cluster / per_video) if rc.frames_per_cluster else 0
    dist_sort = np.where(np.isnan(distance), np.inf, distance)
    jobs = []  # (cluster, row, path)
    for c in computed["cluster_ids"]:
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(dist_sort[members], kind="stable")][:n_show] if n_show else []
        jobs += [(c, r, video_info.get(video_ids[r], {}).get("path")) for r in members]
    with ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2)))) as pool:
        results = list(pool.map(_strip_or_error, [(p, per_video, rc.thumbnail_width) for _, _, p in jobs]))
    cards: dict[int, list[dict]] = {c: [] for c in computed["cluster_ids"]}
    n_thumbs = n_fail = 0
    for (c, r, path), (data, err) in zip(jobs, results):
        caps = video_info.get(video_ids[r], {}).get("captions") or []
        card = {"video_id": video_ids[r], "file": posixpath.basename(path) if path else "",
                "caption": caps[0] if caps else "", "image": None, "error": err,
                "distance": None if np.isnan(distance[r]) else float(distance[r])}
        if data is not None:
            card["image"] = thumbnail_file(c, len(cards[c]))
            computed["files"][card["image"]] = data
            n_thumbs += 1
        else:
            n_fail += 1
        cards[c].append(card)
    return {"cards": cards, "counts": {"n_thumbnails": n_thumbs, "n_thumbnail_failures": n_fail}}


def _explorer_files(inputs: dict, rc, computed: dict) -> dict[str, bytes]:
    """points.js (every clustered video: map position, caption, file, cluster) and explore.js."""
    clusters = [{"cluster_id": c, "color": _rgb(computed["colors"][c]), "keywords": inputs["keywords"].get(c, []),
                 "center_xy": computed["centers_xy"].get(c)} for c in computed["cluster_ids"]]
    thumbnails = {card["video_id"]: card["image"] for cards in computed["cards"].values() for card in cards
                  if card.get("image")}
    data = explorer_data(inputs["video_ids"], inputs["labels"], inputs["distance"], computed["xy"], clusters,
                         inputs["video_info"], thumbnails, inputs["local_report_dir"], rc.members_per_page)
    return {POINTS_SCRIPT: points_script(data), EXPLORE_SCRIPT: explore_script()}


def _data_set(videos: Optional[pa.Table], rc, computed: dict) -> dict:
    """The data-set statistics table and plots, and the failed videos, from videos.parquet."""
    from vidclust.video_stats import plot_stats, summarise_stats

    if videos is None:
        computed["notes"].append("No videos.parquet: no data set statistics, captions or frames.")
        return {"stats": None, "failed": None, "stats_summary": {}}
    summary = summarise_stats(videos, max_failures=rc.max_failed_listed)
    pngs = plot_stats(videos)
    computed["files"].update(pngs)
    rows = [("videos", summary["count"]), ("decoded", summary["n_ok"]),
            ("failed", summary["n_failed"]), ("total hours", summary["total_hours"])]
    for key, label in (("duration_s", "duration (s)"), ("fps", "frame rate (fps)")):
        d = summary.get(key) or {}
        if d.get("n"):
            rows.append((f"{label} min / median / mean / max",
                         f"{d['min']:.3g} / {d['median']:.3g} / {d['mean']:.3g} / {d['max']:.3g}"))
    for key, label in (("resolution_counts", "resolutions"), ("codec_counts", "codecs"),
                       ("fps_counts", "frame rates")):
        counts = summary.get(key) or {}
        if counts:
            rows.append((label, ", ".join(f"{k} ({v})" for k, v in list(counts.items())[:10])
                         + (f", … {len(counts)} distinct" if len(counts) > 10 else "")))
    failed = None
    if summary["n_failed"]:
        failed = {"rows": summary["failures"], "n_total": summary["n_failed"],
                  "reasons": summary.get("failure_reasons") or {}}
    return {"stats": {"rows": rows, "images": [p for p in STATS_PLOTS if p in pngs]}, "failed": failed,
            "stats_summary": summary}


def _tsne_note(info: dict, seed: int) -> str:
    if info.get("method", "").startswith("pca"):
        return "Too few videos for t-SNE: this is the plane of their first two principal components."
    if info.get("sampled"):
        how = (f"t-SNE (openTSNE, perplexity {info.get('perplexity', 0):.3g}) was fitted on a sample of "
               f"{info['n_fitted']:,} of the {info['n_videos']:,} videos, drawn with seed {seed}; the "
               f"other {info['n_placed']:,} videos were placed into that map "
               + ("with openTSNE's transform." if info.get("placed_by", "openTSNE transform") == "openTSNE transform"
                  else f"at the {info['placed_by']} (where the transform would start them)."))
    else:
        how = (f"t-SNE (openTSNE, perplexity {info.get('perplexity', 0):.3g}, seed {seed}) fitted on all "
               f"{info['n_videos']:,} videos.")
    placed = info.get("centers_placed_by", "")
    if placed == "median of members":
        how += " Each centre is marked at the median position of its videos."
    elif placed:
        how += f" Centres are placed by {placed}."
    return how


def report_context(inputs: dict, computed: dict) -> dict:
    """The context `render_html` takes, from the inputs and what was computed of them."""
    cluster_ids, sizes_by_id = computed["cluster_ids"], computed["sizes_by_id"]
    n_clusters = len([c for c in cluster_ids if c != NOISE_ID])
    overview, scores = _overview_and_scores(inputs["out"], inputs["metrics"], len(inputs["video_ids"]), n_clusters,
                                            sizes_by_id.get(NOISE_ID, 0), computed["stats_summary"])
    clusters = [{"cluster_id": c, "size": sizes_by_id.get(c, 0), "color": _rgb(computed["colors"][c]),
                 "keywords": inputs["keywords"].get(c, []), "summaries": inputs["summaries"].get(c, []),
                 "videos": computed["cards"].get(c, [])} for c in cluster_ids]
    return {
        "title": "vidclust report",
        "subtitle": f"{inputs['out']} — generated {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "overview": overview, "scores": scores, "notes": computed["notes"], "tsne": computed["tsne"],
        "sizes": [{"cluster_id": c["cluster_id"], "size": c["size"], "color": c["color"], "keywords": c["keywords"]}
                  for c in clusters],
        "sweep": computed["sweep"], "clusters": clusters, "failed": computed["failed"],
        "stats": computed["stats"],
    }


def _overview_and_scores(out: str, metrics: dict, n_videos: int, n_clusters: int, n_noise: int,
                         stats_summary: dict) -> tuple[list, list]:
    """(name, value) rows of the run's overview and of its scores, from whatever metrics.json has."""
    overview: list = [("output", out), ("videos clustered", n_videos), ("clusters", n_clusters)]
    if n_noise:
        overview.append(("videos left out (noise)", n_noise))
    for key, label in (("method", "method"), ("method_requested", "method requested"),
                       ("aggregation", "aggregation"), ("k", "k"), ("sweep_metric", "k chosen by"),
                       ("seed", "seed")):
        value = metrics.get(key)
        if value is not None and not isinstance(value, (dict, list)):
            overview.append((label, value))
    if stats_summary:
        overview.append(("failed videos", stats_summary["n_failed"]))
    elif number(metrics.get("n_failed")) is not None:
        overview.append(("failed videos", metrics["n_failed"]))
    dups = metrics.get("near_duplicates")
    if isinstance(dups, dict) and dups.get("n_groups") is not None:
        overview.append((f"near-duplicate groups (cosine >= {fmt(dups.get('threshold'))})", dups["n_groups"]))
    scores: list = []
    for key, label in (("silhouette", "silhouette (higher is better, -1..1)"),
                       ("davies_bouldin", "Davies-Bouldin (lower is better)"),
                       ("calinski_harabasz", "Calinski-Harabasz (higher is better)")):
        if number(metrics.get(key)) is not None:
            if key == "silhouette" and metrics.get("silhouette_sampled"):
                label += f", on a sample of {fmt(metrics.get('silhouette_sample_size'))}"
            scores.append((label, float(metrics[key])))
    external = metrics.get("external") if isinstance(metrics.get("external"), dict) else metrics
    for key, label in (("nmi", "NMI against the categories"), ("ari", "ARI against the categories"),
                       ("purity", "purity against the categories")):
        if number(external.get(key)) is not None:
            scores.append((label, float(external[key])))
    return overview, scores


def write_report(layout: OutputLayout, page: str, computed: dict) -> str:
    """report/: the previous report's files go, then the images, the projection, and last the page
    (a complete page or none). Returns the page's path."""
    clear_report(layout)  # the page lists only this report's files
    for name, data in computed["files"].items():
        write_report_file(layout, name, data)
    if computed["projection"] is not None:
        write_projection(layout, computed["projection"])
    return write_report_page(layout, page)


# ----------------------------------------------------------------------------------------------
# the command


def run_report(cfg, out: str) -> dict:
    """`vidclust report OUT`: read OUT, write OUT/report/ (index.html, its images, projection.parquet),
    record the stage in run.json. Writes nothing outside report/ but run.json."""
    from vidclust.runinfo import record_stage

    layout = OutputLayout.open(out)
    clear_staging(layout, "report")
    t0 = time.perf_counter()
    inputs = gather_report_inputs(layout, cfg)
    computed = compute_report(inputs, cfg)
    ts = time.perf_counter()
    index = write_report(layout, render_html(report_context(inputs, computed)), computed)
    timings = {**computed["timings"], "write_s": round(time.perf_counter() - ts, 3)}
    n_clusters = len([c for c in computed["cluster_ids"] if c != NOISE_ID])
    n_images = sum(name.endswith((".png", ".jpg")) for name in computed["files"])
    info = {"seconds": round(time.perf_counter() - t0, 3), **timings, "n_videos": len(inputs["video_ids"]),
            "n_clusters": n_clusters, "n_images": n_images, **computed["counts"], "tsne": dict(computed["tsne_info"])}
    record_stage(layout, cfg, "report", info)
    where = index if "://" not in out else f"{out.rstrip('/')}/{REPORT_PAGE_FILE}"
    print(f"report: {where} ({n_clusters} clusters, {len(inputs['video_ids'])} videos; {info['seconds']:.1f}s, "
          f"t-SNE {timings.get('tsne_s', 0):.1f}s)")
    return {"report": where, **info}
