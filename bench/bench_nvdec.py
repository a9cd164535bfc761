"""Benchmark of NVDEC through PyAV's CUDA hwaccel (issue 21, items 1 and 3), for a GPU machine:
vidclust's own NVDEC path (`sample_frames(..., gpu_frames=True)`, frames resized and converted on
the GPU) run by N threads at once, as the GPU encoder actor (`embed.DecodingEncoder`) runs its
`embed.decode.nvdec_sessions`.

    .venv/bin/python bench/bench_nvdec.py [--seconds 10] [--short 64] [--smoke]

  - clips: H.264 360p and 1080p at 30 fps, `--seconds` long, a keyframe every 2 s, B-frames
    (bench_decode.write_clip), 16 copies each; `--short` 1-second 360p clips (30 frames);
  - per clip size and sampling mode (every 10th frame, keyframes=true), at 1/4/8/16 sessions:
    frames decoded per second and embedded (sampled) frames per second, wall time (the GPU's
    engines are the limit) and CPU seconds of this process per embedded frame;
  - the short clips, one session: seconds per video, and the same with the CPU decoder: what a
    30-frame clip pays for opening a decoder on the GPU (cuvid's set-up; the CUDA context is
    torch's, made once);
  - pixels: mean |NVDEC - CPU| per channel level over the sampled frames of the 360p clip.
`--smoke`: tiny clips, sessions 1 and 2; without a GPU every video falls back to the CPU (the
figures then say nothing of NVDEC; the run checks that the script works). Output: stdout and
bench/results/bench_nvdec.txt (bench_nvdec-smoke.txt with --smoke).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from bench_decode import write_clip  # noqa: E402
from vidclust.config import DecodeConfig, SamplingConfig  # noqa: E402
from vidclust.embedding.decode import DecodeResult, sample_frames  # noqa: E402
from vidclust.embedding.nvdec import BACKEND, environment  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODES = {"every 10th": {}, "keyframes": {"keyframes": True}}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def decode_all(paths, sampling: SamplingConfig, sessions: int, device: str = "cuda") -> dict:
    """Every path decoded by `sessions` threads; frames kept (on the GPU where NVDEC made them)
    until the video is done, as DecodingEncoder keeps them until it embeds them."""
    import torch

    def one(path):
        result = DecodeResult()
        n = 0
        for chunk in sample_frames(str(path), sampling, DecodeConfig(device=device), result, gpu_frames=True):
            n += len(chunk.frame_index)
        return n, result.n_frames_decoded, result.backend, result.note

    c0, t0 = cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        rows = list(pool.map(one, paths))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    sampled = sum(r[0] for r in rows)
    decoded = sum(r[1] for r in rows)
    backends = sorted({r[2] for r in rows})
    notes = sorted({r[3] for r in rows if r[3]})
    return {"sampled": sampled, "decoded": decoded, "wall_s": wall, "cpu_s": cpu, "backends": backends,
            "notes": notes, "decoded_per_s": decoded / wall, "sampled_per_s": sampled / wall,
            "cpu_ms_per_sampled": 1000 * cpu / max(sampled, 1)}


def pixels(path: Path) -> float:
    import torch

    sampling = SamplingConfig(image_size=224)
    gpu = list(sample_frames(str(path), sampling, DecodeConfig(device="cuda"), gpu_frames=True))
    cpu = list(sample_frames(str(path), sampling, DecodeConfig(device="cpu")))
    g = np.concatenate([c.frames.cpu().numpy() if isinstance(c.frames, torch.Tensor) else c.frames for c in gpu])
    return float(np.abs(g.astype(np.int16) - np.concatenate([c.frames for c in cpu]).astype(np.int16)).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--short", type=int, default=64)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.short = 2.0, 4
    sizes = {"360p": (360, 640)} if args.smoke else {"360p": (360, 640), "1080p": (1080, 1920)}
    sessions_list = (1, 2) if args.smoke else (1, 4, 8, 16)
    copies = 2 if args.smoke else 16
    clips = RESULTS / "clips"
    env = environment()
    lines = [f"NVDEC environment: cuda={env.cuda or 'ok'}, libnvcuvid={env.nvcuvid or 'ok'}"
             + (" (smoke: figures are not NVDEC's)" if args.smoke else "")]
    for name, size in sizes.items():
        clip = write_clip(clips / f"nvdec_{name}_{args.seconds:g}s.mp4", args.seconds, size)
        for mode, kw in MODES.items():
            for sessions in sessions_list:
                r = decode_all([clip] * copies, SamplingConfig(image_size=224, **kw), sessions)
                lines.append(f"{name} {mode:10s} sessions={sessions:2d}: {r['decoded_per_s']:8.0f} decoded/s "
                             f"{r['sampled_per_s']:7.0f} embedded/s, {r['cpu_ms_per_sampled']:.2f} CPU ms per "
                             f"embedded frame, backends {r['backends']} {r['notes'] or ''}")
                print(lines[-1], flush=True)
    short = [write_clip(clips / f"nvdec_short_{i}.mp4", 1.0, (360, 640), seed=i) for i in range(args.short)]
    for device in ("cuda", "cpu"):
        r = decode_all(short, SamplingConfig(image_size=224), 1, device)
        lines.append(f"short 1 s 360p clips, one session, device={device}: {1000 * r['wall_s'] / len(short):.1f} ms "
                     f"per video ({r['sampled']} frames embedded), backends {r['backends']}")
        print(lines[-1], flush=True)
    clip = clips / f"nvdec_360p_{args.seconds:g}s.mp4"
    lines.append(f"pixels, 360p every 10th: mean |NVDEC - CPU| = {pixels(clip):.2f} levels of 255 "
                 f"(NVDEC ran: {decode_all([clip], SamplingConfig(image_size=224), 1)['backends'] == [BACKEND]})")
    print(lines[-1])
    out = RESULTS / ("bench_nvdec-smoke.txt" if args.smoke else "bench_nvdec.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
