"""`vidclust run` end to end, as a user runs it: the example corpus, every stage, every output."""
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq


def test_run_writes_every_output_of_the_contract(tiny_clip, example_corpus, tmp_path):
    model_json, ckpt = tiny_clip
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": "local"}
    proc = subprocess.run(
        [sys.executable, "-m", "vidclust.cli", "run", str(example_corpus), str(out), "-q",
         "--model", model_json, "--pretrained", ckpt, "--set", "cluster.k=3",
         "--set", "describe.summarizer=extractive", "--set", "describe.kw_k_nearest=4"],
        capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr

    videos = pq.read_table(out / "videos.parquet")
    ok = sorted(v for v, s in zip(videos.column("video_id").to_pylist(),
                                  videos.column("status").to_pylist()) if s == "ok")
    assert len(ok) == 12 and videos.column("captions").to_pylist()[0]

    assign = pq.read_table(out / "clusters" / "assignments.parquet")
    assert sorted(assign.column("video_id").to_pylist()) == ok
    assert {"video_id", "cluster_id", "distance"} <= set(assign.column_names)
    projection = pq.read_table(out / "report" / "projection.parquet")
    assert {"kind", "video_id", "x", "y"} <= set(projection.column_names)
    assert sorted(v for v in projection.column("video_id").to_pylist() if v is not None) == ok
    assert set(assign.column("cluster_id").to_pylist()) == {0, 1, 2}
    mapping = (out / "clusters" / "video_cluster_mapping.csv").read_text().splitlines()
    assert mapping[0] == "video_id,cluster_id" and len(mapping) == 13
    centers = pq.read_table(out / "clusters" / "centers.parquet")
    assert centers.num_rows == 3 and sum(centers.column("size").to_pylist()) == 12
    metrics = json.loads((out / "clusters" / "metrics.json").read_text())
    assert metrics["k"] == 3 and "silhouette" in metrics and "davies_bouldin" in metrics
    descriptions = json.loads((out / "clusters" / "cluster_descriptions.json").read_text())
    assert sorted(descriptions) == ["0", "1", "2"]
    assert pq.read_table(out / "clusters" / "descriptions.parquet").num_rows == 3
    assert (out / "report" / "index.html").is_file()
    assert list((out / "report").glob("*.png"))
    run = json.loads((out / "run.json").read_text())
    assert set(run["stages"]) == {"embed", "cluster", "describe", "report"}
    assert run["config"]["cluster"]["k"] == 3 and "ray" in run["versions"]
    # where the embed stage's time went (issue 21, item 6)
    embed = run["stages"]["embed"]
    assert embed["frames_per_second"] > 0
    assert embed["decode_cpu_s"] > 0 and 0 < embed["decode_cpu_s_per_frame"] < 10
    assert abs(embed["decode_cpu_s_per_frame"] * embed["frames"] - embed["decode_cpu_s"]) < 1e-3
    assert sum(embed["decoders"].values()) == videos.num_rows == 12
    assert set(embed["decoders"]) <= set(videos.column("backend").to_pylist())
    assert embed["gpu_busy"] == {"fraction": None, "why": "the encoder ran on CPUs"}
