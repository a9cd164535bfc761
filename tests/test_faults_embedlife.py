"""Issue 19, items 8, 10, 11, 12, 14 and the third clause of 15: what OUT holds and what the embed
stage's life does with it. Corrupt frames files, a checkpoint of another model, `assign` before
`cluster`, GPU decoding without a GPU, SIGTERM, and `cluster` while the first `embed` runs; each
through the command on real files."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_faults import cli, model_args, tiny, videos_of
from vidclust.embedding.frame_store import read_state
from vidclust.store.layout import OutputLayout


def frame_pairs(out: Path) -> list[tuple[str, int]]:
    """(video_id, frame_index) of every row of OUT/frames, as a reader pointed at frames/ sees them."""
    files = sorted(str(p) for p in (out / "frames").glob("*.parquet"))
    frames = pq.ParquetDataset(files).read(columns=["video_id", "frame_index"])
    return sorted(zip(frames.column("video_id").to_pylist(), frames.column("frame_index").to_pylist()))


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " vidclust WARNING: " in line]


def run_cli(*args: str, **kw) -> subprocess.Popen:
    """`vidclust ARGS` started, not awaited (the same environment as `cli`)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_ADDRESS": "local"}
    return subprocess.Popen([sys.executable, "-m", "vidclust.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1], **kw)


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended before {what}: " + proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s"
        time.sleep(0.05)


IDS = ["v0", "v1", "v2", "v3"]
FRAMES = [(v, f) for v in IDS for f in (0, 10)]  # 12 frames each, every 10th


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, tiny_clip) -> tuple[Path, Path]:
    """(SOURCE, OUT) of one real `vidclust embed` of four videos, two frames each, a file per
    couple of frames (so that a file holds few videos); tests work on copies of OUT."""
    root = tmp_path_factory.mktemp("embedded")
    src = root / "src"
    for i, v in enumerate(IDS):
        tiny(src / f"{v}.mp4", seed=i)
    out = root / "out"
    proc = cli("embed", str(src), str(out), *model_args(tiny_clip), "--set", "embed.part_max_rows=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert frame_pairs(out) == FRAMES
    return src, out


def copy_of(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return copy


# ---------------------------------------------------------------------------------------------
# 8: a corrupt Parquet file in frames/


def test_corrupt_frames_files_are_named_by_cluster_and_moved_aside_by_embed(embedded, tmp_path, tiny_clip):
    src, base = embedded
    out = copy_of(base, tmp_path)
    state = read_state(OutputLayout.open(str(out))).to_pylist()
    videos_in = {}
    for row in state:
        for f in row["files"]:
            videos_in.setdefault(f, set()).add(row["video_id"])
    committed = sorted(videos_in)[0]  # a file a commit accounts for, made unreadable by hand
    hit = videos_in[committed]
    assert hit and hit != set(IDS), videos_in
    (out / "frames" / committed).write_bytes(b"not parquet at all" * 10)
    (out / "frames" / "part-bad.parquet").write_bytes(b"\x00garbage\xff" * 50)  # planted: no commit wrote it
    pq.write_table(pa.table({"x": [1, 2]}), out / "frames" / "part-user.parquet")  # readable, the user's

    unreadable = "Parquet magic bytes not found in footer. Either the file is corrupted or this is not a parquet file."
    proc = cli("cluster", str(out), "-q", "--set", "cluster.k=2")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f"vidclust: error: {out / 'frames' / min(committed, 'part-bad.parquet')} is not a readable Parquet "
        f"file ({unreadable}): run `vidclust embed` again (it moves unreadable frames files aside and embeds "
        "their videos again), or remove the file"]

    proc = cli("embed", str(src), str(out), *model_args(tiny_clip), "--set", "embed.part_max_rows=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    aside = out / "_vidclust" / "unreadable"
    moved = {committed: f"frames/{committed}, which a commit accounts for, is not a readable Parquet file "
                        f"({unreadable}): moved to {aside / committed}",
             "part-bad.parquet": f"frames/part-bad.parquet is not a readable Parquet file ({unreadable}) and "
                                 f"no vidclust run wrote it: moved to {aside / 'part-bad.parquet'}",
             "part-user.parquet": "frames/part-user.parquet holds no vidclust frames (its schema has no vidclust "
                                  f"metadata): moved to {aside / 'part-user.parquet'}"}
    assert [w.split(" vidclust WARNING: ")[1] for w in warning_lines(proc.stderr)] == [
        *(moved[name] for name in sorted(moved)),
        f"{len(hit)} committed videos no longer have all their frames in frames/ (a file was removed or "
        "altered): they will be embedded again"], proc.stderr[-3000:]
    assert sorted(p.name for p in aside.iterdir()) == sorted(moved)
    assert not any((out / "frames" / name).exists() for name in moved)
    assert pq.read_table(aside / "part-user.parquet").column("x").to_pylist() == [1, 2]  # kept, not deleted
    # only the videos of the committed file are embedded again, each video's frames once
    assert proc.stdout.splitlines()[0] == (
        f"embed: {len(hit)} videos embedded ({2 * len(hit)} frames), 0 failed, {4 - len(hit)} already done; "
        "OUT holds 4 ok and 0 failed videos")
    assert frame_pairs(out) == FRAMES
    assert {v: r["status"] for v, r in videos_of(out).items()} == {v: "ok" for v in IDS}


# ---------------------------------------------------------------------------------------------
# 11: assign into an OUT without clusters


def test_assign_without_clusters_is_refused_before_any_work(embedded, tmp_path):
    _, base = embedded
    out = copy_of(base, tmp_path)
    new = tmp_path / "new"
    tiny(new / "n0.mp4", seed=9)
    before = (out / "videos.parquet").read_bytes()
    commits = sorted(p.name for p in (out / "_vidclust" / "commits").iterdir())
    t0 = time.monotonic()
    proc = cli("assign", str(out), str(new), "-q")
    seconds = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f"vidclust: error: {out} has no clusters/metrics.json: run `vidclust cluster` first"]
    assert (out / "videos.parquet").read_bytes() == before  # nothing was embedded
    assert sorted(p.name for p in (out / "_vidclust" / "commits").iterdir()) == commits
    assert seconds < 15, f"refused after {seconds:.0f} s: work was done first"


# ---------------------------------------------------------------------------------------------
# 10: a checkpoint of another model; 12: GPU decoding asked for on a cluster without a GPU


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of another tiny model: the tiny CLIP with embed_dim 16."""
    import open_clip
    import torch
    from conftest import TINY_CLIP

    d = tmp_path_factory.mktemp("other_clip")
    cfg = d / "tiny-clip-16.json"
    cfg.write_text(json.dumps({**TINY_CLIP, "embed_dim": 16}))
    open_clip.add_model_config(str(cfg))
    ckpt = d / "wrong.bin"
    torch.save(open_clip.create_model("tiny-clip-16", pretrained=None).state_dict(), ckpt)
    return ckpt


def test_checkpoint_of_another_model_is_one_line_before_ray_then_the_right_one_embeds(
        other_checkpoint, tmp_path, tiny_clip):
    """Item 10, then item 12 in the same run (a Ray start saved): the right checkpoint, with
    embed.decode.device=cuda on this machine without a GPU, decodes on the CPU with one warning."""
    model_json, ckpt = tiny_clip
    src = tmp_path / "src"
    tiny(src / "a.mp4", seed=1)
    tiny(src / "b.mp4", seed=2)
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = cli("embed", str(src), str(out), "--model", model_json, "--pretrained", str(other_checkpoint), "-q")
    seconds = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f"vidclust: error: --pretrained {other_checkpoint} does not fit model tiny-clip: text_projection is "
        "[64, 16] in the checkpoint, [64, 32] in the model (and 1 more difference): give the checkpoint of "
        "this model, or the --model it was made with"]
    assert seconds < 20, f"refused after {seconds:.0f} s"
    assert not (out / "_vidclust").exists()  # before the lock, the signature, Ray: nothing written
    # a run that embedded nothing (as this one did before the check) leaves a signature that binds nothing
    (out / "_vidclust").mkdir()
    (out / "_vidclust" / "embedding.json").write_text(json.dumps(
        {"model": "tiny-clip", "weights": "file:wrong.bin#sha256:0123456789abcdef", "embed_dim": 16}))

    t0 = time.monotonic()
    proc = cli("embed", str(src), str(out), *model_args(tiny_clip), "--set", "embed.decode.device=cuda",
               timeout=240)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [w.split(" vidclust WARNING: ")[1] for w in warning_lines(proc.stderr)] == [
        "embed.decode.device=cuda, but the Ray cluster has no GPU: decoding on the CPUs (as device=auto "
        "does; embed.encoder.device=gpu waits for GPU nodes to join)"], proc.stderr[-3000:]
    assert {v: r["status"] for v, r in videos_of(out).items()} == {"a": "ok", "b": "ok"}
    assert frame_pairs(out) == [("a", 0), ("a", 10), ("b", 0), ("b", 10)]
    signature = json.loads((out / "_vidclust" / "embedding.json").read_text())
    assert signature["embed_dim"] == 32 and signature["weights"].startswith("file:tiny-clip.pt#")
    assert seconds < 180


# ---------------------------------------------------------------------------------------------
# 15 (third clause): `cluster` during the first `embed`; 14: SIGTERM to `vidclust embed`


def test_cluster_names_the_running_first_embed_and_sigterm_stops_it_resumably(tmp_path, tiny_clip):
    src = tmp_path / "src"
    n = 24
    for i in range(n):
        tiny(src / f"v{i:02d}.mp4", n=120, seed=i)
    out = tmp_path / "out"
    args = ["embed", str(src), str(out), *model_args(tiny_clip), "--set", "embed.commit_seconds=0",
            "--set", "embed.part_max_rows=8", "--set", "embed.decode.chunk_frames=4"]
    lock = out / "_vidclust" / "lock.json"
    embed = run_cli(*args)
    try:
        wait_for(lambda: lock.exists() and lock.stat().st_size > 0, embed, "the writer lock")
        held = json.loads(lock.read_text())
        proc = cli("cluster", str(out), "-q")
        assert embed.poll() is None, "the embed ended before cluster asked: the test proved nothing"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held["started"]))
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.splitlines() == [
            f"vidclust: error: {out} is being written by another vidclust run (pid {embed.pid} on "
            f"{socket.gethostname()}, since {since}): wait for it to finish, then run `vidclust cluster`"]

        wait_for(lambda: any((out / "frames").glob("part-*.parquet")), embed, "a frames file")
        embed.send_signal(signal.SIGTERM)
        stdout, stderr = embed.communicate(timeout=120)
    finally:
        if embed.poll() is None:
            embed.kill()
            embed.communicate()
    assert embed.returncode == 143, (embed.returncode, stderr[-5000:])
    assert stderr.splitlines() == [
        "vidclust: terminated; run the same command again to continue where it stopped"], stderr[-5000:]
    assert not lock.exists()
    done = read_state(OutputLayout.open(str(out))).num_rows
    assert done < n, "every video was done before the signal came: the test proved nothing"

    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0].startswith(f"embed: {n - done} videos embedded ")
    assert {v: r["status"] for v, r in videos_of(out).items()} == {f"v{i:02d}": "ok" for i in range(n)}
    assert frame_pairs(out) == [(f"v{i:02d}", f) for i in range(n) for f in range(0, 120, 10)]
