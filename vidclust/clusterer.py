"""`VideoClusterer`: scikit-learn style clustering of plain arrays of per-video vectors.

    from vidclust import VideoClusterer
    vc = VideoClusterer(n_clusters=20).fit(X)       # X: [n, D] float32 or float16
    vc.labels_, vc.cluster_centers_, vc.inertia_, vc.method_
    vc.predict(X_new); vc.transform(X_new)           # nearest centre; distances to every centre

Methods: "kmeans" (sklearn KMeans, exact Lloyd), "minibatch" (sklearn MiniBatchKMeans), "faiss"
(faiss.Kmeans seeded by k-means++ and trained on a fixed-seed sample of
`faiss_max_points_per_centroid * k` vectors, then
every vector assigned to its nearest centre block by block: seconds at millions of vectors),
"hdbscan" (sklearn HDBSCAN: chooses the number of clusters itself, -1 = noise; O(n^2), small n
only). "auto": exact KMeans up to `exact_up_to` vectors, faiss above (MiniBatchKMeans where
faiss is not installed); see bench/bench_cluster.py for the figures behind the rule.

Memory: the vectors are not copied for faiss (float16 input is converted block by block); the
sklearn methods work on float32 (a float16 input costs one float32 copy, at sizes where exact
KMeans runs that is small).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from vidclust.errors import VidclustError

log = logging.getLogger("vidclust")

METHODS = ("auto", "kmeans", "minibatch", "faiss", "hdbscan")
EXACT_UP_TO = 100_000  # "auto": exact KMeans up to this many vectors, faiss above
MINIBATCH_BATCH_SIZE = 4096  # rows per MiniBatchKMeans step (sklearn wants >= 256 * cores)
BLOCK = 65_536  # rows per block where whole-corpus arrays are walked through


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def choose_method(method: str, n: int, exact_up_to: int = EXACT_UP_TO) -> str:
    """The method that runs for `method` on `n` vectors ("auto": exact KMeans up to
    `exact_up_to` vectors, faiss above, MiniBatchKMeans above where faiss is not installed)."""
    if method not in METHODS:
        raise VidclustError(f"unknown clustering method {method!r}: one of {', '.join(METHODS)}")
    if method == "auto":
        if n <= exact_up_to:
            return "kmeans"
        return "faiss" if faiss_available() else "minibatch"
    if method == "faiss" and not faiss_available():
        raise VidclustError("cluster.method=faiss needs faiss: pip install faiss-cpu")
    return method


def distances_to_centers(vectors: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Euclidean distance of every vector to every centre, float32 [n, k] (`cdist(vectors,
    centers)`), computed in blocks (float64) so temporaries stay small."""
    c = np.asarray(centers, dtype=np.float64)
    c_sq = (c * c).sum(axis=1)
    out = np.empty((len(vectors), len(c)), dtype=np.float32)
    for s in range(0, len(vectors), BLOCK):
        x = np.asarray(vectors[s:s + BLOCK], dtype=np.float64)
        d2 = (x * x).sum(axis=1)[:, None] - 2.0 * (x @ c.T) + c_sq[None, :]
        out[s:s + BLOCK] = np.sqrt(np.maximum(d2, 0.0))
    return out


def nearest_center(vectors: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index int32 [n], squared distance float64 [n]) of each vector's nearest centre, in blocks."""
    labels = np.empty(len(vectors), dtype=np.int32)
    d2 = np.empty(len(vectors), dtype=np.float64)
    for s in range(0, len(vectors), BLOCK):
        d = distances_to_centers(vectors[s:s + BLOCK], centers)
        lab = d.argmin(axis=1)
        labels[s:s + BLOCK] = lab
        d2[s:s + BLOCK] = d[np.arange(len(d)), lab].astype(np.float64) ** 2
    return labels, d2


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeds (float32 [k, D]) of the float32 rows `x`, with matrix products
    (sklearn.cluster.kmeans_plusplus does the same, but is many times slower here when its
    thread pool and faiss's compete for the cores)."""
    n = len(x)
    trials = 2 + int(np.log(k))
    xx = np.einsum("ij,ij->i", x, x)
    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = np.maximum(xx - 2.0 * (x @ x[first]) + xx[first], 0.0)
    for j in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # fewer distinct points than k: any rows will do
            cand = rng.integers(n, size=trials)
        else:
            cand = np.searchsorted(np.cumsum(closest, dtype=np.float64), rng.random(trials) * total)
            cand = np.minimum(cand, n - 1)
        d2 = np.maximum(xx[:, None] - 2.0 * (x @ x[cand].T) + xx[cand][None, :], 0.0)
        d2 = np.minimum(d2, closest[:, None])
        best = int(d2.sum(axis=0).argmin())
        centers[j] = x[cand[best]]
        closest = d2[:, best]
    return centers


def _float32(x: np.ndarray) -> np.ndarray:
    """The vectors as C-contiguous float32; no copy when they already are."""
    return np.ascontiguousarray(x, dtype=np.float32)


class VideoClusterer:
    """Cluster per-video vectors; scikit-learn's estimator interface (fit, predict, transform,
    fit_predict; cluster_centers_, labels_, inertia_) plus `method_`, the method that ran.

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

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: Any = None) -> "VideoClusterer":
        n = len(X)
        method = choose_method(self.method, n, self.exact_up_to)
        if n < 2:
            raise VidclustError(f"need at least 2 videos to cluster, got {n}")
        if method != "hdbscan" and self.n_clusters > n:
            raise VidclustError(f"k={self.n_clusters} is larger than the number of videos ({n}); lower cluster.k")
        fit = getattr(self, f"_fit_{method}")
        labels, centers, inertia = fit(X)
        self.labels_ = np.asarray(labels, dtype=np.int32)
        self.cluster_centers_ = np.asarray(centers, dtype=np.float32)
        self.inertia_ = float(inertia)
        self.method_ = method
        self.n_features_in_ = X.shape[1]
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

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise VidclustError("this VideoClusterer is not fitted yet: call fit(X) first")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Nearest centre of each row, int32 [n] (for hdbscan: the nearest cluster mean; no -1)."""
        self._check_fitted()
        return nearest_center(X, self.cluster_centers_)[0]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Euclidean distance of each row to every centre, float32 [n, k]."""
        self._check_fitted()
        return distances_to_centers(X, self.cluster_centers_)

    def fit_predict(self, X: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(X).labels_

    def fit_transform(self, X: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(X).transform(X)

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in ("n_clusters", "method", "random_state", "n_init", "exact_up_to",
                                              "spherical", "batch_size", "faiss_niter",
                                              "faiss_max_points_per_centroid", "min_cluster_size")}

    def set_params(self, **params: Any) -> "VideoClusterer":
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"VideoClusterer(n_clusters={self.n_clusters}, method={self.method!r}, random_state={self.random_state})"


__all__ = ["VideoClusterer", "choose_method", "distances_to_centers", "nearest_center", "METHODS", "EXACT_UP_TO"]
