"""Quiet by default: a plain `vidclust embed` prints vidclust's own lines and warnings, not the
libraries' INFO lines; `-v` shows those too."""
import os
import subprocess
import sys


def _embed(tiny_clip, example_corpus, out, *flags):
    model_json, ckpt = tiny_clip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_ADDRESS": "local"}
    env.pop("RAY_DATA_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-m", "vidclust", "embed", str(example_corpus), str(out), *flags,
                           "--model", model_json, "--pretrained", ckpt, "--set", "embed.encoder.batch_size=16"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def test_embed_prints_few_lines_by_default(tiny_clip, example_corpus, tmp_path):
    lines = _embed(tiny_clip, example_corpus, tmp_path / "out")
    assert len(lines) < 15, "\n".join(lines)
    assert not [line for line in lines if " INFO " in line and "vidclust" not in line], "\n".join(lines)
    random_banner = [line for line in lines if "random" in line.lower()]
    assert len(random_banner) <= 1, "\n".join(lines)


def test_verbose_shows_the_libraries_info_lines(tiny_clip, example_corpus, tmp_path):
    lines = _embed(tiny_clip, example_corpus, tmp_path / "out", "-v")
    assert [line for line in lines if "INFO" in line and "streaming_executor" in line], "\n".join(lines)


def test_a_whole_run_shows_no_worker_or_ray_internals_by_default(tiny_clip, example_corpus, tmp_path):
    """`vidclust run` as the demo runs it (random weights): the banner once, from the driver; no
    lines forwarded from Ray's worker processes, no core_worker / gcs lines, no token notice."""
    model_json, _ = tiny_clip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_ADDRESS": "local"}
    proc = subprocess.run([sys.executable, "-m", "vidclust", "run", str(example_corpus), str(tmp_path / "out"),
                           "--config", "cluster_configs/example.yaml", "--model", model_json, "--pretrained", "none",
                           "--set", "embed.encoder.batch_size=16"],
                          capture_output=True, text=True, env=env, timeout=900,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    text = "\n".join(lines)
    assert sum("RANDOM WEIGHTS" in line for line in lines) == 1, text
    for noise in ("(MapWorker", "(pid=", "core_worker", "gcs_server", "Token authentication", "initialized randomly"):
        assert noise not in text, text
    assert len(lines) < 25, text


def test_ray_notices_that_say_nothing_to_a_user_are_muted(caplog):
    """Seen on the GPU run: Ray Data warns that the GPU encoder actors reserve a CPU too."""
    import logging

    from vidclust.runtime import mute_ray_notices

    mute_ray_notices()
    mute_ray_notices()  # twice: still one filter
    ops = logging.getLogger("ray.data._internal.execution.operators.map_operator")
    assert len(ops.filters) == 1
    with caplog.at_level(logging.WARNING):
        ops.warning("Specifying both num_cpus and num_gpus for map tasks is experimental, and may ...")
        ops.warning("a warning that matters")
    assert [r.getMessage() for r in caplog.records if r.name == ops.name] == ["a warning that matters"]
