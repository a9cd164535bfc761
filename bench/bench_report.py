"""Benchmark of the report stage: t-SNE and the whole `run_report` for 1k, 10k and 100k videos.

    .venv/bin/python bench/bench_report.py [--sizes 1000 10000 100000] [--dim 512] [--k 20 20 100]

For each size it writes a synthetic OUT the way the cluster stage does (512-d unit vectors in k
overlapping groups, their centres, distances, a k sweep, keywords; videos.parquet pointing at 24
real short clips, so thumbnails are really decoded), then times `run_report` with the default
configuration (above `report.tsne_sample` = 20,000 videos t-SNE fits a fixed-seed sample and
places the rest with openTSNE's transform). Prints the time of each part: t-SNE (fit + placing),
the static t-SNE plot, the k-sweep plot, frame thumbnails, data-set statistics, the explorer's data
(points.js), writing, and the total (the build time); then the page weight: the bytes of the
whole report folder (everything a browser may load: page, scripts, data, images; and
projection.parquet) and of points.js alone.
The load average is printed too: on a shared machine, other work slows every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from vidclust.config import load_config  # noqa: E402
from vidclust.example import write_topic_clips  # noqa: E402

WORDS = ("ocean wave beach forest tree fire flame car road city night music dance cooking food "
         "kitchen sports soccer game news anchor cartoon animal dog cat bird people talking crowd "
         "street sky snow mountain river boat plane train concert stage interview").split()


def write_out(root: Path, n: int, k: int, dim: int, clips: list[str], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.dirichlet(np.full(k, 3.0))  # unequal cluster sizes
    labels = rng.choice(k, size=n, p=weights).astype(np.int32)
    x = centres[labels] + rng.normal(scale=1.0 / np.sqrt(dim), size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    means = np.stack([x[labels == c].mean(0) if (labels == c).any() else centres[c] for c in range(k)])
    dist = np.linalg.norm(x - means[labels], axis=1).astype(np.float32)
    ids = [f"video{i:06d}" for i in range(n)]
    (root / "clusters").mkdir(parents=True)
    pq.write_table(pa.table({"video_id": ids, "cluster_id": labels, "distance": dist}),
                   root / "clusters" / "assignments.parquet")
    pq.write_table(pa.table({"video_id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)}),
                   root / "clusters" / "video_vectors.parquet")
    pq.write_table(pa.table({
        "cluster_id": pa.array(np.arange(k), pa.int32()),
        "center": pa.FixedSizeListArray.from_arrays(pa.array(means.astype(np.float32).reshape(-1)), dim),
        "size": pa.array(np.bincount(labels, minlength=k), pa.int64())}), root / "clusters" / "centers.parquet")
    sweep = [{"k": kk, "silhouette": 0.1 + 0.01 * kk ** 0.5, "davies_bouldin": 3.0 - 0.1 * kk ** 0.5,
              "calinski_harabasz": 100.0 / kk} for kk in range(max(2, k // 4), 2 * k + 1, max(1, k // 4))]
    (root / "clusters" / "metrics.json").write_text(json.dumps(
        {"k": k, "method": "kmeans", "silhouette": 0.2, "davies_bouldin": 2.1, "calinski_harabasz": 50.0,
         "k_sweep": sweep, "n_failed": n // 100}))
    (root / "clusters" / "cluster_descriptions.json").write_text(json.dumps(
        {str(c): [WORDS[(c * 7 + j) % len(WORDS)] + (" scene" if j == 0 else "") for j in range(10)]
         for c in range(k)}))
    n_failed = n // 100
    status = ["ok"] * n + ["failed"] * n_failed
    pq.write_table(pa.table({
        "video_id": ids + [f"bad{i}" for i in range(n_failed)],
        "path": [clips[i % len(clips)] for i in range(n)] + [f"/data/bad{i}.mp4" for i in range(n_failed)],
        "status": status,
        "error": [None] * n + ["not a readable video: moov atom not found"] * n_failed,
        "duration_s": np.concatenate([rng.lognormal(2.5, 0.7, n), np.full(n_failed, np.nan)]),
        "fps": np.concatenate([rng.choice([24.0, 25.0, 29.97, 30.0], n), np.full(n_failed, np.nan)]),
        "width": pa.array(list(rng.choice([320, 640, 1280], n)) + [None] * n_failed, pa.int32()),
        "height": pa.array(list(rng.choice([240, 480, 720], n)) + [None] * n_failed, pa.int32()),
        "codec": list(rng.choice(["h264", "mpeg4", "vp9"], n)) + [None] * n_failed,
        "captions": pa.array([[f"a caption of video {i}"] for i in range(n)] + [None] * n_failed,
                             pa.list_(pa.string())),
    }), root / "videos.parquet")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--k", type=int, nargs="+", default=[20, 20, 100], help="clusters per size")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--keep", help="write the OUTs under this folder and keep them")
    args = ap.parse_args()
    ks = args.k if len(args.k) == len(args.sizes) else [args.k[0]] * len(args.sizes)

    from vidclust.reporting.run import run_report

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-report-"))
    clips = [str(p) for p in write_topic_clips(base / "clips", 24, seconds=2.0, size=(120, 160))]
    cfg = load_config()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"report.tsne_sample={cfg.report.tsne_sample}, vectors {args.dim}-d")
    header = (f"{'videos':>8} {'k':>4} {'fitted':>7} {'placed':>7} | {'t-SNE':>7} {'(fit)':>7} {'map png':>7} "
              f"{'sweep':>6} {'frames':>6} {'stats':>6} {'points':>6} {'write':>6} | {'build':>7} | "
              f"{'folder bytes':>12} {'points.js':>10}")
    rows = []
    for n, k in zip(args.sizes, ks):
        out = write_out(base / f"out-{n}", n, k, args.dim, clips)
        start = time.perf_counter()
        info = run_report(cfg, str(out))
        wall = time.perf_counter() - start
        t = info["tsne"]
        folder = out / "report"
        weight = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        rows.append(f"{n:>8,} {k:>4} {t['n_fitted']:>7,} {t['n_placed']:>7,} | {info['tsne_s']:>6.1f}s "
                    f"{t.get('fit_seconds', 0):>6.1f}s {info['tsne_plot_s']:>6.1f}s {info['plots_s']:>5.1f}s "
                    f"{info['frames_s']:>5.1f}s {info['stats_s']:>5.1f}s {info['explorer_s']:>5.1f}s "
                    f"{info['write_s']:>5.1f}s | {wall:>6.1f}s | {weight:>12,} {(folder / 'points.js').stat().st_size:>10,}")
        print(header if len(rows) == 1 else "", end="\n" if len(rows) == 1 else "")
        print(rows[-1], f"(load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"OUTs under {base}" if args.keep else "")


if __name__ == "__main__":
    main()
