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


# (file name, encoder, pixel format): what NVDEC takes (H.264 8-bit 4:2:0) and what it refuses
NVDEC_KINDS = [
    ("h264.mp4", "libx264", "yuv420p"),
    ("av1.mkv", "libsvtav1", "yuv420p"),
    ("mjpeg.mkv", "mjpeg", "yuvj420p"),
    ("h264_10bit.mp4", "libx264", "yuv420p10le"),
]


def write_coded(path: Path, codec: str, pix_fmt: str, n_frames: int = 30, size: tuple[int, int] = (96, 128)) -> Path:
    """`n_frames` of a moving gradient encoded with `codec` in `pix_fmt` (write_video picks the
    pixel format itself)."""
    from fractions import Fraction

    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=Fraction(25))
        s.height, s.width, s.pix_fmt = h, w, pix_fmt
        if codec == "libsvtav1":
            s.options = {"preset": "12"}
        for t in range(n_frames):
            img = np.stack([(xx * 2 + t * 7) % 256, (yy * 2 + t * 3) % 256, np.full_like(xx, (t * 37) % 256)],
                           -1).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_nvdec_kinds(folder: Path) -> dict[str, Path]:
    """One file of each NVDEC_KINDS, by video id."""
    return {name.split(".")[0]: write_coded(folder / name, codec, pix_fmt) for name, codec, pix_fmt in NVDEC_KINDS}
