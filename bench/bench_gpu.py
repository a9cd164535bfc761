"""The GPU check (issues "Prove it on a GPU", "Feed the GPUs"): every figure from one run on one GPU machine.

    scripts/gpu_check.sh                                        # on the GPU machine, OUT set
    scripts/gpu_check.sh --smoke                                # the same code paths, tiny, on a CPU (a test)

Sections, most important first; each is skipped once the time budget is spent, and a section that
fails records its error, the next one runs, and the run ends with exit status 1:
  1. env: GPU name, driver, versions, whether libnvcuvid (NVDEC) loads;
  2. encoder: ViT-B-32 (random weights: speed does not depend on them), frames/s of
     `FrameEncoder.embed` host to host (uint8 frames in host memory to unit-length float32
     embeddings back there) one batch a call, as two threads calling at once (the GPU actor's two
     concurrent calls), and 8 batches a call (the pinned double buffer's overlap), against the
     model alone on frames already on the GPU (CUDA events): `host_to_host_over_model`;
  3. cosine: fp16 and bf16 embeddings against fp32 ones on the same real video frames;
  4. nvdec: decoding alone through vidclust's decode API (`sample_frames`, decode.device=cuda)
     at 1/4/8/16 sessions (threads of one process) per codec and size, every 10th frame and
     keyframes; the backend that decoded says whether NVDEC ran (else the reason it did not);
  5. decode_cpu: the same on the CPUs alone (device=cpu), one process per CPU: the node's CPU
     decode capacity;
  6. pipeline_*: `run_embed` on a local Ray of this machine per sampling mode and size (keyframes
     at 360p and 720p, every 10th frame at 1080p, decode.device=auto), with run.json's own
     account: frames/s, decode CPU-s per frame, decoders, the GPU's busy fraction (NVML, in the
     encoder), and the ratios against the encoder alone and the decode capacity;
  7. pytest (run after cosine): tests/test_gpu.py and tests/test_encoder.py (the CUDA-only tests);
  8. describe on the GPU (bench_describe.py) and the encoder compiled, if time is left.
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
    import ctypes

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cpus": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "NVIDIA_DRIVER_CAPABILITIES": os.environ.get("NVIDIA_DRIVER_CAPABILITIES")}
    for mod in ("ray", "open_clip", "transformers", "av", "pyarrow", "numpy", "pynvml"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", "present")
        except Exception as exc:
            out[mod] = f"missing ({exc})"
    for lib in ("libcuda.so.1", "libnvcuvid.so.1"):
        try:
            ctypes.CDLL(lib)
            out[lib] = "loads"
        except OSError as exc:
            out[lib] = f"missing ({exc})"
    try:
        out["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as exc:
        out["nvidia_smi"] = f"unavailable ({exc})"
    return out


def _rate(fn, frames_per_call: int, seconds: float) -> float:
    """frames/s of `fn()` repeated for about `seconds` (after two warm-up calls)."""
    fn()
    fn()
    n, t = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t
        if (dt >= seconds and n >= 3) or dt >= 4 * seconds:
            return round(n * frames_per_call / dt, 1)


def encoder_alone(args, precisions, batches, compile_: bool, budget: Budget) -> dict:
    """Host to host (one batch a call; two threads calling at once; 8 batches a call) against the
    model alone on GPU-resident frames: what the feeding of the GPU costs."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from vidclust.models.encoder import FrameEncoder, normalise_frames

    rng = np.random.default_rng(0)
    biggest = max(batches)
    # random data, never zeros; 8 batches of the largest size, so that no call re-reads one buffer
    frames = rng.integers(0, 256, (8 * biggest, 224, 224, 3), dtype=np.uint8)
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
            enc.embed(frames[:b])  # warm-up (for compile: the compilation of this shape)
            first_s = time.perf_counter() - t
            calls = iter(range(10**9))
            row = {"frames_per_s": _rate(lambda: enc.embed(frames[(next(calls) % 8) * b:][:b]), b, args.seconds),
                   "first_call_s": round(first_s, 2)}
            with ThreadPoolExecutor(2) as pool:
                row["frames_per_s_two_threads"] = _rate(
                    lambda: list(pool.map(enc.embed, [frames[:b], frames[b:2 * b]])), 2 * b, args.seconds)
            row["frames_per_s_8_batches_a_call"] = _rate(lambda: enc.embed(frames[:8 * b]), 8 * b, args.seconds)
            if enc.device == "cuda":  # the model alone, frames already on the GPU, timed with events
                x = normalise_frames(frames[:b], MEAN, STD, "cuda")
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
                model = reps * b / (start.elapsed_time(stop) / 1000)
                row["model_only_frames_per_s"] = round(model, 1)
                for mode in ("frames_per_s", "frames_per_s_two_threads", "frames_per_s_8_batches_a_call"):
                    row[mode.replace("frames_per_s", "host_to_host_over_model")] = round(row[mode] / model, 3)
                row["peak_gpu_mem_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20)
                torch.cuda.reset_peak_memory_stats()
            rows[key] = row
            print(f"   {key}: {row}", flush=True)
        enc = None  # the model goes before the next precision loads
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


SIZES = {"360p": (360, 640), "720p": (720, 1280), "1080p": (1080, 1920), "240p": (240, 320)}
ENCODERS = {"h264": ("libx264", {"preset": "ultrafast", "bf": "2"}),
            "hevc": ("libx265", {"preset": "ultrafast", "x265-params": "log-level=error"})}


def write_clip(path: str, codec: str, size: str, n_frames: int, seed: int, gop: int = 25) -> str:
    """One clip of the example topics (moving, not noise) in `codec` at `size`, a keyframe every
    `gop` frames, encoded fast (ultrafast presets: the decoder's work is what is measured)."""
    import av

    from vidclust.example import TOPICS, topic_frame

    if os.path.exists(path) and os.path.getsize(path) > 1000:
        return path
    h, w = SIZES[size]
    name, options = ENCODERS[codec]
    topic, rng = tuple(TOPICS)[seed % len(TOPICS)], np.random.default_rng(seed)
    small = (max(2, h // 4), max(2, w // 4))  # drawn small and scaled up: drawing 1080p frames is slow
    with av.open(path, "w") as c:
        s = c.add_stream(name, rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {**options, "g": str(gop)}
        for t in range(n_frames):
            img = np.clip(topic_frame(topic, t, small, rng), 0, 255).astype(np.uint8)
            img = np.ascontiguousarray(img.repeat(h // small[0] + 1, 0)[:h].repeat(w // small[1] + 1, 1)[:, :w])
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_clips(work: Path, codec: str, size: str, n_clips: int, seconds: float, gop: int = 25) -> list[str]:
    """`n_clips` distinct clips, written in parallel (kept between runs)."""
    from concurrent.futures import ProcessPoolExecutor

    folder = work / f"clips-{codec}-{size}-gop{gop}"
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max(1, min(n_clips, os.cpu_count() or 2))) as pool:
        futures = [pool.submit(write_clip, str(folder / f"clip{i:03d}.mp4"), codec, size, max(2, int(seconds * 25)),
                               i, gop) for i in range(n_clips)]
        return [f.result() for f in futures]


def cosine_check(args, clips: list[str]) -> dict:
    """fp16 / bf16 autocast against fp32 on the same real frames and the same weights."""
    import torch

    from vidclust.config import DecodeConfig, SamplingConfig
    from vidclust.embedding.decode import sample_frames
    from vidclust.models.encoder import FrameEncoder

    frames = np.concatenate([c.frames for p in clips[:4] for c in
                             sample_frames(str(p), SamplingConfig(image_size=224), DecodeConfig(backend="pyav"))])
    torch.manual_seed(0)
    enc = FrameEncoder(args.model, "none", MEAN, STD, precision="fp32", batch_size=256)
    ref = enc.embed(frames)
    out = {"frames": int(len(frames)), "device": enc.device}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        if enc.device != "cuda":
            break
        enc.autocast_dtype = dtype
        cos = (enc.embed(frames) * ref).sum(1)
        out[name] = {"min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6)}
    return out


SAMPLINGS = {"every10": {"frame_interval": 10}, "keyframes": {"keyframes": True}}


def _decode_loop(path: str, sampling: dict, device: str, until: float) -> tuple[int, int, float, set]:
    """Decode `path` through vidclust's decode API again and again until `until`: (frames
    embedded-to-be, videos, CPU-seconds of this thread, backends that made the frames)."""
    from vidclust.config import DecodeConfig, SamplingConfig
    from vidclust.embedding.decode import DecodeResult, sample_frames

    n, videos, backends, cpu = 0, 0, set(), time.thread_time()
    while time.monotonic() < until or not videos:
        result = DecodeResult()
        for chunk in sample_frames(path, SamplingConfig(image_size=224, **sampling),
                                   DecodeConfig(device=device), result):
            n += len(chunk.frame_index)
        videos += 1
        backends.add(result.backend)
    return n, videos, time.thread_time() - cpu, backends


def nvdec_unavailable(env: dict) -> str | None:
    if not str(env.get("gpu") or ""):
        return "no CUDA GPU visible to torch"
    if env.get("libnvcuvid.so.1") != "loads":
        return (f"libnvcuvid.so.1 does not load ({env.get('libnvcuvid.so.1')}): the container's "
                f"NVIDIA_DRIVER_CAPABILITIES={env.get('NVIDIA_DRIVER_CAPABILITIES')} lacks 'video'")
    return None


def decode_sessions(args, clips: dict, env: dict, budget: Budget) -> dict:
    """NVDEC alone: 1/4/8/16 sessions (threads of this process, as decoder threads inside the GPU
    encoder actor would be), each decoding its own clip through `sample_frames` with
    decode.device=cuda, per codec, size and sampling. Where NVDEC cannot run, the reason."""
    from concurrent.futures import ThreadPoolExecutor

    why = nvdec_unavailable(env)
    if why and not args.smoke:
        return {"skipped": why}
    rows = {"nvdec_unavailable": why} if why else {}
    for key, paths in clips.items():
        for mode, sampling in SAMPLINGS.items():
            for sessions in args.sessions:
                if budget.left() < args.decode_s + 10:
                    rows[f"{key}/{mode}/{sessions}"] = {"skipped": "time budget"}
                    continue
                until = time.monotonic() + args.decode_s
                t = time.perf_counter()
                with ThreadPoolExecutor(sessions) as pool:
                    parts = list(pool.map(lambda i: _decode_loop(paths[i % len(paths)], sampling, "cuda", until),
                                          range(sessions)))
                wall = time.perf_counter() - t
                frames = sum(p[0] for p in parts)
                backends = sorted(set().union(*(p[3] for p in parts)))
                rows[f"{key}/{mode}/{sessions}"] = row = {
                    "frames_per_s": round(frames / wall, 1), "videos": sum(p[1] for p in parts),
                    "cpu_s_per_frame": round(sum(p[2] for p in parts) / max(1, frames), 6), "backends": backends}
                if not any("cuda" in b or "nvdec" in b for b in backends):
                    row["not_nvdec"] = ("decode.device=cuda decoded on the CPU: vidclust's NVDEC path is not there "
                                        "or refused this file" if not why else why)
                print(f"   {key}/{mode}/{sessions}: {row}", flush=True)
    return rows


def _decode_process(path: str, sampling: dict, until: float) -> tuple[int, int, float]:
    t = time.process_time()
    n, videos, _, _ = _decode_loop(path, sampling, "cpu", until)
    return n, videos, time.process_time() - t


def decode_cpu(args, clips: dict, budget: Budget) -> dict:
    """The CPUs alone: one decoding process per CPU (device=cpu), per codec, size and sampling."""
    from concurrent.futures import ProcessPoolExecutor

    rows = {}
    procs = max(1, os.cpu_count() or 1)
    with ProcessPoolExecutor(procs) as pool:
        first = next(iter(clips.values()))[0]
        list(pool.map(_decode_process, [first] * procs, [{"keyframes": True}] * procs, [0] * procs))  # imports
        for key, paths in clips.items():
            for mode, sampling in SAMPLINGS.items():
                if budget.left() < args.decode_s + 10:
                    rows[f"{key}/{mode}"] = {"skipped": "time budget"}
                    continue
                until = time.monotonic() + args.decode_s
                t = time.perf_counter()
                parts = list(pool.map(_decode_process, [paths[i % len(paths)] for i in range(procs)],
                                      [sampling] * procs, [until] * procs))
                wall = time.perf_counter() - t
                frames = sum(p[0] for p in parts)
                rows[f"{key}/{mode}"] = {"frames_per_s": round(frames / wall, 1), "processes": procs,
                                         "cpu_s_per_frame": round(sum(p[2] for p in parts) / max(1, frames), 6)}
                print(f"   {key}/{mode}: {rows[f'{key}/{mode}']}", flush=True)
    return rows


def pipeline(args, clips: list[str], work: Path, name: str, overrides: list[str], encoder_fps: dict,
             decode_fps: dict) -> dict:
    """`run_embed` over a manifest of the clips repeated (about `pipeline_s` seconds of the
    encoder's or the CPUs' work, whichever is less), on the local Ray started once for all
    pipelines; run.json's embed entry says where the time went."""
    from vidclust.config import load_config
    from vidclust.embedding.run import GPU_BATCH_SIZE, resolve_embed_config, run_embed

    overrides = [f"embed.encoder.model={args.model}", "embed.encoder.pretrained=none", *overrides, *args.set]
    if not args.smoke:
        overrides.append("embed.encoder.device=gpu")
    cfg = load_config(None, overrides)
    _, ecfg = resolve_embed_config(cfg.embed)
    sampling = {"keyframes": True} if ecfg.sampling.keyframes else {"frame_interval": ecfg.sampling.frame_interval}
    per_video, _, cpu_s, _ = _decode_loop(clips[0], sampling, "cpu", 0)
    cpu_fps = per_video / max(cpu_s, 1e-3)
    wanted = min(args.max_frames, max(cpu_fps * (os.cpu_count() or 1), 1) * args.pipeline_s)
    rows = max(len(clips), min(args.max_videos, int(wanted / max(1, per_video))))
    manifest = work / f"manifest-{name}.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "video_id"])
        for i in range(rows):
            w.writerow([str(clips[i % len(clips)]), f"v{i:06d}"])
    out = work / f"out-{name}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    with GpuSampler() as sampler:
        t = time.perf_counter()
        summary = run_embed(cfg, str(manifest), str(out), show_progress=False)
        wall = time.perf_counter() - t
    embed = json.loads((out / "run.json").read_text())["stages"]["embed"]
    result = {"videos": rows, "frames": summary["frames"], "frames_per_video": per_video, "wall_s": round(wall, 2),
              "failed": summary.get("failed"), "frames_per_s": embed["frames_per_second"],
              **{k: embed.get(k) for k in ("decode_cpu_s_per_frame", "decoders", "gpu_busy")},
              **sampler.summary(exclude_pids={os.getpid()})}
    ref = encoder_fps.get(f"fp16@{cfg.embed.encoder.batch_size or GPU_BATCH_SIZE}", {}).get("frames_per_s")
    if ref:
        result["encoder_alone_fp16_fps"] = ref
        result["pipeline_over_encoder_alone"] = round(result["frames_per_s"] / ref, 4)
    if decode_fps:
        result["decode_capacity_fps"] = decode_fps
        result["pipeline_over_decode_capacity"] = round(result["frames_per_s"] / decode_fps, 4)
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
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py",
                        "tests/test_encoder.py"], capture_output=True, text=True, cwd=str(REPO), timeout=300)
    return {"returncode": p.returncode, "tail": p.stdout[-1500:] + p.stderr[-500:]}


def table(results: dict) -> str:
    lines = [f"device: {results.get('env', {}).get('gpu')} | {results.get('env', {}).get('nvidia_smi')}"]
    enc = {**(results.get("encoder") or {}), **(results.get("encoder_compiled") or {})}
    if enc and "error" not in enc:
        lines.append("encoder alone (ViT-B-32), frames/s: host->host 1 batch/call | 2 threads | 8 batches/call "
                     "| model only on GPU")
        for key, row in enc.items():
            if isinstance(row, dict) and "frames_per_s" in row:
                lines.append(f"  {key:>18}: {row['frames_per_s']:>9.0f} | {row['frames_per_s_two_threads']:>9.0f} | "
                             f"{row['frames_per_s_8_batches_a_call']:>9.0f} | {row.get('model_only_frames_per_s', 0):>9.0f}")
    for name, value in results.items():
        if name.startswith(("cosine", "nvdec", "decode_cpu", "pipeline_", "describe", "pytest")) \
                and not name.endswith("_seconds"):
            lines.append(f"{name}: {json.dumps(value, default=str)[:900]}")
    return "\n".join(lines)


def _capacity(results: dict, key: str) -> float | None:
    """The node's decode capacity for `key` (codec/size/mode): the CPUs alone plus NVDEC alone at
    its best session count, each measured alone."""
    cpu = (results.get("decode_cpu") or {}).get(key, {}).get("frames_per_s") or 0
    nvdec = [r.get("frames_per_s", 0) for k, r in (results.get("nvdec") or {}).items()
             if isinstance(r, dict) and k.rsplit("/", 1)[0] == key and "not_nvdec" not in r]
    return round(cpu + max(nvdec, default=0), 1) or None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/vidclust-bench-gpu")
    ap.add_argument("--budget-s", type=float, default=420)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per encoder setting")
    ap.add_argument("--decode-s", type=float, default=2.0, help="timed seconds per decode setting")
    ap.add_argument("--pipeline-s", type=float, default=20, help="aimed length of a pipeline run")
    ap.add_argument("--max-frames", type=int, default=400_000)
    ap.add_argument("--max-videos", type=int, default=3000, help="videos of a pipeline run at most")
    ap.add_argument("--describe-clusters", type=int, default=20)
    ap.add_argument("--describe-videos", type=int, default=20)
    ap.add_argument("--set", action="append", default=[], help="config overrides for the pipeline runs")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU check of the script")
    ap.add_argument("--only", default=None, help="comma-separated sections to run (default: all)")
    ap.add_argument("--batches", default="256,512,1024")
    ap.add_argument("--precisions", default="fp16,bf16")
    ap.add_argument("--sessions", default="1,4,8,16")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    batches = [int(b) for b in args.batches.split(",")]
    precisions = args.precisions.split(",")
    args.sessions = [int(n) for n in args.sessions.split(",")]
    n_clips, clip_s, sizes = 16, 8.0, ("360p", "720p", "1080p")
    decode_keys = [("h264", "360p"), ("h264", "1080p"), ("hevc", "360p"), ("hevc", "1080p")]
    if args.smoke:
        batches, precisions, args.seconds, args.pipeline_s, args.decode_s = [4], ["fp32"], 0.1, 1, 0.2
        args.sessions, n_clips, clip_s, sizes = [1, 2], 2, 2.0, ("240p",)
        decode_keys = [("h264", "240p"), ("hevc", "240p")]
        args.describe_clusters = args.describe_videos = 2
        args.max_videos = 4
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": vars(args)}
    wanted = set(args.only.split(",")) if args.only else None

    def section(name, need_s, fn, *fargs):
        if name == "env" or not wanted or name in wanted or name.split("_")[0] in wanted:
            run_section(results, name, budget, need_s, fn, *fargs)
            (out / "bench_gpu.json").write_text(json.dumps(results, indent=1, default=str))

    section("env", 0, versions)
    section("encoder", 20, encoder_alone, args, precisions, batches, False, budget)
    clips: dict = {}

    def corpus():
        from concurrent.futures import ThreadPoolExecutor

        keys = sorted(set(decode_keys) | {("h264", s) for s in sizes})
        with ThreadPoolExecutor(len(keys)) as pool:  # each writes its clips in processes of its own
            for (codec, size), paths in zip(keys, pool.map(lambda k: make_clips(work, *k, n_clips, clip_s), keys)):
                clips[f"{codec}/{size}"] = paths
        return {k: len(v) for k, v in clips.items()}

    section("corpus", 30, corpus)
    section("cosine", 10, cosine_check, args, clips.get(f"h264/{sizes[0]}", []))
    if not args.smoke:  # the CUDA tests of the feed and the GPU path: before the figures
        section("pytest", 60, pytest_gpu)
    env = results.get("env") or {}
    section("nvdec", 30, decode_sessions, args, {f"{c}/{s}": clips[f"{c}/{s}"] for c, s in decode_keys
                                                 if f"{c}/{s}" in clips}, env, budget)
    section("decode_cpu", 20, decode_cpu, args, {f"{c}/{s}": clips[f"{c}/{s}"] for c, s in decode_keys
                                                 if f"{c}/{s}" in clips}, budget)
    enc_rows = results.get("encoder") if isinstance(results.get("encoder"), dict) else {}
    runs = [(f"pipeline_keyframes_{sizes[0]}", sizes[0], ["embed.sampling.keyframes=true"]),
            (f"pipeline_every10_{sizes[-1]}", sizes[-1], ["embed.decode.device=auto"])]
    if len(sizes) > 2:
        runs.insert(1, (f"pipeline_keyframes_{sizes[1]}", sizes[1], ["embed.sampling.keyframes=true"]))
    if any(not wanted or name in wanted or "pipeline" in wanted for name, _, _ in runs) and clips:
        import ray

        try:
            ray.init(address="local", include_dashboard=False, logging_level="ERROR")  # once for every pipeline
        except Exception as exc:  # recorded, and the run goes on (and ends with exit status 1)
            results["pipeline_ray"] = {"error": f"ray.init: {type(exc).__name__}: {exc}"}
            runs = []
        try:
            for name, size, overrides in runs:
                mode = "keyframes" if "keyframes" in name else "every10"
                section(name, args.pipeline_s + 30, pipeline, args, clips[f"h264/{size}"], work, name, overrides,
                        enc_rows, _capacity(results, f"h264/{size}/{mode}"))
        finally:
            ray.shutdown()
    if not args.smoke:  # the smoke run is itself a test; describe is another issue's figure
        section("describe", 60, describe_gpu, args, work)
        section("encoder_compiled", 90, encoder_alone, args, ["fp16"], batches[::-1], True, budget)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    errors = sorted(k for k, v in results.items() if isinstance(v, dict) and "error" in v)
    if (results.get("pytest") or {}).get("returncode") not in (None, 0):
        errors.append("pytest")
    results["errors"] = errors
    (out / "bench_gpu.json").write_text(json.dumps(results, indent=1, default=str))
    print("=" * 100)
    print(table(results), flush=True)
    if errors:
        print(f"FAILED sections: {', '.join(errors)} (see bench_gpu.json)", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
