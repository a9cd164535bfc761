"""Per-video aggregation: the plain function against NumPy ground truth, and the Ray Data wiring
on real Parquet files (a video's frames split across files, shuffled, one frame written twice)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidclust.clustering.aggregate import STRATEGIES, aggregate_frames, aggregate_with_ray
from vidclust.store.contract import embedding_matrix
from vidclust.errors import VidclustError

D = 8


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def expected(frames: np.ndarray, strategy: str) -> np.ndarray:
    """Ground truth written the obvious way, independently of the module."""
    if strategy == "mean":
        return _unit(frames.mean(0))
    if strategy == "max":
        return _unit(frames.max(0))
    if strategy == "median":
        return _unit(np.median(frames, 0))
    return _unit(np.concatenate([_unit(frames.mean(0)), _unit(frames.max(0))]))


def frames_table(rows: list[tuple[str, int, np.ndarray]]) -> pa.Table:
    emb = np.stack([r[2] for r in rows]).astype(np.float32)
    return pa.table({
        "video_id": pa.array([r[0] for r in rows], pa.string()),
        "frame_index": pa.array([r[1] for r in rows], pa.int32()),
        "timestamp_s": pa.array([r[1] / 25.0 for r in rows], pa.float32()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), pa.float32()), D),
    })


@pytest.fixture(scope="module")
def videos() -> dict[str, np.ndarray]:
    """video_id -> its frames [n_frames, D] (unit vectors), 1 to 7 frames each."""
    rng = np.random.default_rng(3)
    return {f"vid{i:03d}": _unit(rng.normal(size=(int(rng.integers(1, 8)), D))).astype(np.float32)
            for i in range(30)}


def shuffled_rows(videos: dict[str, np.ndarray], seed: int = 0) -> list[tuple[str, int, np.ndarray]]:
    rows = [(vid, 10 * j, f) for vid, frames in videos.items() for j, f in enumerate(frames)]
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in order]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_aggregate_frames_matches_numpy_per_video(videos, strategy):
    ids, vectors = aggregate_frames(frames_table(shuffled_rows(videos)), strategy)
    assert ids == sorted(videos)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(videos), 2 * D if strategy == "mean+max" else D)
    for vid, v in zip(ids, vectors):
        np.testing.assert_allclose(v, expected(videos[vid], strategy), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_strategies_differ_and_mean_is_order_independent(videos):
    rows = shuffled_rows(videos, seed=1)
    results = {s: aggregate_frames(frames_table(rows), s)[1] for s in ("mean", "max", "median")}
    assert not np.allclose(results["mean"], results["max"])
    assert not np.allclose(results["mean"], results["median"])
    # same frames in another row order: bit-identical vectors
    again = aggregate_frames(frames_table(shuffled_rows(videos, seed=2)), "mean")[1]
    assert np.array_equal(results["mean"], again)


def test_a_frame_written_twice_counts_once():
    a = np.array([[1, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]], np.float32)
    rows = [("v", 0, a[0]), ("v", 10, a[1]), ("v", 10, a[1]), ("v", 10, a[1])]
    _, vec = aggregate_frames(frames_table(rows), "mean")
    np.testing.assert_allclose(vec[0], expected(a, "mean"), atol=1e-6)


def test_unknown_strategy_and_missing_columns_are_clear_errors(videos):
    with pytest.raises(VidclustError, match="aggregation"):
        aggregate_frames(frames_table(shuffled_rows(videos)), "mode")
    with pytest.raises(VidclustError, match="embedding"):
        aggregate_frames(pa.table({"video_id": ["a"]}), "mean")


def test_embedding_matrix_reads_every_shape_a_column_arrives_in():
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    fsl = pa.FixedSizeListArray.from_arrays(pa.array(m.ravel()), 3)
    np.testing.assert_array_equal(embedding_matrix(fsl), m)
    np.testing.assert_array_equal(embedding_matrix(fsl.slice(1, 2)), m[1:3])  # offset honoured
    np.testing.assert_array_equal(embedding_matrix(pa.chunked_array([fsl.slice(0, 1), fsl.slice(1)])), m)
    np.testing.assert_array_equal(embedding_matrix(pa.array(m.tolist(), pa.list_(pa.float32()))), m)
    obj = np.empty(4, dtype=object)
    obj[:] = list(m)
    np.testing.assert_array_equal(embedding_matrix(obj), m)  # Ray's numpy batches
    np.testing.assert_array_equal(embedding_matrix(m.astype(np.float64)), m)


def _write_parts(tmp_path, videos) -> list[str]:
    """Three Parquet files: rows shuffled, so most videos have frames in several files; one
    frame of the first video is written twice (in two files)."""
    rows = shuffled_rows(videos, seed=5)
    first = sorted(videos)[0]
    rows.append((first, 0, videos[first][0]))
    paths = []
    for i, part in enumerate(np.array_split(np.arange(len(rows)), 3)):
        p = tmp_path / f"part-{i}.parquet"
        pq.write_table(frames_table([rows[j] for j in part]), p)
        paths.append(str(p))
    return paths


def test_aggregate_with_ray_groups_frames_per_video_across_files(ray_local, tmp_path, videos):
    paths = _write_parts(tmp_path, videos)
    for strategy in STRATEGIES:
        ids, vectors = aggregate_with_ray(paths, strategy)
        assert ids == sorted(videos), strategy
        for vid, v in zip(ids, vectors):
            np.testing.assert_allclose(v, expected(videos[vid], strategy), atol=1e-5, err_msg=f"{strategy} {vid}")


def test_aggregate_with_ray_only_some_videos(ray_local, tmp_path, videos):
    paths = _write_parts(tmp_path, videos)
    wanted = sorted(videos)[3:6]
    ids, vectors = aggregate_with_ray(paths, "mean", only_video_ids=wanted + ["not-there"])
    assert ids == wanted
    for vid, v in zip(ids, vectors):
        np.testing.assert_allclose(v, expected(videos[vid], "mean"), atol=1e-5)
