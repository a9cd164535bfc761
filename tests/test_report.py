"""The report: t-SNE projection, plots, thumbnails, escaping, `run_report` on a hand-made OUT, and
the report of a small real run (embed -> cluster -> describe -> report) opened in headless Chromium."""
from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidclust.config import load_config
from vidclust.contract import PROJECTION_SCHEMA
from vidclust.errors import VidclustError
from vidclust.example import topic_frame, write_video
from vidclust.palette import distinct_colors, min_distance, oklab
from vidclust.projection import project_tsne
from vidclust.report import (NOISE_ID, cluster_colors, grab_frames, plot_cluster_sizes, plot_sweep, plot_tsne, render_html, run_report,
                             thumbnail_strip)

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
    sizes = _png_image(plot_cluster_sizes(list(range(k)), np.bincount(labels, minlength=k), keywords))
    assert sizes.size[1] >= 0.2 * k * 100  # a readable row per cluster
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
    assert dom.count("script") == 1  # only the page's own
    assert dom.count("img") == 3 and dom.count("i") == 0 and dom.count("u") == 0 and dom.count("b") == 1
    text = dom.all_text()
    for s in (EVIL_CAPTION, EVIL_CAPTION_2, EVIL_FILE, "<i>kw</i>", "</p><script>bad()</script>",
              "<u>file not found</u>", "</td><script>x()</script>", "<h264>", "report <of> things"):
        assert s in text, s
    assert html.escape(EVIL_CAPTION) in page
    assert "2 more are not listed" in text
    csp = [a["content"] for t, a in dom.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "script-src 'sha256-" in csp[0] and "default-src 'none'" in csp[0]


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
    cfg = load_config(None, ["report.frames_per_cluster=4", "report.frames_per_video=2"])
    clusters_before = file_hashes(out / "clusters")
    info = run_report(cfg, str(out))
    assert file_hashes(out / "clusters") == clusters_before  # the report writes only report/
    return out, info


def test_run_report_writes_the_page_and_its_images(synthetic_report):
    out, info = synthetic_report
    rep = out / "report"
    page = (rep / "index.html").read_text()
    dom = DomScan(page)
    srcs = [a["src"] for t, a in dom.tags if t == "img"]
    for name in ("tsne.png", "cluster_sizes.png", "k_sweep.png", "stats_duration.png"):
        assert name in srcs and (rep / name).read_bytes().startswith(PNG)
    for src in srcs:
        assert (rep / src).is_file(), src  # every image the page shows is beside it
    assert not (rep / "stale.png").exists()
    thumbs = [s for s in srcs if s.startswith("frames/")]
    # 2 per cluster and the one noise video, less the one whose file is gone
    assert len(thumbs) == info["n_thumbnails"] == 6
    assert info["n_thumbnail_failures"] == 1
    text = dom.all_text()
    assert "frames unavailable: file not found" in text
    assert EVIL_CAPTION in text and html.escape(EVIL_CAPTION) in page and dom.count("script") == 1
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


# --------------------------------------------------------------------------- a small real run, in Chromium
def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    exe = chromium()
    return subprocess.run(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--window-size=1400,2400",
         *args, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, example_corpus, tiny_clip, ray_local):
    """embed -> cluster -> describe -> report on the example corpus plus a video whose file name
    and a caption are HTML, and a broken file, with the tiny CLIP."""
    from vidclust.cluster import run_cluster
    from vidclust.describe import run_describe
    from vidclust.embed import run_embed

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


def test_real_run_report_renders_in_headless_chromium(real_run, tmp_path):
    if chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); "
                    "the page is still checked without a browser in the other tests")
    out, info = real_run
    page = out / "report" / "index.html"
    source = page.read_text()
    n_img = DomScan(source).count("img")
    assert info["n_thumbnails"] == 12 and info["n_clusters"] == 3  # the broken video is not clustered
    assert n_img == 12 + 2 + 4  # thumbnails; t-SNE and sizes (no sweep ran); 4 statistics plots

    done = run_chromium(page, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = DomScan(done.stdout)
    check = [a for t, a in dom.tags if a.get("id") == "image-check"]
    assert check, done.stdout[:2000]
    assert check[0]["data-total"] == str(n_img)
    assert check[0]["data-loaded"] == str(n_img), "some images did not load in the browser"
    assert dom.count("script") == 1  # the caption's <script> stayed text, no element was made of it
    body = [a for t, a in dom.tags if t == "body"][0]
    assert "data-pwned" not in body  # no onerror handler of an untrusted string ran
    text = dom.all_text()
    assert EVIL_CAPTION in text and EVIL_CAPTION_2 in text and EVIL_FILE in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in done.stdout
    assert "broken" in text and "Failed videos (1)" in text

    shot = tmp_path / "shot.png"
    done = run_chromium(page, tmp_path / "profile2", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[0] >= 2000 and img.shape[1] >= 1300
    colours = len(np.unique(img.reshape(-1, 3)[::7], axis=0))
    assert colours > 200, "the screenshot looks blank"  # plots and frames, not an empty page

    t = pq.read_table(out / "report" / "projection.parquet")
    assert np.isfinite(t.column("x").to_numpy()).all() and np.isfinite(t.column("y").to_numpy()).all()
