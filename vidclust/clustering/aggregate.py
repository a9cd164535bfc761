"""Per-video vectors from per-frame embeddings: pool along time, then re-normalise.

`aggregate_frames` is the plain function (an Arrow table of whole videos in, one vector per video
out); `aggregate_with_ray` runs it as maps over the frame files (no shuffle), so the frame table
never has to fit the driver's memory: only the per-video vectors come back.

The strategies (cluster.aggregation) and the pooling of one video: vidclust.pooling.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidclust.store.contract import embedding_matrix, video_vectors_schema
from vidclust.errors import VidclustError
from vidclust.clustering.pooling import STRATEGIES, pool
from vidclust.vectors import l2_normalise

log = logging.getLogger("vidclust")


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
        t = table.schema.field("embedding").type
        d = t.list_size if pa.types.is_fixed_size_list(t) else 0
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
    }, schema=video_vectors_schema(d, column))


FILE_VIDEOS_SCHEMA = pa.schema([("file", pa.string()), ("video_id", pa.string()), ("n_rows", pa.int64())])


def videos_in_files(batch: dict, filesystem: Any) -> dict:
    """Stage: rows `file` -> rows (file, video_id, n_rows: FILE_VIDEOS_SCHEMA), reading the video_id
    column only."""
    import pyarrow.parquet as pq

    files, vids, counts = [], [], []
    for f in batch["file"]:
        ids = pq.read_table(str(f), columns=["video_id"], filesystem=filesystem).column("video_id")
        vc = pc.value_counts(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids)
        files.extend([str(f)] * len(vc))
        vids.extend(vc.field("values").to_pylist())
        counts.extend(vc.field("counts").to_pylist())
    return {"file": np.array(files, dtype=object), "video_id": np.array(vids, dtype=object),
            "n_rows": np.array(counts, dtype=np.int64)}


COMBINABLE = ("mean", "max", "mean+max")  # pooled from per-file partial sums and maxima


def aggregate_work_item(batch: dict, strategy: str, filesystem: Any) -> pa.Table:
    """Stage: rows (files, video_ids, partial_ids) -> per video (video_id, vector, n, sum, max).

    Reads the item's files once (video_id, frame_index and embedding only). Videos of `video_ids`
    lie wholly in them: their pooled vector. Videos of `partial_ids` (a combinable strategy's
    videos that span files) continue in other files: their frame count, sum and maximum here,
    which `combine_partials` pools once every file's part is in."""
    import pyarrow.parquet as pq

    out = []
    for files, video_ids, partial_ids in zip(batch["files"], batch["video_ids"], batch["partial_ids"]):
        table = pa.concat_tables([pq.read_table(str(f), columns=["video_id", "frame_index", "embedding"],
                                                filesystem=filesystem) for f in files])
        whole = pa.array([str(v) for v in video_ids], pa.string())
        ids, vectors = aggregate_frames(table.filter(pc.is_in(table.column("video_id"), value_set=whole)), strategy)
        out.append(_work_rows(ids, vectors, None))
        if len(partial_ids):
            part = table.filter(pc.is_in(table.column("video_id"), value_set=pa.array(
                [str(v) for v in partial_ids], pa.string())))
            out.append(_work_rows(*partial_stats(part)))
    return pa.concat_tables(out)


def partial_stats(table: pa.Table) -> tuple[list[str], np.ndarray, tuple]:
    """Per video of `table`: (ids, sums float64 [n, D], (counts, maxima [n, D], frame indices)),
    repeated frames once."""
    ids = np.asarray(table.column("video_id").to_pylist(), dtype=object).astype(str)
    idx = table.column("frame_index").to_numpy()
    order = np.lexsort((idx, ids))
    ids, idx = ids[order], idx[order]
    emb = embedding_matrix(table.column("embedding"))[order]
    keep = np.r_[True, (ids[1:] != ids[:-1]) | (idx[1:] != idx[:-1])]
    ids, emb = ids[keep], emb[keep]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    sums = np.add.reduceat(emb.astype(np.float64), starts, axis=0)
    maxima = np.maximum.reduceat(emb, starts, axis=0)
    counts = np.diff(np.r_[starts, len(ids)])
    frames = np.split(idx[keep], starts[1:])
    return [str(v) for v in ids[starts]], sums, (counts, maxima, frames)


def _work_rows(ids, vectors, stats) -> pa.Table:
    """Rows of either kind: final vectors (stats None) or partial sums, counts and maxima."""
    n = len(ids)
    if stats is None:
        vec = vectors_table(ids, vectors)
        return pa.table({"video_id": vec.column("video_id"), "vector": vec.column("vector").cast(pa.list_(pa.float32())),
                         "n": pa.nulls(n, pa.int64()), "sum": pa.nulls(n, pa.list_(pa.float64())),
                         "max": pa.nulls(n, pa.list_(pa.float32())), "frames": pa.nulls(n, pa.list_(pa.int64()))})
    counts, maxima, frames = stats
    return pa.table({"video_id": pa.array(ids, pa.string()), "vector": pa.nulls(n, pa.list_(pa.float32())),
                     "n": pa.array(counts, pa.int64()), "sum": pa.array(list(vectors), pa.list_(pa.float64())),
                     "max": pa.array(list(maxima), pa.list_(pa.float32())),
                     "frames": pa.array([f.astype(np.int64) for f in frames], pa.list_(pa.int64()))})


def combine_partials(partials: pa.Table, strategy: str) -> tuple[list[str], np.ndarray, list[str]]:
    """Pool the videos whose frames span files from their per-file (n, sum, max) parts. Returns
    (ids, vectors, repeated): `repeated` are videos with a frame in two files (frames/ of vidclust
    never has one), left out here: pool them from their frames."""
    if partials.num_rows == 0:
        return [], np.zeros((0, 0), np.float32), []
    by_video: dict[str, list] = {}
    for v, f in zip(partials.column("video_id").to_pylist(), partials.column("frames").to_pylist()):
        by_video.setdefault(v, []).extend(f)
    repeated = sorted(v for v, f in by_video.items() if len(f) != len(set(f)))
    if repeated:
        partials = partials.filter(pc.invert(pc.is_in(partials.column("video_id"), pa.array(repeated, pa.string()))))
        if partials.num_rows == 0:
            return [], np.zeros((0, 0), np.float32), repeated
    ids = np.asarray(partials.column("video_id").to_pylist(), dtype=object)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    n = partials.column("n").to_numpy()[order]
    sums = np.stack(partials.column("sum").to_numpy(zero_copy_only=False))[order]
    maxima = np.stack(partials.column("max").to_numpy(zero_copy_only=False))[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    total = np.add.reduceat(n, starts)
    mean = np.add.reduceat(sums, starts, axis=0) / total[:, None]
    mx = np.maximum.reduceat(maxima, starts, axis=0).astype(np.float64)
    if strategy == "mean":
        v = mean
    elif strategy == "max":
        v = mx
    else:  # mean+max
        v = np.concatenate([l2_normalise(mean), l2_normalise(mx)], axis=1)
    return [str(i) for i in ids[starts]], l2_normalise(v).astype(np.float32), repeated


def plan_aggregation(file_videos: pa.Table, by_parts: bool) -> list[dict]:
    """(file, video_id, n_rows) rows -> work items {files, video_ids, partial_ids}. `by_parts`
    (a combinable strategy: mean, max, mean+max): one item per file, so each file is read once,
    the videos that span files pooled from their parts. Otherwise one item per file for the videos
    wholly in it, and one per set of files for videos that span several (few: a file boundary
    cuts at most one video of each write task's batch)."""
    by_video: dict[str, list[str]] = {}
    for f, v in zip(file_videos.column("file").to_pylist(), file_videos.column("video_id").to_pylist()):
        by_video.setdefault(v, []).append(f)
    if by_parts:
        items: dict[str, dict] = {}
        for v, files in by_video.items():
            for f in set(files):
                item = items.setdefault(f, {"files": [f], "video_ids": [], "partial_ids": []})
                item["video_ids" if len(set(files)) == 1 else "partial_ids"].append(v)
        return [{**items[f], "video_ids": sorted(items[f]["video_ids"]),
                 "partial_ids": sorted(items[f]["partial_ids"])} for f in sorted(items)]
    groups: dict[tuple, list[str]] = {}
    for v, files in by_video.items():
        groups.setdefault(tuple(sorted(set(files))), []).append(v)
    return [{"files": list(files), "video_ids": sorted(vids), "partial_ids": []}
            for files, vids in sorted(groups.items())]


def aggregate_with_ray(
    frame_files: list[str],
    strategy: str,
    *,
    filesystem: Optional[Any] = None,
    only_video_ids: Optional[Iterable[str]] = None,
) -> tuple[list[str], np.ndarray]:
    """Per-video vectors of the frames in `frame_files`, as maps over the files (Ray must be
    initialised): no shuffle. First which videos each file holds (the video_id column alone),
    then one task per file pools the videos wholly in it, and one per set of files the videos
    that span them. Only per-video rows reach the driver. `only_video_ids` restricts the work.
    Returns (video_ids sorted, float32 vectors in the same order)."""
    import pyarrow.fs as pafs

    from vidclust.runtime import apply_stage, collect_table, dataset_of_items
    from vidclust.stage import Stage

    if strategy not in STRATEGIES:
        raise VidclustError(f"unknown aggregation {strategy!r}: one of {', '.join(STRATEGIES)}")
    if not frame_files:
        raise VidclustError("no frame files to aggregate")
    fs = filesystem or pafs.LocalFileSystem()
    located = apply_stage(dataset_of_items([{"file": f} for f in frame_files]),
                          Stage("locate", videos_in_files, batch_size=1, kwargs={"filesystem": fs}))
    file_videos = collect_table(located, schema=FILE_VIDEOS_SCHEMA)
    if only_video_ids is not None:
        wanted = pa.array(sorted(set(only_video_ids)), type=pa.string())
        file_videos = file_videos.filter(pc.is_in(file_videos.column("video_id"), value_set=wanted))
    work = plan_aggregation(file_videos, by_parts=strategy in COMBINABLE)
    if not work:
        return [], np.zeros((0, 0), dtype=np.float32)
    stage = Stage("pool", aggregate_work_item, batch_size=1, kwargs={"strategy": strategy, "filesystem": fs})

    def run(items: list[dict]) -> pa.Table:
        return collect_table(apply_stage(dataset_of_items(items), stage))

    result = run(work)
    is_partial = result.column("vector").is_null()
    whole = result.filter(pc.invert(is_partial))
    ids = whole.column("video_id").to_pylist()
    vectors = embedding_matrix(whole.column("vector")).reshape(len(ids), -1)
    span_ids, span_vectors, repeated = combine_partials(result.filter(is_partial), strategy)
    parts = [(ids, vectors), (span_ids, span_vectors)]
    if repeated:  # a frame in two files: those few videos pooled from their frames, once each
        again = run(plan_aggregation(file_videos.filter(pc.is_in(
            file_videos.column("video_id"), pa.array(repeated, pa.string()))), by_parts=False))
        parts.append((again.column("video_id").to_pylist(), embedding_matrix(again.column("vector"))))
    parts = [(i, v) for i, v in parts if len(i)]
    ids = [v for i, _ in parts for v in i]
    vectors = np.concatenate([v.reshape(len(i), -1) for i, v in parts])
    if len(set(ids)) != len(ids):  # cannot happen: a video is whole in one item, or only partial
        raise RuntimeError("aggregation returned a video twice")
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    return [ids[i] for i in order], vectors[order]
