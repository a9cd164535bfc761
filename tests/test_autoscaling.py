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
