"""How long clustering takes, and how much memory it needs, for 10k, 100k and 1M videos.

    .venv/bin/python bench/bench_cluster.py                      # method "auto" (the default)
    .venv/bin/python bench/bench_cluster.py --methods kmeans,minibatch --sizes 10000,100000
    .venv/bin/python bench/bench_cluster.py --near-duplicates-up-to 100000

Each (size, method) runs in its own subprocess, so "peak RSS" is that run's own high-water mark:
the vectors themselves (n x 512 float32: 1M = 1953 MiB) plus what the fit adds. The vectors are
synthetic 512-d unit vectors around 50 latent topics (clustered, as CLIP embeddings are, so
KMeans converges the way it does on real data, not the way it does on pure noise). k = 20,
seed 28, n_init "auto", as `vidclust cluster` runs by default. "fit s" is fit_clusters alone;
"peak RSS MiB" is the process's high-water mark at the end of the fit (vectors included; "data
MiB" is the RSS with just the vectors in memory);
"score s" is score_clustering (silhouette on a 20,000 sample above 20,000 videos, Davies-Bouldin,
Calinski-Harabasz); "near-dup s" is near_duplicate_groups with the fitted centres (threshold 0.98),
only up to --near-duplicates-up-to videos (it is O(n^2) in the worst case); "peak all MiB" is
the high-water mark after scoring and the near-duplicate search as well.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

DIM = 512
TOPICS = 50


def make_vectors(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((TOPICS, DIM), dtype=np.float32)
    x = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 50_000):  # in chunks: temporaries stay small
        m = min(50_000, n - s)
        y = rng.integers(0, TOPICS, m)
        block = topics[y] + 1.5 * rng.standard_normal((m, DIM), dtype=np.float32)
        x[s:s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(n: int, method: str, near_dup_up_to: int) -> dict:
    """Runs in the child process."""
    from vidclust.cluster import choose_method, fit_clusters, near_duplicate_groups, score_clustering
    from vidclust.config import Config

    c = Config().cluster
    x = make_vectors(n)
    data_mib = rss_mib()
    start = time.perf_counter()
    fit = fit_clusters(x, c.k, method, 28, c.n_init, minibatch_above=c.minibatch_above)
    fit_s = time.perf_counter() - start
    fit_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    score_clustering(x, fit.labels, 28, c.silhouette_sample)
    score_s = time.perf_counter() - start
    dup_s = None
    if n <= near_dup_up_to:
        start = time.perf_counter()
        near_duplicate_groups([str(i) for i in range(n)], x, c.near_duplicate_threshold, fit.centers)
        dup_s = time.perf_counter() - start
    return {
        "n": n, "requested": method, "ran": fit.method, "auto_picks": choose_method("auto", n, c.minibatch_above),
        "fit_s": fit_s, "score_s": score_s, "near_dup_s": dup_s, "data_mib": data_mib,
        "fit_peak_mib": fit_peak, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--methods", default="auto", help="comma-separated: auto, kmeans, minibatch")
    ap.add_argument("--near-duplicates-up-to", type=int, default=100_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, method = args.child.split(":")
        print(json.dumps(one(int(n), method, args.near_duplicates_up_to)))
        return

    print(f"# cluster bench: {DIM}-d, k=20; {os.cpu_count()} CPUs; load average before: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    header = f"{'n':>9} {'method ran':>10} {'fit s':>8} {'peak RSS MiB':>12} {'data MiB':>9} " \
             f"{'score s':>8} {'near-dup s':>10} {'peak all MiB':>12}"
    print(header)
    print("-" * len(header))
    for n in (int(v) for v in args.sizes.split(",")):
        for method in args.methods.split(","):
            cmd = [sys.executable, __file__, "--child", f"{n}:{method}",
                   "--near-duplicates-up-to", str(args.near_duplicates_up_to)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{n:>9} {method:>10} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            dup = "-" if r["near_dup_s"] is None else f"{r['near_dup_s']:.1f}"
            print(f"{r['n']:>9} {r['ran']:>10} {r['fit_s']:>8.1f} {r['fit_peak_mib']:>12.0f} {r['data_mib']:>9.0f} "
                  f"{r['score_s']:>8.1f} {dup:>10} {r['peak_mib']:>12.0f}", flush=True)
    print(f"# load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
