"""The report's frame strips: a few frames of a video side by side, for the videos nearest each
cluster's centre (the notebook's visualize_random_files).

`grab_frames` (a video, local path or URI, through vidclust.store.storage.local_file -> evenly spaced
PIL images, decoded with PyAV), `thumbnail_strip` (those frames as one JPEG), `frame_strips` (the
strips of every cluster, decoded by a pool of threads: a `FrameStrips` of `FrameCard`s and the
JPEG files). A video that cannot be read costs only its strip: its card says why.
"""
from __future__ import annotations

import io
import math
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from vidclust.errors import first_line
from vidclust.store.layout import thumbnail_file
from vidclust.store.storage import local_file


@dataclass(frozen=True)
class FrameCard:
    """One video shown under its cluster: its strip (`image`, a report/ file name) or why not."""
    video_id: str
    file: str  # the video's file name
    caption: str  # its first caption
    image: Optional[str]  # frames/...jpg, None when its frames could not be read
    error: Optional[str]  # why not
    distance: Optional[float]  # to its cluster's centre (None: unknown)


@dataclass(frozen=True)
class FrameStrips:
    """The strips of every cluster: its cards, nearest the centre first, and the JPEG files."""
    cards: dict[int, list[FrameCard]]
    files: dict[str, bytes] = field(default_factory=dict)  # report/ name -> JPEG

    @property
    def n_thumbnails(self) -> int:
        return sum(card.image is not None for cards in self.cards.values() for card in cards)

    @property
    def n_failures(self) -> int:
        return sum(card.image is None for cards in self.cards.values() for card in cards)

    def images(self) -> dict[str, str]:
        """{video_id: its strip's file} of the videos that have one."""
        return {card.video_id: card.image for cards in self.cards.values() for card in cards if card.image}


def grab_frames(path: str, n_frames: int, width: int = 160) -> list:
    """`n_frames` evenly spaced frames of a video (local path or URI) as PIL images `width` wide.
    Raises an exception with a readable message when the file cannot be read."""
    import av

    if n_frames <= 0:
        return []
    images = []
    with local_file(path) as local:
        if not os.path.exists(local):
            raise FileNotFoundError("file not found")
        with av.open(local) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = stream.time_base
            if stream.duration is not None and tb is not None:
                duration = float(stream.duration * tb)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = None
            start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
            if duration and tb:
                for i in range(n_frames):
                    t = start + duration * (i + 0.5) / n_frames
                    frame = None
                    try:
                        container.seek(int(t / tb), stream=stream, backward=True)
                        for frame in container.decode(stream):
                            if frame.time is None or frame.time >= t - 1e-3:
                                break
                    except av.error.FFmpegError:
                        frame = None
                    if frame is not None:
                        images.append(_thumb(frame.to_image(), width))
            if not images:  # no duration, or seeking failed: decode from the start
                container.seek(0) if duration else None
                frames = []
                for i, frame in enumerate(container.decode(stream)):
                    frames.append(frame)
                    if i >= 300:
                        break
                if frames:
                    idx = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
                    images = [_thumb(frames[j].to_image(), width) for j in sorted(set(idx.tolist()))]
    if not images:
        raise ValueError("no frames could be decoded")
    return images


def _thumb(image, width: int):
    w, h = image.size
    height = max(1, round(h * width / max(w, 1)))
    return image.convert("RGB").resize((width, height))


def thumbnail_strip(path: str, n_frames: int, width: int = 160, quality: int = 82) -> bytes:
    """The frames of `grab_frames` side by side, as one JPEG."""
    from PIL import Image

    images = grab_frames(path, n_frames, width)
    gap = 2
    h = max(im.size[1] for im in images)
    strip = Image.new("RGB", (sum(im.size[0] for im in images) + gap * (len(images) - 1), h), "white")
    x = 0
    for im in images:
        strip.paste(im, (x, 0))
        x += im.size[0] + gap
    buf = io.BytesIO()
    strip.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _strip_or_error(args) -> tuple[Optional[bytes], Optional[str]]:
    path, n, width = args
    if not path:
        return None, "no path recorded"
    try:
        return thumbnail_strip(path, n, width), None
    except Exception as exc:  # any one file's trouble only costs its thumbnail
        return None, first_line(exc)[:200]


def frame_strips(video_ids: Sequence[str], labels: np.ndarray, distance: np.ndarray,
                 video_info: dict[str, dict], cluster_ids: Sequence[int], rc) -> FrameStrips:
    """For each cluster, frames of the videos nearest its centre (`rc`: the report's settings,
    frames_per_cluster, frames_per_video, thumbnail_width); a pool of threads decodes them."""
    per_video = max(1, rc.frames_per_video)
    n_show = math.ceil(rc.frames_per_cluster / per_video) if rc.frames_per_cluster else 0
    dist_sort = np.where(np.isnan(distance), np.inf, distance)
    jobs = []  # (cluster, row, path)
    for c in cluster_ids:
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(dist_sort[members], kind="stable")][:n_show] if n_show else []
        jobs += [(c, r, video_info.get(video_ids[r], {}).get("path")) for r in members]
    with ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2)))) as pool:
        results = list(pool.map(_strip_or_error, [(p, per_video, rc.thumbnail_width) for _, _, p in jobs]))
    strips = FrameStrips({c: [] for c in cluster_ids})
    for (c, r, path), (data, err) in zip(jobs, results):
        caps = video_info.get(video_ids[r], {}).get("captions") or []
        image = None
        if data is not None:
            image = thumbnail_file(c, len(strips.cards[c]))
            strips.files[image] = data
        strips.cards[c].append(FrameCard(
            video_id=video_ids[r], file=posixpath.basename(path) if path else "", caption=caps[0] if caps else "",
            image=image, error=err, distance=None if np.isnan(distance[r]) else float(distance[r])))
    return strips
