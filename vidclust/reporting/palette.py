"""Distinct colours for many clusters.

`distinct_colors(n)` starts with matplotlib's tab10 (its grey left out: grey is the noise colour)
and goes on by farthest-point sampling in OKLab, a colour space where distance follows perceived
difference: each next colour is the sRGB colour, among a grid of them of medium lightness and
clearly coloured (chroma), farthest from every colour before it. So the first colours are the
familiar ones, and 100 clusters get 100 colours no two of which are near each other.
`cluster_colors` gives each cluster id its colour (noise grey), `hex_color` writes one for HTML.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

# matplotlib's tab10 without its grey (#7f7f7f): blue, orange, green, red, purple, brown, pink, olive, cyan
TAB10_WITHOUT_GREY = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                      "#bcbd22", "#17becf")
LIGHTNESS = (0.42, 0.80)  # OKLab L of the sampled colours: visible on white, not black
MIN_CHROMA = 0.08  # away from the greys (noise is grey)
NOISE_ID = -1  # cluster id of points a density method left unclustered
NOISE_COLOR = (0.6, 0.6, 0.6, 1.0)


def hex_to_rgb(color: str) -> tuple[float, float, float]:
    return tuple(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


def oklab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..1 (..., 3) -> OKLab (..., 3) (Björn Ottosson's matrices)."""
    rgb = np.asarray(rgb, np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    lms = linear @ np.array([[0.4122214708, 0.2119034982, 0.0883024619],
                             [0.5363325363, 0.6806995451, 0.2817188376],
                             [0.0514459929, 0.1073969566, 0.6299787005]])
    return np.cbrt(lms) @ np.array([[0.2104542553, 1.9779984951, 0.0259040371],
                                    [0.7936177850, -2.4285922050, 0.7827717662],
                                    [-0.0040720468, 0.4505937099, -0.8086757660]])


@lru_cache(maxsize=16)
def distinct_colors(n: int) -> tuple[tuple[float, float, float], ...]:
    """`n` sRGB colours (0..1), each as far in OKLab from all before it as the grid allows."""
    chosen = [hex_to_rgb(c) for c in TAB10_WITHOUT_GREY[:n]]
    if n <= len(chosen):
        return tuple(chosen)
    steps = np.linspace(0.0, 1.0, 18)
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = oklab(grid)
    keep = (lab[:, 0] >= LIGHTNESS[0]) & (lab[:, 0] <= LIGHTNESS[1]) & (np.hypot(lab[:, 1], lab[:, 2]) >= MIN_CHROMA)
    grid, lab = grid[keep], lab[keep]
    nearest = np.min(np.linalg.norm(lab[:, None, :] - oklab(np.array(chosen))[None, :, :], axis=2), axis=1)
    while len(chosen) < n:
        best = int(np.argmax(nearest))  # ties: the first in grid order, so the palette is fixed
        chosen.append(tuple(float(v) for v in grid[best]))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[best], axis=1))
    return tuple(chosen)


def min_distance(colors) -> float:
    """The smallest OKLab distance between two of `colors` (sRGB 0..1)."""
    lab = oklab(np.asarray(colors, np.float64)[:, :3])
    d = np.linalg.norm(lab[:, None, :] - lab[None, :, :], axis=2)
    d[np.diag_indices(len(lab))] = np.inf
    return float(d.min())


def cluster_colors(cluster_ids: Sequence[int]) -> dict[int, tuple]:
    """A distinct RGBA colour per cluster id (grey for noise): tab10 without its grey, then
    farthest-point colours in OKLab (`distinct_colors`), so 100 clusters get 100 distinct ones."""
    ids = sorted(set(int(c) for c in cluster_ids) - {NOISE_ID})
    out: dict[int, tuple] = {c: (*rgb, 1.0) for c, rgb in zip(ids, distinct_colors(len(ids)))}
    out[NOISE_ID] = NOISE_COLOR
    return out


def hex_color(color: Sequence[float]) -> str:
    """An RGB(A) colour in 0..1 as `#rrggbb`."""
    r, g, b = (int(round(255 * c)) for c in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"
