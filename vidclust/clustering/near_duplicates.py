"""Near-duplicate videos: groups of vectors with cosine similarity >= a threshold, linked
transitively (a~b and b~c: one group).

    from vidclust import near_duplicates
    groups = near_duplicates(vectors, threshold=0.98)   # int32 [n]: group id, -1 = no near-duplicate

Three searches, one result format:

- "exact" (small n): every pair, block by block (never an n x n matrix); with `centers` only the
  pairs that can be that close are compared (exact pruning by the triangle inequality).
  O(n^2): ~90 s for 100k vectors on 2 busy cores.
- "cells" (large n; approximate): every vector is projected on the top 64 principal axes of a
  sample (a sketch: an orthogonal projection never lengthens a difference, so a near-duplicate
  pair stays as close in the sketch); faiss k-means splits the sketches into
  nlist ~ sqrt(nprobe * n) cells; each vector joins its nearest cell and visits the next
  `nprobe - 1` nearest, as an IVF query probes lists; each cell's members are compared, with
  matrix products, with each other and with its visitors, and the pairs close enough in the
  sketch are checked on the full vectors. A pair is missed only where neither vector probes the
  other's cell: recall of planted copies 1.0 at 100k, 300k and 1M on the bench's data (nprobe
  8), against the exact search 1.0 at 100k. ~26 s at 1M on 2 busy cores (the search without
  the sketch, cells probed by cell rather than by vector: 369 s, recall 0.98); holds the
  sketch (an eighth of the vectors at 512-d), no copy of the vectors.
- "ivf" (approximate): a faiss IndexIVFFlat with inner product on the L2-normalised vectors,
  `nprobe` lists searched per query, range search (every neighbour above the threshold, no k
  cap). Same recall as "cells" at 100k but ~4x slower (56 s vs 14 s: faiss scans lists without BLAS), holds
  a float32 copy of the vectors; kept for comparison.

"auto": exact up to `index_above` vectors, "cells" above (exact where faiss is missing).
Similar pairs are gathered in blocks and compacted to a forest when they pile up, so memory
stays O(n + MAX_EDGES) beyond the vectors (and, for "ivf", the index's float32 copy of them).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from vidclust.clustering.clusterer import BLOCK, distances_to_centers, faiss_available
from vidclust.errors import VidclustError
from vidclust.clustering.principal_axes import principal_axes
from vidclust.vectors import l2_normalise

INDEX_ABOVE = 50_000  # "auto": exact search up to this many vectors, the cells search above
NPROBE = 8  # cells a vector probes (its own and 7 more): recall 1.0 of planted copies at 1M
SKETCH_DIM = 64  # "cells" compares principal-axis sketches of this size, then checks on the full vectors
MAX_EDGES = 4_000_000  # similar pairs held before they are compacted to one edge per video
SEARCHES = ("auto", "exact", "cells", "ivf")


class NearDuplicates(NamedTuple):
    groups: np.ndarray  # int32 [n]: group id (0.. in order of each group's first row), -1 = none
    best: np.ndarray  # float32 [n]: each row's highest similarity to another row of its group
    search: str  # exact | cells | ivf


class _Edges:
    """Similar pairs collected block by block; compacted to a forest when they pile up, so
    memory stays O(n + MAX_EDGES) however many pairs there are."""

    def __init__(self, n: int, max_edges: Optional[int] = None):
        self.n = n
        self.max_edges = MAX_EDGES if max_edges is None else max_edges
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.count = 0
        self.best = np.full(n, -np.inf, dtype=np.float32)  # each video's best similar neighbour

    def add(self, i: np.ndarray, j: np.ndarray, sim: np.ndarray) -> None:
        if len(i) == 0:
            return
        self.rows.append(i)
        self.cols.append(j)
        self.count += len(i)
        np.maximum.at(self.best, i, sim)
        np.maximum.at(self.best, j, sim)
        if self.count > self.max_edges + self.n:
            comp = self.components()
            _, first = np.unique(comp, return_index=True)  # one node stands for its component
            self.rows, self.cols = [np.arange(self.n)], [first[comp]]  # star: every node -> it
            self.count = self.n

    def components(self) -> np.ndarray:
        """Connected components (union-find over the pairs) as one label per video."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        if not self.rows:
            return np.arange(self.n)
        r, c = np.concatenate(self.rows), np.concatenate(self.cols)
        graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(self.n, self.n))
        return connected_components(graph, directed=False)[1]


def _rows(vectors: np.ndarray, idx) -> np.ndarray:
    return l2_normalise(vectors[idx], np.float32)


def _compare(vec: np.ndarray, q: np.ndarray, cands: np.ndarray, threshold: float, edges: _Edges,
             upper: bool, block: int) -> None:
    """Pairs (a in q, b in cands) with cosine >= threshold, blockwise. With `upper`, q and cands
    are the same index set and each pair is looked at once."""
    for qs in range(0, len(q), block):
        qi = q[qs:qs + block]
        qv = _rows(vec, qi)
        start = qs if upper else 0
        for cs in range(start, len(cands), block):
            ci = cands[cs:cs + block]
            sim = qv @ _rows(vec, ci).T
            a, b = np.nonzero(sim >= threshold)
            if upper and cs == qs:
                keep = a < b
                a, b = a[keep], b[keep]
            if len(a):
                edges.add(qi[a], ci[b], sim[a, b])


def _exact(vectors: np.ndarray, threshold: float, centers: Optional[np.ndarray], block: int,
           edges: _Edges) -> None:
    n = len(vectors)
    if centers is None or len(centers) < 2:
        everything = np.arange(n)
        _compare(vectors, everything, everything, threshold, edges, upper=True, block=block)
        return
    # a pair at distance eps whose nearest centres are A and B has d(b, A) - d(b, B) <= 2 eps
    eps = math.sqrt(max(0.0, 2.0 - 2.0 * threshold)) + 1e-3  # |a-b| for unit vectors, slack
    dist = np.empty((n, len(centers)), dtype=np.float32)
    for s in range(0, n, BLOCK):
        dist[s:s + BLOCK] = distances_to_centers(l2_normalise(vectors[s:s + BLOCK], np.float32), centers)
    own = dist.argmin(axis=1)
    own_d = dist[np.arange(n), own]
    for c in range(len(centers)):
        members = np.flatnonzero(own == c)
        if len(members) == 0:
            continue
        _compare(vectors, members, members, threshold, edges, upper=True, block=block)
        # pairs across two clusters are looked at from the lower-numbered one only
        near = np.flatnonzero((own > c) & (dist[:, c] - own_d <= 2 * eps))
        if len(near):
            _compare(vectors, members, near, threshold, edges, upper=False, block=block)


def _index(vectors: np.ndarray, threshold: float, edges: _Edges, nprobe: int, nlist: Optional[int],
           seed: int) -> None:
    import faiss

    n, d = vectors.shape
    if nlist is None:
        nlist = int(min(max(2 * math.sqrt(n), 1), 16_384))
    nlist = max(1, min(nlist, n // 4 if n >= 4 else 1))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    train_n = min(n, max(32 * nlist, 10_000))
    idx = np.sort(np.random.default_rng(seed).choice(n, size=train_n, replace=False))
    index.cp.seed = int(seed)
    index.cp.niter = 10
    index.cp.min_points_per_centroid = 1  # no warning when the sample is < 39 per list
    index.train(l2_normalise(vectors[idx], np.float32))
    for s in range(0, n, BLOCK):
        index.add(l2_normalise(vectors[s:s + BLOCK], np.float32))
    index.nprobe = int(min(nprobe, nlist))
    radius = float(threshold) - 1e-6  # range search keeps similarity > radius; checked >= below
    for s in range(0, n, BLOCK):
        lims, sims, ids = index.range_search(l2_normalise(vectors[s:s + BLOCK], np.float32), radius)
        lims = lims.astype(np.int64)
        q = s + np.repeat(np.arange(len(lims) - 1, dtype=np.int64), np.diff(lims))
        keep = (ids > q) & (sims >= threshold)  # each pair once (as found from its lower row)
        edges.add(q[keep], ids[keep].astype(np.int64), sims[keep])
    del index


def _sketch(vectors: np.ndarray, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(z [n, dim] float32, |z|^2): the unit rows projected on the top `dim` principal axes of a
    sample. An orthogonal projection never lengthens a difference, so |za - zb| <= |a - b|: a
    pair within distance eps stays within eps in the sketch (no near-duplicate is lost by it),
    while unrelated pairs, whose difference has most of its length in the principal axes, stay
    far apart. n x dim floats: an eighth of the vectors at dim 64 of 512."""
    n, d = vectors.shape
    sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, 20_000), replace=False))
    sample = l2_normalise(vectors[sample], np.float32)
    _, axes = principal_axes(sample, dim)  # [d, dim]; the mean does not move a difference
    z = np.empty((n, axes.shape[1]), dtype=np.float32)
    for s in range(0, n, BLOCK):
        z[s:s + BLOCK] = l2_normalise(vectors[s:s + BLOCK], np.float32) @ axes
    return z, np.einsum("ij,ij->i", z, z)


DENSE_SHARE = 0.02  # a block pair whose sketches pass this often is compared on the full vectors


def _candidates(vectors: np.ndarray, z: np.ndarray, zz: np.ndarray, q: np.ndarray, cands: np.ndarray,
                eps2: float, threshold: float, edges: _Edges, upper: bool,
                block: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a in q, b in cands) whose sketches lie within sqrt(eps2), blockwise; with `upper`,
    q and cands are one set and each pair comes once. Where a block's sketches are too close to
    tell its pairs apart (tight topics: most pairs of one kind of video pass a 64-d sketch), the
    block is compared on the full vectors at once (one matrix product, whose pairs go straight to
    `edges`) instead of sending most of its pairs to be checked one by one: the cost stays that of
    the cells' products however tight the data."""
    rows, cols = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for qs in range(0, len(q), block):
        qi = q[qs:qs + block]
        zq, zqq = z[qi], zz[qi]
        qv = None
        for cs in range(qs if upper else 0, len(cands), block):
            ci = cands[cs:cs + block]
            close = zqq[:, None] + zz[ci][None, :] - 2.0 * (zq @ z[ci].T) <= eps2
            if upper and cs == qs:
                close = np.triu(close, 1)
            if np.count_nonzero(close) > DENSE_SHARE * close.size:
                qv = _rows(vectors, qi) if qv is None else qv
                sim = qv @ _rows(vectors, ci).T
                a, b = np.nonzero(close & (sim >= threshold))
                edges.add(qi[a], ci[b], sim[a, b])
                continue
            a, b = np.nonzero(close)
            rows.append(qi[a])
            cols.append(ci[b])
    return np.concatenate(rows), np.concatenate(cols)


def _verify(vectors: np.ndarray, a: np.ndarray, b: np.ndarray, threshold: float, edges: _Edges) -> None:
    """Keeps the candidate pairs whose full vectors have cosine >= threshold."""
    for s in range(0, len(a), BLOCK):
        aa, bb = a[s:s + BLOCK], b[s:s + BLOCK]
        sim = np.einsum("ij,ij->i", _rows(vectors, aa), _rows(vectors, bb))
        keep = sim >= threshold
        edges.add(aa[keep], bb[keep], sim[keep])


def _cells(vectors: np.ndarray, threshold: float, edges: _Edges, nprobe: int, nlist: Optional[int],
           seed: int, block: int, sketch_dim: int = SKETCH_DIM) -> None:
    """The IVF idea done as a join with matrix products, on a sketch of the vectors: faiss
    k-means puts every sketch in one of `nlist` cells; each cell's members are compared (BLAS,
    blockwise) with each other and with the vectors that visit the cell (each vector visits the
    `nprobe - 1` cells nearest to it after its own, as an IVF query probes lists); the pairs
    within the distance the threshold allows are then checked on the full vectors. A
    near-duplicate pair is missed only when neither vector's probed cells hold the other.
    Cost ~ n * (nlist + nprobe * n / nlist) * sketch_dim, least at nlist ~ sqrt(nprobe * n); holds
    the sketch (n x sketch_dim floats), no copy of the vectors."""
    import faiss

    n, d = vectors.shape
    if d > sketch_dim:
        z, zz = _sketch(vectors, sketch_dim, seed)
    else:
        z = np.empty((n, d), dtype=np.float32)
        for s in range(0, n, BLOCK):
            z[s:s + BLOCK] = l2_normalise(vectors[s:s + BLOCK], np.float32)
        zz = np.einsum("ij,ij->i", z, z)
    dz = z.shape[1]
    eps2 = max(0.0, 2.0 - 2.0 * threshold) * (1 + 1e-3) + 1e-6  # |a - b|^2 of unit rows, slack
    if nlist is None:
        nlist = int(math.sqrt(max(nprobe, 1) * n))
    nlist = max(1, min(nlist, n // 8 if n >= 8 else 1))
    train_n = min(n, max(20 * nlist, 10_000))
    idx = np.sort(np.random.default_rng(seed).choice(n, size=train_n, replace=False))
    km = faiss.Kmeans(dz, nlist, niter=8, seed=int(seed), verbose=False,
                      max_points_per_centroid=max(20, train_n // nlist + 1), min_points_per_centroid=1)
    km.train(np.ascontiguousarray(z[idx]))
    m = int(min(nprobe, nlist))
    cell = np.empty(n, dtype=np.int32)
    visit_point, visit_cell = [], []
    for s in range(0, n, BLOCK):  # each vector's m nearest cells: its own, and m - 1 it visits
        probe = km.index.search(z[s:s + BLOCK], m)[1]
        cell[s:s + len(probe)] = probe[:, 0]
        other = (probe[:, 1:] >= 0) & (probe[:, 1:] != probe[:, :1])
        rows, cols = np.nonzero(other)
        visit_point.append((s + rows).astype(np.int32))
        visit_cell.append(probe[:, 1:][rows, cols].astype(np.int32))
    visit_point, visit_cell = np.concatenate(visit_point), np.concatenate(visit_cell)
    by_cell = np.argsort(visit_cell, kind="stable")
    visit_point = visit_point[by_cell]
    visit_starts = np.concatenate([[0], np.cumsum(np.bincount(visit_cell, minlength=nlist))])
    del visit_cell, by_cell
    order = np.argsort(cell, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=nlist))])
    found_a, found_b, held = [], [], 0
    for c in range(nlist):
        mc = order[starts[c]:starts[c + 1]]
        if len(mc) == 0:
            continue
        parts = [_candidates(vectors, z, zz, mc, mc, eps2, threshold, edges, True, block)]
        visitors = visit_point[visit_starts[c]:visit_starts[c + 1]]
        if len(visitors):  # a pair may be found from both sides: a repeated edge changes nothing
            parts.append(_candidates(vectors, z, zz, visitors.astype(np.int64), mc, eps2, threshold, edges,
                                          False, block))
        for pa_, pb_ in parts:
            if len(pa_):
                found_a.append(pa_)
                found_b.append(pb_)
                held += len(pa_)
        if held >= BLOCK * 16:  # checked on the full vectors in batches
            _verify(vectors, np.concatenate(found_a), np.concatenate(found_b), threshold, edges)
            found_a, found_b, held = [], [], 0
    if found_a:
        _verify(vectors, np.concatenate(found_a), np.concatenate(found_b), threshold, edges)


def near_duplicate_search(vectors: np.ndarray, threshold: float = 0.98, *, search: str = "auto",
                          centers: Optional[np.ndarray] = None, index_above: int = INDEX_ABOVE,
                          nprobe: int = NPROBE, nlist: Optional[int] = None, block: int = 2048,
                          seed: int = 28, max_edges: Optional[int] = None) -> NearDuplicates:
    """Near-duplicate groups of the rows of `vectors` [n, D] (float32 or float16; normalised
    here block by block, never copied whole) with the best similarity of each row and the
    search that ran. See the module docstring for the searches."""
    if search not in SEARCHES:
        raise VidclustError(f"unknown near-duplicate search {search!r}: one of {', '.join(SEARCHES)}")
    n = len(vectors)
    if search == "auto":
        search = "cells" if n > index_above and faiss_available() else "exact"
    if search in ("cells", "ivf") and not faiss_available():
        raise VidclustError(f"the {search} near-duplicate search needs faiss: pip install faiss-cpu")
    threshold = float(threshold)
    edges = _Edges(n, max_edges)
    if n >= 2:
        if search == "exact":
            _exact(vectors, threshold, centers, block, edges)
        elif search == "cells":
            _cells(vectors, threshold, edges, nprobe, nlist, seed, block)
        else:
            _index(vectors, threshold, edges, nprobe, nlist, seed)
    comp = edges.components()
    sizes = np.bincount(comp, minlength=n)
    groups = np.full(n, -1, dtype=np.int32)
    has = sizes[comp] >= 2
    if has.any():
        _, first, inverse = np.unique(comp[has], return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))  # groups numbered in order of their first row
        groups[has] = order[inverse]
    best = np.minimum(edges.best, 1.0)
    best[~has] = np.nan
    return NearDuplicates(groups, best.astype(np.float32), search)


def near_duplicates(vectors: np.ndarray, threshold: float = 0.98, **kwargs) -> np.ndarray:
    """One group id per row (int32; groups numbered 0.. in order of their first row), -1 where a
    row has no near-duplicate (no other row with cosine >= `threshold`, transitively).
    Keyword arguments: those of `near_duplicate_search` (search="auto"|"exact"|"index", centers,
    index_above, nprobe, nlist, block, seed)."""
    return near_duplicate_search(vectors, threshold, **kwargs).groups


def representatives(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, position among the kept rows of each row's representative): a near-duplicate
    group (groups >= 0) is represented by its first row, a row without one by itself."""
    groups = np.asarray(groups)
    n = len(groups)
    rep = np.arange(n)
    has = np.flatnonzero(groups >= 0)
    if len(has):
        _, first = np.unique(groups[has], return_index=True)
        first_row = np.empty(int(groups[has].max()) + 1, dtype=np.int64)
        first_row[groups[has[first]]] = has[first]
        rep[has] = first_row[groups[has]]
    keep = np.flatnonzero(rep == np.arange(n))
    position = np.full(n, -1, dtype=np.int64)
    position[keep] = np.arange(len(keep))
    return keep, position[rep]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the pairs grouped together in `truth` that `found` groups together too
    (counted over rows: for each row of a true group, is it with its group's first row?)."""
    truth, found = np.asarray(truth), np.asarray(found)
    has = np.flatnonzero(truth >= 0)
    if len(has) == 0:
        return 1.0
    _, first = np.unique(truth[has], return_index=True)
    anchor = {int(truth[has[f]]): has[f] for f in first}
    rows = np.array([r for r in has if anchor[int(truth[r])] != r])
    if len(rows) == 0:
        return 1.0
    anchors = np.array([anchor[int(truth[r])] for r in rows])
    ok = (found[rows] >= 0) & (found[rows] == found[anchors])
    return float(ok.mean())
