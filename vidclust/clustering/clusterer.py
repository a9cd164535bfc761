"""The clustering methods and their geometry, without scikit-learn: the methods' names and the
rule "auto" follows (`choose_method`), the sizes a fit needs (`check_size`), distances to centres,
to a vector's own centre and the nearest centre block by block (`BLOCK` rows at a time), k-means++
seeds. `vidclust.clustering.video_clusterer.VideoClusterer` runs the methods; config.py imports the choice
list from here, so reading a configuration never imports scikit-learn.
"""
from __future__ import annotations

import numpy as np

from vidclust.errors import VidclustError

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


def check_size(n: int, k: int | None) -> None:
    """`n` vectors are enough to fit `k` clusters (None: a method that chooses k itself)."""
    if n < 2:
        raise VidclustError(f"need at least 2 videos to cluster, got {n}")
    if k is not None and k > n:
        raise VidclustError(f"k={k} is larger than the number of videos ({n}); lower cluster.k")


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
    """Nearest centre of each vector: (index int32 [n], Euclidean distance float32 [n]), in
    blocks. The centres do not move."""
    vectors = np.asarray(vectors)
    centers = np.asarray(centers)
    if len(centers) == 0:
        raise VidclustError("no cluster centres to assign to")
    if vectors.ndim != 2 or vectors.shape[1] != centers.shape[1]:
        raise VidclustError(
            f"vectors of size {vectors.shape[-1]} cannot be assigned to centres of size {centers.shape[1]}"
        )
    labels = np.empty(len(vectors), dtype=np.int32)
    dist = np.empty(len(vectors), dtype=np.float32)
    for s in range(0, len(vectors), BLOCK):
        d = distances_to_centers(vectors[s:s + BLOCK], centers)
        labels[s:s + BLOCK] = d.argmin(axis=1)
        dist[s:s + BLOCK] = d[np.arange(len(d)), labels[s:s + BLOCK]]
    return labels, dist


def distances_to_own_center(vectors: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Euclidean distance of each vector to the centre of its cluster, float32 [n]; NaN for a
    vector left out of every cluster (label -1)."""
    labels = np.asarray(labels)
    out = np.full(len(vectors), np.nan, dtype=np.float32)
    c = np.asarray(centers, dtype=np.float64)
    for s in range(0, len(vectors), BLOCK):
        lab = labels[s:s + BLOCK]
        has = lab >= 0
        x = np.asarray(vectors[s:s + BLOCK], dtype=np.float64)[has]
        out[s:s + BLOCK][has] = np.linalg.norm(x - c[lab[has]], axis=1)
    return out


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


__all__ = ["choose_method", "check_size", "distances_to_centers", "nearest_center", "distances_to_own_center",
           "kmeans_plusplus", "faiss_available", "METHODS", "EXACT_UP_TO", "MINIBATCH_BATCH_SIZE", "BLOCK"]
