"""The embed stage's write as one object (vidclust.embedding.frame_store.FrameSink), driven without Ray over
real Parquet: its four Datasink verbs and the streaming commits between them, as run_embed calls
them (the driver's verbs here, `write` as a write task would, on a pickled copy)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest

from vidclust.store.contract import MARKER, STATUS_INFO_SCHEMA, BatchSchemaError, check_batch, decoded_schema
from vidclust.errors import VidclustError
from vidclust.embedding.frame_store import FrameSink, read_state
from vidclust.store.layout import OutputLayout

DIM = 4
SIGNATURE = {"model": "tiny", "sampling": {"frame_interval": 5}}


def status(video_id: str, n: int, ok: bool = True) -> dict:
    """A status row's info as the decoder and encoder leave it: every declared key."""
    info = {name: None for name in STATUS_INFO_SCHEMA.names}
    info.update(status="ok" if ok else "failed", error=None if ok else "not a video", n_emitted=n if ok else 0,
                index_sum=sum(range(n)) if ok else 0, path=f"/videos/{video_id}.mp4", captions=[f"{video_id} cap"],
                codec="h264", encoder_node_id="node-1")
    return info


def encoded(rows: list[tuple]) -> dict[str, np.ndarray]:
    """An encoder's output batch: rows (video_id, frame_index) are frames, (video_id, info) status rows."""
    vids, idx, info = [], [], []
    for vid, what in rows:
        vids.append(vid)
        idx.append(MARKER if isinstance(what, dict) else what)
        info.append(json.dumps(what) if isinstance(what, dict) else "")
    emb = np.zeros((len(rows), DIM), np.float32)
    emb[:, 0] = 1.0
    return {"video_id": np.array(vids, dtype=object), "frame_index": np.array(idx, np.int32),
            "timestamp_s": np.array(idx, np.float32) / 2, "info": np.array(info, dtype=object), "embedding": emb}


def frames_in(layout: OutputLayout) -> dict[str, list[int]]:
    table = pq.read_table(layout.frames_dir)
    out: dict[str, list[int]] = {}
    for v, f in zip(table.column("video_id").to_pylist(), table.column("frame_index").to_pylist()):
        out.setdefault(v, []).append(f)
    return {v: sorted(f) for v, f in out.items()}


def test_the_sink_commits_as_it_goes_survives_a_failure_and_a_restart_skips_what_it_committed(tmp_path):
    layout = OutputLayout.open(str(tmp_path / "out"))
    done_seen = []
    sink = FrameSink(layout, SIGNATURE, DIM, commit_seconds=0, on_video=lambda vid, info: done_seen.append(vid))
    assert sink.on_write_start().num_rows == 0
    task = pickle.loads(pickle.dumps(sink))  # what Ray ships to a write task: OUT and the schema only
    assert task.layout is None and not hasattr(task, "pending")

    # batch 1: a whole, b's first frames; batch 2: b's last frame and its status, c without its status, d failed
    sink.on_write_returned(task.write(encoded([("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1),
                                               ("a", status("a", 3))])))
    assert read_state(layout).column("video_id").to_pylist() == ["a"]  # committed while the job runs
    sink.on_write_returned(task.write(encoded([("b", 2), ("b", status("b", 3)), ("c", 0), ("c", 1),
                                               ("d", status("d", 0, ok=False))])))
    task.write(encoded([("e", 0), ("e", 1)]))  # a write task that died before its rows came back

    sink.on_write_failed(RuntimeError("a node was lost"))
    assert sink.incomplete == ["c"] and sorted(done_seen) == ["a", "b", "d"]
    assert sink.counts == {"ok": 2, "failed": 1, "frames": 6, "rows_received": 7}
    assert sink.failures == [("d", "not a video")]
    state = read_state(layout)
    assert dict(zip(state.column("video_id").to_pylist(), state.column("status").to_pylist())) == \
        {"a": "ok", "b": "ok", "d": "failed"}
    assert state.column("captions").to_pylist()[0] == ["a cap"] and state.column("codec").to_pylist()[0] == "h264"
    assert state.column("n_frames_sampled").to_pylist() == [3, 3, 0]
    assert set(frames_in(layout)) == {"a", "b", "c", "e"}  # what the failed run left

    # the re-run: the start reconciles (c's and e's rows go) and says what is done, which it skips
    again = FrameSink(layout, SIGNATURE, DIM, commit_seconds=60)
    state = again.on_write_start()
    assert frames_in(layout) == {"a": [0, 1, 2], "b": [0, 1, 2]}
    assert sorted(state.column("video_id").to_pylist()) == ["a", "b", "d"]
    again.on_write_returned(again.write(encoded([("c", 0), ("c", 1), ("c", status("c", 2))])))
    assert read_state(layout).num_rows == 3  # commit_seconds not reached: c waits for the last commit
    videos = again.on_write_complete()
    assert again.incomplete == [] and again.counts["ok"] == 1
    assert dict(zip(videos.column("video_id").to_pylist(), videos.column("status").to_pylist())) == \
        {"a": "ok", "b": "ok", "c": "ok", "d": "failed"}
    assert "files" not in videos.column_names and pq.read_table(layout.videos).num_rows == 4
    assert frames_in(layout) == {"a": [0, 1, 2], "b": [0, 1, 2], "c": [0, 1]}

    # OUT's embeddings now bind its signature
    with pytest.raises(VidclustError, match="already holds embeddings made with other settings"):
        FrameSink(layout, {**SIGNATURE, "model": "other"}, DIM, commit_seconds=0).on_write_start()


def test_batches_are_checked_against_their_declared_schemas(tmp_path):
    layout = OutputLayout.open(str(tmp_path / "out"))
    sink = FrameSink(layout, SIGNATURE, DIM, commit_seconds=0)
    sink.on_write_start()
    batch = encoded([("a", 0), ("a", status("a", 1))])
    batch["frame_index"] = batch["frame_index"].astype(np.int64)
    with pytest.raises(BatchSchemaError, match="write task's input.*frame_index is int64, declared int32"):
        sink.write(batch)
    with pytest.raises(BatchSchemaError, match="embedding missing; frame not declared"):
        sink.write({**{k: v for k, v in encoded([("a", 0)]).items() if k != "embedding"},
                    "frame": np.zeros((1, 8, 8, 3), np.uint8)})
    rows = sink.write(encoded([("a", status("a", 0))]))
    rows["info"] = np.array([json.dumps({"status": "ok"})], dtype=object)
    with pytest.raises(BatchSchemaError, match="status row of a has no error, warning"):
        sink.on_write_returned(rows)
    check_batch({"video_id": np.array(["a"], dtype=object), "frame_index": np.array([0], np.int32),
                 "timestamp_s": np.zeros(1, np.float32), "frame": np.zeros((1, 8, 8, 3), np.uint8),
                 "info": np.array([""], dtype=object)}, decoded_schema(8), "decode")
    with pytest.raises(BatchSchemaError, match=r"frame is uint8\[9,9,3\], declared uint8\[8,8,3\]"):
        check_batch({"video_id": np.array(["a"], dtype=object), "frame_index": np.array([0], np.int32),
                     "timestamp_s": np.zeros(1, np.float32), "frame": np.zeros((1, 9, 9, 3), np.uint8),
                     "info": np.array([""], dtype=object)}, decoded_schema(8), "decode")


def test_a_column_of_nulls_that_ray_hands_back_as_nan_fits_its_declared_type():
    """A write task that wrote no frame returns `file` None in every row; Ray hands that column
    back as NaN floats (a `vidclust run` where every input failed stopped on it)."""
    from vidclust.store.contract import WRITTEN_SCHEMA

    rows = {"video_id": np.array(["a", "b"], dtype=object), "file": np.array([np.nan, np.nan]),
            "n_rows": np.zeros(2, np.int64), "index_sum": np.zeros(2, np.int64),
            "info": np.array(["{}", "{}"], dtype=object)}
    check_batch(rows, WRITTEN_SCHEMA, "the write tasks' rows")
    rows["file"] = np.array([np.nan, 1.0])  # a float column with a value is still not a string
    with pytest.raises(BatchSchemaError, match="file is double, declared string"):
        check_batch(rows, WRITTEN_SCHEMA, "the write tasks' rows")


def as_ray_hands_back(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A write task's rows as the driver gets them from Ray: a column of None only comes back as
    NaN floats."""
    return {k: np.full(len(v), np.nan) if v.dtype == object and all(x is None for x in v) else v
            for k, v in rows.items()}


def test_rows_of_frames_only_and_of_statuses_only_commit_as_ray_hands_them_back(tmp_path):
    """A write task whose rows are all frames (info NaN) and one whose rows are all statuses
    (file NaN): the video commits with its frames' file only."""
    layout = OutputLayout.open(str(tmp_path / "out"))
    sink = FrameSink(layout, SIGNATURE, DIM, commit_seconds=0)
    sink.on_write_start()
    frames = sink.write(encoded([("a", 0), ("a", 1)]))
    statuses = sink.write(encoded([("a", status("a", 2))]))
    sink.on_write_returned(as_ray_hands_back(frames))
    sink.on_write_returned(as_ray_hands_back(statuses))
    state = read_state(layout)
    assert state.column("video_id").to_pylist() == ["a"] and state.column("status").to_pylist() == ["ok"]
    assert state.column("files").to_pylist() == [[str(frames["file"][0])]]
    assert sink.counts["frames"] == 2 and frames_in(layout) == {"a": [0, 1]}
