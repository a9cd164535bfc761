"""The report's explorable part: the data file report/points.js and the script report/explore.js.

points.js sets one global, `VIDCLUST_REPORT_DATA`, a JSON object with every clustered video in
columns (a script file rather than a JSON file, because a page opened from disk may not fetch()
a file:// URL). The rows are sorted by cluster (in the report's cluster order) and, within one,
nearest the centre first, so a cluster's members are one range of rows:

    n, pageSize, extent           videos; members listed per page; [width, height] of the map
    ids, captions                 video id, first caption (cut to 200 chars)
    files, exts                   file name; a number k stands for the video id + exts[k] (the
                                  usual case: a video's id is its file's stem)
    x, y                          map position in 0..extent (x right, y up), -1: not on the map
    dir, dirs                     dirs[dir[i]] + the quoted file name opens video i (dir -1: no link)
    clusters                      [{id, start, count, color, keywords, cx, cy}] (cx -1: no centre)
    thumbIndex, thumbImage        the rows that have a frame strip, and its file (frames/...)

The JSON text is made safe to sit in any script: `<`, `>`, `&` and the line separators U+2028 and
U+2029 are written as \\uXXXX escapes (inside JSON strings, the only place they can occur).
explore.js (vidclust/data/explore.js) draws the map, answers search, and pages the member lists.

`page_data_files` is everything the report hands the page for its scripts: {file name: bytes}
(points.js, explore.js). It is the one place the page's data is made, so another form of it (a
density image and per-cluster files loaded on demand, for millions of videos) replaces this
function and explore.js only.
"""
from __future__ import annotations

import json
import os
import pathlib
import posixpath
import urllib.parse
from importlib import resources
from typing import Any, Optional, Sequence

import numpy as np

from vidclust.store.layout import EXPLORE_SCRIPT, POINTS_SCRIPT
from vidclust.store.storage import is_member_path, split_member_path

DATA_GLOBAL = "VIDCLUST_REPORT_DATA"
COORD_STEPS = 9999  # map positions are rounded to this many steps across (4 digits each)
CAPTION_CHARS = 200
KEYWORDS_KEPT = 8

_SCRIPT_SAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def member_order(labels: np.ndarray, distance: np.ndarray, cluster_ids: Sequence[int]) -> np.ndarray:
    """Row order of the data: by cluster in `cluster_ids`' order, then nearest the centre first
    (unknown distances last), then as given."""
    rank = {int(c): i for i, c in enumerate(cluster_ids)}
    cluster_rank = np.array([rank[int(c)] for c in labels], np.int64)
    dist = np.where(np.isnan(distance), np.inf, distance)
    return np.lexsort((np.arange(len(labels)), dist, cluster_rank))


def quantized(xy: np.ndarray, centers_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Video and centre positions as integers (-1 for NaN), both axes scaled alike so that the
    longer side of the box around every position spans 0..COORD_STEPS; and [width, height] of
    that box in the same units."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    cxy = np.asarray(centers_xy, np.float64).reshape(-1, 2)
    both = np.concatenate([xy, cxy])
    finite = np.isfinite(both).all(axis=1)
    if not finite.any():
        return np.full(xy.shape, -1, np.int64), np.full(cxy.shape, -1, np.int64), [COORD_STEPS, COORD_STEPS]
    lo, hi = both[finite].min(axis=0), both[finite].max(axis=0)
    span = np.maximum(hi - lo, 1e-9)
    side = span.max()  # one scale for both axes, so the map keeps its shape

    def q(p: np.ndarray) -> np.ndarray:
        out = np.full(p.shape, -1, np.int64)
        ok = np.isfinite(p).all(axis=1)
        out[ok] = np.rint((p[ok] - lo) / side * COORD_STEPS).astype(np.int64)
        return out

    return q(xy), q(cxy), [int(v) for v in np.rint(span / side * COORD_STEPS)]


def video_link(path: Optional[str], report_dir: Optional[str]) -> Optional[tuple[str, str]]:
    """(folder href ending in '/', file name) that open the video from the report page, or None:
    relative to `report_dir` (a local folder) for a local file, an absolute file:// URL when the
    report is not on this machine's disk, the URL itself for http(s). A member of a tar shard and
    other object-store URIs get no link (a browser cannot open them)."""
    if not path or is_member_path(path):
        return None
    scheme = urllib.parse.urlsplit(path).scheme.lower() if "://" in path else ""
    if scheme in ("http", "https"):
        folder, name = path.rsplit("/", 1)
        return folder + "/", urllib.parse.unquote(name)
    if scheme == "file":
        path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
    elif scheme:
        return None
    folder, name = os.path.split(os.path.abspath(path))
    if report_dir is not None:
        try:
            rel = os.path.relpath(folder, report_dir).replace(os.sep, "/")
            return ("" if rel == "." else urllib.parse.quote(rel, safe="/") + "/"), name
        except ValueError:  # another drive (Windows)
            pass
    return pathlib.Path(folder).as_uri().rstrip("/") + "/", name


def explorer_data(video_ids: Sequence[str], labels: np.ndarray, distance: np.ndarray, xy: np.ndarray,
                  clusters: Sequence[dict], video_info: dict[str, dict], thumbnails: dict[str, str],
                  report_dir: Optional[str], page_size: int) -> dict:
    """The object points.js holds (see the module's docstring).

    `clusters`: [{cluster_id, color, keywords, center_xy (or None)}] in the report's order;
    `video_info`: {video_id: {path, captions}}; `thumbnails`: {video_id: frames/... image}."""
    labels = np.asarray(labels)
    n = len(video_ids)
    order = member_order(labels, np.asarray(distance, np.float64), [c["cluster_id"] for c in clusters])
    centers = np.array([c["center_xy"] if c.get("center_xy") is not None else (np.nan, np.nan)
                        for c in clusters], np.float64).reshape(-1, 2)
    qxy, qcenters, extent = quantized(np.asarray(xy, np.float64).reshape(-1, 2)[order] if n else
                                      np.zeros((0, 2)), centers)
    dirs: dict[str, int] = {}
    exts: dict[str, int] = {}
    ids, captions, files, dir_index = [], [], [], []
    for row in order:
        vid = video_ids[row]
        info = video_info.get(vid, {})
        caps = info.get("captions") or []
        captions.append(_one_line(caps[0], CAPTION_CHARS) if caps else "")
        ids.append(str(vid))
        link = video_link(info.get("path"), report_dir)
        name = _file_name(info.get("path")) if link is None else link[1]
        dir_index.append(-1 if link is None else dirs.setdefault(link[0], len(dirs)))
        stem, ext = os.path.splitext(name)
        files.append(exts.setdefault(ext, len(exts)) if stem == str(vid) and ext else name)
    sorted_labels = labels[order]
    out_clusters, start = [], 0
    for c, (cx, cy) in zip(clusters, qcenters.tolist()):
        count = int((sorted_labels == c["cluster_id"]).sum())
        out_clusters.append({"id": int(c["cluster_id"]), "start": start, "count": count, "color": c["color"],
                             "keywords": [_one_line(k, 60) for k in (c.get("keywords") or [])[:KEYWORDS_KEPT]],
                             "cx": int(cx), "cy": int(cy)})
        start += count
    position = {vid: i for i, vid in enumerate(ids)}
    thumbs = sorted((position[v], img) for v, img in thumbnails.items() if v in position)
    return {"n": n, "pageSize": int(page_size), "extent": extent, "ids": ids, "captions": captions,
            "files": files, "exts": list(exts), "x": qxy[:, 0].tolist(), "y": qxy[:, 1].tolist(), "dir": dir_index,
            "dirs": list(dirs), "clusters": out_clusters, "thumbIndex": [i for i, _ in thumbs],
            "thumbImage": [img for _, img in thumbs]}


def page_data_files(video_ids: Sequence[str], labels: np.ndarray, distance: np.ndarray, xy: np.ndarray,
                    clusters: Sequence[dict], video_info: dict[str, dict], thumbnails: dict[str, str],
                    report_dir: Optional[str], page_size: int) -> dict[str, bytes]:
    """The files of the page's scripts: points.js (`explorer_data` of these, the same arguments)
    and explore.js."""
    data = explorer_data(video_ids, labels, distance, xy, clusters, video_info, thumbnails, report_dir, page_size)
    return {POINTS_SCRIPT: points_script(data), EXPLORE_SCRIPT: explore_script()}


def points_script(data: dict) -> bytes:
    """points.js: `window.VIDCLUST_REPORT_DATA = {...};` with the JSON made script-safe."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in _SCRIPT_SAFE.items():
        text = text.replace(char, escape)
    return f"window.{DATA_GLOBAL} = {text};\n".encode("utf-8")


def read_points_script(data: bytes) -> Any:
    """The object a points.js holds (for tests and tools)."""
    text = data.decode("utf-8").strip()
    prefix = f"window.{DATA_GLOBAL} = "
    if not (text.startswith(prefix) and text.endswith(";")):
        raise ValueError(f"not a vidclust {POINTS_SCRIPT}")
    return json.loads(text[len(prefix):-1])


def explore_script() -> bytes:
    """explore.js, the page's script (package data)."""
    return resources.files("vidclust").joinpath("data", EXPLORE_SCRIPT).read_bytes()


def _one_line(text: Any, limit: int) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _file_name(path: Optional[str]) -> str:
    if not path:
        return ""
    return posixpath.basename(split_member_path(path)[1] if is_member_path(path) else path)
