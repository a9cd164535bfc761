"""How a video's frame embeddings become its one vector: pool along time, then re-normalise.

Strategies (cluster.aggregation; config.py imports the list from here):
- `mean` (the notebook's), `max`, `median`: element-wise over a video's frames, then L2-normalised;
- `mean+max`: the L2-normalised mean and the L2-normalised max side by side (2*D values), the
  whole re-normalised, so each half weighs the same.

NumPy only: vidclust.aggregate runs it over the frame files (on Ray Data).
"""
from __future__ import annotations

import numpy as np

from vidclust.errors import VidclustError
from vidclust.vectors import l2_normalise

STRATEGIES = ("mean", "max", "median", "mean+max")


def pool(frames: np.ndarray, strategy: str) -> np.ndarray:
    """One video's frame embeddings [n_frames, D] -> its unit-length vector [D] ([2*D] for mean+max)."""
    if strategy == "mean":
        v = frames.mean(axis=0, dtype=np.float64)
    elif strategy == "max":
        v = frames.max(axis=0).astype(np.float64)
    elif strategy == "median":
        v = np.median(frames.astype(np.float64), axis=0)
    elif strategy == "mean+max":
        mean = l2_normalise(frames.mean(axis=0, dtype=np.float64)[None])[0]
        mx = l2_normalise(frames.max(axis=0).astype(np.float64)[None])[0]
        v = np.concatenate([mean, mx])
    else:
        raise VidclustError(f"unknown aggregation {strategy!r}: one of {', '.join(STRATEGIES)}")
    return l2_normalise(v[None])[0].astype(np.float32)


__all__ = ["STRATEGIES", "pool"]
