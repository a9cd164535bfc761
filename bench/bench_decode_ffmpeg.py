"""Benchmark (issue 21, item 2): vidclust's CPU decoding against the `ffmpeg` CLI on the same
frames, per sampling mode and size, and the embedding drift of the cheaper modes, in one run.

    .venv/bin/python bench/bench_decode_ffmpeg.py [--seconds 20] [--repeats 3] [--model ViT-B-32]

  - clips: H.264 (x264 veryfast, B-frames, a keyframe every 2 s) at 360p and 1080p, `--seconds`
    long, made with PyAV by bench_decode.write_clip (kept in bench/results/clips);
  - per clip and mode, CPU seconds (user+system) per embedded frame of vidclust.decode (PyAV
    backend, one thread, 224x224 RGB out, this process's getrusage) and of `ffmpeg -threads 1`
    (its own rusage, os.wait4) making the same frames at 224x224 rgb24 into a pipe; the least of
    `--repeats` runs each. The ratio vidclust/ffmpeg is given against ffmpeg's whole CPU and
    against it less ffmpeg's start-up (the CPU of a run that opens and probes the file and makes
    no frame: -frames:v 0), the stricter one; the goal is <= 1.1 in every mode and size.
    ffmpeg's frame count is checked against vidclust's;
  - modes: every 10th frame (the default; select=not(mod(n,10))), keyframes (-skip_frame nokey),
    reference frames only (embed.sampling.frames=reference; -skip_frame noref and a select on
    the timestamps that takes the first frame of each span of 10), and
    embed.decode.skip_loop_filter=true (-skip_loop_filter all) on every 10th and on reference;
  - drift: the frames of each cheaper mode embedded by `--model` (open_clip; random weights unless
    `--pretrained` names weights) against the default's: skip_loop_filter against the same frames
    decoded with the loop filter; reference frames against the every-10th frame of their span
    (a frame up to a few positions later); as a yardstick, the frame after each every-10th frame
    against it. Min and mean cosine per clip, mean |pixel change|/255.
Output goes to stdout and bench/results/bench_decode_ffmpeg.txt. FFmpeg is the system's (its
version is printed): PyAV's wheels carry their own FFmpeg build, so the libraries differ.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench_decode import RESULTS, SIZES, write_clip  # noqa: E402
from vidclust.config import DecodeConfig, SamplingConfig  # noqa: E402
from vidclust.embedding.decode import DecodeResult, sample_frames  # noqa: E402

S = 224
FRAME_BYTES = S * S * 3
SCALE = f"scale={S}:{S}:flags=bilinear,format=rgb24"  # as PyAV's to_ndarray(BILINEAR, rgb24)
EVERY_10TH = r"select=not(mod(n\,10))"


def first_of_each_span(fps: float, span: int = 10) -> str:
    """ffmpeg's select for vidclust's reference sampling: a frame whose span (round(t*fps)/span)
    is past that of the frame selected before it."""
    b = lambda t: f"floor(round({t}*{fps:g})/{span})"  # noqa: E731
    return rf"select=if(isnan(prev_selected_t)\,1\,gt({b('t')}\,{b('prev_selected_t')}))"


def modes(fps: float) -> dict:
    """name: (SamplingConfig kwargs, DecodeConfig kwargs, ffmpeg input options, ffmpeg filters)."""
    ref = first_of_each_span(fps)
    return {
        "every 10th": ({}, {}, [], f"{EVERY_10TH},{SCALE}"),
        "keyframes": ({"keyframes": True}, {}, ["-skip_frame", "nokey"], SCALE),
        "reference": ({"frames": "reference"}, {}, ["-skip_frame", "noref"], f"{ref},{SCALE}"),
        "every 10th, skip_loop_filter": ({}, {"skip_loop_filter": True}, ["-skip_loop_filter", "all"],
                                         f"{EVERY_10TH},{SCALE}"),
        "reference, skip_loop_filter": ({"frames": "reference"}, {"skip_loop_filter": True},
                                        ["-skip_frame", "noref", "-skip_loop_filter", "all"], f"{ref},{SCALE}"),
    }


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def vidclust_decode(path: Path, sampling: dict, decode: dict, keep: bool = False) -> dict:
    """vidclust.decode's CPU path: PyAV, one thread; CPU of this process while it runs."""
    result = DecodeResult()
    frames, idx = [], []
    c0 = cpu_s()
    for chunk in sample_frames(str(path), SamplingConfig(image_size=S, **sampling),
                               DecodeConfig(backend="pyav", device="cpu", threads=1, **decode), result):
        idx.append(chunk.frame_index)
        if keep:
            frames.append(chunk.frames)
    cpu = cpu_s() - c0
    return {"cpu": cpu, "frames": result.n_frames_sampled, "decoded": result.n_frames_decoded,
            "found": result.n_frames_found, "index": np.concatenate(idx),
            "pixels": np.concatenate(frames) if keep else None}


def ffmpeg_decode(path: Path, input_options: list[str], filters: str, extra: list[str] = ()) -> dict:
    """`ffmpeg` on one thread writing 224x224 rgb24 frames into a pipe: its own CPU (wait4)."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1", *input_options,
           "-i", str(path), "-map", "0:v:0", "-an", "-filter_threads", "1", "-vf", filters,
           "-vsync", "0", *extra, "-threads", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    n = 0
    while True:
        block = proc.stdout.read(1 << 20)
        if not block:
            break
        n += len(block)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"ffmpeg failed ({' '.join(cmd)}):\n{err[-2000:]}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "frames": n // FRAME_BYTES}


def least(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["cpu"])


def embed_drift(encoder, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(min cosine, mean cosine, mean |pixel change|/255) of frames `a` against frames `b`."""
    cos = (encoder.embed(a) * encoder.embed(b)).sum(axis=1)
    return float(cos.min()), float(cos.mean()), float(np.abs(a.astype(np.float32) - b).mean() / 255)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="ViT-B-32", help="open_clip model for the drift (name or config JSON)")
    ap.add_argument("--pretrained", default="none", help="its weights: a tag, a checkpoint, or none (random)")
    args = ap.parse_args()
    if not shutil.which("ffmpeg"):
        raise SystemExit("bench_decode_ffmpeg needs the ffmpeg CLI (Debian: apt-get install -y ffmpeg)")
    import av

    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    lines = [f"# bench_decode_ffmpeg: {args.seconds:g} s H.264 clips (x264 veryfast, bframes=2, keyint 2 s), "
             f"224x224 rgb24 out, one thread, least CPU of {args.repeats} runs",
             f"# vidclust: PyAV {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))});"
             f" ffmpeg CLI: {version}",
             "# ratio: vidclust CPU / ffmpeg CPU per embedded frame; 'less start-up': ffmpeg's CPU less that "
             "of a run that opens and probes the file and makes no frame (-frames:v 0): the stricter ratio", ""]

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    for line in lines:
        print(line)
    clips = {name: write_clip(RESULTS / "clips" / f"h264_{name}_{args.seconds:g}s.mp4", args.seconds,
                              SIZES[name], seed=i) for i, name in enumerate(("360p", "1080p"))}
    table = {}
    say(f"{'clip':6} {'mode':30} {'frames':>6} {'decoded':>8} {'vidclust ms/f':>13} {'ffmpeg ms/f':>11} "
        f"{'ratio':>6} {'less start-up':>13}")
    for name, path in clips.items():
        fps = 30.0
        start = least([ffmpeg_decode(path, [], SCALE, ["-frames:v", "0"]) for _ in range(args.repeats + 2)])["cpu"]
        base_cpu = None
        for mode, (sampling, decode, ff_in, ff_vf) in modes(fps).items():
            ours = least([vidclust_decode(path, sampling, decode) for _ in range(args.repeats)])
            theirs = least([ffmpeg_decode(path, ff_in, ff_vf) for _ in range(args.repeats)])
            n = ours["frames"]
            check = "" if theirs["frames"] == n else f"  (ffmpeg made {theirs['frames']} frames!)"
            ratio = ours["cpu"] / theirs["cpu"]
            strict = ours["cpu"] / max(theirs["cpu"] - start, 1e-9)
            base_cpu = base_cpu or ours["cpu"] / n
            table[(name, mode)] = {"ms": 1000 * ours["cpu"] / n, "ratio": ratio, "strict": strict,
                                   "frames": n, "decoded": ours["decoded"], "found": ours["found"],
                                   "vs_default": (ours["cpu"] / n) / base_cpu, "cpu": ours["cpu"]}
            say(f"{name:6} {mode:30} {n:6d} {ours['decoded']:8d} {1000 * ours['cpu'] / n:13.2f} "
                f"{1000 * theirs['cpu'] / theirs['frames']:11.2f} {ratio:6.3f} {strict:13.3f}{check}")
        say(f"{name:6} ffmpeg start-up (-frames:v 0): {1000 * start:.0f} ms CPU")
    say()
    say("# the cheaper modes against the default, vidclust's CPU")
    say(f"{'clip':6} {'mode':30} {'CPU/frame':>10} {'CPU/clip':>9} {'frames':>6} {'decoded/found':>13}")
    for (name, mode), row in table.items():
        total = row["cpu"] / table[(name, "every 10th")]["cpu"]
        found = row["found"] or (table[(name, "reference")]["found"])
        say(f"{name:6} {mode:30} {row['vs_default']:9.2f}x {total:8.2f}x {row['frames']:6d} "
            f"{row['decoded']:6d}/{found or '?'}")

    from vidclust.models.encoder import FrameEncoder

    say()
    say(f"# drift: {args.model} ({'random weights' if args.pretrained == 'none' else args.pretrained}), "
        "fp32 on CPU, cosine of per-frame embeddings")
    encoder = FrameEncoder(args.model, args.pretrained, mean=(0.48145466, 0.4578275, 0.40821073),
                           std=(0.26862954, 0.26130258, 0.27577711), precision="fp32")
    say(f"{'clip':6} {'mode':30} {'against':28} {'min cos':>8} {'mean cos':>8} {'|dpixel|/255':>12} {'offset':>8}")
    for name, path in clips.items():
        plain = vidclust_decode(path, {}, {}, keep=True)
        for mode, sampling, decode, against in (
                ("every 10th, skip_loop_filter", {}, {"skip_loop_filter": True}, "every 10th, same frames"),
                ("reference", {"frames": "reference"}, {}, "every 10th of its span"),
                ("reference, skip_loop_filter", {"frames": "reference"}, {"skip_loop_filter": True},
                 "reference, same frames")):
            got = vidclust_decode(path, sampling, decode, keep=True)
            if against == "reference, same frames":
                ref = vidclust_decode(path, sampling, {}, keep=True)
                other = ref["pixels"]
                offset = "0"
            else:
                pos = {int(i): k for k, i in enumerate(plain["index"])}
                # the every-10th frame of each frame's span (reference frames lie 0..a few frames later)
                rows = [pos[int(i) // 10 * 10] for i in got["index"]]
                other = plain["pixels"][rows]
                off = got["index"] - plain["index"][rows]
                offset = f"{off.mean():.2f}/{off.max()}" if off.any() else "0"
            lo, mean, dpix = embed_drift(encoder, got["pixels"], other)
            say(f"{name:6} {mode:30} {against:28} {lo:8.4f} {mean:8.4f} {dpix:12.4f} {offset:>8}")
        # the yardstick: what one frame later does to the same model's embeddings
        later = vidclust_decode(path, {"frame_interval": 1}, {}, keep=True)["pixels"][plain["index"] + 1]
        lo, mean, dpix = embed_drift(encoder, later, plain["pixels"])
        say(f"{name:6} {'(one frame later)':30} {'every 10th':28} {lo:8.4f} {mean:8.4f} {dpix:12.4f} {'1':>8}")
    say("# offset: mean/max frames between a reference frame and the every-10th frame of its span")
    out = RESULTS / "bench_decode_ffmpeg.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
