"""Real video files for the tests, encoded with PyAV."""
from __future__ import annotations

from pathlib import Path

from vidclust.example import write_video

# (file name, codec, frames): several containers, codecs and lengths
MIXED = [
    ("h264.mp4", "libx264", 53),
    ("mpeg4.avi", "mpeg4", 80),
    ("mjpeg.mkv", "mjpeg", 31),
    ("vp8.webm", "libvpx", 45),
    ("mpeg1.mpg", "mpeg1video", 60),  # no duration metadata: decord refuses it, PyAV decodes it
    ("long.mp4", "libx264", 400),
]


def write_mixed(folder: Path) -> dict[str, Path]:
    return {name: write_video(folder / name, n, codec=codec, seed=i)
            for i, (name, codec, n) in enumerate(MIXED)}


def write_broken(folder: Path, good: Path) -> dict[str, str]:
    """Broken inputs next to the good ones, none with a frame that decodes; returns
    {video_id: what is wrong}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video\n")
    data = good.read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])  # moov at the end: unreadable
    (folder / "head.mkv").write_bytes(_long_mkv(folder)[:800])  # the header and no frame
    return {"empty": "empty file", "text": "not a readable video", "cut": "not a readable video",
            "head": "no frames could be decoded"}


def write_truncated(folder: Path) -> dict[str, str]:
    """Files cut short whose first frames still decode (kept, with a warning); returns
    {video_id: the start of its warning}."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = _long_mkv(folder)
    (folder / "short.mkv").write_bytes(raw[: len(raw) // 2])  # header intact, frames cut off
    return {"short": "truncated or corrupt: its container announces 250 frames, "}


def _long_mkv(folder: Path) -> bytes:
    """The bytes of a 250-frame Matroska file (10 s at 25 fps)."""
    long_mkv = write_video(folder / "tmp_long.mkv", 250, codec="libx264", seed=9)
    raw = long_mkv.read_bytes()
    long_mkv.unlink()
    return raw
