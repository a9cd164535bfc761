"""Benchmark of the embedding stage, all figures from one run on one machine, printed as ratios.

    .venv/bin/python bench/bench_embed.py [--videos 16] [--seconds 10] [--model ViT-B-32]

Measures, on the same videos:
  - decode only: sample_frames over every video (frames/s)
  - encode only: FrameEncoder on frames decoded beforehand (frames/s)
  - the whole pipeline: `run_embed` on a running local Ray (frames/s), and its ratio to the slower
    of the two above (how close the pipeline is to its own limit); also its fixed cost (a run on
    one video: planning, actor start, model load) and its marginal rate beyond that
  - the notebook's way: one video at a time, every sampled frame decoded into memory, then embedded
  - peak memory (RSS) of decoding a 10-second and a 10-minute video, in a fresh process each:
    the streaming sampler (bounded) next to the notebook's load-everything way.
Weights are random (`--pretrained none`): speed does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from vidclust.config import load_config  # noqa: E402
from vidclust.embedding.decode import sample_frames  # noqa: E402
from vidclust.example import write_topic_clips  # noqa: E402


def decode_all(paths, sampling, decode):
    frames = []
    for p in paths:
        for chunk in sample_frames(str(p), sampling, decode):
            frames.append(chunk.frames)
    return np.concatenate(frames)


def peak_rss_child(mode: str, path: str) -> float:
    """Peak RSS (MiB) of a fresh process that decodes `path` in `mode` (stream | notebook)."""
    code = f"""
import resource, numpy as np, av
from vidclust.config import SamplingConfig, DecodeConfig
from vidclust.embedding.decode import sample_frames
def hwm():  # VmHWM: peak RSS of this process image (ru_maxrss would count the parent's, from fork)
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
base = hwm()
if {mode!r}.startswith("stream"):
    backend = "pyav" if {mode!r} == "stream_pyav" else "decord"
    n = sum(len(c.frame_index) for c in sample_frames({path!r}, SamplingConfig(image_size=224), DecodeConfig(backend=backend)))
else:  # the notebook: every frame into memory, then sample and resize
    with av.open({path!r}) as c:
        allf = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    n = len(allf[::10])
print(hwm() / 1024, base / 1024, n)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    peak, base, _ = out.stdout.split()[-3:]
    return float(peak)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vidclust-bench"))
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--backend", default="auto", help="decoder: auto (decord), decord or pyav")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths = write_topic_clips(work / "videos", args.videos, args.seconds)
    cfg = load_config(None, [f"embed.encoder.model={args.model}", "embed.encoder.pretrained=none",
                             f"embed.decode.backend={args.backend}"])
    from vidclust.embedding.run import resolve_embed_config

    _, ecfg = resolve_embed_config(cfg.embed)  # the model's own image size and mean/std
    sampling, decode = ecfg.sampling, ecfg.decode
    import torch

    from vidclust.models.encoder import FrameEncoder

    results = {"machine": f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
               "videos": len(paths), "seconds_each": args.seconds, "model": args.model}

    t = time.perf_counter()
    frames = decode_all(paths, sampling, decode)
    results["decode_fps"] = len(frames) / (time.perf_counter() - t)
    n_frames = len(frames)

    enc = FrameEncoder(args.model, "none", ecfg.preprocess.mean, ecfg.preprocess.std)
    enc.embed(frames[:8])  # warm-up
    t = time.perf_counter()
    for i in range(0, n_frames, 128):
        enc.embed(frames[i:i + 128])
    results["encode_fps"] = n_frames / (time.perf_counter() - t)
    del frames

    # the notebook's way: per video, all sampled frames in memory, then embedded
    t = time.perf_counter()
    for p in paths:
        f = decode_all([p], sampling, decode)
        for i in range(0, len(f), 128):
            enc.embed(f[i:i + 128])
    results["notebook_fps"] = n_frames / (time.perf_counter() - t)
    del enc

    import ray

    from vidclust.embedding.run import run_embed

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    def timed_run(source: Path, out: Path) -> tuple[int, float]:
        subprocess.run(["rm", "-rf", str(out)], check=True)
        t = time.perf_counter()
        s = run_embed(cfg, str(source), str(out), show_progress=False)
        return s["frames"], time.perf_counter() - t

    # The pipeline's fixed cost (planning, actor start, model load in the actor, first batch)
    # from a run on one video; the marginal rate is what each further frame costs.
    one = work / "one"
    one.mkdir(exist_ok=True)
    if not (one / paths[0].name).exists():
        (one / paths[0].name).symlink_to(paths[0])
    small_frames, small_s = timed_run(one, work / "out_one")
    frames_done, full_s = timed_run(work / "videos", work / "out")
    summary = {"frames": frames_done}
    results["pipeline_fps"] = frames_done / full_s
    results["pipeline_fixed_cost_s"] = small_s
    results["pipeline_marginal_fps"] = (frames_done - small_frames) / (full_s - small_s)
    ray.shutdown()
    assert summary["frames"] == n_frames, (summary["frames"], n_frames)

    slower = min(results["decode_fps"], results["encode_fps"])
    results["pipeline_over_slower_limit"] = results["pipeline_fps"] / slower
    results["pipeline_over_notebook"] = results["pipeline_fps"] / results["notebook_fps"]
    results["marginal_over_slower_limit"] = results["pipeline_marginal_fps"] / slower
    results["marginal_over_notebook"] = results["pipeline_marginal_fps"] / results["notebook_fps"]

    if not args.skip_memory:
        short = write_topic_clips(work / "mem10s", 1, 10)[0]
        long = work / "mem10min" / "clip000.mp4"
        if not long.exists():
            write_topic_clips(work / "mem10min", 1, 600)
        for name, p in (("10s", short), ("10min", long)):
            results[f"peak_rss_stream_decord_{name}_MiB"] = peak_rss_child("stream", str(p))
            results[f"peak_rss_stream_pyav_{name}_MiB"] = peak_rss_child("stream_pyav", str(p))
            results[f"peak_rss_notebook_{name}_MiB"] = peak_rss_child("notebook", str(p))

    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
