"""WebDataset shards as SOURCE (what video2dataset writes): tar files of samples, each sample
the members that share a key (`0001.mp4`, `0001.txt`, `0001.json`).

SOURCE names shards as one `.tar` path, a comma-separated list, a glob (`shards/*.tar`) or a
brace pattern (`shards/{00000..00099}.tar`, also `{a,b}`), local or any pyarrow URI. Every video
member (VIDEO_EXTENSIONS: mp4, webm, mkv, avi, ...) is an input whose video id is its sample's key;
its captions are the sample's `.txt` (one caption), else the `caption` / `captions` of its
`.json`. Listing reads the tar headers (seeking past the members' data) and the small .txt/.json
members only.

A listed video's path is `<shard URI>#<member>` (`storage.member_path`); decoding
(`storage.local_file`) streams that one member out of the shard into a temporary file, never
unpacking the shard.
"""
from __future__ import annotations

import json
import posixpath
import re
import tarfile
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import pyarrow.fs as pafs

from vidclust.errors import VidclustError
from vidclust.store.storage import filesystem, glob_files, is_video_name, member_path, without_options

MAX_TEXT_BYTES = 1 << 20  # a .txt/.json member larger than this is not read for captions
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def _split_top(text: str) -> list[str]:
    """Split on commas outside braces."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def expand_braces(pattern: str) -> list[str]:
    """`a{000..002}b` -> [a000b, a001b, a002b] (zero-padded as the first bound is written);
    `a{x,y}b` -> [axb, ayb]; several groups multiply; no braces -> [pattern]."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    head, body, tail = pattern[:m.start()], m.group(1), pattern[m.end():]
    r = _RANGE.match(body)
    if r:
        lo, hi = int(r.group(1)), int(r.group(2))
        width = len(r.group(1)) if r.group(1).lstrip("-").startswith("0") else 0
        step = 1 if hi >= lo else -1
        items = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    elif "," in body:
        items = body.split(",")
    else:
        items = ["{" + body + "}"]
        return [head + items[0] + rest for rest in expand_braces(tail)]
    return [x for item in items for x in expand_braces(head + item + tail)]


def shard_items(source: str) -> Optional[list[str]]:
    """The shard paths/URIs (or globs of them) SOURCE names, or None when SOURCE is no shards."""
    items = [x for part in _split_top(source) for x in expand_braces(part)]
    if items and all(without_options(i).lower().endswith(".tar") for i in items):
        return items
    return None


def _shard_files(item: str) -> list[tuple[object, str, object]]:
    """(filesystem, path, to_uri) of each shard one item names (a glob: every match)."""
    fs, path, to_uri = filesystem(item)
    if any(ch in path for ch in "*?["):
        return [(fs, p, to_uri) for p in glob_files(fs, path, item)]
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise VidclustError(f"SOURCE shard not found: {item}")
    return [(fs, path, to_uri)]


def _sample_key(member: str) -> tuple[str, str]:
    """WebDataset's split of a member name: (key, extension), the key ending at the first dot of
    the file name (`dir/0001.seg.mp4` -> (`dir/0001`, `seg.mp4`))."""
    folder, base = posixpath.split(member)
    stem, dot, ext = base.partition(".")
    return (posixpath.join(folder, stem) if folder else stem), ext.lower() if dot else ""


def _captions_of(texts: dict[str, bytes]) -> tuple[list[str], Optional[str]]:
    """(captions, category) of a sample from its .txt / .json members."""
    if "txt" in texts:
        text = texts["txt"].decode("utf-8", errors="replace").strip()
        if text:
            caps = [text]
        else:
            caps = []
    else:
        caps = []
    category = None
    if "json" in texts:
        try:
            meta = json.loads(texts["json"].decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            meta = None
        if isinstance(meta, dict):
            if not caps:
                for name in ("captions", "caption"):
                    if meta.get(name) not in (None, "", []):
                        value = meta[name]
                        caps = ([str(c) for c in value if c is not None and str(c).strip()]
                                if isinstance(value, list) else [str(value).strip()])
                        break
            if meta.get("category") not in (None, ""):
                category = str(meta["category"])
    return [c for c in caps if c], category


def list_shard(fs, path: str, to_uri) -> list[dict]:
    """The videos of one shard: rows of video_id, path (`<shard URI>#<member>`), captions, category.

    A shard cut short (a download that broke off) or damaged gives the members the file holds
    whole, then one row for the rest: video id the shard's file name, path the shard, and in
    `listing_error` why (decoding fails that row with it), so the other shards go on."""
    samples: dict[str, dict] = {}
    order: list[str] = []
    uri = to_uri(path)
    try:
        with fs.open_input_file(path) as f, tarfile.open(fileobj=f, mode="r:") as tar:
            damage = _read_samples(tar, f, uri, samples, order)
    except tarfile.TarError as exc:  # not even a first header
        damage = f"shard {uri} is not a readable tar file: {exc}"
    rows = []
    for key in order:
        s = samples[key]
        caps, category = _captions_of(s["texts"])
        for i, member in enumerate(s["videos"]):  # a second video of one sample: key.ext
            vid = key if i == 0 else f"{key}.{_sample_key(member)[1]}"
            rows.append({"video_id": vid, "path": member_path(uri, member), "captions": caps,
                         "category": category})
    if damage is not None:
        rows.append({"video_id": posixpath.basename(path), "path": uri, "captions": [], "category": None,
                     "listing_error": damage})
    return rows


def _read_samples(tar: tarfile.TarFile, f, uri: str, samples: dict, order: list) -> Optional[str]:
    """Add the samples of the members the shard holds whole to `samples` (key -> its video
    members and small .txt/.json data), their keys to `order`; return why the rest of the shard
    is unreadable, or None where the shard is whole."""
    size = f.size()
    try:
        for m in tar:  # headers only: tarfile seeks past each member's data
            if m.offset_data + m.size > size:  # the file ends inside this member
                return _truncated(uri, m.offset)
            if not m.isfile():
                continue
            key, ext = _sample_key(m.name)
            s = samples.get(key)
            if s is None:
                s = samples[key] = {"videos": [], "texts": {}}
                order.append(key)
            if is_video_name(m.name):
                s["videos"].append(m.name)
            elif ext in ("txt", "json") and m.size <= MAX_TEXT_BYTES:
                s["texts"][ext] = tar.extractfile(m).read()
    except tarfile.TarError as exc:  # the padding after a member cut off, a bad extended header
        return _damage_at_end(f, tar.offset, size, uri) or \
            f"damaged shard {uri}: {exc} at byte {tar.offset}; members after it unreadable"
    # tarfile also stops, without a word, at a header the file lacks or that is garbage
    return _damage_at_end(f, tar.offset, size, uri)


def _truncated(uri: str, offset: int) -> str:
    return f"truncated shard {uri}: members after byte {offset} unreadable"


def _damage_at_end(f, offset: int, size: int, uri: str) -> Optional[str]:
    """Why tarfile's listing stopped at `offset` without an error: None at the end-of-archive
    marker (a zero block); truncated where the file ends before one; damaged at a block that is
    neither a header nor the marker."""
    if size - offset < tarfile.BLOCKSIZE:
        return _truncated(uri, offset)
    f.seek(offset)
    if f.read(tarfile.BLOCKSIZE) == bytes(tarfile.BLOCKSIZE):
        return None
    return f"damaged shard {uri}: no tar header at byte {offset}; members after it unreadable"


def list_shards(source: str, items: list[str]) -> list[dict]:
    """Every video of every shard SOURCE names (shards listed a few at a time, in parallel)."""
    shards = [s for item in items for s in _shard_files(item)]
    if not shards:
        raise VidclustError(f"SOURCE {source}: no shards match")
    with ThreadPoolExecutor(max_workers=min(8, len(shards))) as pool:
        parts = list(pool.map(lambda s: list_shard(*s), shards))
    return [r for part in parts for r in part]
