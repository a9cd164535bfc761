"""Where `vidclust embed` runs: an address that is closed, or that answers but is not Ray, is one
clear error line (no traceback, no minutes of Ray retries); with no address it starts a Ray of its
own, never joining a cluster that Ray's `ray_current_cluster` file points at; `ray.address` joins
the cluster named."""
import os
import socket
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq
import pytest

from vidclust.example import write_video

from raycluster import LocalRayCluster, free_port, ray_env

HANG_GUARD_S = 120  # the errors come within seconds; this only stops a hang from stalling the suite


def _embed(tiny_clip, src, out, *extra, env, timeout=HANG_GUARD_S):
    model_json, ckpt = tiny_clip
    return subprocess.run(
        [sys.executable, "-m", "vidclust.cli", "embed", str(src), str(out), "--model", model_json,
         "--pretrained", ckpt, "-q", *extra],
        env={**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}, capture_output=True,
        text=True, timeout=timeout)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    for i in range(2):
        write_video(folder / f"v{i}.mp4", 30, seed=i)
    return folder


def _one_error_line(run) -> str:
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidclust: error: "), run.stderr[-3000:]
    return lines[0]


def test_closed_port_is_one_clear_error(tiny_clip, src, tmp_path):
    address = f"127.0.0.1:{free_port()}"  # bound and closed again: nothing listens there
    run = _embed(tiny_clip, src, tmp_path / "out", env={**ray_env(), "RAY_ADDRESS": address})
    line = _one_error_line(run)
    assert "cannot reach" in line and address in line and "RAY_ADDRESS" in line, line
    assert not (tmp_path / "out" / "_vidclust" / "lock.json").exists(), "the failed run kept its lock"


def test_port_that_is_not_ray_is_one_clear_error(tiny_clip, src, tmp_path):
    port = free_port()
    http = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.time() < deadline and http.poll() is None, "the HTTP server did not start"
                time.sleep(0.1)
        address = f"127.0.0.1:{port}"
        run = _embed(tiny_clip, src, tmp_path / "out", env={**ray_env(), "RAY_ADDRESS": address})
    finally:
        http.terminate()
        http.wait(timeout=30)
    line = _one_error_line(run)
    assert "not as a Ray cluster" in line and address in line, line


# ---------------------------------------------------------------------------------------------
# a real cluster on this machine, that Ray's own auto-detection would follow

CURRENT_CLUSTER = os.path.join(tempfile.gettempdir(), "ray", "ray_current_cluster")


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A real head (`ray start`) that `ray_current_cluster` names, as after a `ray start` by anyone
    on this machine; the file is put back as it was, the head stopped."""
    saved = open(CURRENT_CLUSTER).read() if os.path.exists(CURRENT_CLUSTER) else None
    cluster = LocalRayCluster(tmp_path_factory.mktemp("head"))
    try:
        with pytest.MonkeyPatch.context() as mp:
            # Ray 2.60 drains a node for 30 s on SIGTERM before it stops: nothing here to drain
            mp.setenv("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
            cluster.start_head(num_cpus=2)
        os.makedirs(os.path.dirname(CURRENT_CLUSTER), exist_ok=True)
        with open(CURRENT_CLUSTER, "w") as f:
            f.write(cluster.address)
        cluster.node_ids = {n["NodeID"] for n in cluster.alive_nodes()}
        assert len(cluster.node_ids) == 1
        yield cluster
    finally:
        cluster.stop()
        if saved is None:
            if os.path.exists(CURRENT_CLUSTER):
                os.remove(CURRENT_CLUSTER)
        else:
            with open(CURRENT_CLUSTER, "w") as f:
                f.write(saved)


def _node_ids(out) -> set:
    videos = pq.read_table(out / "videos.parquet")
    assert videos.num_rows == 2 and set(videos.column("status").to_pylist()) == {"ok"}
    return set(videos.column("node_id").to_pylist())


@pytest.mark.cluster
def test_no_address_starts_a_ray_of_its_own_not_the_current_cluster(head, tiny_clip, src, tmp_path):
    # what Ray's auto-detection would join (written again here: any Ray started on this machine
    # since, e.g. by another test, rewrites the file)
    with open(CURRENT_CLUSTER, "w") as f:
        f.write(head.address)
    env = ray_env()
    assert "RAY_ADDRESS" not in env
    run = _embed(tiny_clip, src, tmp_path / "out", env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    nodes = _node_ids(tmp_path / "out")
    assert None not in nodes and len(nodes) == 1
    assert not nodes & head.node_ids, "the run joined the cluster that ray_current_cluster names"


@pytest.mark.cluster
def test_ray_address_setting_joins_that_cluster(head, tiny_clip, src, tmp_path):
    env = ray_env()
    assert "RAY_ADDRESS" not in env
    run = _embed(tiny_clip, src, tmp_path / "out", "--set", f"ray.address={head.address}", env=env,
                 timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _node_ids(tmp_path / "out") == head.node_ids
