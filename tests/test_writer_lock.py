"""One writer per OUT: a second `vidclust embed` into an OUT that a live run holds is refused with
one clear line; a lock that a killed run left behind never blocks; the lock's own rules in-process."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

from vidclust.errors import VidclustError
from vidclust.example import write_video
from vidclust.store.layout import OutputLayout
from vidclust.store.writer_lock import WriterLock


def _cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_ADDRESS": "local"}
    return subprocess.Popen([sys.executable, "-m", "vidclust.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _embed_args(tiny_clip, src, out, *extra):
    model_json, ckpt = tiny_clip
    return ["embed", str(src), str(out), "--model", model_json, "--pretrained", ckpt, "-q", *extra]


def _dead_pid() -> int:
    proc = subprocess.Popen(["sleep", "0"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------------------------
# real runs


def test_killed_runs_lock_is_taken_over_and_a_second_live_run_is_refused(tiny_clip, tmp_path):
    """One real run A into an OUT that a killed run's lock still names (starting Ray costs most of
    this test, so A shows both): A takes that lock over; B, started while A holds it, is refused
    with one line; A completes and leaves every frame once."""
    src = tmp_path / "src"
    for i in range(8):
        write_video(src / f"v{i}.mp4", 30 + 5 * i, seed=i)
    out = tmp_path / "out"
    args = _embed_args(tiny_clip, src, out, "--set", "embed.encoder.batch_size=4")
    lock = out / "_vidclust" / "lock.json"
    lock.parent.mkdir(parents=True)
    # a killed run's lock on this host, with a fresh heartbeat: only its dead pid tells it is stale
    killed = {"host": socket.gethostname(), "pid": _dead_pid(), "run_id": "killed-run",
              "started": time.time() - 30, "heartbeat": time.time()}
    lock.write_text(json.dumps(killed))

    a = _cli(*args)
    try:
        deadline = time.time() + 120
        held = killed
        while held.get("run_id") == "killed-run" and a.poll() is None and time.time() < deadline:
            time.sleep(0.02)
            try:
                held = json.loads(lock.read_text())
            except (FileNotFoundError, json.JSONDecodeError):  # between A's two steps
                pass
        assert a.poll() is None, "run A ended before B could start: " + a.stderr.read()[-3000:]
        assert (held["pid"], held["host"]) == (a.pid, socket.gethostname()), held

        t0 = time.time()
        b = _cli(*args)
        b_out, b_err = b.communicate(timeout=120)
        b_seconds = time.time() - t0
        assert a.poll() is None, "run A ended before B was refused: the test proved nothing"
    finally:
        a_out, a_err = a.communicate(timeout=300)

    assert b.returncode == 2, (b.returncode, b_err[-3000:])
    lines = [ln for ln in b_err.splitlines() if ln.strip()]
    assert len(lines) == 1, b_err
    assert lines[0].startswith("vidclust: error: ") and "is being written by another vidclust run" in lines[0]
    assert f"pid {a.pid}" in lines[0] and str(out) in lines[0]
    assert "Traceback" not in b_err and b_out == ""
    assert b_seconds < 60, f"refusing took {b_seconds:.0f} s"  # a hang guard: refusing needs no Ray

    assert a.returncode == 0, a_err[-3000:]
    assert "embed: 8 videos embedded" in a_out
    assert not lock.exists(), "run A did not release its lock"
    assert not list(lock.parent.glob("lock.json*")), "the taken-over lock left files behind"
    videos = pq.read_table(out / "videos.parquet")
    ids = videos.column("video_id").to_pylist()
    assert sorted(ids) == [f"v{i}" for i in range(8)] and set(videos.column("status").to_pylist()) == {"ok"}
    frames = pq.ParquetDataset(OutputLayout.open(str(out)).frame_files()).read()
    pairs = list(zip(frames.column("video_id").to_pylist(), frames.column("frame_index").to_pylist()))
    assert len(pairs) == len(set(pairs)), "duplicate frame rows"
    n_sampled = dict(zip(ids, videos.column("n_frames_sampled").to_pylist()))
    for i in range(8):
        want = list(range(0, 30 + 5 * i, 10))
        assert sorted(f for v, f in pairs if v == f"v{i}") == want and n_sampled[f"v{i}"] == len(want)


# ---------------------------------------------------------------------------------------------
# the lock in-process


@pytest.fixture
def layout(tmp_path):
    return OutputLayout.open(str(tmp_path / "out"))


def _write_lock(layout, **fields):
    os.makedirs(layout.meta_dir, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": os.getpid(), "run_id": "other-run",
              "started": time.time() - 600, "heartbeat": time.time(), **fields}
    with open(layout.lock_file, "w") as f:
        json.dump(record, f)


def _held(layout) -> dict:
    with open(layout.lock_file) as f:
        return json.load(f)


def test_one_holder_at_a_time_and_release_frees_it(layout):
    first = WriterLock(layout).acquire()
    try:
        held = _held(layout)
        assert (held["run_id"], held["pid"], held["host"]) == (first.run_id, os.getpid(), socket.gethostname())
        with pytest.raises(VidclustError, match="is being written by another vidclust run"):
            WriterLock(layout).acquire()
        assert _held(layout)["run_id"] == first.run_id, "a refused run touched the lock"
    finally:
        first.release()
    assert not os.path.exists(layout.lock_file)
    with WriterLock(layout) as second:
        assert _held(layout)["run_id"] == second.run_id
    assert not os.path.exists(layout.lock_file)


def test_heartbeat_is_refreshed_while_held(layout):
    with WriterLock(layout, heartbeat_s=0.05) as lock:
        first = _held(layout)["heartbeat"]
        deadline = time.time() + 10
        while _held(layout)["heartbeat"] == first and time.time() < deadline:
            time.sleep(0.02)
        held = _held(layout)
        assert held["heartbeat"] > first and held["run_id"] == lock.run_id


def test_lock_of_another_host_is_taken_over_only_when_its_heartbeat_is_stale(layout):
    _write_lock(layout, host="elsewhere", pid=os.getpid(), heartbeat=time.time() - 10)  # fresh
    with pytest.raises(VidclustError, match=r"another vidclust run \(pid \d+ on elsewhere"):
        WriterLock(layout, stale_after_s=120).acquire()
    assert _held(layout)["run_id"] == "other-run"

    _write_lock(layout, host="elsewhere", pid=os.getpid(), heartbeat=time.time() - 1000)  # stale
    with WriterLock(layout, stale_after_s=120) as lock:
        assert _held(layout)["run_id"] == lock.run_id and _held(layout)["host"] == socket.gethostname()
    assert not os.path.exists(layout.lock_file)


def test_lock_of_a_dead_process_on_this_host_is_taken_over(layout):
    _write_lock(layout, pid=_dead_pid())  # fresh heartbeat, dead holder
    with WriterLock(layout) as lock:
        assert _held(layout)["run_id"] == lock.run_id
    assert not os.path.exists(layout.lock_file)


def test_live_pid_with_an_old_heartbeat_is_a_reused_pid_and_taken_over(layout):
    # a killed run's pid that a live process has since (pid 1 of a restarted container, here: ours)
    _write_lock(layout, pid=os.getpid(), heartbeat=time.time() - 1000)
    with WriterLock(layout, stale_after_s=120) as lock:
        assert _held(layout)["run_id"] == lock.run_id
    _write_lock(layout, pid=os.getpid(), heartbeat=time.time() - 60)  # within stale_after_s: held
    with pytest.raises(VidclustError, match="is being written by another vidclust run"):
        WriterLock(layout, stale_after_s=120).acquire()


def test_empty_lock_file_left_by_a_killed_run_does_not_block(layout):
    # a run killed between creating the lock file and writing its record leaves it empty
    os.makedirs(layout.meta_dir, exist_ok=True)
    open(layout.lock_file, "w").close()
    with pytest.raises(VidclustError):  # just created: its creator may be writing it right now
        WriterLock(layout).acquire()
    assert os.path.getsize(layout.lock_file) == 0
    old = time.time() - 300
    os.utime(layout.lock_file, (old, old))
    with WriterLock(layout) as lock:
        assert _held(layout)["run_id"] == lock.run_id
    assert os.listdir(layout.meta_dir) == [], "the taken-over lock left files behind"


def test_two_runs_taking_over_one_stale_lock_never_both_hold_it(layout, monkeypatch):
    """C judges the lock stale; before C removes it, B takes it over. C must not remove B's lock
    and think it holds OUT too."""
    _write_lock(layout, pid=_dead_pid(), run_id="killed-run")
    b, c = WriterLock(layout), WriterLock(layout)
    real_is_stale = WriterLock._is_stale
    b_result = {}

    def is_stale_then_b_wins(self, held):
        stale = real_is_stale(self, held)
        if self is c and held.get("run_id") == "killed-run":
            t = threading.Thread(target=lambda: b_result.setdefault("b", _try(b.acquire)))
            t.start()
            t.join()
        return stale

    monkeypatch.setattr(WriterLock, "_is_stale", is_stale_then_b_wins)
    c_result = _try(c.acquire)
    try:
        assert b_result["b"] == "held", b_result
        assert isinstance(c_result, VidclustError), "both runs hold the lock"
        assert "is being written by another vidclust run" in str(c_result)
        assert _held(layout)["run_id"] == b.run_id
    finally:
        b.release()
        if c_result == "held":
            c.release()


def _try(fn):
    try:
        fn()
        return "held"
    except VidclustError as exc:
        return exc
