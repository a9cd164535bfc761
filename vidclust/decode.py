"""Decoding and frame sampling: a video file -> chunks of sampled frames, uint8 (n, S, S, 3).

decord decodes by default; PyAV takes over for files decord refuses (missing or broken duration
metadata: MPEG-1, some Ogg/Theora) and for the rest of a file where decord breaks off mid-way.
Frames are resized (squashed, as the notebook did) while decoding and handed on `chunk_frames` at a
time, so memory stays bounded whatever a video's length.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

from vidclust.config import DecodeConfig, SamplingConfig

log = logging.getLogger("vidclust")


class DecodeError(Exception):
    """A video that cannot be decoded; its message becomes the `error` of its failed row."""


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
    n_frames_decoded: int = 0  # frames the decoder went through (at least), sampled or not
    # set when the video is kept but is not whole (e.g. truncated: fewer frames decode than its
    # container announces); the embed stage records it in the video's `warning`
    warning: Optional[str] = None


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
                             or len(container.streams) == 1)
    except DecodeError:
        raise
    except Exception as exc:  # PyAV raises many kinds: InvalidDataError, ValueError, ...
        raise DecodeError(f"not a readable video: {_one_line(exc)}") from None


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


def sampled_indices(n_frames: int, fps: Optional[float], sampling: SamplingConfig) -> np.ndarray:
    """The frame indices to embed out of `n_frames`: every `frame_interval`-th, or `sampling.fps`
    per second of video, then at most `max_frames` of them, evenly spaced."""
    if n_frames <= 0:
        return np.zeros(0, np.int64)
    if sampling.fps:
        step = (fps or 25.0) / sampling.fps
        idx = np.unique(np.floor(np.arange(0, n_frames, max(step, 1.0))).astype(np.int64))
    else:
        idx = np.arange(0, n_frames, sampling.frame_interval, dtype=np.int64)
    if sampling.max_frames and len(idx) > sampling.max_frames:
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, sampling.max_frames).round().astype(np.int64))]
    return idx[idx < n_frames]


def sample_frames(path: str, sampling: SamplingConfig, decode: DecodeConfig,
                  result: Optional[DecodeResult] = None) -> Iterator[FrameChunk]:
    """Yield the sampled frames of a local video file, `decode.chunk_frames` at a time.

    Raises DecodeError for a file of which no frame decodes. A file that breaks off (truncated,
    corrupt further on) keeps the frames that decoded: `result.warning` then says what is missing.
    `result` is filled with metadata as decoding goes.
    """
    result = result if result is not None else DecodeResult()
    result.info = probe_video(path)
    done_upto = -1  # highest frame index handed on so far
    errors = []
    broke_off = None  # why decoding stopped before the end, when every backend failed
    backends = ["decord", "pyav"] if decode.backend == "auto" else [decode.backend]
    for backend in backends:
        try:
            reader = _decord_chunks if backend == "decord" else _pyav_chunks
            for chunk in reader(path, sampling, decode, result, after=done_upto):
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
            log.debug("%s could not decode %s: %s", backend, path, exc)
    else:  # the last backend failed too: keep what decoded before it broke off, if anything
        if result.n_frames_sampled == 0:
            raise DecodeError("; ".join(errors))
        broke_off = errors[-1]
    if result.n_frames_sampled == 0:
        raise DecodeError("no frames could be decoded")
    info = result.info
    # what the container announces: its frame count, or duration x a trustworthy frame rate
    announced = info.n_frames if info.n_frames and info.n_frames_from_stream else None
    sampled_announced = len(sampled_indices(announced, info.fps, sampling)) if announced else None
    short = (result.expected is not None and result.n_frames_sampled < result.expected - 1) or (
        sampled_announced is not None and result.n_frames_sampled < 0.9 * sampled_announced - 1)
    if short or broke_off:
        decoded = max(result.n_frames_decoded, done_upto + 1)
        of = f"its container announces {announced} frames, {decoded} decoded" if announced else \
            f"{decoded} frames decoded"
        wanted = max(result.expected or 0, sampled_announced or 0)
        kept = f"{result.n_frames_sampled} of {wanted}" if wanted > result.n_frames_sampled \
            else str(result.n_frames_sampled)
        stop = f" ({broke_off})" if broke_off else ""
        result.warning = f"truncated or corrupt: {of}; kept {kept} sampled frames{stop}"
        log.debug("%s: %s", path, result.warning)


def _decord_chunks(path, sampling, decode, result, after: int) -> Iterator[FrameChunk]:
    import decord

    size = sampling.image_size
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), width=size, height=size,
                                num_threads=decode.threads)
        n = len(vr)
        fps = float(vr.get_avg_fps()) or result.info.fps
    except Exception as exc:  # decord raises DECORDError, RuntimeError ...
        raise DecodeError(f"cannot open: {_one_line(exc)}") from None
    idx = sampled_indices(n, fps, sampling)
    result.expected = len(idx)
    idx = idx[idx > after]
    for start in range(0, len(idx), decode.chunk_frames):
        part = idx[start:start + decode.chunk_frames]
        try:
            frames = vr.get_batch(part.tolist()).asnumpy()
            ts = vr.get_frame_timestamp(part.tolist())[:, 0]
        except Exception as exc:
            raise DecodeError(f"failed at frame {int(part[0])}: {_one_line(exc)}") from None
        result.n_frames_decoded = max(result.n_frames_decoded, int(part[-1]) + 1)
        if not np.all(np.isfinite(ts)) or ts.min() < 0:  # decord misreads streams without
            raise DecodeError(f"broken timestamps at frame {int(part[0])}")  # duration (MPEG-1)
        yield FrameChunk(part.astype(np.int32), ts.astype(np.float32), frames)
    del vr


def _pyav_chunks(path, sampling, decode, result, after: int) -> Iterator[FrameChunk]:
    import av

    size = sampling.image_size
    info = result.info
    fps = info.fps or 25.0
    if info.n_frames and info.n_frames_exact:
        wanted = sampled_indices(info.n_frames, fps, sampling)
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
    buf_idx, buf_ts, buf_frames = [], [], []
    emitted = 0
    error = None
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            t0 = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            if decode.threads:
                stream.thread_count = decode.threads
            for i, frame in enumerate(container.decode(stream)):
                if last_wanted is not None and i > last_wanted:
                    break
                result.n_frames_decoded = max(result.n_frames_decoded, i + 1)
                if i <= after or not is_wanted(i):
                    continue
                buf_idx.append(i)
                buf_ts.append(float(frame.time) - t0 if frame.time is not None else i / fps)
                # BILINEAR is how decord scales: both backends give (nearly) the same pixels
                buf_frames.append(frame.to_ndarray(width=size, height=size, format="rgb24",
                                                   interpolation="BILINEAR"))
                emitted += 1
                if len(buf_idx) == decode.chunk_frames:
                    yield FrameChunk(np.asarray(buf_idx, np.int32), np.asarray(buf_ts, np.float32),
                                     np.stack(buf_frames))
                    buf_idx, buf_ts, buf_frames = [], [], []
                if last_wanted is None and sampling.max_frames and emitted >= sampling.max_frames:
                    break
    except DecodeError:
        raise
    except Exception as exc:  # the frames decoded before it are handed on first
        error = DecodeError(f"failed after frame {result.n_frames_decoded - 1}: {_one_line(exc)}")
    if buf_idx:
        yield FrameChunk(np.asarray(buf_idx, np.int32), np.asarray(buf_ts, np.float32), np.stack(buf_frames))
    if error is not None:
        raise error


@contextlib.contextmanager
def local_file(path: str) -> Iterator[str]:
    """A local path for `path`: itself, or a temporary copy of a remote file (s3://, gs://, ...)."""
    if "://" not in path or path.startswith("file://"):
        yield path[len("file://"):] if path.startswith("file://") else path
        return
    import pyarrow.fs as pafs

    try:
        fs, inner = pafs.FileSystem.from_uri(path)
    except Exception as exc:
        raise DecodeError(f"cannot open {path}: {_one_line(exc)}") from None
    suffix = os.path.splitext(inner)[1]
    fd, tmp = tempfile.mkstemp(prefix="vidclust-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, fs.open_input_stream(inner) as src:
            shutil.copyfileobj(src, out, 1 << 22)
        yield tmp
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
