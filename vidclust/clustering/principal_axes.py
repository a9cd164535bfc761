"""The top principal axes of a set of vectors: the low-dimensional sketches of the near-duplicate
search and of the map's neighbour placement are projections onto them."""
from __future__ import annotations

import numpy as np


def principal_axes(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], axes [D, <= dim] float32, orthonormal columns): the top `dim` principal axes of
    the rows of `x` (a sample), as eigenvectors of its D x D covariance, largest first. The same
    axes as the SVD of the centred rows (up to sign) at a third of its CPU on 20,000 x 512."""
    mean = x.mean(axis=0)
    centred = np.asarray(x - mean, dtype=np.float64)
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    return mean, np.ascontiguousarray(vectors[:, ::-1][:, :dim]).astype(np.float32)
