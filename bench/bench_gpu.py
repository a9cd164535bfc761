"""The GPU proof (issue "Prove it on a GPU"): every figure from one run on one GPU machine.

    python bench/bench_gpu.py --out DIR [--budget-s 420]      # on the GPU machine (scripts/gpu_check.sh)
    .venv/bin/python bench/bench_gpu.py --out /tmp/g --smoke   # the same code paths, tiny, on a CPU

Sections, most important first; each is skipped once the time budget is spent, and a section that
fails records its error and the next one runs:
  1. environment: GPU name, driver, versions;
  2. encoder alone: ViT-B-32 (random weights: speed does not depend on them) through
     `FrameEncoder.embed` (uint8 frames from host memory to unit-length float32 embeddings back in
     host memory), frames/s for precision fp32 / fp16 (autocast) / bf16 (autocast) at batch sizes
     128 / 512 / 1024, and the model alone on frames already on the GPU (CUDA events);
  3. correctness: fp16 and bf16 embeddings against fp32 ones on the same real video frames (cosine);
  4. the whole pipeline (`run_embed` on a local Ray of this machine, CPU decoding): frames/s, the
     GPU's busy fraction (NVML utilization, sampled every 0.1 s) and the processes holding the GPU
     (one encoder actor per GPU), for the default sampling and for keyframes=true;
  5. describe on the GPU: a BART-large-shaped summariser with random weights, fp16, 20 clusters x
     20 videos (bench_describe.py), seconds per cluster;
  6. the encoder compiled (`embed.encoder.compile=true`, fp16) at the three batch sizes.
Writes DIR/bench_gpu.json (everything) and prints a table last.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class GpuSampler:
    """NVML utilization.gpu and the number of processes holding the GPU, every `period` seconds."""

    def __init__(self, period: float = 0.1):
        self.period, self.samples, self._stop = period, [], threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML (a CPU machine): no samples
            self.nvml = None

    def __enter__(self):
        if self.nvml:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
            procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
            self.samples.append((time.monotonic(), util, sorted(p.pid for p in procs)))
            time.sleep(self.period)

    def __exit__(self, *exc):
        self._stop.set()
        if self.nvml:
            self.thread.join()

    def summary(self, exclude_pids=()) -> dict:
        if not self.samples:
            return {"gpu_samples": 0}
        utils = np.array([u for _, u, _ in self.samples], float)
        holders = [[p for p in pids if p not in exclude_pids] for _, _, pids in self.samples]
        held = [i for i, h in enumerate(holders) if h]
        out = {"gpu_samples": len(utils), "gpu_busy_whole_run": round(float(utils.mean()) / 100, 3),
               "gpu_processes_max": max((len(h) for h in holders), default=0)}
        if held:  # the embed stage proper: from the encoder actor's model load to the last frame
            window = utils[held[0]:held[-1] + 1]
            out["gpu_busy_encoder_window"] = round(float(window.mean()) / 100, 3)
            out["encoder_window_s"] = round(self.samples[held[-1]][0] - self.samples[held[0]][0], 2)
        return out


def run_section(results: dict, name: str, budget: Budget, need_s: float, fn, *args):
    if budget.left() < need_s:
        results[name] = {"skipped": f"time budget: {budget.left():.0f} s left, {need_s:.0f} s needed"}
        print(f"== {name}: skipped (budget)", flush=True)
        return
    print(f"== {name} ({budget.left():.0f} s left)", flush=True)
    t = time.perf_counter()
    try:
        results[name] = fn(*args)
    except Exception as exc:
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        print(results[name]["traceback"], flush=True)
    results[name + "_seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps({name: results[name]}, default=str)[:4000], flush=True)


def versions() -> dict:
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cpus": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for mod in ("ray", "open_clip", "transformers", "av", "pyarrow", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as exc:
            out[mod] = f"missing ({exc})"
    try:
        out["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as exc:
        out["nvidia_smi"] = f"unavailable ({exc})"
    return out


def encoder_alone(args, precisions, batches, compile_: bool, budget: Budget) -> dict:
    import torch

    from vidclust.encoder import FrameEncoder

    rng = np.random.default_rng(0)
    biggest = max(batches)
    # several input sets, rotated, so that no run re-reads one buffer; random data, never zeros
    sets = [rng.integers(0, 256, (biggest, 224, 224, 3), dtype=np.uint8) for _ in range(3)]
    rows = {}
    for precision in precisions:
        torch.manual_seed(0)
        enc = FrameEncoder(args.model, "none", MEAN, STD, precision=precision, compile=compile_,
                           batch_size=batches[0])
        print(f"   {args.model} {precision} on {enc.device}{' compiled' if enc.compiled else ''}", flush=True)
        for b in batches:
            key = f"{precision}{'+compile' if compile_ else ''}@{b}"
            if budget.left() < (60 if compile_ else 8):
                rows[key] = {"skipped": "time budget"}
                continue
            enc.batch_size = b
            t = time.perf_counter()
            enc.embed(sets[0][:b])  # warm-up (for compile: the compilation of this shape)
            first_s = time.perf_counter() - t
            enc.embed(sets[1][:b])
            n, t = 0, time.perf_counter()
            while True:
                enc.embed(sets[n % len(sets)][:b])
                n += 1
                dt = time.perf_counter() - t
                if (dt >= args.seconds and n >= 3) or dt >= 4 * args.seconds:
                    break
            row = {"frames_per_s": round(n * b / dt, 1), "batches": n, "first_call_s": round(first_s, 2)}
            if enc.device == "cuda":  # the model alone, frames already on the GPU, timed with events
                from vidclust.encoder import normalise_frames

                x = normalise_frames(sets[2][:b], MEAN, STD, "cuda")
                dtype = enc.autocast_dtype or torch.float32
                with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=enc.autocast_dtype is not None):
                    for _ in range(2):
                        enc.model.encode_image(x)
                    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    reps = max(3, int(2000 / b))
                    start.record()
                    for _ in range(reps):
                        enc.model.encode_image(x)
                    stop.record()
                    torch.cuda.synchronize()
                row["model_only_frames_per_s"] = round(reps * b / (start.elapsed_time(stop) / 1000), 1)
                row["peak_gpu_mem_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20)
                torch.cuda.reset_peak_memory_stats()
            rows[key] = row
            print(f"   {key}: {row}", flush=True)
        del enc
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


def make_corpus(work: Path, n_clips: int, seconds: float, gop: int = 25) -> list[Path]:
    """`n_clips` distinct 320x240 H.264 clips (MSR-VTT's size) with a keyframe every `gop` frames
    (every second by default; 1: every frame, so that keyframes=true decodes one cheap intra frame
    per frame embedded: the pipeline's ceiling when decoding costs the CPUs little), in parallel."""
    from concurrent.futures import ProcessPoolExecutor

    from vidclust.example import write_topic_clips

    with ProcessPoolExecutor(max(1, min(n_clips, (os.cpu_count() or 2) - 1))) as pool:
        futures = [pool.submit(write_topic_clips, work / f"clips-gop{gop}", 1, seconds, gop=gop, first=i)
                   for i in range(n_clips)]
        return [f.result()[0] for f in futures]


def cosine_check(args, clips: list[Path]) -> dict:
    """fp16 / bf16 autocast against fp32 on the same real frames and the same weights."""
    import torch

    from vidclust.config import DecodeConfig, SamplingConfig
    from vidclust.decode import sample_frames
    from vidclust.encoder import FrameEncoder

    frames = np.concatenate([c.frames for p in clips[:4] for c in
                             sample_frames(str(p), SamplingConfig(image_size=224), DecodeConfig(backend="pyav"))])
    torch.manual_seed(0)
    enc = FrameEncoder(args.model, "none", MEAN, STD, precision="fp32", batch_size=256)
    ref = np.concatenate([enc.embed(frames[i:i + 256]) for i in range(0, len(frames), 256)])
    out = {"frames": int(len(frames)), "device": enc.device}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        if enc.device != "cuda":
            break
        enc.autocast_dtype = dtype
        z = np.concatenate([enc.embed(frames[i:i + 256]) for i in range(0, len(frames), 256)])
        cos = (z * ref).sum(1)
        out[name] = {"min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6)}
    return out


def pipeline(args, clips: list[Path], work: Path, keyframes: bool, encoder_fps: dict, budget: Budget,
             name: str = "") -> dict:
    """`run_embed` over a manifest of the clips repeated, sized from a one-core decode measurement
    so that the run takes about `args.pipeline_s` seconds."""
    import ray

    from vidclust.config import load_config
    from vidclust.decode import sample_frames
    from vidclust.embed import GPU_BATCH_SIZE, resolve_embed_config, run_embed

    overrides = [f"embed.encoder.model={args.model}", "embed.encoder.pretrained=none",
                 f"embed.sampling.keyframes={'true' if keyframes else 'false'}", "embed.decode.backend=pyav"]
    if not args.smoke:
        overrides.append("embed.encoder.device=gpu")
    cfg = load_config(None, overrides + args.set)
    _, ecfg = resolve_embed_config(cfg.embed)
    t, n = time.perf_counter(), 0
    for c in sample_frames(str(clips[0]), ecfg.sampling, ecfg.decode):
        n += len(c.frame_index)
    one_core_fps = n / (time.perf_counter() - t)
    cores = max(1, (os.cpu_count() or 2) - 1)
    wanted_frames = min(args.max_frames, one_core_fps * cores * args.pipeline_s)
    rows = max(len(clips), min(args.max_videos, int(wanted_frames / max(1, n))))
    name = name or ("kf" if keyframes else "default")
    manifest = work / f"manifest-{name}.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "video_id"])
        for i in range(rows):
            w.writerow([str(clips[i % len(clips)]), f"v{i:06d}"])
    out = work / f"out-{name}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    resources = ray.cluster_resources()
    own = {os.getpid()}
    try:
        with GpuSampler() as sampler:
            t = time.perf_counter()
            summary = run_embed(cfg, str(manifest), str(out), show_progress=False)
            wall = time.perf_counter() - t
    finally:
        ray.shutdown()
    result = {"videos": rows, "frames": summary["frames"], "frames_per_video": n,
              "one_core_decode_frames_per_s": round(one_core_fps, 1), "ray_cpus": resources.get("CPU"),
              "ray_gpus": resources.get("GPU", 0), "wall_s": round(wall, 2),
              "frames_per_s_whole_run": round(summary["frames"] / wall, 1),
              "failed": summary.get("failed"), **sampler.summary(exclude_pids=own)}
    if result.get("encoder_window_s"):
        result["frames_per_s_encoder_window"] = round(summary["frames"] / result["encoder_window_s"], 1)
    ref = encoder_fps.get(f"fp16@{cfg.embed.encoder.batch_size or GPU_BATCH_SIZE}", {}).get("frames_per_s")
    if ref:
        result["encoder_alone_fp16_same_batch_fps"] = ref
        result["pipeline_over_encoder_alone"] = round(result.get("frames_per_s_encoder_window",
                                                                 result["frames_per_s_whole_run"]) / ref, 3)
    import pyarrow.parquet as pq

    result["videos_parquet_rows"] = pq.read_metadata(str(out / "videos.parquet")).num_rows
    return result


def describe_gpu(args, work: Path) -> dict:
    cmd = [sys.executable, str(REPO / "bench" / "bench_describe.py"), "--summarizer", "bart-large-random",
           "--keybert-random", "--clusters", str(args.describe_clusters), "--videos", str(args.describe_videos),
           "--workdir", str(work / "describe")]
    if args.smoke:
        cmd += ["--set", "describe.summary_max_tokens=8", "--set", "describe.summary_min_tokens=2"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, args.budget_s))
    if p.returncode != 0:
        raise RuntimeError(f"bench_describe failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def pytest_gpu() -> dict:
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"],
                       capture_output=True, text=True, cwd=str(REPO), timeout=300)
    return {"returncode": p.returncode, "tail": p.stdout[-1500:] + p.stderr[-500:]}


def table(results: dict) -> str:
    lines = [f"device: {results.get('env', {}).get('gpu')} | {results.get('env', {}).get('nvidia_smi')}"]
    enc = {**(results.get("encoder") or {}), **(results.get("encoder_compiled") or {})}
    if enc and "error" not in enc:
        lines.append("encoder alone (ViT-B-32), frames/s: embed() host->host | model only on GPU")
        for key, row in enc.items():
            if isinstance(row, dict) and "frames_per_s" in row:
                lines.append(f"  {key:>18}: {row['frames_per_s']:>9.0f} | {row.get('model_only_frames_per_s', 0):>9.0f}"
                             f"  (first call {row['first_call_s']} s)")
    for name in ("cosine", "pipeline_default", "pipeline_keyframes", "pipeline_intra", "describe", "pytest"):
        if name in results:
            lines.append(f"{name}: {json.dumps(results[name], default=str)[:600]}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/vidclust-bench-gpu")
    ap.add_argument("--budget-s", type=float, default=420)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per encoder setting")
    ap.add_argument("--pipeline-s", type=float, default=25, help="aimed length of a pipeline run")
    ap.add_argument("--max-frames", type=int, default=400_000)
    ap.add_argument("--max-videos", type=int, default=3000, help="videos of a pipeline run at most")
    ap.add_argument("--describe-clusters", type=int, default=20)
    ap.add_argument("--describe-videos", type=int, default=20)
    ap.add_argument("--set", action="append", default=[], help="config overrides for the pipeline runs")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU check of the script")
    ap.add_argument("--only", default=None,
                    help="comma-separated sections to run (default: all but corpus_intra,pipeline_intra)")
    ap.add_argument("--batches", default="128,512,1024")
    ap.add_argument("--precisions", default="fp32,fp16,bf16")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    batches = [int(b) for b in args.batches.split(",")]
    precisions = args.precisions.split(",")
    n_clips, clip_s = 16, 30.0
    if args.smoke:
        batches, precisions, args.seconds, args.pipeline_s = [4, 8], ["fp32"], 0.2, 4
        n_clips, clip_s, args.describe_clusters, args.describe_videos = 2, 4.0, 2, 2
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(args)}

    wanted = set(args.only.split(",")) if args.only else None

    def section(results, name, budget, need_s, fn, *fargs):
        """Runs the section where asked for: by default every one but the intra-frame pipeline"""
        if name == "env" or (name in wanted if wanted else not name.endswith("_intra")):
            run_section(results, name, budget, need_s, fn, *fargs)

    def save():
        (out / "bench_gpu.json").write_text(json.dumps(results, indent=1, default=str))

    section(results, "env", budget, 0, versions)
    save()
    section(results, "encoder", budget, 20, encoder_alone, args, precisions, batches, False, budget)
    save()
    clips: list[Path] = []
    section(results, "corpus", budget, 20, lambda: {"clips": [str(p) for p in clips.extend(
        make_corpus(work, n_clips, clip_s)) or clips]})
    section(results, "cosine", budget, 10, cosine_check, args, clips)
    intra: list[Path] = []
    section(results, "corpus_intra", budget, 20, lambda: {"clips": [str(p) for p in intra.extend(
        make_corpus(work, n_clips, clip_s, gop=1)) or intra]})
    section(results, "pipeline_intra", budget, args.pipeline_s + 30, pipeline, args, intra, work, True,
            results.get("encoder") or {}, budget, "intra")
    save()
    enc_rows = results.get("encoder") if isinstance(results.get("encoder"), dict) else {}
    section(results, "pipeline_default", budget, args.pipeline_s + 30, pipeline, args, clips, work, False, enc_rows, budget)
    save()
    section(results, "describe", budget, 60, describe_gpu, args, work)
    save()
    section(results, "pytest", budget, 60, pytest_gpu)
    save()
    section(results, "pipeline_keyframes", budget, args.pipeline_s + 30, pipeline, args, clips, work, True, enc_rows, budget)
    save()
    if not args.smoke:
        section(results, "encoder_compiled", budget, 90, encoder_alone, args, ["fp16"], batches[::-1], True, budget)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    print("=" * 100)
    print(table(results), flush=True)


if __name__ == "__main__":
    main()
