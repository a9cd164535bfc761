"""SOURCE -> the list of videos: one Arrow row per video with `video_id`, `path`, `captions`
(list of strings, possibly empty) and `category` (string or null).

SOURCE is a folder (searched recursively), a glob, a manifest (.csv, .parquet, .jsonl with at least
`path`), or an MSR-VTT root (videos/all/*.mp4 with train_val_videodatainfo.json /
test_videodatainfo.json). Local paths or any URI pyarrow's filesystems reach (s3://, gs://, ...).
"""
from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections import defaultdict
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from vidclust.errors import VidclustError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts",
                    ".m2ts", ".mts", ".wmv", ".flv", ".3gp", ".ogv", ".ogg", ".vob", ".mxf")
MANIFEST_EXTENSIONS = (".csv", ".parquet", ".jsonl")
MSRVTT_INFO = ("train_val_videodatainfo.json", "test_videodatainfo.json")

VIDEO_LIST_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("captions", pa.list_(pa.string())),
    ("category", pa.string()),
])


def list_videos(source: str) -> pa.Table:
    """Every video of SOURCE, sorted by video_id; video ids are unique."""
    fs, path, prefix = _filesystem(source)
    if any(ch in path for ch in "*?["):
        rows = _from_glob(fs, path, prefix)
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise VidclustError(f"SOURCE not found: {source}")
        if info.type == pafs.FileType.Directory:
            if _is_msrvtt(fs, path):
                rows = _from_msrvtt(fs, path, prefix)
            else:
                rows = _from_folder(fs, path, prefix)
        elif path.lower().endswith(MANIFEST_EXTENSIONS):
            rows = _from_manifest(fs, path, prefix)
        elif path.lower().endswith(VIDEO_EXTENSIONS):
            rows = [{"path": prefix + path, "video_id": _stem(path)}]
        else:
            raise VidclustError(f"SOURCE {source} is neither a folder, a glob, a manifest "
                                f"({', '.join(MANIFEST_EXTENSIONS)}) nor a video file")
    if not rows:
        raise VidclustError(f"SOURCE {source} holds no videos (looked for {', '.join(VIDEO_EXTENSIONS)})")
    return _to_table(rows, source)


def _filesystem(source: str) -> tuple[pafs.FileSystem, str, str]:
    """(filesystem, path within it, prefix that turns such a path back into a URI)."""
    if "://" in source:
        scheme, rest = source.split("://", 1)
        static = re.split(r"[*?\[]", rest, maxsplit=1)[0]  # the part before any wildcard
        try:
            fs, static_path = pafs.FileSystem.from_uri(f"{scheme}://{static}")
        except Exception as exc:
            raise VidclustError(f"cannot open SOURCE {source}: {exc}") from None
        prefix = "" if scheme == "file" else f"{scheme}://"
        return fs, static_path.rstrip("/") + ("/" if static.endswith("/") else "") + rest[len(static):], prefix
    import os

    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(source)), ""


def _stem(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


def _walk_videos(fs: pafs.FileSystem, root: str) -> list[str]:
    selector = pafs.FileSelector(root, recursive=True)
    return sorted(i.path for i in fs.get_file_info(selector)
                  if i.type == pafs.FileType.File and i.path.lower().endswith(VIDEO_EXTENSIONS)
                  and not posixpath.basename(i.path).startswith("."))


def _relative_ids(paths: list[str], root: str) -> list[str]:
    """Video ids from paths relative to root, without extension; with it where two would clash."""
    rel = [posixpath.relpath(p, root) for p in paths]
    ids = [posixpath.splitext(r)[0] for r in rel]
    counts = defaultdict(int)
    for i in ids:
        counts[i] += 1
    return [r if counts[i] > 1 else i for r, i in zip(rel, ids)]


def _from_folder(fs, root: str, prefix: str) -> list[dict]:
    paths = _walk_videos(fs, root)
    return [{"path": prefix + p, "video_id": vid} for p, vid in zip(paths, _relative_ids(paths, root))]


def _from_glob(fs, pattern: str, prefix: str) -> list[dict]:
    base = pattern
    while any(ch in base for ch in "*?["):
        base = posixpath.dirname(base)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise VidclustError(f"SOURCE glob {pattern}: folder {base} not found")
    selector = pafs.FileSelector(base, recursive=True)
    paths = sorted(i.path for i in fs.get_file_info(selector)
                   if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, pattern))
    return [{"path": prefix + p, "video_id": vid} for p, vid in zip(paths, _relative_ids(paths, base))]


def _is_msrvtt(fs, root: str) -> bool:
    has_info = any(fs.get_file_info(posixpath.join(root, n)).type == pafs.FileType.File
                   for n in MSRVTT_INFO)
    return has_info and fs.get_file_info(posixpath.join(root, "videos", "all")).type == pafs.FileType.Directory


def _read_json(fs, path: str):
    with fs.open_input_stream(path) as f:
        try:
            return json.loads(f.read())
        except json.JSONDecodeError as exc:
            raise VidclustError(f"{path} is not valid JSON: {exc}") from None


def _from_msrvtt(fs, root: str, prefix: str) -> list[dict]:
    meta: dict[str, dict] = {}
    captions: dict[str, list[str]] = defaultdict(list)
    for name in MSRVTT_INFO:
        p = posixpath.join(root, name)
        if fs.get_file_info(p).type != pafs.FileType.File:
            continue
        info = _read_json(fs, p)
        for v in info.get("videos", []):
            meta[v["video_id"]] = v
        for s in info.get("sentences", []):
            captions[s["video_id"]].append(s["caption"])
    rows = []
    for path in _walk_videos(fs, posixpath.join(root, "videos", "all")):
        vid = _stem(path)
        m = meta.get(vid, {})
        cat = m.get("category")
        rows.append({"path": prefix + path, "video_id": vid, "captions": captions.get(vid, []),
                     "category": None if cat is None else str(cat), "split": m.get("split")})
    return rows


def _read_manifest(fs, path: str) -> pa.Table:
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    try:
        if path.lower().endswith(".parquet"):
            return pq.read_table(path, filesystem=fs)
        with fs.open_input_stream(path) as f:
            if path.lower().endswith(".csv"):
                return pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(column_types=MANIFEST_CSV_TYPES))
            return pajson.read_json(f)
    except (pa.ArrowInvalid, OSError) as exc:
        raise VidclustError(f"cannot read manifest {path}: {str(exc).splitlines()[0]}") from None


MANIFEST_CSV_TYPES = {"video_id": pa.string(), "path": pa.string(), "category": pa.string(),
                      "captions": pa.string()}


def _from_manifest(fs, path: str, prefix: str) -> list[dict]:
    return normalise_manifest(_read_manifest(fs, path), path, prefix).to_pylist()


def normalise_manifest(table: pa.Table, manifest: str, prefix: str, first_row: int = 1) -> pa.Table:
    """Rows of a manifest (any columns, at least `path`) -> VIDEO_LIST_SCHEMA rows: relative paths
    resolved against the manifest's folder, ids from file stems where none is given, captions as
    lists. Works on a whole manifest or on one batch of it (Ray Data)."""
    if "path" not in table.column_names:
        raise VidclustError(f"manifest {manifest} has no `path` column (columns: {', '.join(table.column_names)})")
    base = posixpath.dirname(manifest)
    rows = []
    cols = [c for c in ("video_id", "path", "captions", "category") if c in table.column_names]
    for i, r in enumerate(table.select(cols).to_pylist()):
        p = r.get("path")
        if not p:
            raise VidclustError(f"manifest {manifest}: row {first_row + i} has an empty path")
        p = str(p)
        if "://" not in p and not posixpath.isabs(p):
            p = prefix + posixpath.normpath(posixpath.join(base, p))
        rows.append({"path": p, "video_id": str(r["video_id"]) if r.get("video_id") not in (None, "") else _stem(p),
                     "captions": _captions(r.get("captions")),
                     "category": None if r.get("category") in (None, "") else str(r["category"])})
    return pa.Table.from_pylist(rows, schema=VIDEO_LIST_SCHEMA)


def video_dataset(source: str):
    """SOURCE as a Ray Data dataset of VIDEO_LIST_SCHEMA rows (Ray must be initialised).

    A manifest is read by Ray Data's own readers and normalised batch by batch on the cluster,
    so a manifest of millions of rows never has to fit the driver; a folder, glob or MSR-VTT
    root is listed here (Arrow rows: paths only) and handed over."""
    import ray

    fs, path, prefix = _filesystem(source)
    if not any(ch in path for ch in "*?[") and path.lower().endswith(MANIFEST_EXTENSIONS):
        if fs.get_file_info(path).type != pafs.FileType.File:
            raise VidclustError(f"SOURCE not found: {source}")
        if path.lower().endswith(".parquet"):
            ds = ray.data.read_parquet(path, filesystem=fs)
        elif path.lower().endswith(".csv"):
            import pyarrow.csv as pacsv

            ds = ray.data.read_csv(path, filesystem=fs, convert_options=pacsv.ConvertOptions(
                column_types=MANIFEST_CSV_TYPES))
        else:
            ds = ray.data.read_json(path, filesystem=fs, lines=True)
        return ds.map_batches(normalise_manifest, batch_format="pyarrow",
                              fn_kwargs={"manifest": path, "prefix": prefix})
    return ray.data.from_arrow(list_videos(source))


def check_unique_ids(ids: pa.Array, paths: pa.Array, source: str) -> None:
    """One line naming a video id that SOURCE gives twice, with its two paths."""
    counts = pc.value_counts(ids)
    twice = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(twice):
        vid = twice.field("values")[0].as_py()
        where = [p for p in pc.filter(paths, pc.equal(ids, vid)).to_pylist()][:2]
        raise VidclustError(f"SOURCE {source}: video_id {vid!r} appears twice ({where[0]} and {where[1]}); "
                            "video ids must be unique")


def _captions(value) -> list[str]:
    """Captions as a list: a list already, a JSON list in a string, or '|'-separated text."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(c) for c in value if c is not None and str(c).strip()]
    text = str(value).strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            return _captions(json.loads(text))
        except json.JSONDecodeError:
            pass
    return [c.strip() for c in text.split("|") if c.strip()]


def _to_table(rows: Iterable[dict], source: str) -> pa.Table:
    rows = list(rows)
    seen: dict[str, str] = {}
    for r in rows:
        vid = r["video_id"]
        if vid in seen:
            raise VidclustError(f"SOURCE {source}: video_id {vid!r} appears twice "
                                f"({seen[vid]} and {r['path']}); video ids must be unique")
        seen[vid] = r["path"]
    rows.sort(key=lambda r: r["video_id"])
    return pa.Table.from_pylist(
        [{"video_id": r["video_id"], "path": r["path"], "captions": r.get("captions") or [],
          "category": r.get("category")} for r in rows], schema=VIDEO_LIST_SCHEMA)
