"""Per-video vectors from per-frame embeddings: pool along time, then re-normalise.

`aggregate_frames` is the plain function (an Arrow table of whole videos in, one vector per video
out); `aggregate_with_ray` runs it on Ray Data grouped by video, so the frame table never has to
fit the driver's memory: only the per-video vectors come back.

Strategies:
- `mean` (the notebook's), `max`, `median`: element-wise over a video's frames, then L2-normalised;
- `mean+max`: the L2-normalised mean and the L2-normalised max side by side (2*D values), the
  whole re-normalised, so each half weighs the same.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidclust.errors import VidclustError

log = logging.getLogger("vidclust")

STRATEGIES = ("mean", "max", "median", "mean+max")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def embedding_matrix(column: Any) -> np.ndarray:
    """A column of fixed-size vectors as a float32 [n, D] array.

    Takes an Arrow (chunked) fixed_size_list / list column, Ray's tensor extension column, a
    2-D NumPy array, or a NumPy object array of 1-D arrays (how Ray hands fixed_size_list
    columns over in "numpy" batches)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(column, pa.Array):
        if len(column) == 0:
            return np.zeros((0, _list_size(column.type)), dtype=np.float32)
        if column.null_count:
            raise VidclustError("frame embeddings contain nulls")
        if pa.types.is_fixed_size_list(column.type):
            d = column.type.list_size
            flat = column.flatten()  # honours the array's offset
            return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, d)
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lengths = pc.list_value_length(column).to_numpy()
            if lengths.min() != lengths.max():
                raise VidclustError("frame embeddings have different lengths")
            flat = column.flatten()
            return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, int(lengths[0]))
        if hasattr(column, "to_numpy_ndarray"):  # Ray's ArrowTensorArray
            return np.asarray(column.to_numpy_ndarray(), dtype=np.float32)
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32)
    arr = np.asarray(column)
    if arr.dtype == object:
        if len(arr) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.asarray(v, dtype=np.float32) for v in arr])
    if arr.ndim != 2:
        raise VidclustError(f"expected a 2-D array of embeddings, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def _list_size(t: pa.DataType) -> int:
    return t.list_size if pa.types.is_fixed_size_list(t) else 0


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


def aggregate_frames(table: pa.Table, strategy: str) -> tuple[list[str], np.ndarray]:
    """(video_ids sorted, float32 [n_videos, D] or [n_videos, 2*D] for mean+max).

    `table` holds whole videos: columns `video_id` and `embedding`, and optionally
    `frame_index`; a frame that appears twice (same video_id and frame_index) counts once, and
    frames are pooled in frame order so results do not depend on row order."""
    if strategy not in STRATEGIES:
        raise VidclustError(f"unknown aggregation {strategy!r}: one of {', '.join(STRATEGIES)}")
    for name in ("video_id", "embedding"):
        if name not in table.column_names:
            raise VidclustError(f"frame table has no {name!r} column")
    if table.num_rows == 0:
        d = _list_size(table.schema.field("embedding").type)
        width = 2 * d if strategy == "mean+max" else d
        return [], np.zeros((0, width), dtype=np.float32)
    ids = np.asarray(table.column("video_id").to_pylist(), dtype=object)
    has_index = "frame_index" in table.column_names
    frame_index = table.column("frame_index").to_numpy() if has_index else np.zeros(len(ids), np.int64)
    order = np.lexsort((frame_index, ids.astype(str)))  # by video, then frame
    ids = ids[order]
    frame_index = frame_index[order]
    emb = embedding_matrix(table.column("embedding"))[order]
    if has_index:  # drop repeated (video_id, frame_index) rows: a frame counts once
        same = np.zeros(len(ids), dtype=bool)
        same[1:] = (ids[1:] == ids[:-1]) & (frame_index[1:] == frame_index[:-1])
        if same.any():
            keep = ~same
            ids, emb = ids[keep], emb[keep]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    width = emb.shape[1] * (2 if strategy == "mean+max" else 1)
    out = np.empty((len(starts), width), dtype=np.float32)
    for i, (s, e) in enumerate(zip(starts, ends)):
        out[i] = pool(emb[s:e], strategy)
    return [str(v) for v in ids[starts]], out


def vectors_table(video_ids: Sequence[str], vectors: np.ndarray, *, column: str = "vector") -> pa.Table:
    """(video_id string, `column` fixed_size_list<float32>[D]) table."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    d = vectors.shape[1] if vectors.ndim == 2 else 0
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    return pa.table({
        "video_id": pa.array(list(video_ids), type=pa.string()),
        column: pa.FixedSizeListArray.from_arrays(flat, d),
    })


def _aggregate_group(group: pa.Table, strategy: str) -> pa.Table:
    ids, vectors = aggregate_frames(group, strategy)
    return vectors_table(ids, vectors)


def _keep_videos(batch: pa.Table, video_ids: pa.Array) -> pa.Table:
    return batch.filter(pc.is_in(batch.column("video_id"), value_set=video_ids))


def aggregate_with_ray(
    frame_files: list[str],
    strategy: str,
    *,
    filesystem: Optional[Any] = None,
    only_video_ids: Optional[Iterable[str]] = None,
    num_partitions: Optional[int] = None,
) -> tuple[list[str], np.ndarray]:
    """Aggregate the frames in `frame_files` per video on Ray Data (Ray must be initialised).

    Reads only `video_id`, `frame_index`, `embedding`; groups by video on the cluster; only the
    per-video vectors reach the driver. `only_video_ids` restricts the work to those videos.
    Returns (video_ids sorted, float32 vectors in the same order)."""
    import ray

    if strategy not in STRATEGIES:
        raise VidclustError(f"unknown aggregation {strategy!r}: one of {', '.join(STRATEGIES)}")
    if not frame_files:
        raise VidclustError("no frame files to aggregate")
    ds = ray.data.read_parquet(list(frame_files), filesystem=filesystem, file_extensions=None)
    ds = ds.select_columns(["video_id", "frame_index", "embedding"])  # pushed down into the read
    if only_video_ids is not None:
        wanted = pa.array(sorted(set(only_video_ids)), type=pa.string())
        if len(wanted) == 0:
            return [], np.zeros((0, 0), dtype=np.float32)
        ds = ds.map_batches(_keep_videos, batch_format="pyarrow", fn_kwargs={"video_ids": wanted})
    if num_partitions is None:
        num_partitions = _default_partitions(frame_files, filesystem)
    out = ds.groupby("video_id", num_partitions=num_partitions).map_groups(
        _aggregate_group, batch_format="pyarrow", fn_kwargs={"strategy": strategy}
    )
    tables = [t for t in ray.get(out.to_arrow_refs()) if t.num_rows]
    if not tables:
        return [], np.zeros((0, 0), dtype=np.float32)
    result = pa.concat_tables(tables)
    order = pc.sort_indices(result, sort_keys=[("video_id", "ascending")])
    result = result.take(order)
    ids = result.column("video_id").to_pylist()
    if len(set(ids)) != len(ids):  # cannot happen with a correct groupby; never let it pass
        raise RuntimeError("aggregation returned a video twice")
    return ids, embedding_matrix(result.column("vector"))


def _default_partitions(frame_files: Sequence[str], filesystem: Any) -> int:
    """About one shuffle partition per 128 MiB of Parquet, at least one per CPU, at most 200."""
    import ray

    total = 0
    try:
        import pyarrow.fs as pafs

        fs = filesystem or pafs.LocalFileSystem()
        total = sum(max(i.size or 0, 0) for i in fs.get_file_info(list(frame_files)))
    except Exception:  # sizes are only a hint
        pass
    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    return int(min(200, max(1, cpus, math.ceil(total / (128 << 20)))))
