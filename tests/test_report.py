"""The report: t-SNE projection, plots, colours, thumbnails, escaping, the explorer's data file,
`run_report` on a hand-made OUT, the page driven in headless Chromium (search, hover, click, the
paged member lists, a map of 100,000 videos), and the report of a small real run (embed -> cluster
-> describe -> report) opened there."""
from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidclust.config import load_config
from vidclust.store.contract import PROJECTION_SCHEMA
from vidclust.errors import VidclustError
from vidclust.example import topic_frame, write_video
from vidclust.reporting.explorer import (explore_script, explorer_data, points_script, read_points_script,
                               video_link)
from vidclust.reporting.frame_strips import grab_frames, thumbnail_strip
from vidclust.reporting.page import render_html
from vidclust.reporting.palette import NOISE_ID, cluster_colors, distinct_colors, min_distance, oklab
from vidclust.reporting.plots import plot_sweep, plot_tsne
from vidclust.reporting.projection import project_tsne
from vidclust.reporting.run import run_report
from headless_chromium import HeadlessChromium, chromium_executable

PNG = b"\x89PNG\r\n\x1a\n"
EVIL_CAPTION = "<script>alert(1)</script>"
EVIL_CAPTION_2 = "<img src=x onerror=\"document.body.setAttribute('data-pwned','caption')\"> & more"
EVIL_FILE = "<img src=x onerror=document.body.setAttribute('data-pwned',1)>.mp4"


def blobs(k: int, n_per: int, d: int = 16, spread: float = 0.25, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(k), n_per)
    x = centres[labels] + rng.normal(scale=spread / np.sqrt(d), size=(len(labels), d))
    return x.astype(np.float32), labels


# --------------------------------------------------------------------------- projection
def test_project_tsne_separates_blobs_and_is_deterministic():
    x, labels = blobs(4, 40)
    centres = np.stack([x[labels == c].mean(0) for c in range(4)])
    xy, cxy, info = project_tsne(x, centres, seed=28, sample_above=10_000, perplexity=30,
                                 labels=labels, center_ids=np.arange(4))
    assert xy.shape == (160, 2) and cxy.shape == (4, 2) and xy.dtype == np.float32
    assert info["method"] == "openTSNE" and not info["sampled"] and info["n_fitted"] == 160
    assert info["centers_placed_by"] == "median of members"
    # every video is nearer its own centre than any other on the map
    d = np.linalg.norm(xy[:, None, :] - cxy[None, :, :], axis=2)
    assert (d.argmin(axis=1) == labels).mean() > 0.95
    xy2, cxy2, _ = project_tsne(x, centres, seed=28, sample_above=10_000, perplexity=30,
                                labels=labels, center_ids=np.arange(4))
    np.testing.assert_array_equal(xy, xy2)
    np.testing.assert_array_equal(cxy, cxy2)


def test_project_tsne_fits_a_sample_and_places_the_rest():
    x, labels = blobs(3, 100, seed=1)
    centres = np.stack([x[labels == c].mean(0) for c in range(3)])
    xy, cxy, info = project_tsne(x, centres, seed=5, sample_above=120, perplexity=30)
    assert info["sampled"] and info["n_fitted"] == 120 and info["n_placed"] == 180
    assert info["centers_placed_by"] == "transform"
    assert np.isfinite(xy).all() and np.isfinite(cxy).all()
    # the placed videos land among their own cluster's fitted videos, in the same frame
    fitted = np.zeros(300, bool)
    fitted[np.sort(np.random.default_rng(5).choice(300, 120, replace=False))] = True
    for c in range(3):
        own, placed = xy[fitted & (labels == c)], xy[~fitted & (labels == c)]
        radius = np.linalg.norm(own - np.median(own, axis=0), axis=1).max()
        assert np.linalg.norm(np.median(placed, axis=0) - np.median(own, axis=0)) < 0.5 * radius
    d = np.linalg.norm(xy[:, None, :] - cxy[None, :, :], axis=2)
    assert (d.argmin(axis=1) == labels).mean() > 0.95
    again, _, info2 = project_tsne(x, centres, seed=5, sample_above=120, perplexity=30)
    np.testing.assert_array_equal(xy, again)
    other, _, _ = project_tsne(x, centres, seed=6, sample_above=120, perplexity=30)
    assert not np.array_equal(xy, other)  # the seed picks the sample


def test_project_tsne_places_a_centre_without_videos_by_transform():
    x, labels = blobs(3, 30, seed=2)
    centres = np.stack([x[labels == c].mean(0) for c in range(3)])
    extra = np.concatenate([centres, centres[1:2] * 1.01])  # centre 3: no videos, next to centre 1
    xy, cxy, info = project_tsne(x, extra, seed=3, labels=labels, center_ids=np.arange(4))
    assert info["centers_placed_by"] == "median of members (3), transform (1)"
    np.testing.assert_allclose(cxy[:3], [np.median(xy[labels == c], axis=0) for c in range(3)], rtol=1e-5)
    spread = np.linalg.norm(xy[labels == 1] - cxy[1], axis=1).max()
    assert np.linalg.norm(cxy[3] - cxy[1]) <= spread  # placed among centre 1's videos


def test_project_tsne_tiny_inputs():
    x, labels = blobs(2, 2)
    xy, cxy, info = project_tsne(x, x[:2], seed=1)
    assert xy.shape == (4, 2) and cxy.shape == (2, 2) and info["method"].startswith("pca")
    xy, cxy, info = project_tsne(np.zeros((0, 8), np.float32), None)
    assert xy.shape == (0, 2) and cxy.shape == (0, 2)
    with pytest.raises(ValueError):
        project_tsne(np.zeros((20, 8), np.float32), np.zeros((2, 4), np.float32))


# --------------------------------------------------------------------------- plots
def _png_image(data: bytes):
    from PIL import Image

    assert data.startswith(PNG)
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize("k", [20, 100])
def test_plots_at_20_and_100_clusters(k):
    """The legend is outside the axes (the image grows to the right for it), labels hold no
    mathtext surprises, and every plot decodes as an image."""
    rng = np.random.default_rng(k)
    centres_xy = rng.uniform(-50, 50, size=(k, 2))
    labels = rng.integers(0, k, size=20 * k)
    xy = centres_xy[labels] + rng.normal(scale=2.0, size=(len(labels), 2))
    keywords = {c: [f"word{c}", "$x$ and $y$", "<b>bold</b>"] for c in range(k)}
    tsne = _png_image(plot_tsne(xy, labels, centres_xy, list(range(k)), keywords))
    assert tsne.size[0] > tsne.size[1]  # the map plus the legend beside it
    sweep = _png_image(plot_sweep([{"k": 5, "silhouette": 0.1, "davies_bouldin": 2.0, "calinski_harabasz": 10},
                                   {"k": 10, "silhouette": 0.2, "davies_bouldin": 1.5, "calinski_harabasz": 12}], 10))
    assert sweep.size[0] > 600


def test_cluster_colours_stay_distinct_at_100_clusters():
    """No two of 100 cluster colours are alike (OKLab distance; about 0.02 is just noticeable),
    none is near the noise grey, and the first nine are tab10's."""
    colors = cluster_colors(list(range(100)) + [NOISE_ID])
    palette = [colors[c][:3] for c in range(100)]
    assert len(set(palette)) == 100
    assert min_distance(palette) > 0.06
    grey = oklab(np.array(colors[NOISE_ID][:3]))
    assert np.linalg.norm(oklab(np.array(palette)) - grey, axis=1).min() > 0.08
    assert min_distance(distinct_colors(20)) > 0.12  # the first 20 are far apart, not only distinct
    assert _hex(colors[0]) == "#1f77b4" and _hex(colors[8]) == "#17becf"
    lightness = oklab(np.array(palette))[:, 0]
    assert lightness.min() >= 0.42 and lightness.max() <= 0.80  # none washes out on white, none is black


def _hex(color) -> str:
    return "#" + "".join(f"{round(255 * v):02x}" for v in color[:3])


# --------------------------------------------------------------------------- frames
@pytest.fixture(scope="module")
def one_video(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    return write_video(tmp_path_factory.mktemp("one") / "v.mp4", 40, fps=20,
                       frame_fn=lambda t: topic_frame("fire", t, (96, 128), rng))


def test_grab_frames_and_thumbnail_strip(one_video, tmp_path):
    images = grab_frames(str(one_video), 3, width=64)
    assert len(images) == 3 and all(im.size == (64, 48) for im in images)
    assert len({im.tobytes() for im in images}) == 3  # three different moments
    strip = thumbnail_strip(str(one_video), 2, width=80)
    from PIL import Image

    assert Image.open(io.BytesIO(strip)).size == (2 * 80 + 2, 60)
    with pytest.raises(Exception, match="not found"):
        grab_frames(str(tmp_path / "nope.mp4"), 2)


# --------------------------------------------------------------------------- HTML
class DomScan(HTMLParser):
    """Elements and text of a page, as a browser's parser sees them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.tags if t == tag)

    def all_text(self) -> str:
        return "".join(self.text)


def test_render_html_escapes_every_untrusted_string():
    page = render_html({
        "title": "report <of> things",
        "overview": [("output", "/out/<b>x</b>")],
        "clusters": [{"cluster_id": 0, "size": 2, "color": "#112233", "keywords": ["<i>kw</i>"],
                      "summaries": ["</p><script>bad()</script>"],
                      "videos": [{"video_id": "v\"1", "file": EVIL_FILE, "caption": EVIL_CAPTION,
                                  "image": "frames/c0_0.jpg", "error": None},
                                 {"video_id": "v2", "file": "a.mp4", "caption": EVIL_CAPTION_2,
                                  "image": None, "error": "<u>file not found</u>"}]}],
        "failed": {"rows": [{"video_id": "f", "path": "<x>", "error": "</td><script>x()</script>"}], "n_total": 3},
        "sweep": {"image": "k_sweep.png", "rows": [{"k": 5, "silhouette": "<s>"}], "chosen_k": 5},
        "stats": {"rows": [("codecs", "<h264>")], "images": ["stats_codec.png"]},
    })
    dom = DomScan(page)
    assert page_scripts(dom) == ["points.js", "explore.js"]  # only the report's own files, none inline
    assert len([a for t, a in dom.tags if t == "img" and "src" in a]) == 3
    assert dom.count("i") == 0 and dom.count("u") == 0 and dom.count("b") == 1
    text = dom.all_text()
    for s in (EVIL_CAPTION, EVIL_CAPTION_2, EVIL_FILE, "<i>kw</i>", "</p><script>bad()</script>",
              "<u>file not found</u>", "</td><script>x()</script>", "<h264>", "report <of> things"):
        assert s in text, s
    assert html.escape(EVIL_CAPTION) in page
    assert "2 more are not listed" in text
    assert_strict_policy(page)


def page_scripts(dom: "DomScan") -> list:
    """The src of every script element; an inline script fails the test."""
    scripts = [a for t, a in dom.tags if t == "script"]
    assert all(a.get("src") for a in scripts), "an inline script"
    return [a["src"] for a in scripts]


def assert_strict_policy(page: str) -> None:
    """The page's Content-Security-Policy: nothing by default; scripts from the report's folder
    only; images from it and data: URLs; the one inline style sheet by its hash; no style
    attributes (the policy would block them) and no event-handler attributes."""
    dom = DomScan(page)
    [csp] = [a["content"] for t, a in dom.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    rules = dict((r.split()[0], r.split()[1:]) for r in csp.split(";") if r.strip())
    assert rules["default-src"] == ["'none'"] and rules["script-src"] == ["'self'"]
    assert rules["img-src"] == ["'self'", "data:"] and rules["base-uri"] == ["'none'"]
    assert "unsafe" not in csp
    [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = hashlib.sha256(style.encode()).digest()
    import base64

    assert rules["style-src"] == [f"'sha256-{base64.b64encode(digest).decode()}'"]
    for tag, attrs in dom.tags:
        assert "style" not in attrs and not any(name.startswith("on") for name in attrs), (tag, attrs)


def test_sizes_chart_is_largest_first_and_counts_video_or_videos():
    sizes = [{"cluster_id": 0, "size": 1, "color": "#112233", "keywords": ["one"]},
             {"cluster_id": 1, "size": 1234, "color": "#445566", "keywords": ["<big>"]},
             {"cluster_id": NOISE_ID, "size": 7, "color": "#999999", "keywords": []},
             {"cluster_id": 2, "size": 40, "color": "#778899", "keywords": []}]
    page = render_html({"title": "t", "sizes": sizes, "clusters": [dict(c, videos=[]) for c in sizes]})
    chart = page[page.index('id="sizes"'):page.index('id="clusters"')]
    rows = re.findall(r'<tr><td><a href="#cluster-(-?\d+)">.*?<td class="num">([^<]+)</td>.*?<rect width="(\d+)"',
                      chart)
    assert [(int(c), n) for c, n, _ in rows] == [(1, "1,234 videos"), (2, "40 videos"), (NOISE_ID, "7 videos"),
                                                 (0, "1 video")]
    widths = [int(w) for _, _, w in rows]
    assert widths == sorted(widths, reverse=True) and widths[0] == 320 and widths[-1] >= 1
    assert "&lt;big&gt;" in chart and "3 clusters, 1,282 videos" in chart
    text = DomScan(page).all_text()
    assert "Cluster 0 — 1 video" in text and "Cluster 1 — 1,234 videos" in text


# --------------------------------------------------------------------------- the explorer's data
def test_points_script_holds_every_video_safely(tmp_path):
    """points.js: every video once, grouped by cluster and nearest first; hostile strings arrive
    unchanged but no '<', '>', '&' or line separator is written raw (no '</script>' can end a
    script, no U+2028 can end a line of JavaScript)."""
    hostile = ["</script><script>alert(1)</script>", "a & d > e", 'quote " and \\ backslash', "<!-- comment", "ok"]
    ids = ["v0", "v1", "</script>", "v3", "v4"]
    labels = np.array([1, 0, 1, 0, NOISE_ID])
    distance = np.array([0.5, 0.2, 0.1, np.nan, np.nan])
    xy = np.array([[0, 0], [10, 5], [3, 1], [np.nan, np.nan], [5, 2.5]], np.float32)
    videos = tmp_path / "videos"
    info = {vid: {"path": str(videos / f"file{i}.mp4"), "captions": [cap, "second"]}
            for i, (vid, cap) in enumerate(zip(ids, hostile))}
    info["v0"]["path"] = str(videos / "line\u2028separated\u2029.mp4")
    info["v3"]["path"] = "s3://bucket/v3.mp4"
    info["v4"]["path"] = str(videos / "shard.tar") + "#clips/v4.mp4"
    clusters = [{"cluster_id": NOISE_ID, "color": "#999999", "keywords": [], "center_xy": None},
                {"cluster_id": 0, "color": "#1f77b4", "keywords": ["<kw>", "b"], "center_xy": (10, 5)},
                {"cluster_id": 1, "color": "#ff7f0e", "keywords": ["c"], "center_xy": (1.5, 0.5)}]
    data = explorer_data(ids, labels, distance, xy, clusters, info, {"v1": "frames/c0_0.jpg"},
                         str(tmp_path / "out" / "report"), page_size=2)
    script = points_script(data)
    for raw in (b"<", b">", b"&", "\u2028".encode(), "\u2029".encode()):
        assert raw not in script
    back = read_points_script(script)
    assert back == json.loads(json.dumps(data))
    assert back["ids"] == ["v4", "v1", "v3", "</script>", "v0"]  # noise, then 0 and 1, nearest first
    assert back["captions"] == [hostile[4], hostile[1], hostile[3], hostile[2], hostile[0]]
    # a file named after its video id is the number of its extension
    assert back["files"] == [0, "file1.mp4", 0, "file2.mp4", "line\u2028separated\u2029.mp4"]
    assert back["exts"] == [".mp4"]
    assert [(c["id"], c["start"], c["count"]) for c in back["clusters"]] == [(-1, 0, 1), (0, 1, 2), (1, 3, 2)]
    assert back["x"][2] == back["y"][2] == -1  # no position
    assert back["extent"] == [9999, 5000] and (back["x"][1], back["y"][1]) == (9999, 5000)
    assert back["clusters"][0]["cx"] == -1 and (back["clusters"][1]["cx"], back["clusters"][1]["cy"]) == (9999, 5000)
    assert back["dirs"] == ["../../videos/"] and back["dir"] == [-1, 0, -1, 0, 0]  # s3 and a shard member: no link
    assert back["thumbIndex"] == [1] and back["thumbImage"] == ["frames/c0_0.jpg"] and back["pageSize"] == 2
    assert back["clusters"][1]["keywords"] == ["<kw>", "b"]


def test_video_links_open_the_file_from_the_report():
    assert video_link("/data/a b/x#1.mp4", "/out/report") == ("../../data/a%20b/", "x#1.mp4")
    assert video_link("/out/report/v.mp4", "/out/report") == ("", "v.mp4")
    assert video_link("/data/x.mp4", None) == ("file:///data/", "x.mp4")  # the report is not on this disk
    assert video_link("file:///data/c%3Ad/x.mp4", "/out/report") == ("../../data/c%3Ad/", "x.mp4")
    assert video_link("/data/javascript:alert(1)/x.mp4", "/out/report")[0] == "../../data/javascript%3Aalert%281%29/"
    assert video_link("https://host/v/a%20b.mp4", "/out/report") == ("https://host/v/", "a b.mp4")
    assert video_link("s3://bucket/x.mp4", "/out/report") is None
    assert video_link("/data/shard-000.tar#x.mp4", "/out/report") is None
    assert video_link(None, "/out/report") is None


def test_explore_script_has_no_eval_and_no_html_from_data():
    js = explore_script().decode()
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                      "setAttribute(\"style", "fetch(", "XMLHttpRequest"):
        assert forbidden not in js, forbidden


# --------------------------------------------------------------------------- run_report on a hand-made OUT
def write_synthetic_out(root: Path, videos_dir: Path) -> Path:
    """A complete OUT written the way the other stages write it (real Parquet, real KMeans)."""
    from sklearn.cluster import KMeans

    x, true = blobs(3, 10, d=16, seed=3)
    ids = [f"vid{i:02d}" for i in range(len(x))]
    km = KMeans(3, n_init=3, random_state=0).fit(x)
    labels = km.labels_.astype(np.int32)
    labels[-1] = -1  # one video left out as noise
    dist = np.linalg.norm(x - km.cluster_centers_[np.maximum(labels, 0)], axis=1).astype(np.float32)
    dist[-1] = np.nan
    dist[[0, 4]] = 0.0  # shown first in their cluster: the evil caption, and the file that is gone
    rng = np.random.default_rng(0)
    paths = []
    for i, vid in enumerate(ids):
        if i == 4:
            paths.append(str(videos_dir / "gone.mp4"))  # clustered, but its file is gone since
        else:
            topic = ("ocean", "forest", "fire")[true[i]]
            p = videos_dir / f"{vid}.mp4"
            if not p.exists():
                write_video(p, 12, fps=12, size=(48, 64), frame_fn=lambda t, tp=topic: topic_frame(tp, t, (48, 64), rng))
            paths.append(str(p))
    (root / "clusters").mkdir(parents=True)
    d = x.shape[1]
    meta = {b"vidclust": json.dumps({"k": 3, "aggregation": "mean"}).encode()}
    pq.write_table(pa.table({
        "video_id": ids, "cluster_id": pa.array(labels, pa.int32()),
        "distance": pa.array(dist, pa.float32(), mask=np.isnan(dist)),
    }).replace_schema_metadata(meta), root / "clusters" / "assignments.parquet")
    pq.write_table(pa.table({
        "video_id": ids,
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), d),
    }), root / "clusters" / "video_vectors.parquet")
    pq.write_table(pa.table({
        "cluster_id": pa.array([0, 1, 2], pa.int32()),
        "center": pa.FixedSizeListArray.from_arrays(pa.array(km.cluster_centers_.astype(np.float32).reshape(-1)), d),
        "size": pa.array(np.bincount(labels[labels >= 0], minlength=3), pa.int64()),
    }), root / "clusters" / "centers.parquet")
    (root / "clusters" / "metrics.json").write_text(json.dumps({
        "k": 3, "method": "kmeans", "silhouette": 0.61, "davies_bouldin": 0.52, "calinski_harabasz": 88.0,
        "k_sweep": [{"k": 2, "silhouette": 0.4, "davies_bouldin": 0.9, "calinski_harabasz": 40.0},
                    {"k": 3, "silhouette": 0.61, "davies_bouldin": 0.52, "calinski_harabasz": 88.0}],
        "external": {"nmi": 0.9, "ari": 0.8, "purity": 0.95}, "n_failed": 1,
    }))
    (root / "clusters" / "cluster_descriptions.json").write_text(json.dumps(
        {"0": ["blue sea", "<b>waves</b>"], "1": ["green forest"], "2": []}))
    captions = [[f"caption of {v}", "second"] for v in ids]
    captions[0] = [EVIL_CAPTION]
    all_ids = ids + ["bad"]
    pq.write_table(pa.table({
        "video_id": all_ids, "path": paths + [str(videos_dir / EVIL_FILE)],
        "status": ["ok"] * len(ids) + ["failed"], "error": [None] * len(ids) + ["not a readable video: <moov>"],
        "n_frames_sampled": pa.array([2] * len(ids) + [0], pa.int32()),
        "duration_s": [1.0] * len(ids) + [None], "fps": [12.0] * len(ids) + [None],
        "width": pa.array([64] * len(ids) + [None], pa.int32()),
        "height": pa.array([48] * len(ids) + [None], pa.int32()),
        "codec": ["h264"] * len(ids) + [None],
        "captions": pa.array(captions + [None], pa.list_(pa.string())),
        "category": [None] * len(all_ids),
    }), root / "videos.parquet")
    return root


def file_hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    out = write_synthetic_out(root / "out", root / "videos")
    (out / "report").mkdir()
    (out / "report" / "stale.png").write_bytes(b"old")
    cfg = load_config(None, ["report.frames_per_cluster=4", "report.frames_per_video=2", "report.members_per_page=4"])
    clusters_before = file_hashes(out / "clusters")
    info = run_report(cfg, str(out))
    assert file_hashes(out / "clusters") == clusters_before  # the report writes only report/
    return out, info


def test_run_report_writes_the_page_and_its_images(synthetic_report):
    out, info = synthetic_report
    rep = out / "report"
    page = (rep / "index.html").read_text()
    dom = DomScan(page)
    srcs = [a["src"] for t, a in dom.tags if t == "img" and "src" in a]
    for name in ("tsne.png", "k_sweep.png", "stats_duration.png"):
        assert name in srcs and (rep / name).read_bytes().startswith(PNG)
    assert page_scripts(dom) == ["points.js", "explore.js"]
    assert (rep / "explore.js").read_bytes() == explore_script()
    data = read_points_script((rep / "points.js").read_bytes())
    assert sorted(data["ids"]) == [f"vid{i:02d}" for i in range(30)] and data["pageSize"] == 4
    for src in srcs:
        assert (rep / src).is_file(), src  # every image the page shows is beside it
    assert not (rep / "stale.png").exists()
    thumbs = [s for s in srcs if s.startswith("frames/")]
    # 2 per cluster and the one noise video, less the one whose file is gone
    assert len(thumbs) == info["n_thumbnails"] == 6
    assert info["n_thumbnail_failures"] == 1
    text = dom.all_text()
    assert "frames unavailable: file not found" in text
    assert EVIL_CAPTION in text and html.escape(EVIL_CAPTION) in page
    assert "<b>waves</b>" in text
    assert "Failed videos (1)" in text and "not a readable video: <moov>" in text and EVIL_FILE in text
    assert "Noise (not in any cluster)" in text
    assert "NMI against the categories" in text and "Chosen k: 3" in text
    assert "fitted on all 30 videos" in text


def test_run_report_writes_the_projection_and_records_the_stage(synthetic_report):
    out, info = synthetic_report
    p = pq.read_table(out / "report" / "projection.parquet")
    assert p.schema == PROJECTION_SCHEMA
    assert p.schema.field("x").type == pa.float32() and p.schema.field("y").type == pa.float32()
    videos = p.filter(pa.compute.equal(p.column("kind"), "video"))
    centres = p.filter(pa.compute.equal(p.column("kind"), "center"))
    a = pq.read_table(out / "clusters" / "assignments.parquet")
    assert videos.column("video_id").to_pylist() == a.column("video_id").to_pylist()
    assert centres.column("cluster_id").to_pylist() == [0, 1, 2]
    xy = np.stack([videos.column("x").to_numpy(), videos.column("y").to_numpy()], axis=1)
    assert np.isfinite(xy).all() and len(np.unique(xy, axis=0)) == 30
    assert a.column("cluster_id").to_pylist()[-1] == -1
    assert a.column_names == ["video_id", "cluster_id", "distance"] and b"vidclust" in a.schema.metadata
    assert not list((out / "_vidclust" / "staging").glob("*"))  # nothing left half-written
    run = json.loads((out / "run.json").read_text())
    stage = run["stages"]["report"]
    assert stage["n_videos"] == 30 and stage["n_clusters"] == 3 and stage["tsne"]["method"] == "openTSNE"


def test_run_report_without_optional_inputs(tmp_path):
    out = write_synthetic_out(tmp_path / "out", tmp_path / "videos")
    for name in ("cluster_descriptions.json", "metrics.json", "video_vectors.parquet"):
        (out / "clusters" / name).unlink()
    (out / "videos.parquet").unlink()
    run_report(load_config(None, ["report.frames_per_cluster=0"]), str(out))
    text = DomScan((out / "report" / "index.html").read_text()).all_text()
    assert "t-SNE map is left out" in text and "No videos.parquet" in text
    assert "Cluster 2" in text


def test_run_report_needs_clusters(tmp_path):
    with pytest.raises(VidclustError, match="run `vidclust cluster"):
        run_report(load_config(), str(tmp_path / "nothing"))


# --------------------------------------------------------------------------- the page, driven in Chromium
@pytest.fixture
def browser(tmp_path):
    """Headless Chromium over the DevTools protocol (tests/headless_chromium.py), 1400 x 1000."""
    if chromium_executable() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); "
                    "the page is still checked without a browser in the other tests")
    with HeadlessChromium(tmp_path / "profile", width=1400, height=1000) as b:
        yield b


def open_report(browser: HeadlessChromium, page: Path) -> None:
    browser.open(page.resolve().as_uri())
    assert browser.wait_for("!!window.vidclustExplorer"), browser.problems()


def search(browser: HeadlessChromium, text: str) -> list:
    """Type `text` into the search box (after clearing it); the video ids listed."""
    browser.evaluate("(() => { const s = document.getElementById('search'); s.value = ''; s.focus(); })()")
    browser.type_text(text)
    query = json.dumps(text.strip().lower())
    assert browser.wait_for(f"document.getElementById('search-results').getAttribute('data-query') === {query}")
    return browser.evaluate("[...document.querySelectorAll('#search-results li[data-video]')]"
                            ".map(li => li.getAttribute('data-video'))")


def dot_position(browser: HeadlessChromium, video_id: str) -> tuple:
    """Where the video's dot is on the screen, the map scrolled into view first."""
    browser.evaluate("document.getElementById('map-canvas').scrollIntoView({block: 'center'})")
    p = browser.evaluate(f"window.vidclustExplorer.screenPositionOf({json.dumps(video_id)})")
    assert p is not None, video_id
    return p["x"], p["y"]


def click_element(browser: HeadlessChromium, selector: str) -> None:
    """A real mouse click in the middle of the element (scrolled into view)."""
    box = browser.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                           "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                           "return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()")
    browser.click(box["x"], box["y"])


def members_by_cluster(out: Path) -> dict:
    """{cluster_id: [video_id]} of assignments.parquet, nearest the centre first."""
    a = pq.read_table(out / "clusters" / "assignments.parquet").to_pylist()
    rows = sorted(enumerate(a), key=lambda r: (r[1]["distance"] is None, r[1]["distance"] or 0.0, r[0]))
    out_: dict = {}
    for _, r in rows:
        out_.setdefault(-1 if r["cluster_id"] is None else r["cluster_id"], []).append(r["video_id"])
    return out_


def test_search_finds_videos_by_id_caption_word_and_keyword(synthetic_report, browser):
    out, _ = synthetic_report
    open_report(browser, out / "report" / "index.html")
    # before any search the panel lists the clusters, largest first
    legend = browser.evaluate("[...document.querySelectorAll('#search-results li.cluster-match a')]"
                              ".map(a => a.textContent)")
    sizes = [int(re.search(r"\((\d+) videos?\)$", t).group(1)) for t in legend]
    assert len(legend) == 4 and sizes == sorted(sizes, reverse=True) and sum(sizes) == 30
    assert search(browser, "vid07") == ["vid07"]
    summary = browser.evaluate("document.getElementById('search-summary').textContent")
    assert summary.startswith("1 video matches")
    assert "1 match highlighted" in browser.evaluate("document.getElementById('map-status').textContent")
    # a word of a hostile caption: found, and shown as text
    assert search(browser, "alert") == ["vid00"]
    assert browser.evaluate("document.querySelector('#search-results li[data-video] .caption').textContent") \
        == EVIL_CAPTION
    assert search(browser, "no such words") == []
    assert browser.evaluate("document.getElementById('search-summary').textContent").startswith("0 videos match")
    # a cluster keyword: the cluster is listed and all its videos match
    members = members_by_cluster(out)
    listed = search(browser, "green forest")
    assert sorted(listed) == sorted(members[1])
    assert browser.evaluate("document.querySelector('#search-results li.cluster-match a').textContent") \
        .startswith("cluster 1: green forest")
    # clicking a listed video centres the map on it
    search(browser, "vid07")
    click_element(browser, '#search-results li[data-video="vid07"] button')
    x, y = dot_position(browser, "vid07")
    centre = browser.evaluate("(() => { const r = document.getElementById('map-canvas').getBoundingClientRect(); "
                              "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    assert abs(x - centre[0]) < 2 and abs(y - centre[1]) < 2
    assert browser.evaluate("document.scripts.length") == 2 and \
        not browser.evaluate("document.body.hasAttribute('data-pwned')")
    assert browser.problems() == []


def test_hovering_a_dot_shows_its_caption_frames_and_cluster(synthetic_report, browser):
    out, _ = synthetic_report
    open_report(browser, out / "report" / "index.html")
    x, y = dot_position(browser, "vid00")
    browser.mouse("mouseMoved", x, y)
    tip = "document.getElementById('map-tooltip')"
    assert browser.wait_for(f"!{tip}.hidden")
    assert browser.evaluate(f"{tip}.querySelector('.tooltip-caption').textContent") == EVIL_CAPTION
    assert browser.evaluate(f"{tip}.querySelector('.tooltip-meta').textContent") == "vid00 · vid00.mp4"
    label = members_by_cluster(out)
    cluster = next(c for c, ids in label.items() if "vid00" in ids)
    keywords = {0: ": blue sea, <b>waves</b>", 1: ": green forest", 2: ""}[cluster]  # as the OUT has them
    assert browser.evaluate(f"{tip}.querySelector('.tooltip-cluster').textContent") == \
        f"cluster {cluster}{keywords} — click to open it"
    # vid00 is nearest its centre, so it has a frame strip, and the tooltip shows it
    assert browser.wait_for(f"{tip}.querySelector('.tooltip-image').naturalWidth > 0")
    assert browser.evaluate(f"{tip}.querySelector('.tooltip-image').getAttribute('src')").startswith("frames/")
    browser.mouse("mouseMoved", x + 3, y + 2)  # a few pixels off still finds it
    assert browser.evaluate(f"{tip}.querySelector('.tooltip-caption').textContent") == EVIL_CAPTION
    corner = browser.evaluate("(() => { const r = document.getElementById('map-canvas').getBoundingClientRect(); "
                              "return [r.left + 3, r.top + 3]; })()")
    browser.mouse("mouseMoved", *corner)  # nothing there
    assert browser.wait_for(f"{tip}.hidden")
    assert browser.evaluate("document.scripts.length") == 2 and \
        not browser.evaluate("document.body.hasAttribute('data-pwned')")
    assert browser.problems() == []


def test_clicking_a_dot_opens_its_cluster_at_that_video(synthetic_report, browser):
    out, _ = synthetic_report
    open_report(browser, out / "report" / "index.html")
    members = members_by_cluster(out)
    cluster, ids = next((c, ids) for c, ids in members.items() if c >= 0 and len(ids) > 4)
    video = ids[-1]  # on the last page of its cluster's list
    browser.click(*dot_position(browser, video))
    assert browser.wait_for(f"location.hash === '#cluster-{cluster}'")
    section = f"document.getElementById('cluster-{cluster}')"
    assert browser.evaluate(f"{section}.classList.contains('opened')")
    assert browser.evaluate(f"{section}.querySelector('tr.marked').getAttribute('data-video')") == video
    top = browser.evaluate(f"{section}.querySelector('tr.marked').getBoundingClientRect().top")
    assert 0 < top < 1000  # scrolled to the video's row
    pages = math.ceil(len(ids) / 4)
    assert browser.evaluate(f"{section}.querySelector('.members').getAttribute('data-page')") == str(pages)
    assert browser.problems() == []


def test_member_lists_page_through_every_member(synthetic_report, browser):
    """Each cluster's list (4 a page here) goes through all its videos, nearest first, by the
    next button; previous goes back."""
    out, _ = synthetic_report
    open_report(browser, out / "report" / "index.html")
    for cluster, ids in members_by_cluster(out).items():
        box = f'.members[data-cluster="{cluster}"]'
        browser.evaluate(f"document.querySelector('{box}').scrollIntoView()")
        assert browser.wait_for(f"document.querySelectorAll('{box} tr[data-video]').length > 0")
        seen, pages = [], 0
        while True:
            pages += 1
            seen += browser.evaluate(f"[...document.querySelectorAll('{box} tr[data-video]')]"
                                     ".map(tr => tr.getAttribute('data-video'))")
            if len(ids) <= 4 or browser.evaluate(f"document.querySelector('{box} button.next').disabled"):
                break
            click_element(browser, f"{box} button.next")
            assert browser.wait_for(f"document.querySelector('{box}').getAttribute('data-page') === '{pages + 1}'")
        assert seen == ids, cluster
        assert pages == max(1, math.ceil(len(ids) / 4))
        if pages > 1:
            where = browser.evaluate(f"document.querySelector('{box} .where').textContent")
            assert where.startswith(f"page {pages} of {pages}")
            click_element(browser, f"{box} button.prev")
            assert browser.evaluate(f"document.querySelector('{box}').getAttribute('data-page')") == str(pages - 1)
    assert browser.problems() == []


def write_big_map(folder: Path, n: int, k: int) -> tuple:
    """A report folder with only the explorer: `n` videos in `k` clusters at made-up positions,
    video 0 alone in a corner. (ids, captions)"""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 100, size=(k, 2))
    labels = rng.integers(0, k, size=n)
    xy = (centres[labels] + rng.normal(scale=3.0, size=(n, 2))).astype(np.float32)
    xy[0] = (-30, -30)
    ids = [f"video{i:06d}" for i in range(n)]
    captions = [f"a caption of video {i} about topic{labels[i]:03d}" for i in range(n)]
    info = {v: {"path": f"/data/videos/{v}.mp4", "captions": [c]} for v, c in zip(ids, captions)}
    colors = cluster_colors(range(k))
    clusters = [{"cluster_id": c, "color": _hex(colors[c]), "keywords": [f"topic{c:03d}", "words"],
                 "center_xy": tuple(np.median(xy[labels == c], axis=0))} for c in range(k)]
    data = explorer_data(ids, labels, rng.random(n), xy, clusters, info, {}, str(folder), page_size=50)
    folder.mkdir(parents=True)
    (folder / "points.js").write_bytes(points_script(data))
    (folder / "explore.js").write_bytes(explore_script())
    page = render_html({"title": "big", "tsne": {"note": "made-up positions"},
                        "clusters": [{"cluster_id": c["cluster_id"], "size": int((labels == c["cluster_id"]).sum()),
                                      "color": c["color"], "keywords": c["keywords"], "videos": []}
                                     for c in clusters]})
    (folder / "index.html").write_text(page)
    return ids, captions


def test_a_map_of_100000_videos_draws_fast_and_answers_the_pointer(tmp_path, browser):
    ids, captions = write_big_map(tmp_path / "report", 100_000, 100)
    size = (tmp_path / "report" / "points.js").stat().st_size
    assert size < 8_000_000, size  # a few MB for 100,000 videos
    open_report(browser, tmp_path / "report" / "index.html")
    assert browser.wait_for("window.vidclustExplorer.map.visible === 100000")
    ms = browser.evaluate("window.vidclustExplorer.map.renderMs")
    assert ms < 1500, f"drawing 100,000 dots took {ms:.0f} ms"
    x, y = dot_position(browser, ids[0])
    browser.mouse("mouseMoved", x, y)
    assert browser.wait_for("!document.getElementById('map-tooltip').hidden")
    assert browser.evaluate("document.querySelector('#map-tooltip .tooltip-caption').textContent") == captions[0]
    listed = search(browser, "topic007")
    n7 = sum(1 for c in captions if c.endswith(" topic007"))
    assert len(listed) == 100 and browser.evaluate("document.getElementById('search-summary').textContent") \
        .startswith(f"{n7:,} videos match")
    shot = tmp_path / "map.png"
    browser.screenshot(shot)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3)[::5], axis=0)) > 200, "the map looks blank"
    assert browser.problems() == []


# --------------------------------------------------------------------------- a small real run, in Chromium
@pytest.fixture(scope="module")
def real_run(tmp_path_factory, example_corpus, tiny_clip, ray_local):
    """embed -> cluster -> describe -> report on the example corpus plus a video whose file name
    and a caption are HTML, and a broken file, with the tiny CLIP."""
    from vidclust.clustering.run import run_cluster
    from vidclust.descriptions.run import run_describe
    from vidclust.embedding.run import run_embed

    root = tmp_path_factory.mktemp("real")
    src = Path(example_corpus).parent
    rows = list(csv.DictReader(open(example_corpus)))
    manifest_rows = []
    for i, r in enumerate(rows):
        path = (src / r["path"]).resolve()
        captions = json.loads(r["captions"])
        if i == 0:
            captions = [EVIL_CAPTION] + captions
        if i == 5:
            captions = [EVIL_CAPTION_2] + captions
        if i == 1:
            shutil.copy(path, root / EVIL_FILE)
            path = root / EVIL_FILE
        manifest_rows.append({"path": str(path), "video_id": r["video_id"], "category": r["category"],
                              "captions": json.dumps(captions)})
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)
    manifest_rows.append({"path": str(root / "broken.mp4"), "video_id": "broken", "category": "fire",
                          "captions": json.dumps(["a broken file"])})
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "video_id", "category", "captions"])
        w.writeheader()
        w.writerows(manifest_rows)
    model_json, ckpt = tiny_clip
    cfg = load_config(None, [
        f"embed.encoder.model={model_json}", f"embed.encoder.pretrained={ckpt}", "embed.encoder.batch_size=16",
        "embed.sampling.max_frames=4", "cluster.k=3", "describe.summarizer=extractive",
        "describe.summary_num_actors=1", "describe.kw_k_nearest=4",
        "report.frames_per_cluster=40", "report.frames_per_video=2",  # every video of a cluster shown
    ])
    out = str(root / "out")
    run_embed(cfg, str(manifest), out, show_progress=False)
    run_cluster(cfg, out)
    run_describe(cfg, out)
    info = run_report(cfg, out)
    return Path(out), info


def test_real_run_report_renders_in_headless_chromium(real_run, browser, tmp_path):
    out, info = real_run
    page = out / "report" / "index.html"
    source = page.read_text()
    shown = [a["src"] for t, a in DomScan(source).tags if t == "img" and "src" in a and a["src"] != "tsne.png"]
    assert info["n_thumbnails"] == 12 and info["n_clusters"] == 3  # the broken video is not clustered
    # thumbnails and 4 statistics plots (no sweep ran); the static map only shows without scripts
    assert len(shown) == 12 + 4
    assert_strict_policy(source)

    open_report(browser, page)
    check = "document.getElementById('image-check')"
    assert browser.wait_for(f"{check}.getAttribute('data-total') !== ''")
    assert browser.evaluate(f"{check}.getAttribute('data-total')") == str(len(shown))
    assert browser.evaluate(f"{check}.getAttribute('data-loaded')") == str(len(shown)), \
        "some images did not load in the browser"
    # the hostile strings stayed text: no element was made of them, no handler of theirs ran
    assert browser.evaluate("[...document.scripts].map(s => s.getAttribute('src'))") == ["points.js", "explore.js"]
    assert not browser.evaluate("document.body.hasAttribute('data-pwned')")
    text = browser.evaluate("document.body.textContent")
    assert EVIL_CAPTION in text and EVIL_CAPTION_2 in text and EVIL_FILE in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.evaluate("document.documentElement.outerHTML")
    assert "broken" in text and "Failed videos (1)" in text
    # ... and in the explorer: found by a word of the caption, shown on hover, as text
    [found] = search(browser, "pwned','caption")
    assert browser.evaluate("document.querySelector('#search-results li[data-video] .caption').textContent") \
        == EVIL_CAPTION_2
    browser.mouse("mouseMoved", *dot_position(browser, found))
    assert browser.wait_for("!document.getElementById('map-tooltip').hidden")
    assert browser.evaluate("document.querySelector('#map-tooltip .tooltip-caption').textContent") == EVIL_CAPTION_2
    assert browser.wait_for("document.querySelector('#map-tooltip .tooltip-image').naturalWidth > 0")
    assert not browser.evaluate("document.body.hasAttribute('data-pwned')")
    assert browser.problems() == []  # no console error, no exception, no policy violation

    shot = tmp_path / "shot.png"
    browser.screenshot(shot, full_page=True)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] >= 2000 and img.shape[1] >= 1300
    colours = len(np.unique(img.reshape(-1, 3)[::7], axis=0))
    assert colours > 200, "the screenshot looks blank"  # map, plots and frames, not an empty page

    t = pq.read_table(out / "report" / "projection.parquet")
    assert np.isfinite(t.column("x").to_numpy()).all() and np.isfinite(t.column("y").to_numpy()).all()
