"""`scripts/gpu_check.sh --smoke`: the GPU machine's one prepared run, on this CPU, at tiny sizes
(the tiny model, 2-second clips, 4 videos a pipeline): every section runs or says why not, the
pipelines' figures come from run.json's account, and a failure is never silent."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_runs_every_section(tiny_clip, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "BUDGET": "900"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--smoke", "--model", tiny_clip[0],
                           "--work", str(tmp_path / "work")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    results = json.loads((out / "bench_gpu.json").read_text())
    assert results["errors"] == [] and (out / "bench_gpu.log").is_file()
    row = results["encoder"]["fp32@4"]
    assert row["frames_per_s"] > 0 and row["frames_per_s_two_threads"] > 0 and row["frames_per_s_8_batches_a_call"] > 0
    # no GPU here: the NVDEC figures say why, and are the CPU's
    nvdec = results["nvdec"]
    assert nvdec["nvdec_unavailable"] == "no CUDA GPU visible to torch"
    assert {k.split("/")[0] for k in nvdec if "/" in k} == {"h264", "hevc"}
    assert all(r["backends"] == ["pyav"] and r["frames_per_s"] > 0 for k, r in nvdec.items() if "/" in k)
    assert all(r["frames_per_s"] > 0 for r in results["decode_cpu"].values())
    for name in ("pipeline_keyframes_240p", "pipeline_every10_240p"):
        p = results[name]
        assert p["frames"] > 0 and p["frames_per_s"] > 0 and p["decode_cpu_s_per_frame"] > 0, p
        assert sum(p["decoders"].values()) == p["videos"] == 4
        assert p["gpu_busy"] == {"fraction": None, "why": "the encoder ran on CPUs"}
        assert p["decode_capacity_fps"] > 0 and p["pipeline_over_decode_capacity"] >= 0


def test_gpu_check_fails_loudly_without_its_wheels(tmp_path):
    """On the GPU machine (no --smoke) a missing install stops the run with a line that says so."""
    if list(ROOT.glob(".whl/*.whl")):
        pytest.skip("a checkout prepared for the GPU machine: its wheels are there")
    env = {**os.environ, "OUT": str(tmp_path)}
    proc = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "no wheels in .whl/" in proc.stderr
