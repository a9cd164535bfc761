"""The k sweep (cluster.k_sweep): fit a VideoClusterer for every k, score each fit
(vidclust.scores) and pick the best k by one of `scores.SWEEP_METRICS`.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional, Sequence

import numpy as np

from vidclust.clustering.clusterer import EXACT_UP_TO, check_size, choose_method
from vidclust.errors import VidclustError
from vidclust.formatting import fmt
from vidclust.clustering.scores import SWEEP_METRICS, better, score_clustering
from vidclust.clustering.video_clusterer import VideoClusterer

log = logging.getLogger("vidclust")


def sweep_k(
    vectors: np.ndarray,
    ks: Sequence[int],
    *,
    method: str = "auto",
    seed: int = 28,
    n_init: Any = "auto",
    metric: str = "silhouette",
    sample_above: int = 20_000,
    exact_up_to: int = EXACT_UP_TO,
    fit_sample_above: Optional[int] = None,
) -> tuple[int, list[dict], VideoClusterer]:
    """Fit every k in `ks`, score each, pick the best by `metric`.
    Above `fit_sample_above` vectors each k is fitted and scored on a fixed-seed sample of that
    many (every row says `fitted_on`), and the best k is then fitted on every vector.
    Returns (best k, table of one dict per k, the best fit: a fitted VideoClusterer)."""
    if metric not in SWEEP_METRICS:
        raise VidclustError(f"unknown sweep metric {metric!r}: one of {', '.join(SWEEP_METRICS)}")
    ks = sorted(set(int(k) for k in ks))
    if not ks:
        raise VidclustError("cluster.k_sweep is empty")
    if method == "hdbscan":
        raise VidclustError("cluster.k_sweep does not apply to hdbscan (it chooses k itself)")
    n = len(vectors)
    check_size(n, max(ks))
    # the method `auto` would pick for all the vectors, also when a sample is swept
    ran = choose_method(method, n, exact_up_to)
    sampled = fit_sample_above is not None and n > fit_sample_above
    swept = vectors[np.sort(np.random.default_rng(seed).choice(n, size=fit_sample_above, replace=False))] \
        if sampled else vectors
    table: list[dict] = []
    best: Optional[tuple[int, VideoClusterer, Optional[float]]] = None
    for k in ks:
        start = time.perf_counter()
        fit = VideoClusterer(k, ran, seed, n_init, exact_up_to=exact_up_to).fit(swept)
        fit_seconds = time.perf_counter() - start
        scores = score_clustering(swept, fit.labels_, seed, sample_above)
        row = {"k": k, "method": fit.method_, **{m: scores[m] for m in SWEEP_METRICS},
               "silhouette_sampled": scores["silhouette_sampled"], "fitted_on": int(len(swept)),
               "fit_seconds": round(fit_seconds, 3)}
        table.append(row)
        log.info("k=%d: silhouette=%s davies_bouldin=%s calinski_harabasz=%s", k,
                 fmt(row["silhouette"], "n/a"), fmt(row["davies_bouldin"], "n/a"), fmt(row["calinski_harabasz"], "n/a"))
        if best is None or better(metric, row[metric], best[2]):
            best = (k, fit, row[metric])
    assert best is not None
    if best[2] is None:
        raise VidclustError(f"no k in the sweep has a {metric} score; use other values of k")
    if sampled:
        log.info("k sweep on a sample of %d of %d videos picked k=%d; fitting it on all of them",
                 len(swept), n, best[0])
        return best[0], table, VideoClusterer(best[0], method, seed, n_init, exact_up_to=exact_up_to).fit(vectors)
    return best[0], table, best[1]


__all__ = ["sweep_k"]
