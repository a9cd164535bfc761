"""The job on real Ray clusters on this machine: `ray start` + `ray job submit`, two nodes, and a
worker node lost mid-job. Each test starts and stops only its own Ray processes."""
import numpy as np
import pyarrow.parquet as pq
import pytest

from vidclust.example import write_video
from vidclust.store.layout import OutputLayout

from raycluster import ray_env

pytestmark = pytest.mark.cluster


def frames_of(out):
    t = pq.ParquetDataset(OutputLayout.open(str(out)).frame_files()).read()
    return t.sort_by([("video_id", "ascending"), ("frame_index", "ascending")])


def test_job_submit_gives_the_same_outputs_as_a_local_run(cluster, tiny_clip, tmp_path):
    import subprocess
    import sys

    src = tmp_path / "src"
    for i in range(4):
        write_video(src / f"v{i}.mp4", 40 + 10 * i, seed=i)
    model_json, ckpt = tiny_clip
    args = ["embed", str(src), "--model", model_json, "--pretrained", ckpt, "-q"]
    local = subprocess.run([sys.executable, "-m", "vidclust.cli", args[0], args[1], str(tmp_path / "local"),
                            *args[2:]], capture_output=True, text=True,
                           env={**ray_env(), "RAY_ADDRESS": "local"})
    assert local.returncode == 0, local.stderr[-3000:]

    cluster.start_head(num_cpus=2)
    job = cluster.submit(args[0], args[1], str(tmp_path / "job"), *args[2:])
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "embed: 4 videos embedded" in job.stdout

    a, b = frames_of(tmp_path / "local"), frames_of(tmp_path / "job")
    assert a.column("video_id").to_pylist() == b.column("video_id").to_pylist()
    assert a.column("frame_index").to_pylist() == b.column("frame_index").to_pylist()
    ea = np.stack(a.column("embedding").to_numpy(zero_copy_only=False))
    eb = np.stack(b.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(ea, eb, atol=1e-5)
    va = pq.read_table(tmp_path / "local" / "videos.parquet").drop_columns(["node_id", "encoder_node_id"])
    vb = pq.read_table(tmp_path / "job" / "videos.parquet").drop_columns(["node_id", "encoder_node_id"])
    assert va.equals(vb)


def test_two_nodes_share_the_work(cluster, tiny_clip, tmp_path):
    src = tmp_path / "src"
    for i in range(12):
        write_video(src / f"v{i:02d}.mp4", 60, seed=i)
    model_json, ckpt = tiny_clip
    cluster.start_head(num_cpus=2)  # one CPU of it goes to the encoder actor
    cluster.add_worker(num_cpus=2)
    job = cluster.submit("embed", str(src), str(tmp_path / "out"), "--model", model_json,
                         "--pretrained", ckpt, "-q", "--set", "embed.encoder.num_actors=1")
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    videos = pq.read_table(tmp_path / "out" / "videos.parquet")
    assert videos.num_rows == 12 and set(videos.column("status").to_pylist()) == {"ok"}
    nodes = set(videos.column("node_id").to_pylist())
    assert len(nodes) == 2, f"decoding ran on {len(nodes)} node(s)"


def test_worker_node_lost_mid_job_ends_finished_or_resumed(cluster, tiny_clip, tmp_path):
    import time

    src = tmp_path / "src"
    n_videos = 16
    for i in range(n_videos):
        write_video(src / f"v{i:02d}.mp4", 150, seed=i)
    out = tmp_path / "out"
    model_json, ckpt = tiny_clip
    # the default pool: elastic CPU actors, as many as half the CPUs at start (2 of 4)
    args = ["embed", str(src), str(out), "--model", model_json, "--pretrained", ckpt, "-q",
            "--set", "embed.commit_seconds=0", "--set", "embed.part_max_rows=16",
            "--set", "embed.encoder.batch_size=8", "--set", "embed.decode.chunk_frames=4"]
    cluster.start_head(num_cpus=2)
    worker = cluster.add_worker(num_cpus=2)
    job = cluster.submit(*args, wait=False, submission_id="lose-a-node")
    assert job.returncode == 0, job.stderr
    commits = out / "_vidclust" / "commits"
    deadline = time.time() + 300
    while time.time() < deadline:
        status = cluster.job_status("lose-a-node")  # before looking: a job that ended has committed
        if commits.exists() and list(commits.glob("commit-*.parquet")):
            break
        assert status in ("PENDING", "RUNNING", "UNKNOWN"), \
            status + "\n" + cluster.job_logs("lose-a-node")[-3000:]
        time.sleep(0.2)
    cluster.kill_node(worker)  # the worker node dies with whatever it was decoding or encoding
    # no hang: the job finishes on the node left, or fails with the resumable error, in bounded time
    status = cluster.wait_job("lose-a-node", timeout=240)
    logs = cluster.job_logs("lose-a-node")
    if status != "SUCCEEDED":
        assert status == "FAILED", status
        assert "run the same command again to continue" in logs, logs[-3000:]
        assert "Traceback" not in logs.split("vidclust: error:")[-1], logs[-3000:]
        job = cluster.submit(*args, submission_id="resume")  # the user re-submits the same job
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "already done" in job.stdout
    frames = frames_of(out)
    pairs = list(zip(frames.column("video_id").to_pylist(), frames.column("frame_index").to_pylist()))
    assert len(pairs) == len(set(pairs)), "duplicate frame rows"
    for i in range(n_videos):
        assert sorted(f for v, f in pairs if v == f"v{i:02d}") == list(range(0, 150, 10))
    videos = pq.read_table(out / "videos.parquet")
    assert sorted(videos.column("video_id").to_pylist()) == [f"v{i:02d}" for i in range(n_videos)]
    assert set(videos.column("status").to_pylist()) == {"ok"}


def test_a_one_cpu_cluster_still_embeds(cluster, tiny_clip, tmp_path):
    """The encoder actor shares the only CPU rather than holding it: no hang (before, the actor
    took the whole CPU and the tasks feeding it waited for one forever)."""
    import subprocess
    import sys

    from raycluster import ray_env

    src = tmp_path / "src"
    for i in range(2):
        write_video(src / f"v{i}.mp4", 30, seed=i)
    cluster.start_head(num_cpus=1)
    model_json, ckpt = tiny_clip
    run = subprocess.run([sys.executable, "-m", "vidclust.cli", "embed", str(src), str(tmp_path / "out"),
                          "--model", model_json, "--pretrained", ckpt, "-q", "--set", f"ray.address={cluster.address}"],
                         env=ray_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 videos embedded" in run.stdout


def test_a_head_whose_port_is_taken_starts_again_on_fresh_ports(cluster):
    """The harness itself: CI once saw a head that never came up (a port picked free and taken
    before Ray bound it). The head is started again on fresh ports instead of failing the test."""
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", cluster.gcs_port))
    blocker.listen()
    taken = cluster.gcs_port
    try:
        cluster.start_head(num_cpus=1)
    finally:
        blocker.close()
    assert cluster.gcs_port != taken
    assert len(cluster.alive_nodes()) == 1
