"""Unit-length rows: the frame embeddings, the per-video vectors, the centres and the text
embeddings are compared by cosine, that is as dot products of L2-normalised rows."""
from __future__ import annotations

from typing import Optional

import numpy as np


def l2_normalise(vectors: np.ndarray, dtype: Optional[np.dtype] = None) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), computed in `dtype` (None: the
    input's own)."""
    vectors = np.asarray(vectors, dtype=dtype)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)
