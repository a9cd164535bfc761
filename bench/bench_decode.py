"""Benchmark of decoding and sampling (issue 10): what each backend and sampling mode decodes and
costs per embedded frame, all on the same H.264 clips made here with PyAV, in one run.

    .venv/bin/python bench/bench_decode.py [--seconds 20] [--cli-loops 3] [--long-minutes 5]

  - clips: 360p, 720p and 1080p H.264 at 30 fps, `--seconds` long, a keyframe every 2 s, B-frames
    (x264 veryfast), panning texture and moving blocks so that the encoder does real work;
  - per clip, backend (torchcodec, pyav, decord) and sampling mode (every 10th frame: the default;
    keyframes=true; fps=1; max_frames=8; every 10th with threads=0): frames decoded per frame
    embedded (n_frames_decoded / n_frames_sampled), CPU ms per embedded frame (user+system of
    this process, all threads), and CPU time relative to decoding every frame of the file with
    PyAV on one thread (`full`);
  - the CLI: `vidclust embed` with a tiny random open_clip model on three 1080p files (the 1080p clip
    looped `--cli-loops` times), default sampling and keyframes=true: wall time, start-up included,
    and the decode-only CPU time of the same files;
  - memory: peak RSS growth of a decode-only process over its start, on a 10 s and a
    `--long-minutes` 360p clip, per backend (default sampling).
Output goes to stdout and bench/results/bench_decode.txt; clips are kept in bench/results/clips.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from vidclust.config import DecodeConfig, SamplingConfig  # noqa: E402
from vidclust.embedding.decode import DecodeResult, backend_unavailable, sample_frames  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIZES = {"360p": (360, 640), "720p": (720, 1280), "1080p": (1080, 1920)}
BACKENDS = ("torchcodec", "pyav", "decord")
MODES = {  # name: (SamplingConfig kwargs, DecodeConfig kwargs)
    "every 10th": ({}, {}),
    "keyframes": ({"keyframes": True}, {}),
    "fps=1": ({"fps": 1.0}, {}),
    "max_frames=8": ({"max_frames": 8}, {}),
    "every 10th, threads=0": ({}, {"threads": 0}),
}


def write_clip(path: Path, seconds: float, size: tuple[int, int], fps: int = 30, seed: int = 0) -> Path:
    """H.264 with motion: a panning random texture, moving blocks and a little changing noise."""
    import av

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    rng = np.random.default_rng(seed)
    texture = np.repeat(np.repeat(rng.integers(0, 256, (h // 8 + 64, w // 8 + 64, 3), np.uint8), 8, 0), 8, 1)
    noise = [rng.integers(0, 4, (h, w, 3), np.uint8) for _ in range(4)]  # grain, web-like bitrates
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.height, stream.width = h, w
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23",
                          "x264-params": f"keyint={2 * fps}:min-keyint={2 * fps}:scenecut=0:bframes=2"}
        for t in range(int(seconds * fps)):
            dy, dx = (3 * t) % 256, (5 * t) % 256
            img = texture[dy:dy + h, dx:dx + w].copy()
            for k in range(3):
                y = int((h - h // 5) * (0.5 + 0.5 * np.sin(t / (17 + 5 * k) + k)))
                x = int((w - w // 5) * (0.5 + 0.5 * np.cos(t / (23 + 7 * k) + 2 * k)))
                img[y:y + h // 5, x:x + w // 5] = (80 * k + 60, 200 - 60 * k, 40 + 90 * k)
            img = img + noise[t % 4]  # uint8 wrap-around: still noise
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def loop_clip(src: Path, dst: Path, times: int) -> Path:
    """`src` played `times` times over, by re-muxing its packets (nothing re-encoded)."""
    import av

    if dst.exists():
        return dst
    tmp = dst.with_suffix(".part.mp4")
    with av.open(str(src)) as probe:
        s = probe.streams.video[0]
        span = int(round(s.frames / float(s.average_rate) / s.time_base))
    with av.open(str(tmp), "w") as out:
        s_out = None
        for k in range(times):
            with av.open(str(src)) as inp:
                s_in = inp.streams.video[0]
                if s_out is None:
                    s_out = out.add_stream_from_template(s_in)
                for p in inp.demux(s_in):
                    if not p.size:
                        continue
                    p.pts, p.dts = p.pts + k * span, p.dts + k * span
                    p.stream = s_out
                    out.mux(p)
    tmp.rename(dst)
    return dst


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def full_decode_cpu(path: Path) -> tuple[float, int]:
    """CPU seconds to decode every frame with PyAV on one thread (nothing converted), frames."""
    import av

    c0 = cpu_s()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_count = 1
        n = sum(1 for _ in c.decode(s))
    return cpu_s() - c0, n


def run_mode(path: Path, backend: str, sampling: dict, decode: dict) -> dict:
    result = DecodeResult()
    c0, t0 = cpu_s(), time.perf_counter()
    n = 0
    for chunk in sample_frames(str(path), SamplingConfig(**{"image_size": 224, **sampling}),
                               DecodeConfig(backend=backend, **decode), result):
        n += len(chunk.frame_index)
    return {"cpu": cpu_s() - c0, "wall": time.perf_counter() - t0, "sampled": n,
            "decoded": result.n_frames_decoded, "backend": result.backend}


def peak_rss_growth(backend: str, path: Path) -> float:
    """Peak RSS growth (MiB) of a fresh process over its start, decoding `path` (default sampling)."""
    code = f"""
import sys; sys.path.insert(0, {str(ROOT)!r})
from vidclust.config import SamplingConfig, DecodeConfig
from vidclust.embedding.decode import sample_frames, backend_unavailable
backend_unavailable({backend!r})  # imported before the baseline
import av, decord
def hwm():
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) / 1024
base = hwm()
n = sum(len(c.frame_index)
        for c in sample_frames({str(path)!r}, SamplingConfig(image_size=224), DecodeConfig(backend={backend!r})))
print(hwm() - base)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if out.returncode:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def tiny_model(folder: Path) -> tuple[str, str]:
    import open_clip
    import torch

    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    cfg_path = folder / "tiny-clip.json"
    cfg_path.write_text(json.dumps(cfg))
    open_clip.add_model_config(str(cfg_path))
    torch.manual_seed(0)
    ckpt = folder / "tiny-clip.pt"
    torch.save(open_clip.create_model("tiny-clip", pretrained=None).state_dict(), ckpt)
    return str(cfg_path), str(ckpt)


def cli_embed(source: Path, out: Path, model: tuple[str, str], extra: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_ADDRESS": "local",
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "vidclust.cli", "embed", str(source), str(out), "--model", model[0],
                        "--pretrained", model[1], "-q", "--set", "embed.encoder.batch_size=32", *extra],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"vidclust embed failed:\n{r.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--cli-loops", type=int, default=3, help="1080p clip looped this often for the CLI files")
    ap.add_argument("--long-minutes", type=float, default=5.0)
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--skip-table", action="store_true", help="only the CLI (and memory) figures")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    clips = {name: write_clip(RESULTS / "clips" / f"h264_{name}_{args.seconds:g}s.mp4", args.seconds, size, seed=i)
             for i, (name, size) in enumerate(SIZES.items())}
    backends = [b for b in BACKENDS if not backend_unavailable(b)]
    for b in BACKENDS:
        if backend_unavailable(b):
            emit(f"skipped: {backend_unavailable(b)}")
    for b in backends:  # load each backend's libraries before any timing
        run_mode(clips["360p"], b, {"max_frames": 1}, {})
    emit(f"# decode, {os.cpu_count()} CPUs; H.264 {args.seconds:g} s at 30 fps, keyframe every 2 s, "
         f"B-frames; CPU = user+system of all threads; full = every frame, PyAV, one thread")
    emit("| clip | backend | sampling | embedded | decoded/embedded | CPU ms/embedded | wall s | CPU vs full |")
    emit("|---|---|---|---:|---:|---:|---:|---:|")
    for name, path in ({} if args.skip_table else clips).items():
        full_cpu, n_all = full_decode_cpu(path)
        emit(f"| {name} | pyav | full (every frame, 1 thread) | {n_all} | 1.00 | "
             f"{1000 * full_cpu / n_all:.1f} | {full_cpu:.2f} | 1.00 |")
        for backend in backends:
            for mode, (s_kw, d_kw) in MODES.items():
                r = run_mode(path, backend, s_kw, d_kw)
                emit(f"| {name} | {r['backend']} | {mode} | {r['sampled']} | {r['decoded'] / r['sampled']:.2f} | "
                     f"{1000 * r['cpu'] / r['sampled']:.1f} | {r['wall']:.2f} | {r['cpu'] / full_cpu:.3f} |")

    if not args.skip_cli:
        with tempfile.TemporaryDirectory(prefix="vidclust-bench-") as tmp:
            tmp = Path(tmp)
            src = tmp / "videos"
            src.mkdir()
            looped = loop_clip(clips["1080p"], RESULTS / "clips" / f"h264_1080p_x{args.cli_loops}.mp4", args.cli_loops)
            for k in range(3):
                os.link(looped, src / f"v{k}.mp4")
            model = tiny_model(tmp)
            emit()
            emit(f"# vidclust embed, 3 x 1080p H.264 {args.seconds * args.cli_loops:g} s, tiny random "
                 "open_clip model on CPU, a local Ray started by the command (start-up included)")
            emit("| sampling | frames embedded | CLI wall s | decode-only CPU s (same files, one process) |")
            emit("|---|---:|---:|---:|")
            walls = {}
            for mode, extra in [("every 10th (default)", []), ("keyframes=true", ["--set", "embed.sampling.keyframes=true"])]:
                out = tmp / ("out_" + str(len(walls)))
                walls[mode] = cli_embed(src, out, model, extra)
                import pyarrow.parquet as pq

                t = pq.read_table(out / "videos.parquet")
                n_emb = sum(t.column("n_frames_sampled").to_pylist()) if "n_frames_sampled" in t.column_names else "?"
                s_kw = {"keyframes": True} if extra else {}
                dec_cpu = sum(run_mode(p, "auto", s_kw, {})["cpu"] for p in sorted(src.iterdir()))
                walls[mode + "_dec"] = dec_cpu
                emit(f"| {mode} | {n_emb} | {walls[mode]:.1f} | {dec_cpu:.2f} |")
                shutil.rmtree(out)
            a, b = "every 10th (default)", "keyframes=true"
            emit(f"keyframes/default: CLI wall {walls[b] / walls[a]:.2f}, decode CPU {walls[b + '_dec'] / walls[a + '_dec']:.3f}")

    if not args.skip_memory:
        short = write_clip(RESULTS / "clips" / "h264_360p_10s.mp4", 10, SIZES["360p"], seed=7)
        loops = max(1, int(round(args.long_minutes * 60 / 10)))
        long = loop_clip(short, RESULTS / "clips" / f"h264_360p_x{loops}.mp4", loops)
        emit()
        emit(f"# peak RSS growth of a decode-only process (default sampling), 360p H.264: 10 s vs "
             f"{loops * 10 / 60:g} min")
        emit("| backend | 10 s clip MiB | long clip MiB |")
        emit("|---|---:|---:|")
        for backend in backends:
            emit(f"| {backend} | {peak_rss_growth(backend, short):.0f} | {peak_rss_growth(backend, long):.0f} |")

    (RESULTS / "bench_decode.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
