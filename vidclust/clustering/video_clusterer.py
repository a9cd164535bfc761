"""`VideoClusterer`: a scikit-learn estimator that clusters plain arrays of per-video vectors.

    from vidclust import VideoClusterer
    vc = VideoClusterer(n_clusters=20).fit(X)       # X: [n, D] float32 or float16
    vc.labels_, vc.cluster_centers_, vc.inertia_, vc.method_
    vc.predict(X_new); vc.transform(X_new)           # nearest centre; distances to every centre

A scikit-learn estimator (BaseEstimator, ClusterMixin, TransformerMixin): get_params / set_params,
`sklearn.base.clone`, pipelines and `check_is_fitted` work as for sklearn's own KMeans.

Methods: "kmeans" (sklearn KMeans, exact Lloyd), "minibatch" (sklearn MiniBatchKMeans), "faiss"
(faiss.Kmeans seeded by k-means++ and trained on a fixed-seed sample of
`faiss_max_points_per_centroid * k` vectors, then
every vector assigned to its nearest centre block by block: seconds at millions of vectors),
"hdbscan" (sklearn HDBSCAN: chooses the number of clusters itself, -1 = noise; O(n^2), small n
only). "auto": exact KMeans up to `exact_up_to` vectors, faiss above (MiniBatchKMeans where
faiss is not installed); see bench/bench_cluster.py for the figures behind the rule.

Memory: the vectors are not copied for faiss (float16 input is converted block by block; the
input check converts lists but never copies an array and leaves finiteness to the methods); the
sklearn methods work on float32 (a float16 input costs one float32 copy, at sizes where exact
KMeans runs that is small).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted, validate_data

from vidclust.clustering.clusterer import (
    BLOCK,
    EXACT_UP_TO,
    MINIBATCH_BATCH_SIZE,
    check_size,
    choose_method,
    distances_to_centers,
    kmeans_plusplus,
    nearest_center,
)
from vidclust.errors import VidclustError

log = logging.getLogger("vidclust")

# dtypes the vectors keep (anything else becomes float32); no copy of the whole corpus
_KEPT_DTYPES = (np.float32, np.float16, np.float64)


class NotFitted(VidclustError, NotFittedError):
    """predict or transform on a VideoClusterer that has not been fitted: one line for the CLI,
    and scikit-learn's NotFittedError for sklearn's tools."""


def _float32(x: np.ndarray) -> np.ndarray:
    """The vectors as C-contiguous float32; no copy when they already are."""
    return np.ascontiguousarray(x, dtype=np.float32)


class VideoClusterer(TransformerMixin, ClusterMixin, BaseEstimator):
    """Cluster per-video vectors; a scikit-learn estimator (fit, predict, transform, fit_predict,
    fit_transform; cluster_centers_, labels_, inertia_, n_features_in_) plus `method_`, the method
    that ran. The parameters are checked by fit (sklearn's rule: __init__ only stores them).

    Deterministic for a given `random_state`. `n_clusters` is ignored by "hdbscan"."""

    def __init__(self, n_clusters: int = 20, method: str = "auto", random_state: int = 28, n_init: Any = "auto", *,
                 exact_up_to: int = EXACT_UP_TO, spherical: bool = False, batch_size: int = MINIBATCH_BATCH_SIZE,
                 faiss_niter: int = 25, faiss_max_points_per_centroid: int = 1024,
                 min_cluster_size: int = 5):
        self.n_clusters = n_clusters
        self.method = method
        self.random_state = random_state
        self.n_init = n_init
        self.exact_up_to = exact_up_to
        self.spherical = spherical
        self.batch_size = batch_size
        self.faiss_niter = faiss_niter
        self.faiss_max_points_per_centroid = faiss_max_points_per_centroid
        self.min_cluster_size = min_cluster_size

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # transform always returns float32
        return tags

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: Any = None) -> "VideoClusterer":
        X = validate_data(self, X, dtype=_KEPT_DTYPES, ensure_all_finite=False, ensure_min_samples=0)
        n = len(X)
        method = choose_method(self.method, n, self.exact_up_to)
        check_size(n, None if method == "hdbscan" else self.n_clusters)
        fit = getattr(self, f"_fit_{method}")
        labels, centers, inertia = fit(X)
        self.labels_ = np.asarray(labels, dtype=np.int32)
        self.cluster_centers_ = np.asarray(centers, dtype=np.float32)
        self.inertia_ = float(inertia)
        self.method_ = method
        return self

    def _fit_kmeans(self, X: np.ndarray):
        from sklearn.cluster import KMeans

        m = KMeans(n_clusters=self.n_clusters, random_state=self.random_state, n_init=self.n_init).fit(_float32(X))
        return m.labels_, m.cluster_centers_, m.inertia_

    def _fit_minibatch(self, X: np.ndarray):
        from sklearn.cluster import MiniBatchKMeans

        m = MiniBatchKMeans(n_clusters=self.n_clusters, random_state=self.random_state, n_init=self.n_init,
                            batch_size=min(self.batch_size, len(X))).fit(_float32(X))
        return m.labels_, m.cluster_centers_, m.inertia_

    def _fit_faiss(self, X: np.ndarray):
        import faiss

        n, d = X.shape
        k = self.n_clusters
        cap = self.faiss_max_points_per_centroid * k
        if n > cap:  # train on a fixed-seed sample (faiss would sample too, from a float32 copy)
            idx = np.sort(np.random.default_rng(self.random_state).choice(n, size=cap, replace=False))
            sample = _float32(X[idx])
        else:
            sample = _float32(X)
        nredo = 1 if self.n_init == "auto" else int(self.n_init)
        km = faiss.Kmeans(d, k, niter=self.faiss_niter, nredo=nredo, seed=int(self.random_state),
                          spherical=self.spherical, verbose=False,
                          max_points_per_centroid=max(self.faiss_max_points_per_centroid, 1),
                          min_points_per_centroid=1)
        # k-means++ seeding on the sample (faiss alone starts from random points, which merges
        # clusters now and then); nredo > 1 then restarts from faiss's own random seeds too
        init = kmeans_plusplus(sample, k, np.random.default_rng(self.random_state))
        km.train(sample, init_centroids=init)
        del sample
        labels = np.empty(n, dtype=np.int32)
        inertia = 0.0
        for s in range(0, n, BLOCK):
            dist, lab = km.index.search(_float32(X[s:s + BLOCK]), 1)
            labels[s:s + BLOCK] = lab[:, 0]
            inertia += float(np.maximum(dist[:, 0], 0).sum(dtype=np.float64))
        return labels, np.array(km.centroids, dtype=np.float32), inertia

    def _fit_hdbscan(self, X: np.ndarray):
        from sklearn.cluster import HDBSCAN

        x = _float32(X)
        if len(x) > 50_000:
            log.warning("HDBSCAN on %d videos of %d dimensions can take hours; KMeans scales", len(x), x.shape[1])
        labels = HDBSCAN(min_cluster_size=self.min_cluster_size, copy=True).fit_predict(x)
        found = sorted(set(labels.tolist()) - {-1})
        if not found:
            raise VidclustError(
                "HDBSCAN left every video out (no cluster found); lower "
                "cluster.hdbscan_min_cluster_size or use cluster.method=kmeans"
            )
        remap = np.full(max(found) + 2, -1, dtype=np.int64)  # dense ids 0..k-1, -1 stays -1
        remap[np.asarray(found)] = np.arange(len(found))
        labels = remap[labels]
        centers = np.stack([x[labels == c].mean(axis=0, dtype=np.float64) for c in range(len(found))])
        has = labels >= 0
        inertia = float(((x[has] - centers[labels[has]]) ** 2).sum())
        return labels, centers, inertia

    # -- using a fit -----------------------------------------------------------------------

    def _checked(self, X: np.ndarray) -> np.ndarray:
        """X, once this clusterer is fitted and X has the fitted number of features."""
        try:
            check_is_fitted(self, "cluster_centers_")  # not n_features_in_: set by a fit that failed
        except NotFittedError:
            raise NotFitted("this VideoClusterer is not fitted yet: call fit(X) first") from None
        return validate_data(self, X, reset=False, dtype=_KEPT_DTYPES, ensure_all_finite=False)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Nearest centre of each row, int32 [n] (for hdbscan: the nearest cluster mean; no -1)."""
        return nearest_center(self._checked(X), self.cluster_centers_)[0]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Euclidean distance of each row to every centre, float32 [n, k]."""
        return distances_to_centers(self._checked(X), self.cluster_centers_)


__all__ = ["VideoClusterer", "NotFitted"]
