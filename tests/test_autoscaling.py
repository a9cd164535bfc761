"""GPUs the autoscaler can see: a cluster that starts without a GPU gets a GPU node because the
job asks for one, and the encoder runs there. Real Ray processes: a head whose autoscaler starts
worker raylets of a fake GPU node type on this machine (logical GPUs, no hardware)."""
import time

import pyarrow.parquet as pq
import pytest

from vidclust.example import write_video

pytestmark = pytest.mark.cluster


def test_gpu_node_is_added_when_the_job_asks_for_a_gpu(cluster, tiny_clip, tmp_path):
    import subprocess
    import sys

    from raycluster import ray_env

    src = tmp_path / "src"
    for i in range(4):
        write_video(src / f"v{i}.mp4", 30, seed=i)
    config = cluster.fake_autoscaling_config(head_cpus=2, worker_types={
        "gpu_node": {"resources": {"CPU": 2, "GPU": 1}, "node_config": {}, "min_workers": 0,
                     "max_workers": 1}})
    cluster.start_head(num_cpus=2, autoscaling_config=config)
    assert not any(n["Resources"].get("GPU") for n in cluster.alive_nodes())  # no GPU at the start

    model_json, ckpt = tiny_clip
    started = time.time()
    job = subprocess.run(
        [sys.executable, "-m", "vidclust.cli", "embed", str(src), str(tmp_path / "out"), "--model", model_json,
         "--pretrained", ckpt, "-q", "--set", f"ray.address={cluster.address}",
         "--set", "embed.encoder.device=gpu", "--set", "embed.encoder.gpu_wait_s=240"],
        env=ray_env(), capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]

    gpu_nodes = {n["NodeID"] for n in cluster.alive_nodes() if n["Resources"].get("GPU")}
    assert gpu_nodes, "the autoscaler added no GPU node"
    videos = pq.read_table(tmp_path / "out" / "videos.parquet")
    assert videos.num_rows == 4 and set(videos.column("status").to_pylist()) == {"ok"}
    encoder_nodes = set(videos.column("encoder_node_id").to_pylist())
    assert encoder_nodes and encoder_nodes <= gpu_nodes, (encoder_nodes, gpu_nodes)
    assert time.time() - started < 600


def _nodes_now(cluster) -> tuple[set, set]:
    """(GPU nodes, CPU-only nodes) alive now, by NodeID."""
    nodes = cluster.alive_nodes()
    return ({n["NodeID"] for n in nodes if n["Resources"].get("GPU")},
            {n["NodeID"] for n in nodes if not n["Resources"].get("GPU")})


def test_decode_nodes_come_when_the_decode_tasks_wait(cluster, tiny_clip, tmp_path):
    """A GPU node (fake GPU) whose CPUs the encoder and one decode task fill, and a CPU-only
    decode node type the cluster starts without: the decode tasks waiting for CPUs bring a
    decode node up beside the GPU node, and videos are decoded there."""
    import subprocess
    import sys

    from raycluster import ray_env

    src = tmp_path / "src"
    for i in range(N_DECODE_VIDEOS):
        write_video(src / f"v{i:02d}.mp4", 50, seed=i)
    config = cluster.fake_autoscaling_config(head_cpus=0, worker_types={
        "gpu_node": {"resources": {"CPU": 2, "GPU": 1}, "node_config": {}, "min_workers": 1, "max_workers": 1},
        "decode_node": {"resources": {"CPU": 2}, "node_config": {}, "min_workers": 0, "max_workers": 1}})
    cluster.start_head(num_cpus=0, autoscaling_config=config)
    deadline = time.time() + 240
    while not _nodes_now(cluster)[0]:  # the GPU node (min_workers 1) joins
        assert time.time() < deadline, "the GPU node did not join"
    _, cpu_at_start = _nodes_now(cluster)  # the head only

    model_json, ckpt = tiny_clip
    # Ray Data's autoscaler asks for resources every 10 s at most: every 2 s here
    job = subprocess.Popen(
        [sys.executable, "-m", "vidclust.cli", "embed", str(src), str(tmp_path / "out"), "--model", model_json,
         "--pretrained", ckpt, "-q", "--set", f"ray.address={cluster.address}",
         "--set", "embed.encoder.device=gpu", "--set", "embed.sampling.frame_interval=1"],
        env={**ray_env(), "RAY_DATA_MIN_GAP_BETWEEN_AUTOSCALING_REQUESTS": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    decode_nodes: set = set()
    deadline = time.time() + 400
    while not decode_nodes and job.poll() is None and time.time() < deadline:
        decode_nodes = _nodes_now(cluster)[1] - cpu_at_start
    stdout, stderr = job.communicate(timeout=max(30, deadline - time.time()))
    assert job.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert decode_nodes, "no decode node came up while the job ran"
    videos = pq.read_table(tmp_path / "out" / "videos.parquet")
    assert videos.num_rows == N_DECODE_VIDEOS and set(videos.column("status").to_pylist()) == {"ok"}
    assert set(videos.column("node_id").to_pylist()) & decode_nodes, "no video was decoded on the decode node"


N_DECODE_VIDEOS = 40
