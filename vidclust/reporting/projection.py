"""2-D projection of videos and cluster centres with openTSNE (the notebook's plot_clusters).

t-SNE is fitted on the video vectors, or, above `sample_above` videos, on a fixed-seed sample of
them; the centres (and the videos outside the sample) are then placed into that fitted map with
openTSNE's `transform`, which positions new points among their nearest fitted neighbours without
changing the map. The cost of the fit grows with the number of fitted points; placing is cheaper.

For the report: `map_videos` (the clustered videos with a vector and the centres -> a `VideoMap`:
positions, how they were made, `tsne_note` saying so on the page) and `projection_table`
(report/projection.parquet).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa

from vidclust.store.contract import PROJECTION_SCHEMA
from vidclust.clustering.principal_axes import principal_axes
from vidclust.vectors import l2_normalise

log = logging.getLogger("vidclust")

TRANSFORM_CHUNK = 20_000  # points placed per `transform` call: bounds memory
TRANSFORM_UP_TO = 200_000  # videos placed by openTSNE's transform; beyond, by their nearest fitted neighbours
NEIGHBOURS = 10  # fitted neighbours whose median position places a video beyond TRANSFORM_UP_TO


def project_tsne(
    vectors: np.ndarray,
    centers: Optional[np.ndarray] = None,
    seed: int = 28,
    sample_above: int = 20_000,
    perplexity: float = 30.0,
    n_jobs: Optional[int] = None,  # openTSNE threads; None: 1 below 5,000 fitted videos, else all CPUs
    metric: str = "cosine",
    labels: Optional[np.ndarray] = None,
    center_ids: Optional[np.ndarray] = None,
    transform_up_to: int = TRANSFORM_UP_TO,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(xy of videos (n, 2) float32, xy of centres (k, 2) float32, info).

    `vectors` (n, D) are the per-video vectors that were clustered, `centers` (k, D) the centres.
    Centres are placed into the map with openTSNE's `transform` (among their nearest fitted
    videos). With `labels` (cluster id per video) and `center_ids` (cluster id per centre), a
    centre that has videos is marked at the median map position of its own videos instead: the
    nearest fitted videos of a small or spread-out cluster's centre can belong to other clusters,
    which puts its mark elsewhere, while the median always sits on the cluster's own videos.
    Where more than `transform_up_to` videos lie outside the sample, they are placed at the
    median map position of their nearest fitted videos (found with faiss on a 64-d principal-axis
    sketch), which is where openTSNE's transform starts them before optimising: minutes at
    millions of videos where the transform would take an hour.
    Deterministic for a given seed. `info` says how the map was made: method, n_videos,
    n_fitted, n_placed (videos placed outside the fit), placed_by, sampled, perplexity,
    centers_placed_by, n_jobs, fit_seconds, seconds.
    """
    x = np.asarray(vectors)  # never copied whole: rows are taken (and normalised) as needed
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-D (n, D), got shape {x.shape}")
    c = np.zeros((0, x.shape[1]), np.float32) if centers is None else np.asarray(centers, np.float32)
    if c.ndim != 2 or (len(c) and c.shape[1] != x.shape[1]):
        raise ValueError(f"centers must be (k, {x.shape[1]}), got shape {c.shape}")
    cosine = metric == "cosine"
    if cosine:
        # Cosine geometry as unit vectors under the Euclidean metric: the same neighbours, the
        # faster exact/Annoy Euclidean search, and a PCA initialisation of the same geometry.
        c = l2_normalise(c)
        metric = "euclidean"

    def rows(idx) -> np.ndarray:
        part = np.ascontiguousarray(x[idx], dtype=np.float32)
        return l2_normalise(part) if cosine else part

    n = len(x)
    start = time.perf_counter()
    info = {"method": "openTSNE", "n_videos": int(n), "n_fitted": int(n), "n_placed": 0,
            "sampled": False, "perplexity": float(perplexity), "seed": int(seed)}

    if n < 8:  # too few points for t-SNE's neighbourhoods: a PCA plane says as much
        xy, cxy = _pca_2d(rows(slice(None)), c)
        info.update(method="pca (too few videos for t-SNE)", centers_placed_by="pca",
                    seconds=round(time.perf_counter() - start, 3))
        return xy, cxy, info

    rng = np.random.default_rng(seed)
    if n > sample_above:
        fit_idx = np.sort(rng.choice(n, size=sample_above, replace=False))
    else:
        fit_idx = np.arange(n)
    rest_idx = np.setdiff1d(np.arange(n), fit_idx, assume_unique=True)
    m = len(fit_idx)
    if not n_jobs:  # threads cost more than they save on small maps
        n_jobs = 1 if m < 5000 else max(1, os.cpu_count() or 1)
    info["n_jobs"] = int(n_jobs)
    # openTSNE needs perplexity < (m - 1) / 3 neighbours; lower it for small sets, as sklearn would.
    perp = float(min(perplexity, max(1.0, (m - 1) / 3.0 - 1.0)))
    fit_x = rows(fit_idx)
    embedding = _fit_map(fit_x, perp, metric, n_jobs, seed)
    fitted = np.array(embedding, dtype=np.float64, copy=True)
    xy = np.zeros((n, 2), np.float32)
    xy[fit_idx] = fitted
    fit_seconds = time.perf_counter() - start

    # transform's own perplexity (5 by default) must also fit the number of neighbours it uses.
    k_nn = int(min(25, m - 1))
    place_perp = float(min(5.0, max(1.0, (k_nn - 1) / 3.0)))
    if len(rest_idx) > transform_up_to:
        xy[rest_idx] = _place_by_neighbours(fit_x, fitted, rows, rest_idx, seed)
        info.update(sampled=True, n_fitted=int(m), n_placed=int(len(rest_idx)),
                    placed_by=f"median of {NEIGHBOURS} nearest fitted videos")
    elif len(rest_idx):
        for lo in range(0, len(rest_idx), TRANSFORM_CHUNK):
            part = rest_idx[lo:lo + TRANSFORM_CHUNK]
            xy[part] = _place(embedding, fitted, rows(part), k_nn, place_perp)
        info.update(sampled=True, n_fitted=int(m), n_placed=int(len(rest_idx)), placed_by="openTSNE transform")
    cxy, info["centers_placed_by"] = _place_centers(xy, c, labels, center_ids,
                                                    lambda pts: _place(embedding, fitted, pts, k_nn, place_perp))
    info.update(perplexity=perp, fit_seconds=round(fit_seconds, 3),
                seconds=round(time.perf_counter() - start, 3))
    log.info("t-SNE of %d videos (%d fitted, %d placed) in %.1fs", n, m, len(rest_idx), info["seconds"])
    return xy, cxy, info


def _fit_map(x: np.ndarray, perplexity: float, metric: str, n_jobs: int, seed: int):
    """openTSNE's map of `x`: Barnes-Hut on small maps, the FFT-interpolated gradient (linear in
    n) from 5,000 points."""
    import openTSNE

    tsne = openTSNE.TSNE(n_components=2, perplexity=perplexity, metric=metric, n_jobs=n_jobs,
                         random_state=int(seed), initialization="pca", verbose=False,
                         negative_gradient_method="fft" if len(x) >= 5000 else "bh")
    return tsne.fit(x)


def _place_centers(xy: np.ndarray, centers: np.ndarray, labels: Optional[np.ndarray],
                   center_ids: Optional[np.ndarray], place) -> tuple[np.ndarray, str]:
    """Map positions of the centres: the median of each one's videos where labels say which
    they are, else `place` (transform into the map); and how they were placed, in words."""
    cxy = np.zeros((len(centers), 2), np.float32)
    by_median = np.zeros(len(centers), bool)
    if labels is not None and center_ids is not None and len(centers):
        cxy, by_median = _member_medians(xy, np.asarray(labels), np.asarray(center_ids))
    if (~by_median).any():
        cxy[~by_median] = place(centers[~by_median])
    n_median, k = int(by_median.sum()), len(centers)
    how = ("median of members" if n_median == k and k else "transform" if n_median == 0 else
           f"median of members ({n_median}), transform ({k - n_median})")
    return cxy, how


def _place(embedding, fitted: np.ndarray, points: np.ndarray, k: int, perplexity: float) -> np.ndarray:
    """openTSNE's transform of `points` into the fitted map, in the coordinates of `fitted` (the
    map as it was fitted).

    openTSNE (1.0.x) translates the reference embedding in place during `transform` and returns
    the new points relative to that moved reference; measured against the fitted coordinates,
    every placed point would sit off its neighbours by the same vector. That translation is
    measured and taken back, so placed and fitted points share one frame."""
    placed = np.asarray(embedding.transform(points, k=k, perplexity=perplexity), np.float64)
    moved = np.asarray(embedding, dtype=np.float64) - fitted
    shift = moved.mean(axis=0)
    if np.abs(moved - shift).max() > 1e-6 * (1.0 + np.abs(fitted).max()):
        log.warning("openTSNE moved the fitted map by more than a translation while placing points")
    return (placed - shift).astype(np.float32)


def _place_by_neighbours(fit_x: np.ndarray, fitted: np.ndarray, rows_of, rows: np.ndarray,
                         seed: int, k: int = NEIGHBOURS, dim: int = 64) -> np.ndarray:
    """Map positions of the vectors `rows_of(rows)`, taken block by block: the median position of
    each one's `k` nearest fitted videos (Euclidean, on the projections onto the fitted sample's
    top `dim` principal axes, through a faiss IVF index over the fitted videos)."""
    import faiss

    mean, axes = principal_axes(fit_x, dim)
    ref = np.ascontiguousarray((fit_x - mean) @ axes)
    nlist = max(1, int(np.sqrt(len(ref))))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(ref.shape[1]), ref.shape[1], nlist)
    index.cp.seed = int(seed)
    index.cp.min_points_per_centroid = 1
    index.train(ref)
    index.add(ref)
    index.nprobe = min(nlist, 8)
    out = np.empty((len(rows), 2), np.float32)
    for lo in range(0, len(rows), TRANSFORM_CHUNK):
        part = rows[lo:lo + TRANSFORM_CHUNK]
        _, nn = index.search(np.ascontiguousarray((rows_of(part) - mean) @ axes), min(k, len(ref)))
        nn = np.where(nn < 0, nn[:, :1], nn)  # a short list (few probed) repeats its nearest
        out[lo:lo + len(part)] = np.median(fitted[nn], axis=1)
    return out


def _member_medians(xy: np.ndarray, labels: np.ndarray, center_ids: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(k, 2) median map position of each centre's videos, and which centres had any."""
    out = np.zeros((len(center_ids), 2), np.float32)
    found = np.zeros(len(center_ids), bool)
    for i, cid in enumerate(center_ids):
        members = xy[labels == cid]
        if len(members):
            out[i] = np.median(members, axis=0)
            found[i] = True
    return out, found


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


# ----------------------------------------------------------------------------------------------
# the report's map


@dataclass(frozen=True, eq=False)
class VideoMap:
    """Where each clustered video and each centre is on the report's map, and how it was made."""
    xy: np.ndarray  # float32 [n, 2], a row per clustered video; NaN: it has no vector, not on the map
    center_ids: list[int]  # the centres on the map (none when their vectors do not fit)
    centers_xy: np.ndarray  # float32 [len(center_ids), 2]
    info: dict  # project_tsne's
    note: str  # how the map was made, for the page

    def center_positions(self) -> dict[int, tuple[float, float]]:
        return {int(c): (float(p[0]), float(p[1])) for c, p in zip(self.center_ids, self.centers_xy)}

    def table(self, video_ids: Sequence[str]) -> pa.Table:
        return projection_table(video_ids, self.xy, self.center_ids, self.centers_xy)


def map_videos(vectors: np.ndarray, has_vector: np.ndarray, labels: np.ndarray, centers: Optional[np.ndarray],
               center_ids: Sequence[int], seed: int, rc) -> VideoMap:
    """The t-SNE projection of the videos that have a vector (`vectors`, in the order of
    `has_vector`'s True rows) and of the centres, with the report's settings `rc`."""
    use_centers = centers if centers is not None and len(centers) and centers.shape[1] == vectors.shape[1] else None
    shown_ids = list(center_ids) if use_centers is not None else []
    xy_have, cxy, info = project_tsne(vectors, use_centers, seed=seed, sample_above=rc.tsne_sample,
                                      perplexity=rc.tsne_perplexity, n_jobs=rc.tsne_n_jobs,
                                      labels=labels[has_vector],
                                      center_ids=np.array(center_ids) if use_centers is not None else None)
    xy = np.full((len(labels), 2), np.nan, np.float32)
    xy[has_vector] = xy_have
    return VideoMap(xy, shown_ids, cxy, info, tsne_note(info, seed))


def projection_table(video_ids: Sequence[str], xy: np.ndarray, center_ids: Sequence[int],
                     centers_xy: np.ndarray) -> pa.Table:
    """report/projection.parquet: a row per video (kind video), then one per centre (kind center)."""
    n, k = len(video_ids), len(center_ids)
    xy = np.asarray(xy, np.float32).reshape(-1, 2)
    cxy = np.asarray(centers_xy, np.float32).reshape(-1, 2)
    return pa.table({
        "kind": pa.array(["video"] * n + ["center"] * k, pa.string()),
        "video_id": pa.array(list(video_ids) + [None] * k, pa.string()),
        "cluster_id": pa.array([None] * n + [int(c) for c in center_ids], pa.int32()),
        "x": pa.array(np.concatenate([xy[:, 0], cxy[:, 0]]), pa.float32()),
        "y": pa.array(np.concatenate([xy[:, 1], cxy[:, 1]]), pa.float32()),
    }, schema=PROJECTION_SCHEMA)


def tsne_note(info: dict, seed: int) -> str:
    """How the map was made, in a sentence or two for the page."""
    if info.get("method", "").startswith("pca"):
        return "Too few videos for t-SNE: this is the plane of their first two principal components."
    if info.get("sampled"):
        how = (f"t-SNE (openTSNE, perplexity {info.get('perplexity', 0):.3g}) was fitted on a sample of "
               f"{info['n_fitted']:,} of the {info['n_videos']:,} videos, drawn with seed {seed}; the "
               f"other {info['n_placed']:,} videos were placed into that map "
               + ("with openTSNE's transform." if info.get("placed_by", "openTSNE transform") == "openTSNE transform"
                  else f"at the {info['placed_by']} (where the transform would start them)."))
    else:
        how = (f"t-SNE (openTSNE, perplexity {info.get('perplexity', 0):.3g}, seed {seed}) fitted on all "
               f"{info['n_videos']:,} videos.")
    placed = info.get("centers_placed_by", "")
    if placed == "median of members":
        how += " Each centre is marked at the median position of its videos."
    elif placed:
        how += f" Centres are placed by {placed}."
    return how
