"""Decoding and frame sampling: a video file -> chunks of sampled frames, uint8 (n, S, S, 3).

Backends, in the order `backend=auto` tries them (AUTO_ORDER): PyAV, torchcodec (FFmpeg), decord.
The next takes over for files one refuses and for the rest of a file where one breaks off mid-way.
`decode.device=cuda|auto` puts PyAV on NVDEC first where the video and the process allow it
(`vidclust.embedding.nvdec`, for a caller that takes `gpu_frames`): its frames then stay on the GPU (torch
tensors), and a video NVDEC refuses or fails on is decoded on the CPU, `DecodeResult.note` saying
why. Only the frames to embed are decoded, as far as the keyframes allow: a decoder seeks to the
keyframe before a sample when that skips frames, `sampling.keyframes` decodes keyframes only,
and `sampling.frames=reference` reference frames only (PyAV, on the CPU).
`DecodeResult.n_frames_decoded` counts the frames
decoded (PyAV: counted; torchcodec, decord: from the keyframe positions, see `decode_cost`).
Frames are resized (squashed, as the notebook did) while decoding, turned upright as players turn
them (the display matrix of phone videos, in quarter turns: torchcodec and decord turn them
themselves, PyAV's frames are turned here) and handed on `chunk_frames` at a time, so memory
stays bounded whatever a video's length.
"""
from __future__ import annotations

import bisect
import errno
import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

from vidclust.errors import DecodeError, first_line
from vidclust.embedding.nvdec import BACKEND as NVDEC_BACKEND
from vidclust.embedding.nvdec import NvdecFrames, codec_refusal, environment, environment_refusal

log = logging.getLogger("vidclust")


@dataclass
class VideoInfo:
    """Container metadata, read without decoding frames."""

    duration_s: Optional[float] = None
    fps: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    codec: Optional[str] = None
    n_frames: Optional[int] = None  # the container's count, else duration x a trustworthy frame rate
    n_frames_exact: bool = False  # the container states the count (else it may be far off)
    n_frames_from_stream: bool = False  # count or duration of the video stream itself is known
    container: Optional[str] = None  # FFmpeg's name of the container format (mov,mp4,..., mpeg)
    codec_id: Optional[str] = None  # the codec itself, whichever decoder `codec` names (libdav1d: av1)
    pix_fmt: Optional[str] = None  # the stream's pixel format (yuv420p, yuv420p10le, ...)
    profile: Optional[str] = None  # the codec's profile (High, High 10, ...)


@dataclass
class FrameChunk:
    frame_index: np.ndarray  # int32 (n,)
    timestamp_s: np.ndarray  # float32 (n,)
    frames: np.ndarray  # uint8 (n, S, S, 3)


@dataclass
class DecodeResult:
    """What decoding one video gave, beside its frames: filled in as the frames are handed on."""

    info: VideoInfo = field(default_factory=VideoInfo)
    backend: str = ""
    n_frames_sampled: int = 0
    expected: Optional[int] = None
    n_frames_decoded: int = 0  # frames the decoder decoded, sampled or not (all backends that ran)
    n_frames_found: Optional[int] = None  # frames the backend found in the file (its index)
    # set when the video is kept but is not whole (e.g. truncated: fewer frames decode than its
    # container announces); the embed stage records it in the video's `warning`
    warning: Optional[str] = None
    note: Optional[str] = None  # decode.device=cuda|auto: why NVDEC did not decode this video


def probe_video(path: str) -> VideoInfo:
    """Duration, frame rate, size, codec and frame count from the container (PyAV), or DecodeError."""
    import av

    if not os.path.exists(path):
        raise DecodeError(_missing(path))
    if os.path.getsize(path) == 0:
        raise DecodeError("empty file")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DecodeError("no video stream")
            s = container.streams.video[0]
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = None
            fps = _trusted_fps(s.average_rate, s.frames, duration)
            if fps is None:  # for sampling and timestamps only: never to count frames with
                fps = _trusted_fps(s.guessed_rate, s.frames, duration, time_base=s.time_base)
                n = int(s.frames) or None
            else:
                n = int(s.frames) if s.frames else (int(round(duration * fps)) if duration else None)
            return VideoInfo(duration_s=duration, fps=fps, width=s.codec_context.width or None,
                             height=s.codec_context.height or None, codec=s.codec_context.name,
                             n_frames=n, n_frames_exact=bool(s.frames),
                             # a container holding only the video: its duration is the video's
                             n_frames_from_stream=bool(s.frames) or s.duration is not None
                             or len(container.streams) == 1,
                             container=container.format.name, pix_fmt=s.codec_context.pix_fmt,
                             codec_id=s.codec_context.codec.canonical_name,
                             profile=s.profile)
    except DecodeError:
        raise
    except Exception as exc:  # PyAV raises many kinds: InvalidDataError, ValueError, ...
        raise DecodeError(f"not a readable video: {first_line(exc)}") from None


MAX_FPS = 240.0


def _trusted_fps(rate, n_frames: int, duration: Optional[float], time_base=None) -> Optional[float]:
    """`rate` as frames per second if it can be one: positive, at most MAX_FPS, not the stream's
    time base (demuxers without a frame rate, ASF for one, guess 1/time_base: 1000 fps), and,
    where the container states a frame count and a duration, consistent with both."""
    if not rate:
        return None
    fps = float(rate)
    if not 0 < fps <= MAX_FPS or (time_base and fps == float(1 / time_base)):
        return None
    if n_frames and duration and abs(n_frames - fps * duration) > 0.1 * n_frames + 2:
        return None
    return fps


def _missing(path: str) -> str:
    """Why an existing name leads to no file: a broken or looping link, or nothing at all."""
    if not os.path.islink(path):
        return "file not found"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symbolic link loop -> {os.readlink(path)}"
    return f"broken symbolic link -> {os.readlink(path)}"


# the order `backend=auto` tries them in: each takes over where the one before fails (cannot open
# a file, or breaks off mid-way). bench/bench_decode.py (README, Performance): on CPU PyAV costs
# the least CPU (as little as the others every 10th frame, ~30% less for keyframes), passes every
# robustness test (MPEG-1 program streams too) and its memory stays flat; on the GPU (NVDEC) PyAV
# decodes too, through FFmpeg's CUDA hwaccel (vidclust.nvdec)
AUTO_ORDER = ("pyav", "torchcodec", "decord")
BACKENDS = ("auto", *AUTO_ORDER)  # embed.decode.backend
DEVICES = ("auto", "cuda", "cpu")  # embed.decode.device: cuda and auto decode on NVDEC where they can
SEEK_MIN_GAP = 16  # PyAV looks at the keyframes (a demux pass) only when samples are this far apart


def sampled_indices(n_frames: int, fps: Optional[float], sampling,
                    keyframes=None) -> np.ndarray:
    """The frame indices to embed out of `n_frames`: every `frame_interval`-th, or `sampling.fps`
    per second of video, or (`sampling.keyframes`) the `keyframes` given, then at most
    `max_frames` of them, evenly spaced."""
    if n_frames <= 0:
        return np.zeros(0, np.int64)
    if sampling.keyframes:
        idx = np.unique(np.asarray([0] if keyframes is None or not len(keyframes) else keyframes,
                                   np.int64))
    elif sampling.fps:
        step = (fps or 25.0) / sampling.fps
        idx = np.unique(np.floor(np.arange(0, n_frames, max(step, 1.0))).astype(np.int64))
    else:
        idx = np.arange(0, n_frames, sampling.frame_interval, dtype=np.int64)
    if sampling.max_frames and len(idx) > sampling.max_frames:
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, sampling.max_frames).round().astype(np.int64))]
    return idx[(idx >= 0) & (idx < n_frames)]


def decode_cost(targets, keyframes, pos: int = -1) -> tuple[int, int]:
    """(frames decoded, last frame decoded) for a decoder that fetches the ascending `targets`
    starting after frame `pos`, seeking to the keyframe before a target only when that skips
    frames, else decoding on (the rule of torchcodec's exact mode and decord's get_batch)."""
    n = 0
    keyframes = list(keyframes) if keyframes is not None else []
    for t in (int(t) for t in targets):
        if t <= pos:
            continue
        j = bisect.bisect_right(keyframes, t) - 1
        kf = int(keyframes[j]) if j >= 0 else 0
        n += t - max(kf if kf > pos + 1 else pos + 1, 0) + 1
        pos = t
    return n, pos


@dataclass
class PacketScan:
    """The video packets of a file in presentation order, from a demux pass (nothing decoded)."""

    pts: np.ndarray  # int64 (n,): frame i's pts, in the stream's time base
    keyframes: np.ndarray  # int64: indices of the keyframes
    time_base: float = 0.0  # seconds per pts unit
    end: int = 0  # where the last frame ends (the largest pts + duration), in the time base


def scan_packets(path: str) -> Optional[PacketScan]:
    """Every video packet's pts and keyframe flag, or None where they cannot index the frames
    (a packet without pts, pts repeated)."""
    import av

    pts, key, end = [], [], 0
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            time_base = float(stream.time_base or 0)
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    return None
                pts.append(packet.pts)
                key.append(packet.is_keyframe)
                end = max(end, packet.pts + (packet.duration or 0))
    except Exception:
        return None  # the caller decodes straight through, and finds what is wrong there
    if not pts:
        return None
    order = np.argsort(np.asarray(pts, np.int64), kind="stable")
    sorted_pts = np.asarray(pts, np.int64)[order]
    if len(np.unique(sorted_pts)) != len(sorted_pts):
        return None
    return PacketScan(sorted_pts, np.flatnonzero(np.asarray(key, bool)[order]).astype(np.int64),
                      time_base, end)


def frames_reach_the_end(path: str, info: VideoInfo) -> bool:
    """Whether the frames of a file run to the duration its container states (short of it by at
    most 10% or the longest gap between two frames): a variable-frame-rate file does, holding
    fewer frames than duration x average rate with none missing; a file cut short does not."""
    scan = scan_packets(path)
    if scan is None or not info.duration_s or not scan.time_base:
        return False
    seconds = (np.append(scan.pts, scan.end) - scan.pts[0]) * scan.time_base
    return bool(seconds[-1] >= info.duration_s - max(0.1 * info.duration_s, np.diff(seconds).max()))


def turned_upright(frames: np.ndarray, rotation: float) -> np.ndarray:
    """Square frames (..., S, S, 3) turned by `rotation` degrees counter-clockwise, to the nearest
    quarter turn, as players turn a video with a display matrix."""
    turns = int(round((rotation or 0) / 90)) % 4
    if not turns:
        return frames
    return np.ascontiguousarray(np.rot90(frames, turns, axes=(frames.ndim - 3, frames.ndim - 2)))


_UNAVAILABLE: dict[str, Optional[str]] = {}


def backend_unavailable(name: str) -> Optional[str]:
    """Why backend `name` cannot run here (not installed, FFmpeg libraries missing), or None."""
    if name not in _UNAVAILABLE:
        module = {"torchcodec": "torchcodec.decoders", "pyav": "av", "decord": "decord"}[name]
        try:
            importlib.import_module(module)
            if name == "torchcodec":  # newer torchcodec imports without FFmpeg and loads it later
                _load_torchcodec_ffmpeg()
            _UNAVAILABLE[name] = None
        except Exception as exc:  # torchcodec raises RuntimeError when it finds no FFmpeg
            _UNAVAILABLE[name] = f"{name} cannot be loaded: {first_line(exc)}"
            log.info("decode backend %s", _UNAVAILABLE[name])
    return _UNAVAILABLE[name]


def _load_torchcodec_ffmpeg() -> None:
    """Load torchcodec's FFmpeg-dependent libraries now: since torchcodec 0.1x `import
    torchcodec.decoders` succeeds without FFmpeg and the first VideoDecoder fails ("Could not load
    libtorchcodec"), which made `auto` try it on every video instead of skipping it."""
    try:
        from torchcodec._internally_replaced_utils import load_core_libraries
    except ImportError:  # older torchcodec: the import above already loaded FFmpeg
        return
    load_core_libraries()


def nvdec_frames(info: VideoInfo, decode, gpu_frames: bool) -> tuple[Optional[NvdecFrames], Optional[str]]:
    """(NVDEC's frame maker, None) where this video decodes on NVDEC in this process, else (None,
    why not): decode.device=cpu (no reason: asked for), the video's codec, pixel format or profile,
    the process (no CUDA device visible, no libnvcuvid), a caller that wants frames in host memory."""
    if decode.device == "cpu":
        return None, None
    why = codec_refusal(info.codec_id, info.pix_fmt, info.profile) or environment_refusal(environment())
    if not why and not gpu_frames:
        why = "frames wanted in host memory (NVDEC decodes inside the GPU encoder actors)"
    return (None, why) if why else (NvdecFrames(), None)


def sample_frames(path: str, sampling, decode, result: Optional[DecodeResult] = None,
                  gpu_frames: bool = False) -> Iterator[FrameChunk]:
    """Yield the sampled frames of a local video file, `decode.chunk_frames` at a time, as
    `sampling` (config.SamplingConfig) and `decode` (config.DecodeConfig) say: uint8 NumPy
    arrays, or, with `gpu_frames` where decode.device and the video let NVDEC decode it, uint8
    torch tensors on the GPU (`result.note`: why not NVDEC, where decode.device was not cpu).

    Raises DecodeError for a file of which no frame decodes. A file that breaks off (truncated,
    corrupt further on) keeps the frames that decoded: `result.warning` then says what is missing.
    `result` is filled with metadata as decoding goes.
    """
    result = result if result is not None else DecodeResult()
    result.info = probe_video(path)
    nvdec, result.note = nvdec_frames(result.info, decode, gpu_frames)
    if sampling.frames == "reference" and nvdec is not None:  # skip_frame=NONREF: PyAV on the CPU only
        nvdec, result.note = None, "sampling.frames=reference decodes on the CPU"
    done_upto = -1  # highest frame index handed on so far
    errors = []
    broke_off = None  # why decoding stopped before the end, when every backend failed
    mid_way = None  # the first backend that broke off after handing on frames
    if decode.backend == "auto":
        backends = [b for b in AUTO_ORDER if not backend_unavailable(b)]
    else:
        backends = [decode.backend]
    if sampling.frames == "reference":  # PyAV alone can leave frames undecoded (skip_frame)
        backends = ["pyav"]
    readers = {"torchcodec": _torchcodec_chunks, "pyav": _pyav_chunks, "decord": _decord_chunks}
    if nvdec is not None:  # NVDEC first; a CPU backend takes over where it refuses or fails
        backends.insert(0, NVDEC_BACKEND)
        readers[NVDEC_BACKEND] = lambda *args, **kw: _pyav_chunks(*args, **kw, nvdec=nvdec)
    for backend in backends:
        try:
            if backend != NVDEC_BACKEND and backend_unavailable(backend):
                raise DecodeError(backend_unavailable(backend))
            for chunk in readers[backend](path, sampling, decode, result, after=done_upto):
                if len(chunk.frame_index):
                    done_upto = int(chunk.frame_index[-1])
                    result.n_frames_sampled += len(chunk.frame_index)
                    result.backend = result.backend or backend
                    yield chunk
            result.backend = result.backend or backend
            break
        except DecodeError as exc:
            result.expected = None  # a backend that failed may also have miscounted the frames
            errors.append(f"{backend}: {exc}")
            if done_upto >= 0 and mid_way is None:
                mid_way = errors[-1]  # why, if the next backend finds no more frames either
            log.debug("%s could not decode %s: %s", backend, path, exc)
            if backend == NVDEC_BACKEND:
                result.note = f"NVDEC failed: {exc}"
    else:  # the last backend failed too: keep what decoded before it broke off, if anything
        if result.n_frames_sampled == 0:
            raise DecodeError("; ".join(errors))
        broke_off = errors[-1]
    if result.n_frames_sampled == 0:
        raise DecodeError("no frames could be decoded")
    info = result.info
    # what the container announces: its frame count, or duration x a trustworthy frame rate
    announced = info.n_frames if info.n_frames and info.n_frames_from_stream else None
    if _some_frames_only(sampling):  # which frames a whole file would give is not known: its length is
        sampled_announced = None
        short_of_announced = bool(announced and result.n_frames_found is not None
                                  and result.n_frames_found < 0.9 * announced - 1)
    else:
        sampled_announced = len(sampled_indices(announced, info.fps, sampling)) if announced else None
        short_of_announced = sampled_announced is not None and \
            result.n_frames_sampled < 0.9 * sampled_announced - 1
    short_of_plan = result.expected is not None and result.n_frames_sampled < result.expected - 1
    if short_of_announced and not (info.n_frames_exact or short_of_plan or broke_off) \
            and frames_reach_the_end(path, info):
        # duration x average rate counts no frames: a variable-frame-rate file (phones, screen
        # recorders) holds fewer, none missing, and was sampled by the frames it holds
        short_of_announced = False
    if short_of_announced or short_of_plan or broke_off:
        decoded = result.n_frames_found if _some_frames_only(sampling) and result.n_frames_found \
            else max(result.n_frames_decoded, done_upto + 1)
        of = f"its container announces {announced} frames, {decoded} decoded" if announced else \
            f"{decoded} frames decoded"
        wanted = max(result.expected or 0, sampled_announced or 0)
        kept = f"{result.n_frames_sampled} of {wanted}" if wanted > result.n_frames_sampled \
            else str(result.n_frames_sampled)
        # where the frames stopped: the first backend that broke off after handing some on (a later
        # one that could not even open the cut file says less), else the last one that failed
        stop = f" ({mid_way or broke_off})" if broke_off or mid_way else ""
        result.warning = f"truncated or corrupt: {of}; kept {kept} sampled frames{stop}"
        log.debug("%s: %s", path, result.warning)


def _some_frames_only(sampling) -> bool:
    """Whether the decoder leaves frames undecoded (keyframes, reference frames only): which
    frames a whole file gives is then not known before decoding it."""
    return sampling.keyframes or sampling.frames == "reference"


def _torchcodec_chunks(path, sampling, decode, result, after: int) -> Iterator[FrameChunk]:
    """torchcodec (FFmpeg): exact seek mode indexes the file first, so that get_frames_at
    fetches exactly the frames asked for, seeking to the keyframe before one only where that
    skips frames. FFmpeg resizes while decoding. torchcodec turns rotated videos upright itself
    (its metadata's `rotation`). Its CUDA path is gone (issue 21): NVDEC is PyAV's (vidclust.nvdec)."""
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import Resize

    size = sampling.image_size
    if result.info.duration_s is None or result.info.container in ("mpeg", "mpegvideo"):
        # MPEG program streams and raw MPEG video: its index misplaces frames (PyAV takes them)
        raise DecodeError(f"frame index unreliable in {result.info.container or 'this'} container")
    try:
        dec = VideoDecoder(path, seek_mode="exact", device="cpu", dimension_order="NHWC",
                           num_ffmpeg_threads=decode.threads, transforms=[Resize((size, size))])
        meta = dec.metadata
        n = int(meta.num_frames or 0)
        fps = float(meta.average_fps or 0) or result.info.fps
        start = float(meta.begin_stream_seconds or 0.0)
        keys = _torchcodec_keyframes(dec, path)
    except Exception as exc:
        raise DecodeError(f"cannot open: {first_line(exc)}") from None
    result.n_frames_found = n
    idx = sampled_indices(n, fps, sampling, keys)
    result.expected = len(idx)
    idx = idx[idx > after]
    pos, last_ts = -1, -np.inf
    for first in range(0, len(idx), decode.chunk_frames):
        part = idx[first:first + decode.chunk_frames]
        try:
            batch = dec.get_frames_at(part.tolist())
            frames = batch.data.numpy()
            ts = batch.pts_seconds.numpy() - start
        except Exception as exc:
            raise DecodeError(f"failed at frame {int(part[0])}: {first_line(exc)}") from None
        if not np.all(np.isfinite(ts)) or np.any(np.diff(np.concatenate([[last_ts], ts])) <= 0):
            raise DecodeError(f"broken timestamps at frame {int(part[0])}")
        last_ts = float(ts[-1])
        cost, pos = decode_cost(part, keys, pos)
        result.n_frames_decoded += cost
        yield FrameChunk(part.astype(np.int32), ts.astype(np.float32), frames)


def _torchcodec_keyframes(dec, path: str) -> np.ndarray:
    """The keyframe indices exact mode found while indexing the file (a private accessor, so a
    demux pass of our own where it is gone)."""
    try:
        return np.asarray(dec._get_key_frame_indices(), np.int64)
    except Exception:
        scan = scan_packets(path)
        return scan.keyframes if scan is not None else np.zeros(0, np.int64)


def _decord_chunks(path, sampling, decode, result, after: int) -> Iterator[FrameChunk]:
    """decord: gives rotated videos upright itself, as torchcodec does."""
    import decord

    size = sampling.image_size
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), width=size, height=size,
                                num_threads=decode.threads)
        n = len(vr)
        fps = float(vr.get_avg_fps()) or result.info.fps
        keys = np.asarray(vr.get_key_indices(), np.int64)
    except Exception as exc:  # decord raises DECORDError, RuntimeError ...
        raise DecodeError(f"cannot open: {first_line(exc)}") from None
    result.n_frames_found = n
    idx = sampled_indices(n, fps, sampling, keys)
    result.expected = len(idx)
    idx = idx[idx > after]
    pos = -1
    for start in range(0, len(idx), decode.chunk_frames):
        part = idx[start:start + decode.chunk_frames]
        try:
            frames = vr.get_batch(part.tolist()).asnumpy()
            ts = vr.get_frame_timestamp(part.tolist())[:, 0]
        except Exception as exc:
            raise DecodeError(f"failed at frame {int(part[0])}: {first_line(exc)}") from None
        cost, pos = decode_cost(part, keys, pos)
        result.n_frames_decoded += cost
        if not np.all(np.isfinite(ts)) or ts.min() < 0:  # decord misreads streams without
            raise DecodeError(f"broken timestamps at frame {int(part[0])}")  # duration (MPEG-1)
        yield FrameChunk(part.astype(np.int32), ts.astype(np.float32), frames)
    del vr


def _pyav_chunks(path, sampling, decode, result, after: int, nvdec=None) -> Iterator[FrameChunk]:
    """PyAV: decodes straight through, counting every frame, unless the samples lie further
    apart than the keyframes (or only keyframes are wanted): then it seeks from one to the next.
    `nvdec` (nvdec.NvdecFrames): on NVDEC, the frames handed on as torch tensors on the GPU."""
    if sampling.frames == "reference":
        yield from _pyav_reference(path, sampling, decode, result, after)
        return
    info = result.info
    fps = info.fps or 25.0
    scan = None
    if sampling.keyframes:
        scan = scan_packets(path)
    elif info.n_frames and info.n_frames_exact:
        wanted = sampled_indices(info.n_frames, fps, sampling)
        if len(wanted) > 1 and np.median(np.diff(wanted)) >= SEEK_MIN_GAP:
            scan = scan_packets(path)
    elif sampling.max_frames or sampling.fps:  # the frame count decides which frames: count them
        scan = scan_packets(path)
    if scan is not None:
        targets = sampled_indices(len(scan.pts), fps, sampling, scan.keyframes)
        if sampling.keyframes or decode_cost(targets, scan.keyframes)[0] < 0.7 * (targets[-1] + 1):
            result.n_frames_found = len(scan.pts)
            result.expected = len(targets)
            yield from _pyav_seeking(path, sampling, decode, result, targets[targets > after], scan, nvdec)
            return
    n = len(scan.pts) if scan is not None else (info.n_frames if info.n_frames_exact else None)
    # no index of the frames: the keyframes, indexed by their time
    yield from _pyav_straight(path, sampling, decode, result, after, n, sampling.keyframes, nvdec)


def _pyav_open(path, decode, nvdec=None):
    import av

    if nvdec is not None:
        return _pyav_open_nvdec(path, nvdec)
    container = av.open(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame and slice threads
    stream.thread_count = decode.threads  # 0: FFmpeg picks
    _set_cpu_decoder_options(stream, decode)
    t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return container, stream, t0


def _pyav_open_nvdec(path, nvdec):
    """A container whose video stream decodes on NVDEC (`nvdec.open`), or DecodeError saying why
    not (no GPU: av.error.PermissionError; a codec without a CUDA hwaccel)."""
    try:
        container = nvdec.open(path)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"cannot open on NVDEC: {type(exc).__module__}.{type(exc).__name__}: "
                          f"{first_line(exc)}") from None
    stream = container.streams.video[0]
    stream.thread_count = 1  # the GPU decodes: no CPU threads to wait on
    t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return container, stream, t0


def _set_cpu_decoder_options(stream, decode) -> None:
    """FFmpeg decoder options from the config, set before the first packet opens the decoder:
    skip_loop_filter=all leaves out H.264/HEVC's deblocking (less CPU, slightly blockier frames;
    FFmpeg's other decoders ignore it)."""
    if decode.skip_loop_filter:
        stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": "all"}


class _Chunker:
    def __init__(self, size: int, chunk_frames: int, nvdec=None):
        from av.video.reformatter import VideoReformatter

        self.size, self.chunk_frames, self.nvdec = size, chunk_frames, nvdec
        self.idx, self.ts, self.frames = [], [], []
        # one scaler for the video's frames: frame.to_ndarray(width=...) sets one up per frame,
        # ~0.7 ms of CPU each (bench/bench_decode_ffmpeg.py: 360p every 10th 1.10x FFmpeg without)
        self.reformatter = VideoReformatter()

    def add(self, i: int, t: float, frame) -> Optional[FrameChunk]:
        self.idx.append(i)
        self.ts.append(t)
        if self.nvdec is not None:  # resized, converted and turned upright on the GPU
            self.frames.append(self.nvdec.rgb(frame, self.size))
            return self.flush() if len(self.idx) >= self.chunk_frames else None
        # BILINEAR is how decord scales: the backends give (nearly) the same pixels
        pixels = self.reformatter.reformat(frame, width=self.size, height=self.size, format="rgb24",
                                           interpolation="BILINEAR").to_ndarray()
        self.frames.append(turned_upright(pixels, frame.rotation))
        return self.flush() if len(self.idx) >= self.chunk_frames else None

    def flush(self) -> Optional[FrameChunk]:
        if not self.idx:
            return None
        chunk = FrameChunk(np.asarray(self.idx, np.int32), np.asarray(self.ts, np.float32),
                           np.stack(self.frames) if self.nvdec is None else self.nvdec.stack(self.frames))
        self.idx, self.ts, self.frames = [], [], []
        return chunk


def _pyav_seeking(path, sampling, decode, result, targets, scan: PacketScan,
                  nvdec=None) -> Iterator[FrameChunk]:
    keys = scan.keyframes.tolist()
    index_of = {int(p): i for i, p in enumerate(scan.pts)}
    out = _Chunker(sampling.image_size, decode.chunk_frames, nvdec)
    error = None
    try:
        container, stream, t0 = _pyav_open(path, decode, nvdec)
        with container:
            if sampling.keyframes:
                stream.codec_context.skip_frame = "NONKEY"  # the others are not even decoded
            frames, pos = None, -1
            for t in (int(t) for t in targets):
                if t <= pos:
                    continue
                j = bisect.bisect_right(keys, t) - 1
                kf = keys[j] if j >= 0 else 0
                # seek where that skips frames to decode (keyframes only: skips keyframes)
                skips = (bisect.bisect_left(keys, t) > bisect.bisect_right(keys, pos)) \
                    if sampling.keyframes else kf > pos + 1
                if frames is None or skips:
                    container.seek(int(scan.pts[kf]), stream=stream, backward=True, any_frame=False)
                    frames = container.decode(stream)
                got = None
                for frame in frames:
                    result.n_frames_decoded += 1
                    i = index_of.get(frame.pts) if frame.pts is not None else None
                    if i is None or i < t:
                        continue
                    got, pos = frame, i
                    break
                if got is None:
                    break
                ts = float(got.time) - t0 if got.time is not None else pos / (result.info.fps or 25.0)
                chunk = out.add(pos, ts, got)
                if chunk is not None:
                    yield chunk
    except DecodeError as exc:  # NVDEC refused to open it
        error = exc
    except Exception as exc:  # the frames decoded before it are handed on first
        error = DecodeError(f"failed after {result.n_frames_decoded} frames: {first_line(exc)}")
    yield from _hand_on_then_raise(out, error)


def _pyav_straight(path, sampling, decode, result, after: int, n_frames: Optional[int],
                   keyframes_only: bool = False, nvdec=None) -> Iterator[FrameChunk]:
    """Decode from the start, keeping the frames wanted out of `n_frames` (None: unknown)."""
    info = result.info
    fps = info.fps or 25.0
    if keyframes_only:
        last_wanted = None
        is_wanted = lambda i: True  # noqa: E731
    elif n_frames:
        wanted = sampled_indices(n_frames, fps, sampling)
        result.expected = result.expected or len(wanted)
        last_wanted = int(wanted[-1]) if len(wanted) else -1
        keep = set(int(i) for i in wanted)
        is_wanted = keep.__contains__
    else:  # unknown length: sample as we go (max_frames then caps the first ones)
        last_wanted = None
        step = max(fps / sampling.fps, 1.0) if sampling.fps else None

        def is_wanted(i: int) -> bool:
            if step:
                return int(np.floor(np.ceil(i / step) * step)) == i
            return i % sampling.frame_interval == 0
    out = _Chunker(sampling.image_size, decode.chunk_frames, nvdec)
    emitted, decoded = 0, 0
    error = None
    try:
        container, stream, t0 = _pyav_open(path, decode, nvdec)
        with container:
            if keyframes_only:
                stream.codec_context.skip_frame = "NONKEY"
            for i, frame in enumerate(container.decode(stream)):
                if last_wanted is not None and i > last_wanted:
                    break
                decoded += 1
                result.n_frames_decoded += 1
                ts = float(frame.time) - t0 if frame.time is not None else i / fps
                if keyframes_only:
                    i = int(round(ts * fps))
                if i <= after or not is_wanted(i):
                    continue
                chunk = out.add(i, ts, frame)
                emitted += 1
                if chunk is not None:
                    yield chunk
                if last_wanted is None and sampling.max_frames and emitted >= sampling.max_frames:
                    break
    except DecodeError as exc:  # NVDEC refused to open it
        error = exc
    except Exception as exc:  # the frames decoded before it are handed on first
        error = DecodeError(f"failed after frame {decoded - 1}: {first_line(exc)}")
    yield from _hand_on_then_raise(out, error)


def reference_span(info: VideoInfo, sampling) -> float:
    """Frames per span in reference sampling, of which the first reference frame is embedded:
    frame_interval, or video fps / sampling.fps; widened to n_frames / max_frames where the
    container tells the length, so that max_frames spreads over the whole video."""
    fps = info.fps or 25.0
    span = max(fps / sampling.fps if sampling.fps else float(sampling.frame_interval), 1.0)
    if sampling.max_frames and info.n_frames:
        span = max(span, info.n_frames / sampling.max_frames)
    return span


def _pyav_reference(path, sampling, decode, result, after: int) -> Iterator[FrameChunk]:
    """Reference frames only (skip_frame=NONREF): the decoder never decodes the frames that no
    other frame is predicted from (most B-frames). The skipped frames are never seen, so a
    frame's index comes from its timestamp (pts x fps), not from a count; the first reference
    frame in each span (`reference_span`) is embedded. Every packet counts as a frame found."""
    fps = result.info.fps or 25.0
    span = reference_span(result.info, sampling)
    out = _Chunker(sampling.image_size, decode.chunk_frames)
    found, emitted, last_span = 0, 0, -1
    error = None
    try:
        container, stream, t0 = _pyav_open(path, decode)
        with container:
            stream.codec_context.skip_frame = "NONREF"
            for packet in container.demux(stream):
                found += packet.size > 0
                for frame in packet.decode():
                    result.n_frames_decoded += 1
                    if frame.time is None:
                        raise DecodeError("a frame without a timestamp: reference sampling cannot place it")
                    ts = float(frame.time) - t0
                    i = int(round(ts * fps))
                    k = int(np.floor(i / span + 1e-9))
                    if i <= after or k <= last_span:
                        continue
                    last_span = k
                    chunk = out.add(i, ts, frame)
                    emitted += 1
                    if chunk is not None:
                        yield chunk
                if sampling.max_frames and emitted >= sampling.max_frames:
                    found = None  # stopped before the end: how many frames there are is not known
                    break
    except Exception as exc:  # the frames decoded before it are handed on first
        error = exc if isinstance(exc, DecodeError) else \
            DecodeError(f"failed after {result.n_frames_decoded} frames: {first_line(exc)}")
    result.n_frames_found = found
    yield from _hand_on_then_raise(out, error)


def _hand_on_then_raise(out, error: Optional[DecodeError]) -> Iterator[FrameChunk]:
    """The frames decoded before an error are handed on first; then the error, if any."""
    chunk = out.flush()
    if chunk is not None:
        yield chunk
    if error is not None:
        raise error
