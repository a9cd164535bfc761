"""OUT/frames/ is a plain Parquet dataset: every common reader pointed at the folder (or at a glob of
it) sees exactly the committed frame rows, once each, with the documented columns. The run's own
bookkeeping lives in OUT/_vidclust/, where no reader of frames/ looks."""
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidclust.example import write_video

COLUMNS = ["video_id", "frame_index", "timestamp_s", "embedding"]
DIM = 32  # the tiny model's embedding size (tests/conftest.py)


@pytest.fixture(scope="module")
def out(tiny_clip, tmp_path_factory):
    """One real embed run (CLI, its own local Ray) of 4 clips, written as several small files."""
    tmp = tmp_path_factory.mktemp("readers")
    src = tmp / "src"
    for i, n in enumerate((25, 31, 36, 40)):
        write_video(src / f"clip{i}.mp4", n, seed=i)
    out = tmp / "out"
    model_json, ckpt = tiny_clip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_ADDRESS": "local"}
    run = subprocess.run(
        [sys.executable, "-m", "vidclust.cli", "embed", str(src), str(out), "--model", model_json,
         "--pretrained", ckpt, "-q", "--set", "embed.part_max_rows=4",
         "--set", "embed.sampling.frame_interval=5", "--set", "embed.encoder.batch_size=8"],
        env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def expected(out):
    videos = pq.read_table(out / "videos.parquet")
    assert videos.num_rows == 4 and set(videos.column("status").to_pylist()) == {"ok"}
    per_video = dict(zip(videos.column("video_id").to_pylist(), videos.column("n_frames_sampled").to_pylist()))
    # frame_interval=5 over 25..40 frames: 5..8 frames each
    assert per_video == {"clip0": 5, "clip1": 7, "clip2": 8, "clip3": 8}
    pairs = {(v, 5 * k) for v, n in per_video.items() for k in range(n)}
    assert len(pairs) == sum(per_video.values())
    return pairs


def test_frames_folder_holds_only_part_files(out):
    assert (out / "_vidclust").is_dir()
    assert (out / "_vidclust" / "commits").is_dir()
    assert not (out / "_vidclust" / "lock.json").exists(), "the run ended but left its lock"
    entries = sorted(p.name for p in (out / "frames").iterdir())
    assert entries and all(n.startswith("part-") and n.endswith(".parquet") and
                           (out / "frames" / n).is_file() for n in entries), entries
    assert len(entries) >= 3, f"part_max_rows=4 should give several files, got {entries}"


def _check(name: str, table: pa.Table, expected: set) -> None:
    assert sorted(table.column_names) == sorted(COLUMNS), f"{name}: columns {table.column_names}"
    vids = table.column("video_id").to_pylist()
    idx = [int(i) for i in table.column("frame_index").to_pylist()]
    pairs = list(zip(vids, idx))
    assert table.num_rows == len(expected), f"{name}: {table.num_rows} rows, expected {len(expected)}"
    assert len(set(pairs)) == len(pairs), f"{name}: repeated (video_id, frame_index)"
    assert set(pairs) == expected, f"{name}: other rows than committed"
    ts = np.asarray(table.column("timestamp_s").to_pylist(), dtype=np.float64)
    np.testing.assert_allclose(ts, np.asarray(idx) / 25.0, atol=0.05, err_msg=name)
    emb = table.column("embedding").to_pylist()
    assert all(len(e) == DIM for e in emb), f"{name}: embedding not {DIM} values"
    arr = np.asarray(emb, dtype=np.float64)
    assert arr.shape == (len(expected), DIM) and np.isfinite(arr).all(), name
    np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-4, err_msg=name)


def test_duckdb_reads_the_frames(out, expected):
    import duckdb  # in the test extra: a missing reader fails, never skips
    frames = (out / "frames").as_posix()
    con = duckdb.connect()
    for pattern in (f"{frames}/**/*.parquet", f"{frames}/*.parquet"):
        (n,) = con.execute(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall()[0]
        assert n == len(expected), pattern
        (distinct,) = con.execute(
            f"SELECT count(*) FROM (SELECT DISTINCT video_id, frame_index FROM read_parquet('{pattern}'))"
        ).fetchall()[0]
        assert distinct == len(expected), pattern
        (dims,) = con.execute(f"SELECT list(DISTINCT len(embedding)) FROM read_parquet('{pattern}')").fetchall()[0]
        assert dims == [DIM], pattern
        rel = con.sql(f"SELECT * FROM read_parquet('{pattern}')")
        table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()
        _check(f"duckdb {pattern}", table, expected)


def test_polars_reads_the_frames(out, expected):
    import polars as pl
    frames = out / "frames"
    for name, df in (("polars scan dir", pl.scan_parquet(f"{frames}/").collect()),
                     ("polars read glob", pl.read_parquet(f"{frames}/*.parquet"))):
        assert df.height == len(expected), name
        assert df.select(["video_id", "frame_index"]).is_duplicated().sum() == 0, name
        emb = df["embedding"].dtype
        assert isinstance(emb, pl.Array) and emb.size == DIM and emb.inner == pl.Float32, f"{name}: {emb}"
        _check(name, df.to_arrow(), expected)


def test_pandas_reads_the_frames(out, expected):
    import pandas as pd

    df = pd.read_parquet(f"{out / 'frames'}/")
    assert len(df) == len(expected)
    assert not df.duplicated(["video_id", "frame_index"]).any()
    assert {len(e) for e in df["embedding"]} == {DIM}
    _check("pandas", pa.Table.from_pandas(df, preserve_index=False).select(COLUMNS), expected)


def test_pyarrow_reads_the_frames(out, expected):
    table = pq.read_table(f"{out / 'frames'}/")
    t = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(t) and t.list_size == DIM and t.value_type == pa.float32()
    assert table.schema.field("frame_index").type == pa.int32()
    _check("pyarrow", table, expected)
