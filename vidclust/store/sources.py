"""SOURCE -> the list of videos: one Arrow row per video with `video_id`, `path`, `captions`
(list of strings, possibly empty), `category` (string or null), `explicit_id` (the id is the user's:
a manifest's video_id column; else it is derived from the file's name) and `listing_error` (why an
input found while listing cannot be read, such as a truncated shard's rest; null for the others).

A local path whose name the file system gives as bytes that are not UTF-8 is listed as a file URI
(`file:///videos/caf%E9.mp4`, see `storage.path_text`); `storage.local_file` opens every listed path.

SOURCE is a folder (searched recursively), a glob, a manifest (.csv, .parquet, .jsonl with at least
`path`), WebDataset shards (.tar: one, a comma-separated list, a glob or `{00000..00099}`; see
vidclust.shards), or an MSR-VTT root (videos/all/*.mp4 with train_val_videodatainfo.json /
test_videodatainfo.json). Local paths or any URI pyarrow's filesystems reach (s3://, gs://, ...).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import posixpath
from collections import defaultdict
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from vidclust.errors import VidclustError, first_line
from vidclust.store.shards import list_shards, shard_items
from vidclust.store.storage import (VIDEO_EXTENSIONS, filesystem, glob_files, glob_root, is_video_name, same_file,
                              walk_files, without_options)

MANIFEST_EXTENSIONS = (".csv", ".parquet", ".jsonl")
MSRVTT_INFO = ("train_val_videodatainfo.json", "test_videodatainfo.json")

VIDEO_LIST_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("captions", pa.list_(pa.string())),
    ("category", pa.string()),
    ("explicit_id", pa.bool_()),
    ("listing_error", pa.string()),
])


def list_videos(source: str) -> pa.Table:
    """Every video of SOURCE, sorted by video_id; video ids are unique.

    A URI's options (`s3://bucket/videos/?endpoint_override=host:port&scheme=http`, user info)
    stay on every listed path, so whoever opens a path reaches the same endpoint."""
    shards = shard_items(source)
    if shards is not None:  # WebDataset shards: one, a list, a glob or a brace pattern of .tar
        rows = list_shards(source, shards)
        if not rows:
            raise VidclustError(f"SOURCE {source}: its shards hold no videos (looked for {', '.join(VIDEO_EXTENSIONS)})")
        return _to_table(rows, source)
    fs, path, to_uri = filesystem(source)
    if any(ch in path for ch in "*?["):
        rows = _from_glob(fs, path, to_uri)
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            if isinstance(fs, pafs.LocalFileSystem) and os.path.islink(path):
                raise VidclustError(f"SOURCE {source} is a broken symbolic link -> {os.readlink(path)}")
            raise VidclustError(f"SOURCE not found: {source}")
        if info.type == pafs.FileType.Directory:
            if _is_msrvtt(fs, path):
                rows = _from_msrvtt(fs, path, to_uri)
            else:
                rows = _from_folder(fs, path, to_uri)
        elif path.lower().endswith(MANIFEST_EXTENSIONS):
            rows = _from_manifest(fs, path, to_uri)
            check_paths_given(pa.array([r["path"] for r in rows], pa.string()), source)
        elif path.lower().endswith(VIDEO_EXTENSIONS):
            rows = [{"path": to_uri(path), "video_id": _stem(path)}]
        else:
            raise VidclustError(f"SOURCE {source} is neither a folder, a glob, a manifest "
                                f"({', '.join(MANIFEST_EXTENSIONS)}) nor a video file")
    if not rows:
        raise VidclustError(f"SOURCE {source} holds no videos (looked for {', '.join(VIDEO_EXTENSIONS)})")
    return _to_table(rows, source)


def _id_text(name: str) -> str:
    """A video id made of a file name, as text: bytes of the name that are not UTF-8 as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _stem(path: str) -> str:
    return _id_text(posixpath.splitext(posixpath.basename(path))[0])


def _walk_videos(fs: pafs.FileSystem, root: str) -> list[str]:
    return [p for p in walk_files(fs, root) if is_video_name(p)]


def _relative_ids(paths: list[str], root: str) -> list[str]:
    """Video ids from paths relative to root, without extension; with it where two would clash."""
    rel = [posixpath.relpath(p, root) for p in paths]
    ids = [posixpath.splitext(r)[0] for r in rel]
    counts = defaultdict(int)
    for i in ids:
        counts[i] += 1
    return [_id_text(r if counts[i] > 1 else i) for r, i in zip(rel, ids)]


def _from_folder(fs, root: str, to_uri) -> list[dict]:
    paths = _walk_videos(fs, root)
    return [{"path": to_uri(p), "video_id": vid} for p, vid in zip(paths, _relative_ids(paths, root))]


def _from_glob(fs, pattern: str, to_uri) -> list[dict]:
    paths = glob_files(fs, pattern, pattern)
    return [{"path": to_uri(p), "video_id": vid} for p, vid in zip(paths, _relative_ids(paths, glob_root(pattern)))]


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


def _from_msrvtt(fs, root: str, to_uri) -> list[dict]:
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
        rows.append({"path": to_uri(path), "video_id": vid, "captions": captions.get(vid, []),
                     "category": None if cat is None else str(cat)})
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
        raise VidclustError(f"cannot read manifest {path}: {first_line(exc)}") from None


MANIFEST_CSV_TYPES = {"video_id": pa.string(), "path": pa.string(), "category": pa.string(),
                      "captions": pa.string()}


def _from_manifest(fs, path: str, to_uri: Callable[[str], str]) -> list[dict]:
    return normalise_manifest(_read_manifest(fs, path), path, to_uri).to_pylist()


def normalise_manifest(table: pa.Table, manifest: str, to_uri: Callable[[str], str]) -> pa.Table:
    """Rows of a manifest (any columns, at least `path`) -> VIDEO_LIST_SCHEMA rows: relative paths
    resolved against the manifest's folder, ids from file stems where none is given, captions as
    lists. Works on a whole manifest or on one batch of it (Ray Data). A row without a path
    (empty, blank, null, NaN) keeps an empty one: the driver names such rows (`check_paths_given`),
    which a batch cannot do, not knowing where in the file it starts."""
    if "path" not in table.column_names:
        raise VidclustError(f"manifest {manifest} has no `path` column (columns: {', '.join(table.column_names)})")
    base = posixpath.dirname(manifest)
    rows = []
    cols = [c for c in ("video_id", "path", "captions", "category") if c in table.column_names]
    for r in table.select(cols).to_pylist():
        p = "" if _blank(r.get("path")) else str(r["path"])
        stem = _stem(without_options(p)) if p else ""
        if p and "://" not in p and not posixpath.isabs(p):  # relative to the manifest, with its options
            p = to_uri(posixpath.normpath(posixpath.join(base, p)))
        given = not _blank(r.get("video_id"))
        rows.append({"path": p, "video_id": str(r["video_id"]) if given else stem, "explicit_id": given,
                     "captions": [] if _blank(r.get("captions")) else _captions(r.get("captions")),
                     "category": None if _blank(r.get("category")) else str(r["category"])})
    return pa.Table.from_pylist(rows, schema=VIDEO_LIST_SCHEMA)


def _blank(value) -> bool:
    """No value: null, NaN (a missing value as pandas writes it) or text that is empty or blank."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def check_paths_given(paths: pa.Array, source: str) -> None:
    """Refuse, in one line, a manifest whose rows lack a path (`normalise_manifest` leaves them
    empty), naming them as the user finds them in the file: the lines of a CSV or JSONL manifest,
    the rows (from 1) of a Parquet one. Only then is the manifest's path column read again, here,
    in file order (Ray Data's blocks need not come in that order)."""
    if not pc.any(pc.equal(pc.fill_null(paths, ""), "")).as_py():
        return
    fs, path, _ = filesystem(source)
    unit, numbers = _rows_without_path(fs, path)
    if not numbers:  # the file changed since it was read
        where = f"{pc.sum(pc.equal(pc.fill_null(paths, ''), '')).as_py()} rows have"
    else:
        shown = [str(n) for n in numbers[:5]]
        more = f" and {len(numbers) - 5} more" if len(numbers) > 5 else ""
        listed = shown[0] if len(shown) == 1 else (
            f"{', '.join(shown)}{more}" if more else f"{', '.join(shown[:-1])} and {shown[-1]}")
        where = f"{unit} {listed} has" if len(numbers) == 1 else f"{unit}s {listed} have"
    raise VidclustError(f"manifest {path}: {where} no path (empty or NaN): give every row the path of "
                        "its video, or remove the row")


def _rows_without_path(fs, path: str) -> tuple[str, list[int]]:
    """("line", line numbers) of a CSV or JSONL manifest's rows without a path, ("row", row
    numbers from 1) of a Parquet manifest's."""
    import pyarrow.parquet as pq

    if path.lower().endswith(".parquet"):
        values = pq.read_table(path, columns=["path"], filesystem=fs).column("path").to_pylist()
        return "row", [i + 1 for i, v in enumerate(values) if _blank(v)]
    lines = []
    with fs.open_input_stream(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        if path.lower().endswith(".csv"):
            reader = csv.reader(text)
            column, start = None, 1
            for record in reader:
                if record and column is None:
                    if "path" not in record:
                        break
                    column = record.index("path")
                elif record and (column >= len(record) or _blank(record[column])):
                    lines.append(start)
                start = reader.line_num + 1  # a record spans lines where a value holds a line break
        else:
            for number, line in enumerate(text, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict) or _blank(row.get("path")):
                        lines.append(number)
    return "line", lines


def video_dataset(source: str):
    """SOURCE as a Ray Data dataset of VIDEO_LIST_SCHEMA rows (Ray must be initialised).

    A manifest is read by Ray Data's own readers and normalised batch by batch on the cluster,
    so a manifest of millions of rows never has to fit the driver; a folder, glob or MSR-VTT
    root is listed here (Arrow rows: paths only) and handed over."""
    from vidclust.runtime import apply_stage, dataset_of_tables, read_manifest
    from vidclust.store.shards import shard_items
    from vidclust.stage import Stage

    if shard_items(source) is not None:
        return dataset_of_tables(list_videos(source))
    fs, path, to_uri = filesystem(source)
    if not any(ch in path for ch in "*?[") and path.lower().endswith(MANIFEST_EXTENSIONS):
        if fs.get_file_info(path).type != pafs.FileType.File:
            raise VidclustError(f"SOURCE not found: {source}")
        kind = "parquet" if path.lower().endswith(".parquet") else "csv" if path.lower().endswith(".csv") else "json"
        ds = read_manifest(path, kind, fs, csv_column_types=MANIFEST_CSV_TYPES)
        return apply_stage(ds, Stage("normalise", normalise_manifest, batch_format="pyarrow",
                                     kwargs={"manifest": path, "to_uri": to_uri}, num_cpus=0.1))  # light: see embed
    return dataset_of_tables(list_videos(source))


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
          "category": r.get("category"), "explicit_id": r.get("explicit_id", False),
          "listing_error": r.get("listing_error")} for r in rows], schema=VIDEO_LIST_SCHEMA)


def check_same_paths(videos: pa.Table, committed: pa.Table) -> None:
    """Refuse, in one line, a video id of `videos` that `committed` (the video_id, path pairs OUT
    holds) has for another file: the new video would silently count as already done.

    The same file is the same path string, the same object behind URIs that differ only in their
    options or user info, or the same local file reached by another path (a link, a mount)."""
    videos = videos.filter(pc.is_in(videos.column("video_id"), value_set=committed.column("video_id").combine_chunks()))
    if videos.num_rows == 0:  # nothing of SOURCE is in OUT yet: the usual case, no per-video loop
        return
    held = dict(zip(committed.column("video_id").to_pylist(), committed.column("path").to_pylist()))
    clashes = [(vid, held[vid], path)
               for vid, path in zip(videos.column("video_id").to_pylist(), videos.column("path").to_pylist())
               if vid in held and held[vid] is not None and not same_file(held[vid], path)]
    if clashes:
        vid, old, new = clashes[0]
        more = f" (and {len(clashes) - 1} more ids)" if len(clashes) > 1 else ""
        raise VidclustError(f"video id {vid} in SOURCE is already in OUT for another file ({old} vs {new}){more}: "
                            "give the new videos other names or ids (a manifest's video_id column)")


def held_ids(videos: pa.Table, committed: pa.Table) -> pa.Table:
    """The ids OUT already holds for listed files that SOURCE names otherwise, as a table of
    (path, video_id): a file keeps its first id. `videos` has video_id, path and explicit_id;
    `committed` the (video_id, path) pairs OUT holds. An id derived from a name (folder, glob,
    shards, MSR-VTT, a manifest row without video_id) gives way to the held one: `a.mp4` stays `a`
    when `a.mkv` joins it, `n1` of `videos/new/` stays `new/n1` of an earlier `videos/`. An explicit
    id (a manifest's video_id) that differs is refused in one line: the same file under two ids
    would be embedded twice. The same file is the same path string."""
    empty = pa.table({"path": pa.array([], pa.string()), "video_id": pa.array([], pa.string())})
    held_paths = committed.column("path").combine_chunks()
    at = pc.index_in(videos.column("path"), value_set=held_paths)
    held = committed.column("video_id").combine_chunks().take(at)
    moved = pc.fill_null(pc.not_equal(videos.column("video_id"), held), False)
    if not pc.any(moved).as_py():  # the usual case: no per-video loop
        return empty
    rows, held = videos.filter(moved), held.filter(moved)
    # a file OUT holds under several ids (embedded twice before ids were kept): any of them stays
    mine = committed.filter(pc.is_in(committed.column("path"), value_set=rows.column("path").combine_chunks()))
    pairs = set(zip(mine.column("video_id").to_pylist(), mine.column("path").to_pylist()))
    keep = [(v, p) not in pairs for v, p in zip(rows.column("video_id").to_pylist(), rows.column("path").to_pylist())]
    rows, held = rows.filter(pa.array(keep)), held.filter(pa.array(keep))
    given = pc.fill_null(rows.column("explicit_id"), False)
    if pc.any(given).as_py():
        clashes = rows.filter(given)
        vid, path = clashes.column("video_id")[0].as_py(), clashes.column("path")[0].as_py()
        old = held.filter(given)[0].as_py()
        more = f" (and {clashes.num_rows - 1} more ids)" if clashes.num_rows > 1 else ""
        raise VidclustError(f"video id {vid} in SOURCE is a file OUT already holds as {old} ({path}){more}: "
                            f"give it its id {old} in the manifest's video_id column (or leave it empty), "
                            "or use another OUT")
    return pa.table({"path": rows.column("path").combine_chunks(), "video_id": held})
