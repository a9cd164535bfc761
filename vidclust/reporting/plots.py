"""Matplotlib figures drawn off-screen and saved as PNG bytes (no display, no pyplot state).

`figure` and `png` are the canvas every plot of vidclust draws on (the data-set histograms of
vidclust.video_stats too); the report's own figures are here: `plot_tsne` (the static map, shown
when the page's scripts are off) and `plot_sweep` (the k-sweep curves), arrays in, PNG bytes out.
Text from the data (keywords) goes through `_plain`, so no caption turns into mathtext.
"""
from __future__ import annotations

import io
import math
from typing import Any, Optional, Sequence

import numpy as np

from vidclust.formatting import number
from vidclust.reporting.palette import NOISE_ID, cluster_colors


def figure(w: float, h: float, layout: Optional[str] = "constrained", axes: bool = True):
    """A `w` x `h` inch figure on the Agg canvas, with one axes (`(fig, ax)`) or none (`fig`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    if not axes:
        return fig
    return fig, fig.add_subplot()


def png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


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
