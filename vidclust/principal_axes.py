"""The top principal axes of a set of vectors: the low-dimensional sketches of the near-duplicate
search and of the map's neighbour placement are projections onto them."""
from __future__ import annotations

import numpy as np


def principal_axes(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], axes [D, <= dim] float32, orthonormal columns): the top `dim` principal axes of
    the rows of `x` (a sample: the SVD holds a centred copy of it)."""
    mean = x.mean(axis=0)
    axes = np.linalg.svd(x - mean, full_matrices=False)[2][:dim].T.astype(np.float32)
    return mean, axes
