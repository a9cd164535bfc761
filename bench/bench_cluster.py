"""Clustering and near-duplicate search at 100k, 1M (and 4M) videos: time, memory, quality.

    python bench/bench_cluster.py                                  # 100k and 1M, every method
    python bench/bench_cluster.py --sizes 100000,1000000,4000000   # 4M: ~8 GiB of vectors per run
    python bench/bench_cluster.py --methods faiss --sizes 1000000 --dtype float16
    python bench/bench_cluster.py --end-to-end 1000000             # `vidclust cluster` on 1M videos' frames
    python bench/bench_cluster.py --shape tight --methods faiss --maps '' --sizes 100000,1000000

Each (size, job) runs in its own subprocess, so "peak MiB" is that run's own high-water mark
(ru_maxrss: the vectors themselves, n x 512 float32 = 1953 MiB at 1M, plus what the job adds;
"data MiB" is the RSS with just the vectors in memory). The vectors are synthetic 512-d unit
vectors around 20 latent topics (k = 20 as `vidclust cluster` runs by default, so "agreement"
is well defined), plus planted near-duplicates: 0.5% of the rows get 1-3 near copies (cosine
~0.995) appended; nothing else is that close (two vectors of one topic have cosine ~0.31 with
`--shape loose`, the default, and ~0.90 with `--shape tight`, as real CLIP embeddings of one kind
of video are: the near-duplicate search must stay near-linear on both).

Clustering rows: "fit s" is VideoClusterer.fit alone (seed 28, n_init "auto"); "inertia" its
sum of squared distances; "ARI full" its agreement with full KMeans (sklearn, exact Lloyd) on a
fixed sample of 100,000 videos ("-" where full KMeans was not run: above --kmeans-up-to);
"ARI topics" its agreement with the planted topics (same sample).
Near-duplicate rows ("dups exact" / "dups ivf" / "dups cells"): vidclust.near_duplicate_search
with the threshold 0.98 and the default nprobe (8); "recall planted": the share of planted copies found in their original's group;
"recall exact": the same against the exact search's groups (where the exact search ran: up to
--exact-dups-up-to). Map rows ("map tsne" / "map umap"): the 2-D projection's time, and in the
"ARI topics" column the share of 5,000 sampled videos whose nearest sampled video on the map
shares its planted topic (see map_job). "auto" says which clustering method and near-duplicate search `auto`
picks at that size with the default config.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's vidclust

DIM = 512
TOPICS = 20
K = 20
DUP_SHARE = 0.005
SAMPLE = 100_000


SPREAD = {"loose": 1.5, "tight": 0.33}  # noise per dimension around a topic: within-topic cosine 0.31 / 0.90


def make_vectors(n: int, seed: int = 0, dtype: str = "float32", shape: str = "loose"):
    """(vectors [n, DIM] unit, topic per row, planted near-duplicate group per row or -1).
    n rows in all: the last ~DUP_SHARE * 2 * n rows are near copies of rows at the start.
    `shape`: "loose" topics (two vectors of one topic: cosine ~0.31) or "tight" ones (~0.90, as
    real CLIP embeddings of one kind of video are)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((TOPICS, DIM), dtype=np.float32)
    x = np.empty((n, DIM), dtype=dtype)
    y = np.empty(n, dtype=np.int32)
    n_orig = int(round(DUP_SHARE * n))
    n_copies = rng.integers(1, 4, n_orig)
    n_base = n - int(n_copies.sum())
    for s in range(0, n_base, 50_000):  # in chunks: temporaries stay small
        m = min(50_000, n_base - s)
        yy = rng.integers(0, TOPICS, m)
        block = topics[yy] + SPREAD[shape] * rng.standard_normal((m, DIM), dtype=np.float32)
        x[s:s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
        y[s:s + m] = yy
    truth = np.full(n, -1, dtype=np.int64)
    truth[:n_orig] = np.arange(n_orig)
    src = np.repeat(np.arange(n_orig), n_copies)
    for s in range(0, len(src), 50_000):
        part = src[s:s + 50_000]
        v = x[part].astype(np.float32) + rng.normal(scale=0.1 / np.sqrt(DIM), size=(len(part), DIM)).astype(np.float32)
        x[n_base + s:n_base + s + len(part)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    y[n_base:] = y[src]
    truth[n_base:] = src
    return x, y, truth


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def map_job(x, y, how: str):
    """(seconds, topic agreement, how the rest was placed): the 2-D map of `x` by openTSNE (fitted
    on a 20,000 sample, the rest placed: vidclust's project_tsne as the report runs it) or by UMAP
    (umap-learn, on every vector: not a dependency of vidclust, measured here only). Agreement:
    on 5,000 sampled videos, the share whose nearest other sampled video on the map has its topic."""
    import numpy as np

    start = time.perf_counter()
    if how == "tsne":
        from vidclust.reporting.projection import project_tsne

        xy, _, info = project_tsne(x, None, seed=28)
        placed = info.get("placed_by", "-")
    else:
        import umap

        xy = umap.UMAP(n_components=2, metric="cosine", low_memory=True).fit_transform(x)
        placed = "-"
    seconds = time.perf_counter() - start
    s = np.random.default_rng(3).choice(len(x), size=min(5000, len(x)), replace=False)
    d = np.linalg.norm(xy[s][:, None, :] - xy[s][None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    return seconds, float((y[s][d.argmin(axis=1)] == y[s]).mean()), placed


def one(n: int, job: str, dtype: str, tmp: str, exact_dups_up_to: int, shape: str = "loose") -> dict:
    """Runs in the child process."""
    import numpy as np

    from vidclust.clustering.video_clusterer import VideoClusterer

    x, y, truth = make_vectors(n, dtype=dtype, shape=shape)
    data_mib = rss_mib()
    out: dict = {"n": n, "job": job, "dtype": dtype, "data_mib": data_mib}
    start = time.perf_counter()
    if job.startswith("map"):
        out["seconds"], out["map_topic_agreement"], out["placed_by"] = map_job(x, y, job.split()[1])
    elif job.startswith("dups"):
        from vidclust.clustering.near_duplicates import near_duplicate_search, recall

        search = job.split()[1]
        found = near_duplicate_search(x, 0.98, search=search)
        out["seconds"] = time.perf_counter() - start
        out["recall_planted"] = recall(found.groups, truth)
        out["n_grouped"] = int((found.groups >= 0).sum())
        np.save(os.path.join(tmp, f"{n}-{search}.npy"), found.groups)
        exact = os.path.join(tmp, f"{n}-exact.npy")
        if search != "exact" and os.path.exists(exact):
            out["recall_exact"] = recall(found.groups, np.load(exact))
    else:
        vc = VideoClusterer(K, job, 28).fit(x)
        out["seconds"] = time.perf_counter() - start
        out["inertia"] = vc.inertia_
        np.save(os.path.join(tmp, f"{n}-{job}.npy"), vc.labels_)
        np.save(os.path.join(tmp, f"{n}-topics.npy"), y)
    out["peak_mib"] = peak_mib()
    return out


def write_out(root: str, n: int, frames_per_video: int, rows_per_file: int = 200_000) -> str:
    """An OUT as `vidclust embed` leaves it for `n` videos: frames/part-*.parquet (the frames
    schema, `frames_per_video` frames a video around its make_vectors vector, so the planted
    topics and near-duplicates carry over) and videos.parquet. Kept between runs (by spec)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vidclust.store.contract import frames_schema

    spec = {"n": n, "frames_per_video": frames_per_video, "rows_per_file": rows_per_file, "dim": DIM}
    done = os.path.join(root, "_bench_spec.json")
    if os.path.exists(done) and json.load(open(done)) == spec:
        return root
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "frames"))
    x, _, _ = make_vectors(n)
    rng = np.random.default_rng(1)
    schema = frames_schema(DIM, {"model": "synthetic", "weights": "none", "embed_dim": DIM,
                                 "sampling": {"frame_interval": 10, "fps": None, "max_frames": None, "image_size": 224}})
    ids = np.array([f"v{i:08d}" for i in range(n)], dtype=object)
    per_file = rows_per_file // frames_per_video
    for k, lo in enumerate(range(0, n, per_file)):
        hi = min(n, lo + per_file)
        rows = np.repeat(np.arange(lo, hi), frames_per_video)
        emb = x[rows].astype(np.float32) + rng.normal(scale=0.02 / np.sqrt(DIM), size=(len(rows), DIM)).astype(np.float32)
        frame = np.tile(np.arange(frames_per_video, dtype=np.int32) * 10, hi - lo)
        table = pa.table({"video_id": pa.array(ids[rows].tolist(), pa.string()),
                          "frame_index": pa.array(frame, pa.int32()),
                          "timestamp_s": pa.array(frame / np.float32(25), pa.float32()),
                          "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), DIM)}, schema=schema)
        pq.write_table(table, os.path.join(root, "frames", f"part-{k:05d}.parquet"))
    pq.write_table(pa.table({"video_id": pa.array(ids.tolist(), pa.string()),
                             "path": pa.array([f"/videos/{v}.mp4" for v in ids.tolist()], pa.string()),
                             "status": pa.array(["ok"] * n, pa.string())}), os.path.join(root, "videos.parquet"))
    json.dump(spec, open(done, "w"))
    return root


def end_to_end(n: int, frames_per_video: int, work: str, extra: list) -> None:
    """`vidclust cluster OUT` on an OUT of `n` videos' frames, as a user runs it (its own local Ray,
    the default config: aggregation, fit, scores, near-duplicates, writing): wall time and the
    stage's own split from run.json."""
    out = write_out(os.path.join(work, f"e2e-{n}-{frames_per_video}"), n, frames_per_video)
    cli = os.path.join(os.path.dirname(sys.executable), "vidclust")
    start = time.perf_counter()
    done = subprocess.run([cli, "cluster", out, "-q", *extra], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(f"vidclust cluster failed: {done.stderr.strip()[-2000:]}")
        return
    stage = json.load(open(os.path.join(out, "run.json")))["stages"]["cluster"]
    print(f"# end to end: vidclust cluster on {n:,} videos x {frames_per_video} frames ({n * frames_per_video:,} "
          f"frame rows, {DIM}-d) {' '.join(extra)}: {wall:.1f} s wall; stage seconds "
          f"{json.dumps({k: round(v, 1) for k, v in stage['seconds'].items()})}; method {stage['method']}, "
          f"near-duplicate groups {stage['near_duplicate_groups']}; load average after: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--methods", default="kmeans,minibatch,faiss", help="comma-separated: kmeans, minibatch, faiss, hdbscan")
    ap.add_argument("--kmeans-up-to", type=int, default=1_000_000, help="full KMeans (the reference) up to this size")
    ap.add_argument("--exact-dups-up-to", type=int, default=100_000, help="the exact near-duplicate search up to this size")
    ap.add_argument("--dups-up-to", type=int, default=4_000_000, help="the cells near-duplicate search up to this size")
    ap.add_argument("--ivf-up-to", type=int, default=100_000, help="the ivf near-duplicate search up to this size")
    ap.add_argument("--maps", default="tsne,umap", help="comma-separated 2-D maps to time: tsne, umap ('' for none)")
    ap.add_argument("--umap-up-to", type=int, default=100_000, help="UMAP (on every vector) up to this size")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--shape", default="loose", choices=sorted(SPREAD),
                    help="topics: loose (within-topic cosine ~0.31) or tight (~0.90, as real CLIP embeddings)")
    ap.add_argument("--end-to-end", type=int, default=None, metavar="N",
                    help="instead: `vidclust cluster` on an OUT of N videos' frames (written once under --work)")
    ap.add_argument("--frames-per-video", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vidclust-bench-cluster"))
    ap.add_argument("--set", action="append", default=[], help="config overrides for --end-to-end")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.end_to_end:
        end_to_end(args.end_to_end, args.frames_per_video, args.work, [a for kv in args.set for a in ("--set", kv)])
        return
    if args.child:
        n, job = args.child.split(":")
        print(json.dumps(one(int(n), job, args.dtype, args.tmp, args.exact_dups_up_to, args.shape)))
        return

    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from vidclust.clustering.clusterer import EXACT_UP_TO, choose_method
    from vidclust.clustering.near_duplicates import INDEX_ABOVE

    print(f"# cluster bench: {DIM}-d {args.dtype}, k={K}, {TOPICS} planted {args.shape} topics, {DUP_SHARE:.1%} of rows with "
          f"planted near copies; {os.cpu_count()} CPUs; load average before: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    header = (f"{'n':>9} {'job':>11} {'auto':>5} {'seconds':>8} {'peak MiB':>9} {'data MiB':>9} {'inertia':>10} "
              f"{'ARI full':>8} {'ARI topics':>10} {'recall planted':>14} {'recall exact':>12}")
    print(header)
    print("-" * len(header))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.sizes.split(",")):
            jobs = [m for m in args.methods.split(",") if m != "kmeans" or n <= args.kmeans_up_to]
            jobs.sort(key=lambda m: m != "kmeans")  # the reference first
            if n <= args.exact_dups_up_to:
                jobs.append("dups exact")
            if n <= args.ivf_up_to:
                jobs.append("dups ivf")
            if n <= args.dups_up_to:
                jobs.append("dups cells")
            maps = [m for m in args.maps.split(",") if m]
            jobs += [f"map {m}" for m in maps if m != "umap" or n <= args.umap_up_to]
            auto_method = choose_method("auto", n, EXACT_UP_TO)
            auto_dups = "cells" if n > INDEX_ABOVE else "exact"
            sample = np.sort(np.random.default_rng(1).choice(n, size=min(n, SAMPLE), replace=False))
            for job in jobs:
                cmd = [sys.executable, __file__, "--child", f"{n}:{job}", "--tmp", tmp, "--dtype", args.dtype,
                       "--shape", args.shape, "--exact-dups-up-to", str(args.exact_dups_up_to)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{n:>9} {job:>11} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                ari_full = ari_topics = rec_p = rec_e = inertia = "-"
                picked = ""
                if job.startswith("map"):
                    ari_topics = f"{r['map_topic_agreement']:.4f}"
                elif job.startswith("dups"):
                    rec_p = f"{r['recall_planted']:.4f}"
                    rec_e = f"{r['recall_exact']:.4f}" if "recall_exact" in r else "-"
                    picked = "<-" if job.endswith(auto_dups) else ""
                else:
                    labels = np.load(os.path.join(tmp, f"{n}-{job}.npy"))[sample]
                    ref = os.path.join(tmp, f"{n}-kmeans.npy")
                    if os.path.exists(ref):
                        ari_full = f"{adjusted_rand_score(np.load(ref)[sample], labels):.4f}"
                    ari_topics = f"{adjusted_rand_score(np.load(os.path.join(tmp, f'{n}-topics.npy'))[sample], labels):.4f}"
                    inertia = f"{r['inertia']:.0f}"
                    picked = "<-" if job == auto_method else ""
                print(f"{n:>9} {job:>11} {picked:>5} {r['seconds']:>8.1f} {r['peak_mib']:>9.0f} {r['data_mib']:>9.0f} "
                      f"{inertia:>10} {ari_full:>8} {ari_topics:>10} {rec_p:>14} {rec_e:>12}", flush=True)
            print(f"# n={n}: auto chose {auto_method} (exact KMeans up to {EXACT_UP_TO}) and the {auto_dups} "
                  f"near-duplicate search (index above {INDEX_ABOVE})", flush=True)
    print(f"# total {time.perf_counter() - t0:.0f}s; load average after: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
