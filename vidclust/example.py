"""A small example corpus that vidclust makes itself: short clips of three visual topics, each
with captions, so the whole pipeline can be seen running with no network and no files of yours.

The same writer makes the videos the tests decode (several codecs and lengths).
"""
from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional

import numpy as np

# Three topics that look different (colour, texture, motion) and are described in different words.
TOPICS = {
    "ocean": {
        "captions": [
            "blue ocean waves roll onto a sandy beach",
            "the sea water moves in gentle blue waves",
            "ocean waves crash near the beach at noon",
            "a calm blue sea with small waves",
        ],
    },
    "forest": {
        "captions": [
            "green trees sway in a quiet forest",
            "sunlight falls through the green forest leaves",
            "a forest path between tall green trees",
            "leaves of the forest trees move in the wind",
        ],
    },
    "fire": {
        "captions": [
            "orange flames of a campfire burn at night",
            "a fire burns bright with red and orange flames",
            "flames flicker in the campfire",
            "the campfire fire glows red in the dark",
        ],
    },
}


def topic_frame(topic: str, t: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 frame (H, W, 3) of a topic at time step t."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = rng.normal(0, 12, (h, w, 1)).astype(np.float32)
    if topic == "ocean":  # blue horizontal waves moving sideways
        wave = np.sin(xx / 9.0 + t / 3.0 + np.sin(yy / 17.0)) * 40
        img = np.stack([20 + 0 * xx, 90 + wave * 0.5, 190 + wave], axis=-1)
    elif topic == "forest":  # green vertical trunks and leafy blobs
        leaves = np.sin(xx / 5.0) * np.cos(yy / 7.0 + t / 5.0) * 50
        img = np.stack([40 + leaves * 0.3, 120 + leaves, 30 + 0 * xx], axis=-1)
    elif topic == "fire":  # red/orange flicker rising from the bottom
        flame = np.clip((yy / h) * 255 + np.sin(xx / 6.0 + t) * 40, 0, 255)
        img = np.stack([flame, flame * 0.45, 10 + 0 * xx], axis=-1)
    else:  # a plain moving gradient, for tests that need "some video"
        img = np.stack([(xx + t * 4) % 256, (yy + t * 2) % 256, 0 * xx + 128], axis=-1)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_video(
    path: str | Path,
    n_frames: int,
    fps: int = 25,
    size: tuple[int, int] = (96, 128),
    codec: str = "libx264",
    frame_fn: Optional[Callable[[int], np.ndarray]] = None,
    seed: int = 0,
    gop: Optional[int] = None,
) -> Path:
    """Encode `n_frames` frames with PyAV. `frame_fn(t)` gives frame t (default: a moving gradient);
    `gop`: frames between keyframes (libx264's default: 250)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frame_fn = frame_fn or (lambda t: topic_frame("plain", t, size, rng))
    with av.open(str(path), mode="w") as container:
        rate = Fraction(fps) if codec != "mpeg1video" else Fraction(25)
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", **({"g": str(gop)} if gop else {})}
        for t in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_fn(t), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_topic_clips(folder: str | Path, n: int, seconds: float, size: tuple[int, int] = (240, 320),
                      fps: int = 25, gop: Optional[int] = None, first: int = 0) -> list[Path]:
    """`n` clips cycling through the topics (no captions), named clip000.mp4 ...; existing files
    are kept, so benchmarks can re-use them between runs."""
    folder = Path(folder)
    paths = []
    for i in range(first, first + n):
        topic = tuple(TOPICS)[i % len(TOPICS)]
        rng = np.random.default_rng(i)
        p = folder / f"clip{i:03d}.mp4"
        if not p.exists():
            write_video(p, max(2, int(seconds * fps)), fps=fps, size=size, gop=gop,
                        frame_fn=lambda t, topic=topic, rng=rng: topic_frame(topic, t, size, rng))
        paths.append(p)
    return paths


def make_example_corpus(
    root: str | Path, per_topic: int = 8, seconds: float = 3.0, fps: int = 25, seed: int = 28
) -> Path:
    """Write `per_topic` clips of each topic under root/videos and a manifest root/manifest.csv
    (columns path, video_id, category, captions as a JSON list). Returns the manifest path."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for topic, spec in TOPICS.items():
        for i in range(per_topic):
            video_id = f"{topic}{i:03d}"
            path = root / "videos" / f"{video_id}.mp4"
            n = max(2, int(seconds * fps + rng.integers(-fps, fps)))
            r = np.random.default_rng(int(rng.integers(1 << 31)))
            write_video(path, n, fps=fps, codec="libx264",
                        frame_fn=lambda t, topic=topic, r=r: topic_frame(topic, t + i * 7, (96, 128), r))
            captions = list(rng.permutation(spec["captions"]))[:3]
            rows.append({"path": f"videos/{video_id}.mp4", "video_id": video_id,
                         "category": topic, "captions": json.dumps(captions)})
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "video_id", "category", "captions"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
