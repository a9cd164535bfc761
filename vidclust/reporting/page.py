"""The report's page: OUT/report/index.html as a string, from a plain context dict.

Everything that comes from the data (captions, file names, keywords, errors) is untrusted text:
it goes through `html.escape` here (the page's data for its scripts goes through script-safe JSON
in vidclust.explorer). The Content-Security-Policy allows scripts only from the report's folder
(none inline, no eval), images from it, and the one inline style sheet (vidclust/data/report.css)
by its hash.

`render_html(context)` (the page; its keys in its docstring, one per section), and the rows of
two of its tables: `overview_and_scores` (from metrics.json) and `data_set_rows` (from
vidclust.video_stats' summary).
"""
from __future__ import annotations

import base64
import hashlib
import html
import urllib.parse
from typing import Any, Optional

from vidclust.formatting import fmt, number
from vidclust.store.layout import EXPLORE_SCRIPT, POINTS_SCRIPT
from vidclust.reporting.palette import NOISE_ID


def _package_text(name: str) -> str:
    """A file of vidclust/data/ (the page's style sheet)."""
    from importlib import resources

    return resources.files("vidclust").joinpath("data", name).read_text("utf-8")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _src(name: str) -> str:
    return _e(urllib.parse.quote(name))


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
# the rows of its tables


def overview_and_scores(out: str, metrics: dict, n_videos: int, n_clusters: int, n_noise: int,
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


def data_set_rows(summary: dict) -> list[tuple[str, Any]]:
    """(name, value) rows of the data set's table, from vidclust.video_stats' summary."""
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
    return rows
