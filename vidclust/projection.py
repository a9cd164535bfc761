"""2-D projection of videos and cluster centres with openTSNE (the notebook's plot_clusters).

t-SNE is fitted on the video vectors, or, above `sample_above` videos, on a fixed-seed sample of
them; the centres (and the videos outside the sample) are then placed into that fitted map with
openTSNE's `transform`, which positions new points among their nearest fitted neighbours without
moving the map. The cost of the fit grows with the number of fitted points; placing is cheaper.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Optional

import numpy as np

log = logging.getLogger("vidclust")

TRANSFORM_CHUNK = 20_000  # points placed per `transform` call: bounds memory


def project_tsne(
    vectors: np.ndarray,
    centers: Optional[np.ndarray] = None,
    seed: int = 28,
    sample_above: int = 20_000,
    perplexity: float = 30.0,
    n_jobs: Optional[int] = None,
    metric: str = "cosine",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(xy of videos (n, 2) float32, xy of centres (k, 2) float32, info).

    `vectors` (n, D) are the per-video vectors that were clustered, `centers` (k, D) the centres.
    Deterministic for a given seed. `info` says how the map was made: method, n_videos,
    n_fitted, n_placed (videos placed by transform), sampled, perplexity, seconds.
    """
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-D (n, D), got shape {x.shape}")
    c = np.zeros((0, x.shape[1]), np.float32) if centers is None else np.asarray(centers, np.float32)
    if c.ndim != 2 or (len(c) and c.shape[1] != x.shape[1]):
        raise ValueError(f"centers must be (k, {x.shape[1]}), got shape {c.shape}")
    n = len(x)
    start = time.perf_counter()
    info = {"method": "openTSNE", "n_videos": int(n), "n_fitted": int(n), "n_placed": 0,
            "sampled": False, "perplexity": float(perplexity), "seed": int(seed)}
    n_jobs = n_jobs or max(1, os.cpu_count() or 1)

    if n < 8:  # too few points for t-SNE's neighbourhoods: a PCA plane says as much
        xy, cxy = _pca_2d(x, c)
        info.update(method="pca (too few videos for t-SNE)", seconds=round(time.perf_counter() - start, 3))
        return xy, cxy, info

    import openTSNE

    rng = np.random.default_rng(seed)
    if n > sample_above:
        fit_idx = np.sort(rng.choice(n, size=sample_above, replace=False))
    else:
        fit_idx = np.arange(n)
    rest_idx = np.setdiff1d(np.arange(n), fit_idx, assume_unique=True)
    m = len(fit_idx)
    # openTSNE needs perplexity < (m - 1) / 3 neighbours; lower it for small sets, as sklearn would.
    perp = float(min(perplexity, max(1.0, (m - 1) / 3.0 - 1.0)))
    tsne = openTSNE.TSNE(n_components=2, perplexity=perp, metric=metric, n_jobs=n_jobs,
                         random_state=int(seed), initialization="pca", verbose=False)
    embedding = tsne.fit(x[fit_idx])
    xy = np.zeros((n, 2), np.float32)
    xy[fit_idx] = np.asarray(embedding, np.float32)
    fit_seconds = time.perf_counter() - start

    # transform's own perplexity (5 by default) must also fit the number of neighbours it uses.
    k_nn = int(min(25, m - 1))
    place_perp = float(min(5.0, max(1.0, (k_nn - 1) / 3.0)))
    if len(rest_idx):
        for lo in range(0, len(rest_idx), TRANSFORM_CHUNK):
            part = rest_idx[lo:lo + TRANSFORM_CHUNK]
            xy[part] = np.asarray(embedding.transform(x[part], k=k_nn, perplexity=place_perp), np.float32)
        info.update(sampled=True, n_fitted=int(m), n_placed=int(len(rest_idx)))
    cxy = (np.asarray(embedding.transform(c, k=k_nn, perplexity=place_perp), np.float32)
           if len(c) else np.zeros((0, 2), np.float32))
    info.update(perplexity=perp, fit_seconds=round(fit_seconds, 3),
                seconds=round(time.perf_counter() - start, 3))
    log.info("t-SNE of %d videos (%d fitted, %d placed) in %.1fs", n, m, len(rest_idx), info["seconds"])
    return xy, cxy, info


def _pca_2d(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), np.float32), np.zeros((len(c), 2), np.float32)
    mean = x.mean(axis=0)
    xc = x - mean
    _, _, vt = np.linalg.svd(xc, full_matrices=False) if n > 1 else (None, None, np.eye(x.shape[1]))
    basis = np.zeros((x.shape[1], 2), np.float32)
    k = min(2, vt.shape[0])
    basis[:, :k] = vt[:k].T
    return (xc @ basis).astype(np.float32), ((c - mean) @ basis).astype(np.float32)
