"""How good a clustering is: scores of one fit and the metrics a k sweep picks by.

Internal scores (silhouette, Davies-Bouldin, Calinski-Harabasz) of the vectors with a cluster, and
external ones (NMI, ARI, purity) against known categories; `SWEEP_METRICS` is the choice list of
cluster.sweep_metric (config.py imports it from here). Plain functions over NumPy arrays;
scikit-learn's metrics are imported when a score is computed, so reading a configuration never
imports scikit-learn.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from vidclust.clustering.clusterer import BLOCK

SWEEP_METRICS = {  # metric -> True when larger is better
    "silhouette": True,
    "davies_bouldin": False,
    "calinski_harabasz": True,
}


def score_clustering(
    vectors: np.ndarray, labels: np.ndarray, seed: int = 28, sample_above: int = 20_000
) -> dict:
    """Silhouette (on a fixed-seed sample of `sample_above` vectors when there are more),
    Davies-Bouldin and Calinski-Harabasz, on the vectors with a cluster (label >= 0).
    A score that is undefined (one cluster, or as many clusters as vectors) is None.
    Memory beyond the vectors stays small: no copy of them is made (the silhouette's sample
    aside), Davies-Bouldin and Calinski-Harabasz are computed block by block."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    scored = np.flatnonzero(labels >= 0)
    n = len(scored)
    n_labels = len(np.unique(labels[scored]))
    out: dict = {"silhouette": None, "silhouette_sampled": False, "silhouette_sample_size": None,
                 "davies_bouldin": None, "calinski_harabasz": None, "n_scored": int(n)}
    if not 2 <= n_labels <= n - 1:
        return out
    if n > sample_above:
        rng = np.random.default_rng(seed)
        idx = scored[np.sort(rng.choice(n, size=sample_above, replace=False))]
        out["silhouette_sampled"] = True
        out["silhouette_sample_size"] = int(sample_above)
    else:
        idx = scored
    xs, ys = vectors[idx], labels[idx]
    if 2 <= len(np.unique(ys)) <= len(ys) - 1:
        out["silhouette"] = float(silhouette_score(xs, ys))
    del xs
    out["davies_bouldin"], out["calinski_harabasz"] = dispersion_scores(vectors, labels)
    return out


def dispersion_scores(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(Davies-Bouldin, Calinski-Harabasz) of the vectors with label >= 0, as sklearn defines
    them, computed in blocks (float64) so memory stays O(k * D) beyond the vectors."""
    labels = np.asarray(labels)
    present = np.unique(labels[labels >= 0])
    code = np.full(int(present.max()) + 1, -1, dtype=np.int64)
    code[present] = np.arange(len(present))
    k, d = len(present), vectors.shape[1]
    sums = np.zeros((k, d))
    counts = np.zeros(k)
    for s in range(0, len(vectors), BLOCK):
        lab, x = _block(vectors, labels, code, s)
        onehot = np.zeros((len(lab), k))
        onehot[np.arange(len(lab)), lab] = 1.0
        sums += onehot.T @ x
        counts += onehot.sum(axis=0)
    centroids = sums / counts[:, None]
    mean = sums.sum(axis=0) / counts.sum()
    within = 0.0
    intra = np.zeros(k)  # sum of distances to the own centroid, per cluster
    for s in range(0, len(vectors), BLOCK):
        lab, x = _block(vectors, labels, code, s)
        sq = ((x - centroids[lab]) ** 2).sum(axis=1)
        within += sq.sum()
        intra += np.bincount(lab, weights=np.sqrt(sq), minlength=k)
    n = counts.sum()
    between = float((counts * ((centroids - mean) ** 2).sum(axis=1)).sum())
    ch = 1.0 if within == 0.0 else between * (n - k) / (within * (k - 1.0))
    intra /= counts
    gaps = np.sqrt(np.maximum(((centroids[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2), 0.0))
    if np.allclose(intra, 0) or np.allclose(gaps, 0):
        db = 0.0
    else:
        gaps[gaps == 0] = np.inf
        ratio = (intra[:, None] + intra[None, :]) / gaps
        np.fill_diagonal(ratio, -np.inf)
        db = float(np.mean(ratio.max(axis=1)))
    return db, float(ch)


def _block(vectors: np.ndarray, labels: np.ndarray, code: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    lab = labels[start:start + BLOCK]
    keep = lab >= 0
    x = np.asarray(vectors[start:start + BLOCK], dtype=np.float64)
    if not keep.all():
        x, lab = x[keep], lab[keep]
    return code[lab], x


def external_scores(labels: np.ndarray, categories: Sequence[Optional[str]]) -> Optional[dict]:
    """NMI, ARI and purity of `labels` against known `categories` (None entries are skipped).
    None when no video has a category. Videos left out (-1) count as one more cluster."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    cats = np.asarray(list(categories), dtype=object)
    has = np.asarray([c is not None and not (isinstance(c, float) and math.isnan(c)) for c in cats], dtype=bool)
    if not has.any():
        return None
    y_true = cats[has].astype(str)
    y_pred = np.asarray(labels)[has]
    _, true_codes = np.unique(y_true, return_inverse=True)
    _, pred_codes = np.unique(y_pred, return_inverse=True)
    table = np.zeros((pred_codes.max() + 1, true_codes.max() + 1), dtype=np.int64)
    np.add.at(table, (pred_codes, true_codes), 1)
    return {
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "purity": float(table.max(axis=1).sum() / has.sum()),
        "n_labelled": int(has.sum()),
        "n_categories": int(table.shape[1]),
    }


def better(metric: str, a: Optional[float], b: Optional[float]) -> bool:
    """Is score `a` better than `b` for `metric` (None is worst)?"""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return False
    if b is None:
        return True
    return a > b if SWEEP_METRICS[metric] else a < b


__all__ = ["SWEEP_METRICS", "score_clustering", "dispersion_scores", "external_scores", "better"]
