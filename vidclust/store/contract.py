"""The output contract: what every file under OUT holds, and the one way each is read and written.

Every schema of a Parquet file vidclust writes lives here, with the stage that writes it and what
one row stands for (`CONTRACT`; `contract_markdown()` renders it, docs/output-contract.md is that
text). The files of clusters/ and report/ are reached only through their readers and writers
here (`read_assignments`, `write_centers`, ...; vidclust.layout names them and gives their paths):
a reader checks what it reads (the set it belongs to committed, the file there, the columns its
caller needs) and says, for a missing file, which stage to run first (`missing_file`, the one
place for "run `vidclust cluster` first"). Every write goes through `write_parquet`, `write_json`
and `write_bytes`, so a reader never sees a half-written file: on a local disk a file is written
into OUT/_vidclust/staging/ and renamed into place; on an object store an upload only becomes
visible when whole. A temporary file is named after the stage and the process writing it
(`describe.PID.HOST.ID.tmp`), and each stage, when it starts, removes those its own stopped runs
left (`clear_staging`), never a file a running process is writing.

Each stage writes only its own files (embed: frames/, videos.parquet, _vidclust/; cluster and
assign: clusters/ but the descriptions; describe: the descriptions; report: report/). The files of
`cluster` and those of `describe` are each one set (`OutputSet`) that appears whole or not at all,
also on an object store, which has no rename of a folder: a run withdraws the set's manifest
before its first write (`begin_outputs`), stamps its run id into every file that can carry one,
and writes the manifest (its files and the run id each carries, and the clustering's id) after
the last (`commit_outputs`). Readers take a set only through `committed_outputs`, which refuses a set
without its commit and descriptions of another clustering than the one there now, in one line
that names the stage to run again.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import signal
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidclust.errors import StaleOutputs, VidclustError
from vidclust.errors import first_line
from vidclust.store.layout import (ASSIGNMENTS_FILE, CENTERS_FILE, CLUSTER_DESCRIPTIONS_FILE, DESCRIPTIONS_FILE,
                             EXPLORE_SCRIPT, MAPPING_FILE, METRICS_FILE, NEAR_DUPLICATES_FILE, POINTS_SCRIPT,
                             PROJECTION_FILE, REPORT_PAGE_FILE, THUMBNAILS_DIR, VIDEO_VECTORS_FILE, OutputLayout)

META_KEY = b"vidclust"  # the schema metadata key: JSON of how the file's data were made

# ---------------------------------------------------------------------------------------------
# schemas

# one row per video and commit in _vidclust/commits/; the latest row of a video wins
STATE_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("warning", pa.string()),
    ("n_frames_sampled", pa.int32()),
    ("n_frames_decoded", pa.int32()),  # frames the decoder went through to sample them (at least)
    ("duration_s", pa.float32()),
    ("fps", pa.float32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("codec", pa.string()),
    ("backend", pa.string()),
    ("node_id", pa.string()),  # the Ray node that decoded it: where to look when one fails
    ("encoder_node_id", pa.string()),  # the node whose encoder passed its status row
    ("captions", pa.list_(pa.string())),
    ("category", pa.string()),
    ("files", pa.list_(pa.string())),  # frames/ files holding its frames ...
    ("file_rows", pa.list_(pa.int64())),  # ... and how many in each
])
BOOKKEEPING_COLUMNS = ("files", "file_rows")  # in the commit log, not in videos.parquet

VIDEOS_SCHEMA = pa.schema([f for f in STATE_SCHEMA if f.name not in BOOKKEEPING_COLUMNS])


def vector_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def frames_schema(dim: int, signature: Optional[dict] = None) -> pa.Schema:
    schema = pa.schema([
        ("video_id", pa.string()),
        ("frame_index", pa.int32()),
        ("timestamp_s", pa.float32()),
        ("embedding", vector_type(dim)),
    ])
    return schema if signature is None else schema.with_metadata({META_KEY: json.dumps(signature).encode()})


# The batches between the embed stage's steps, declared beside the frames they become:
#     decode -> decoded_schema(S) -> encode -> encoded_schema(D) -> write -> WRITTEN_SCHEMA -> driver
# A batch is a dict of NumPy columns; `check_batch` compares its schema (from dtypes and shapes,
# `batch_schema`) with the declared one where it crosses from one step to the next. Each video's
# frames are followed by one status row (frame_index MARKER, a zero frame or embedding) whose
# `info` is a JSON object of STATUS_INFO_SCHEMA's keys (frames carry '' there).

MARKER = -1  # frame_index of the status row that ends each video's frames in the stream


def decoded_schema(image_size: int) -> pa.Schema:
    """What the decode tasks emit: each video's frames (S x S RGB), then its status row."""
    return pa.schema([
        ("video_id", pa.string()),
        ("frame_index", pa.int32()),
        ("timestamp_s", pa.float32()),
        ("frame", pa.fixed_shape_tensor(pa.uint8(), [image_size, image_size, 3])),
        ("info", pa.string()),
    ])


def encoded_schema(dim: int) -> pa.Schema:
    """What the encoder emits: the decoded rows with an `embedding` (unit length) for `frame`."""
    return pa.schema([
        ("video_id", pa.string()),
        ("frame_index", pa.int32()),
        ("timestamp_s", pa.float32()),
        ("info", pa.string()),
        ("embedding", pa.fixed_shape_tensor(pa.float32(), [dim])),
    ])


# what a write task returns to the driver: per video in its batch, the frames/ file and how many of
# its frames (and the sum of their indices) it holds; or, for its status row, the row's info
WRITTEN_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("file", pa.string()),
    ("n_rows", pa.int64()),
    ("index_sum", pa.int64()),
    ("info", pa.string()),
])

# the keys of a status row's `info` (checked by name on the driver, once per video); those named
# as a column of STATE_SCHEMA become that column of the video's commit row (and of videos.parquet)
STATUS_INFO_SCHEMA = pa.schema([
    ("status", pa.string()),  # ok or failed
    ("error", pa.string()),
    ("warning", pa.string()),
    ("n_emitted", pa.int64()),  # frames the decoder emitted (n_frames_sampled when ok) ...
    ("index_sum", pa.int64()),  # ... and the sum of their frame_index: all written when both add up
    ("path", pa.string()),
    ("n_frames_decoded", pa.int64()),
    ("captions", pa.list_(pa.string())),
    ("category", pa.string()),
    ("duration_s", pa.float64()),
    ("fps", pa.float64()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("codec", pa.string()),
    ("backend", pa.string()),
    ("node_id", pa.string()),
    ("decode_note", pa.string()),  # why NVDEC did not decode it (decode.device=cuda|auto), else null
    ("decode_cpu_s", pa.float64()),  # CPU-seconds its decoding took (run.json's decode_cpu_s)
    ("encoder_node_id", pa.string()),  # added by the encoder
])


class BatchSchemaError(TypeError):
    """A batch between two steps of the embed stage is not what its declared schema says: a bug
    (or a new column not declared in vidclust.contract), never a user's mistake."""


def batch_schema(batch: Any) -> pa.Schema:
    """The Arrow schema a batch of NumPy columns stands for, from dtypes and shapes only (of a
    column of Python objects only the first value is looked at): strings and None are `string`,
    arrays of more than one dimension fixed-shape tensors, objects that are not text `null`. A
    float column of NaN only is `null`: Ray hands back a column of None only (the write rows'
    `file` where a task wrote no frame) as NaN floats."""
    fields = []
    for name, col in batch.items():
        dtype, shape = getattr(col, "dtype", None), getattr(col, "shape", ())
        if dtype is None:
            t = pa.null()
        elif dtype.kind == "U" or (dtype.kind == "O" and (not len(col) or isinstance(col[0], (str, type(None))))):
            t = pa.string()
        elif dtype.kind == "O" or (dtype.kind == "f" and len(shape) == 1 and len(col) and np.isnan(col[0])
                                   and np.isnan(col).all()):
            t = pa.null()
        elif len(shape) > 1:
            t = pa.fixed_shape_tensor(pa.from_numpy_dtype(dtype), list(shape[1:]))
        else:
            t = pa.from_numpy_dtype(dtype)
        fields.append(pa.field(name, t))
    return pa.schema(fields)


def check_batch(batch: Any, declared: pa.Schema, where: str) -> None:
    """BatchSchemaError, naming `where` and each column that differs, unless `batch` has exactly
    the columns of `declared`, of its types (in any order)."""
    want = {f.name: f.type for f in declared}
    # a column without a value (null) fits any declared type
    have = {f.name: want.get(f.name, f.type) if pa.types.is_null(f.type) else f.type for f in batch_schema(batch)}
    if have == want:
        return
    diffs = [f"{n} missing" for n in want if n not in have] + [f"{n} not declared" for n in have if n not in want]
    diffs += [f"{n} is {_batch_type(have[n])}, declared {_batch_type(t)}" for n, t in want.items()
              if n in have and have[n] != t]
    raise BatchSchemaError(f"{where}: the batch does not match its schema in vidclust.contract ({'; '.join(diffs)})")


def check_status_info(info: dict, video_id: str) -> None:
    """BatchSchemaError unless a status row's info holds every key of STATUS_INFO_SCHEMA (others
    may travel with it)."""
    missing = [n for n in STATUS_INFO_SCHEMA.names if n not in info]
    if missing:
        raise BatchSchemaError(f"the status row of {video_id} has no {', '.join(missing)} "
                               "(STATUS_INFO_SCHEMA in vidclust.contract)")


def _batch_type(t: pa.DataType) -> str:
    if isinstance(t, pa.FixedShapeTensorType):
        return f"{t.value_type}[{','.join(map(str, t.shape))}]"
    return str(t)


def video_vectors_schema(dim: int, column: str = "vector") -> pa.Schema:
    return pa.schema([("video_id", pa.string()), (column, vector_type(dim))])


def centers_schema(dim: int) -> pa.Schema:
    return pa.schema([("cluster_id", pa.int32()), ("center", vector_type(dim)), ("size", pa.int64())])


ASSIGNMENTS_SCHEMA = pa.schema([("video_id", pa.string()), ("cluster_id", pa.int32()),
                                ("distance", pa.float32())])

NEAR_DUPLICATES_SCHEMA = pa.schema([("group_id", pa.int32()), ("video_id", pa.string()),
                                    ("group_size", pa.int32()), ("max_similarity", pa.float32())])

KEYWORD_TYPE = pa.struct([("keyword", pa.string()), ("score", pa.float32())])
LABEL_TYPE = pa.struct([("label", pa.string()), ("score", pa.float32())])
DESCRIPTIONS_SCHEMA = pa.schema([
    ("cluster_id", pa.int32()),
    ("size", pa.int64()),
    ("n_captioned", pa.int32()),
    ("nearest_video_ids", pa.list_(pa.string())),
    ("summaries", pa.list_(pa.string())),
    ("keywords", pa.list_(KEYWORD_TYPE)),
    ("zero_shot_labels", pa.list_(LABEL_TYPE)),
    ("note", pa.string()),
])

PROJECTION_SCHEMA = pa.schema([("kind", pa.string()), ("video_id", pa.string()),
                               ("cluster_id", pa.int32()), ("x", pa.float32()), ("y", pa.float32())])

PROBE_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("duration_s", pa.float64()),
    ("fps", pa.float64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("codec", pa.string()),
    ("n_frames", pa.int64()),
])


# ---------------------------------------------------------------------------------------------
# the files of OUT


@dataclass(frozen=True)
class OutputFile:
    path: str  # relative to OUT (or, for `stats`, to its --out DIR)
    stage: str  # the one stage that writes it
    row: str  # what one row stands for (Parquet) or what the file holds
    schema: Optional[Callable[[int], pa.Schema]] = None  # of the vector size D; None: not Parquet
    columns: dict = field(default_factory=dict)  # column -> what it means, where a name is not enough


def _fixed(schema: pa.Schema) -> Callable[[int], pa.Schema]:
    return lambda dim: schema


CONTRACT: tuple[OutputFile, ...] = (
    OutputFile("frames/part-*.parquet", "embed", "one row per sampled frame of a decoded video",
               frames_schema, {"embedding": "the frame's CLIP image embedding (D: the model's size)",
                               "frame_index": "index of the frame in the video's decoded stream"}),
    OutputFile("videos.parquet", "embed", "one row per video ever listed into OUT, its latest status",
               _fixed(VIDEOS_SCHEMA), {"status": "ok, failed, or lost (its frames were removed: embedded again)",
                                       "n_frames_decoded": "frames decoded to sample them (at least)",
                                       "node_id": "the Ray node that decoded it",
                                       "encoder_node_id": "the Ray node whose encoder embedded it"}),
    OutputFile("_vidclust/commits/commit-*.parquet", "embed",
               "one row per video and commit; the latest row of a video wins",
               _fixed(STATE_SCHEMA), {"files": "frames/ files holding its frames",
                                      "file_rows": "how many of its frames each of those holds"}),
    OutputFile("_vidclust/embedding.json", "embed",
               "the model, weights, sampling and preprocessing the frames were embedded with"),
    OutputFile("_vidclust/clusters.json", "cluster",
               "the commit of clusters/ (but the descriptions): its files with the run id each carries, the "
               "clustering's id; written after the last of them (also by assign), withdrawn before the first"),
    OutputFile("_vidclust/descriptions.json", "describe",
               "the commit of the descriptions: their files with the run id each carries, and the id of the "
               "clustering they describe"),
    OutputFile(VIDEO_VECTORS_FILE, "cluster", "one row per clustered video",
               video_vectors_schema, {"vector": "the video's frames pooled (cluster.aggregation), unit length; "
                                                "D is twice the model's size for mean+max"}),
    OutputFile(CENTERS_FILE, "cluster", "one row per cluster", centers_schema,
               {"size": "videos assigned to it"}),
    OutputFile(ASSIGNMENTS_FILE, "cluster", "one row per clustered video",
               _fixed(ASSIGNMENTS_SCHEMA), {"cluster_id": "-1: left out (HDBSCAN noise)",
                                            "distance": "Euclidean distance to its cluster's centre"}),
    OutputFile(MAPPING_FILE, "cluster", "`video_id,cluster_id`, one line per video"),
    OutputFile(NEAR_DUPLICATES_FILE, "cluster",
               "one row per video that has a near-duplicate (cosine >= cluster.near_duplicate_threshold)",
               _fixed(NEAR_DUPLICATES_SCHEMA), {"max_similarity": "its highest similarity to another video "
                                                                  "of its group"}),
    OutputFile(METRICS_FILE, "cluster", "k, method, scores, the k sweep, counts (`n_empty_clusters`: "
               "clusters no video is nearest to), `clustering_id` and `run_id` (the run that wrote it)"),
    OutputFile(DESCRIPTIONS_FILE, "describe", "one row per cluster",
               _fixed(DESCRIPTIONS_SCHEMA),
               {"n_captioned": "of its videos, those with a usable caption",
                "nearest_video_ids": "nearest to the centre, captioned ones first",
                "summaries": "one per nearest video (null: no captions)",
                "keywords": "key phrases that tell the cluster from the others, best first (score: c-TF-IDF, "
                            "scaled to the cluster's best, times KeyBERT relevance); no two clusters share the "
                            "first unless their captions are the same",
                "zero_shot_labels": "CLIP labels, best first (null: not computed)",
                "note": "why words are missing or thin"}),
    OutputFile(CLUSTER_DESCRIPTIONS_FILE, "describe", "{cluster_id: [keyword, ...]}"),
    OutputFile(PROJECTION_FILE, "report",
               "one row per clustered video (kind video) and per cluster centre (kind center)",
               _fixed(PROJECTION_SCHEMA), {"kind": "video or center",
                                           "video_id": "the video (null for a centre)",
                                           "cluster_id": "the centre's cluster (null for a video: see "
                                                         "assignments)",
                                           "x": "t-SNE map position (NaN: a video without a vector)"}),
    OutputFile(REPORT_PAGE_FILE, "report", "the report page; its PNG and JPEG files beside it; it opens "
                                              "from disk, no server or network"),
    OutputFile(f"report/{POINTS_SCRIPT}", "report", "the page's data: every clustered video's map position, first "
                                             "caption, file and cluster, as one script-safe JSON object "
                                             "(vidclust/reporting/explorer.py describes it)"),
    OutputFile(f"report/{EXPLORE_SCRIPT}", "report", "the page's script: the map, search, each cluster's member list"),
    OutputFile("run.json", "every stage", "the resolved configuration, versions, and per stage its "
                                          "timings and counts"),
    OutputFile("stats.parquet", "stats", "(`vidclust stats SOURCE --out DIR`) one row per video of SOURCE",
               _fixed(PROBE_SCHEMA)),
)


def arrow_type_name(t: pa.DataType) -> str:
    """An Arrow type as the contract writes it: fixed-size lists of any size as `[D]`."""
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{arrow_type_name(t.value_type)}>[D]"
    if pa.types.is_list(t):
        return f"list<{arrow_type_name(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {arrow_type_name(f.type)}" for f in t) + ">"
    return {"float": "float32", "double": "float64"}.get(str(t), str(t))


def contract_markdown() -> str:
    """docs/output-contract.md: one table per Parquet file of the contract, the other files listed."""
    lines = ["# The output contract", "",
             "Generated from `vidclust/store/contract.py` by `vidclust.store.contract.contract_markdown()`; "
             "`tests/test_contract.py` checks that this file and the files a real run writes match it.",
             "", "All paths are relative to OUT. Parquet files carry JSON under the schema metadata key "
             "`vidclust` (how their data were made). Each stage writes only its own files; each file "
             "appears whole or not at all.", "", "## Parquet files", ""]
    for f in CONTRACT:
        if f.schema is None:
            continue
        lines += [f"### `{f.path}`", "", f"Written by `{f.stage}`; {f.row}.", "",
                  "| column | Arrow type | meaning |", "| --- | --- | --- |"]
        for col in f.schema(1):
            lines.append(f"| `{col.name}` | `{arrow_type_name(col.type)}` | {f.columns.get(col.name, '')} |")
        lines.append("")
    lines += ["## Other files", "", "| path | written by | holds |", "| --- | --- | --- |"]
    lines += [f"| `{f.path}` | `{f.stage}` | {f.row} |" for f in CONTRACT if f.schema is None]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# schema metadata


def with_metadata(table: pa.Table, meta: dict) -> pa.Table:
    """`table` with `meta` as its vidclust schema metadata (other metadata kept)."""
    old = table.schema.metadata or {}
    return table.replace_schema_metadata({**old, META_KEY: json.dumps(meta).encode()})


def metadata_of(schema: pa.Schema) -> dict:
    """The vidclust metadata of a schema ({} when it has none)."""
    raw = (schema.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def read_metadata(layout: OutputLayout, path: str) -> dict:
    """The vidclust metadata of a Parquet file of OUT, reading only its footer."""
    return metadata_of(pq.read_schema(path, filesystem=layout.fs))


def is_corrupt_parquet(exc: BaseException) -> bool:
    """Whether reading a Parquet file failed because the file is not valid Parquet (garbage, cut
    short, a damaged footer), rather than because the storage failed."""
    return isinstance(exc, pa.ArrowInvalid) or (isinstance(exc, OSError) and "deserialize thrift" in str(exc))


def read_frames_metadata(layout: OutputLayout, files: Sequence[str]) -> dict:
    """The `vidclust` schema metadata of the frame files (the embedding signature: encoder,
    weights, size, sampling, preprocessing); an error when the files disagree on it
    (embeddings of different models or samplings must not mix)."""
    meta: Optional[dict] = None
    first = None
    for path in files:
        try:
            this = read_metadata(layout, path)
        except Exception as exc:
            if not is_corrupt_parquet(exc):
                raise
            raise VidclustError(f"{path} is not a readable Parquet file ({first_line(exc)}): run `vidclust embed` "
                                "again (it moves unreadable frames files aside and embeds their videos again), "
                                "or remove the file") from None
        if meta is None:
            meta, first = this, path
        elif this != meta:
            raise VidclustError(
                f"frame files were embedded with different settings ({first}: {metadata_differences(meta, this)}; "
                f"{path}: {metadata_differences(this, meta)}); re-embed into a fresh OUT"
            )
    return meta or {}


def metadata_differences(a: dict, b: dict) -> dict:
    """The entries of metadata `a` that `b` does not have the same."""
    return {k: a.get(k) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


# ---------------------------------------------------------------------------------------------
# writing: the one atomic write


TEST_KILL = "VIDCLUST_TEST_KILL"  # tests only: "inside:REL" or "after:REL" (REL relative to OUT)
# SIGKILLs the writing process inside the write of REL (its temporary file written, not moved into
# place) or right after it, as `kill -9` at that moment would


def _write(layout: OutputLayout, path: str, write: Callable[[str], None]) -> None:
    if layout.is_local:
        tmp = layout.path("_vidclust", "staging", _staging_name(stage_writing(layout.relative(path))))
        layout.makedirs(layout.staging_dir)
        try:
            write(tmp)
            _test_kill(layout, path, "inside")
            layout.fs.move(tmp, path)
        except BaseException:
            if layout.exists(tmp):
                layout.fs.delete_file(tmp)
            raise
    else:
        write(path)
    _test_kill(layout, path, "after")


def _test_kill(layout: OutputLayout, path: str, when: str) -> None:
    if os.environ.get(TEST_KILL) == f"{when}:{layout.relative(path)}":
        os.kill(os.getpid(), signal.SIGKILL)


# where a file is not in the contract, the stage that writes its folder
_FOLDER_STAGES = {"frames": "embed", "clusters": "cluster", "report": "report"}
_ANY_STAGE = "vidclust"  # files every stage writes (run.json): cleared by each


def stage_writing(rel: str) -> str:
    """The stage that writes the file `rel` (relative to OUT): its contract entry's, else its
    folder's; "vidclust" for a file every stage writes or no stage owns."""
    for f in CONTRACT:
        if fnmatch.fnmatchcase(rel, f.path):
            return f.stage if " " not in f.stage else _ANY_STAGE
    return _FOLDER_STAGES.get(rel.split("/", 1)[0], _ANY_STAGE) if "/" in rel else _ANY_STAGE


def _staging_name(stage: str) -> str:
    return f"{stage}.{os.getpid()}.{socket.gethostname()}.{uuid.uuid4().hex}.tmp"


def process_alive(pid: int) -> bool:
    """Whether the process `pid` of this host is running (another user's too); a pid <= 0 names
    none (os.kill would signal a process group)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _left_by_a_stopped_run(name: str, stage: str) -> bool:
    """Whether the staging file `name` is `stage`'s (or every stage's) and its writing process is
    gone (this host's, not running). Names of older versions carry no writer: left by a stopped run."""
    parts = name[:-len(".tmp")].split(".") if name.endswith(".tmp") else []
    if len(parts) < 4 or not parts[1].isdigit():
        return bool(parts)
    if parts[0] not in (stage, _ANY_STAGE) or ".".join(parts[2:-1]) != socket.gethostname():
        return False
    return not process_alive(int(parts[1]))  # a running one may be this very process (another thread's write)


def clear_staging(layout: OutputLayout, stage: str, *, every_writer: bool = False) -> list[str]:
    """Delete the temporary files that stopped runs of `stage` left in OUT/_vidclust/staging/ (a
    write killed before its file moved into place), never one a running process is writing; with
    `every_writer` (a stage holding the writer lock, whose own files no other run writes), every
    one of `stage`'s. Call it when the stage starts. Returns the names deleted."""
    if not layout.is_local:  # object stores write in place: nothing is staged
        return []
    deleted = []
    for info in layout.fs.get_file_info(pafs.FileSelector(layout.staging_dir, allow_not_found=True)):
        name = info.path.rsplit("/", 1)[-1]
        mine = every_writer and name.startswith(f"{stage}.")
        if info.type == pafs.FileType.File and (mine or _left_by_a_stopped_run(name, stage)):
            try:
                layout.fs.delete_file(info.path)
                deleted.append(name)
            except FileNotFoundError:  # cleared by another stage starting at the same time
                pass
    return deleted


def write_parquet(layout: OutputLayout, table: pa.Table, path: str) -> None:
    """Write a Parquet file so that readers never see it half-written."""
    _write(layout, path, lambda p: pq.write_table(table, p, filesystem=layout.fs))


def write_bytes(layout: OutputLayout, data: bytes, path: str) -> None:
    def write(p: str) -> None:
        with layout.fs.open_output_stream(p) as f:
            f.write(data)

    _write(layout, path, write)


def write_json(layout: OutputLayout, obj: Any, path: str) -> None:
    write_bytes(layout, json.dumps(obj, indent=2, default=_json_default).encode(), path)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


# ---------------------------------------------------------------------------------------------
# reading


def read_parquet(layout: OutputLayout, path: str) -> pa.Table:
    """A Parquet file of OUT (its file's reader checks that it is there); one that cannot be read
    is an error naming it."""
    try:
        return pq.read_table(path, filesystem=layout.fs)
    except Exception as exc:
        raise VidclustError(f"cannot read {path}: {first_line(exc)}") from None


def read_json(layout: OutputLayout, path: str) -> Optional[Any]:
    """A JSON file of OUT, or None when it does not exist."""
    if not layout.exists(path):
        return None
    try:
        return json.loads(layout.read_bytes(path))
    except (ValueError, OSError) as exc:
        raise VidclustError(f"cannot read {path}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# a stage's files as one set: committed together, recording the run they derive from


@dataclass(frozen=True)
class OutputSet:
    name: str  # as messages name it
    stage: str  # the command that writes it whole (and repairs it)
    files: tuple[str, ...]  # relative to OUT
    manifest: str  # relative to OUT: written after the last file (the commit), withdrawn before the first
    derives: str = ""  # how it stands to the clustering it is made from ("describes"); "": the clustering itself


CLUSTERS = OutputSet("clusters/", "cluster", (
    VIDEO_VECTORS_FILE, CENTERS_FILE, ASSIGNMENTS_FILE, MAPPING_FILE, NEAR_DUPLICATES_FILE, METRICS_FILE,
), "_vidclust/clusters.json")
DESCRIPTIONS = OutputSet(DESCRIPTIONS_FILE, "describe", (
    DESCRIPTIONS_FILE, CLUSTER_DESCRIPTIONS_FILE,
), "_vidclust/descriptions.json", derives="describes")


def begin_outputs(layout: OutputLayout, outputs: OutputSet, stage: Optional[str] = None) -> str:
    """Call before the first write of `outputs`: withdraws their commit (readers refuse the set
    from now until `commit_outputs`; the manifest says which stage, `stage` or the set's, is
    writing it) and returns this run's id, to stamp into each file (`run_id` in a Parquet file's
    metadata or a JSON object's keys)."""
    run_id = uuid.uuid4().hex
    write_json(layout, {"stage": stage or outputs.stage, "run_id": run_id, "pending": True},
               layout.path(outputs.manifest))
    return run_id


def commit_outputs(layout: OutputLayout, outputs: OutputSet, run_id: str, written: Sequence[str],
                   stage: Optional[str] = None, **facts: Any) -> dict:
    """Call after the last write of `outputs`: the manifest, listing each file of the set with the
    run id it carries (None: one that carries none), the stage that wrote it, and `facts`
    (`clustering_id`); a file of `written` that carries another run's id (another run wrote it
    meanwhile) is an error. Returns the manifest."""
    again = f"run vidclust {outputs.stage} {layout.uri or layout.root} again"
    files = {}
    for rel in outputs.files:
        if not layout.exists(layout.path(rel)):
            raise StaleOutputs(f"{rel} was removed while {outputs.name} was being written: {again}")
        carried = run_id_of(layout, rel)
        if rel in written and carried not in (None, run_id):
            raise StaleOutputs(f"{rel} was rewritten by another run while this one wrote {outputs.name}: {again}")
        files[rel] = carried
    manifest = {"stage": stage or outputs.stage, "run_id": run_id, **facts, "files": files}
    write_json(layout, manifest, layout.path(outputs.manifest))
    return manifest


def run_id_of(layout: OutputLayout, rel: str) -> Optional[str]:
    """The run id a file of OUT carries: in a Parquet file's metadata, a JSON object's `run_id`
    key; None for a file that carries none (CSV, cluster_descriptions.json)."""
    path = layout.path(rel)
    if rel.endswith(".parquet"):
        return read_metadata(layout, path).get("run_id")
    if rel.endswith(".json"):
        data = read_json(layout, path)
        return data.get("run_id") if isinstance(data, dict) else None
    return None


def committed_outputs(layout: OutputLayout, outputs: OutputSet,
                      derived_from: Optional[dict] = None) -> Optional[dict]:
    """The manifest of `outputs` when OUT holds the set whole, as its last run committed it; None
    when OUT holds none of its files. Every reader of a set calls this first. StaleOutputs, one
    line naming the stage to run again, for a withdrawn commit (a run of the stage was stopped
    half-way), a committed file missing or carrying another run's id, and, with `derived_from`
    (the manifest of the clustering there now), a set made from another clustering.
    Files without any manifest (an older vidclust's, or made by hand) are taken as they are ({}):
    every run of this one withdraws the commit before its first write, so a stopped run always
    leaves a withdrawn one; so is a file that carries no run id (rewritten by pandas, say)."""
    again = f"run vidclust {outputs.stage} {layout.uri or layout.root} again"
    manifest = _read_manifest(layout, outputs)
    if manifest is None:
        if not any(layout.exists(layout.path(rel)) for rel in outputs.files):
            return None
        manifest = {}
    stage = manifest.get("stage") or outputs.stage
    if manifest.get("pending"):
        raise StaleOutputs(f"{outputs.name} is incomplete (a `vidclust {stage}` run was stopped): {again}")
    for rel, committed in manifest.get("files", {}).items():
        if not layout.exists(layout.path(rel)):
            raise StaleOutputs(f"{outputs.name} is incomplete ({rel} is missing): {again}")
        try:
            carried = run_id_of(layout, rel)
        except Exception as exc:
            raise StaleOutputs(f"{outputs.name} is incomplete ({rel} is unreadable: "
                               f"{first_line(exc)}): {again}") from None
        if carried is not None and carried != committed:
            raise StaleOutputs(f"{outputs.name} is incomplete ({rel} is another run's than the one "
                               f"`vidclust {stage}` committed): {again}")
    if derived_from is not None and manifest.get("clustering_id") != derived_from.get("clustering_id"):
        raise StaleOutputs(f"{outputs.name} {outputs.derives or 'derives from'} an earlier clustering: {again}")
    return manifest


def _read_manifest(layout: OutputLayout, outputs: OutputSet) -> Optional[dict]:
    """The manifest of `outputs` (None when there is none); one that cannot be read is taken as
    withdrawn: a commit is written whole or not at all, so only a stopped run leaves it so."""
    try:
        manifest = read_json(layout, layout.path(outputs.manifest))
    except VidclustError:
        return {"pending": True}
    if manifest is None:
        return None
    if not isinstance(manifest, dict) or not (manifest.get("pending") or isinstance(manifest.get("files"), dict)):
        return {"pending": True}
    return manifest


# ---------------------------------------------------------------------------------------------
# each file's reader and writer: the only code that opens a file of clusters/ or report/
# (vidclust.layout names them). A reader checks what it reads: the set it belongs to committed
# whole (`committed_outputs`), the file there (else one line naming the stage to run first), the
# columns its caller needs; with required=False a missing file is None, for what a stage can do
# without.


def missing_file(layout: OutputLayout, rel: str) -> str:
    """The one line for a file of OUT that is not there: which stage to run first."""
    return f"{layout.root} has no {rel}: run `vidclust {stage_writing(rel)}` first"


def committed_file(layout: OutputLayout, rel: str, *, required: bool = True) -> Optional[str]:
    """The path of the file `rel` of OUT, after a reader's checks: the set it belongs to is
    committed whole (StaleOutputs otherwise; descriptions also of the clustering there now), and
    the file is there (else, when `required`, the line of `missing_file`; None when not)."""
    for outputs in (CLUSTERS, DESCRIPTIONS):
        if rel in outputs.files:
            clustering = (committed_outputs(layout, CLUSTERS) or {}) if outputs.derives else None
            committed_outputs(layout, outputs, derived_from=clustering)
    path = layout.path(rel)
    if layout.exists(path):
        return path
    if required:
        raise VidclustError(missing_file(layout, rel))
    return None


def _read_table(layout: OutputLayout, rel: str, needs: Sequence[str], required: bool) -> Optional[pa.Table]:
    path = committed_file(layout, rel, required=required)
    if path is None:
        return None
    table = read_parquet(layout, path)
    for col in needs:
        if col not in table.column_names:
            raise VidclustError(f"{rel} in {layout.root} has no {col} column")
    return table


def _read_object(layout: OutputLayout, rel: str, required: bool) -> Optional[Any]:
    path = committed_file(layout, rel, required=required)
    return None if path is None else read_json(layout, path)


def read_videos(layout: OutputLayout, needs: Sequence[str] = (), *, required: bool = True) -> Optional[pa.Table]:
    """videos.parquet: every video embed listed, its latest status and captions."""
    return _read_table(layout, layout.relative(layout.videos), needs, required)


def read_video_vectors(layout: OutputLayout, needs: Sequence[str] = (), *,
                       required: bool = True) -> Optional[pa.Table]:
    return _read_table(layout, VIDEO_VECTORS_FILE, needs, required)


def read_centers(layout: OutputLayout, needs: Sequence[str] = (), *, required: bool = True) -> Optional[pa.Table]:
    return _read_table(layout, CENTERS_FILE, needs, required)


def read_vectors(layout: OutputLayout) -> tuple[list[str], np.ndarray]:
    """The aggregated per-video vectors that `cluster` saved: (video_ids, float32 [n, D])."""
    t = read_video_vectors(layout, ("video_id", "vector"))
    return t.column("video_id").to_pylist(), embedding_matrix(t.column("vector"))


def read_center_vectors(layout: OutputLayout) -> np.ndarray:
    """The centres that `cluster` saved, float32 [k, D] (row i: cluster i)."""
    return embedding_matrix(read_centers(layout, ("cluster_id", "center")).column("center"))


def read_assignments(layout: OutputLayout, needs: Sequence[str] = (), *,
                     required: bool = True) -> Optional[pa.Table]:
    return _read_table(layout, ASSIGNMENTS_FILE, needs, required)


def read_metrics(layout: OutputLayout, *, required: bool = True) -> Optional[Any]:
    return _read_object(layout, METRICS_FILE, required)


def read_descriptions(layout: OutputLayout, *, required: bool = True) -> Optional[pa.Table]:
    return _read_table(layout, DESCRIPTIONS_FILE, (), required)


def read_cluster_descriptions(layout: OutputLayout, *, required: bool = True) -> Optional[Any]:
    return _read_object(layout, CLUSTER_DESCRIPTIONS_FILE, required)


def write_video_vectors(layout: OutputLayout, table: pa.Table) -> None:
    write_parquet(layout, table, layout.video_vectors)


def write_centers(layout: OutputLayout, table: pa.Table) -> None:
    write_parquet(layout, table, layout.centers)


def write_assignments(layout: OutputLayout, table: pa.Table) -> None:
    write_parquet(layout, table, layout.assignments)


def write_video_cluster_mapping(layout: OutputLayout, assignments: pa.Table) -> None:
    """The notebook's video_cluster_mapping.csv of an assignments table: `video_id,cluster_id`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["video_id", "cluster_id"])
    w.writerows(zip(assignments.column("video_id").to_pylist(), assignments.column("cluster_id").to_pylist()))
    write_bytes(layout, buf.getvalue().encode(), layout.video_cluster_mapping)


def write_near_duplicates(layout: OutputLayout, table: pa.Table) -> None:
    write_parquet(layout, table, layout.near_duplicates)


def write_metrics(layout: OutputLayout, metrics: dict) -> None:
    write_json(layout, metrics, layout.metrics)


def write_descriptions(layout: OutputLayout, table: pa.Table) -> None:
    write_parquet(layout, table, layout.descriptions)


def write_cluster_descriptions(layout: OutputLayout, words: dict) -> None:
    write_json(layout, words, layout.cluster_descriptions)


def clear_report(layout: OutputLayout) -> None:
    """report/ emptied of the previous report's files (the page lists only this report's), with
    the folder of its thumbnails."""
    if layout.exists(layout.report_dir):
        layout.fs.delete_dir_contents(layout.report_dir, missing_dir_ok=True)
    layout.makedirs(layout.report_file(THUMBNAILS_DIR))


def write_report_file(layout: OutputLayout, name: str, data: bytes) -> None:
    """A file beside the report page: `name` relative to report/ (vidclust.layout names them)."""
    write_bytes(layout, data, layout.report_file(name))


def write_projection(layout: OutputLayout, table: pa.Table) -> None:
    write_parquet(layout, table, layout.projection)


def write_report_page(layout: OutputLayout, page: str) -> str:
    """report/index.html; returns its path."""
    write_bytes(layout, page.encode("utf-8"), layout.report_page)
    return layout.report_page


def embedding_matrix(column: Any) -> np.ndarray:
    """A column of fixed-size vectors as a float32 [n, D] array.

    Takes an Arrow (chunked) fixed_size_list / list column, Ray's tensor extension column, a
    2-D NumPy array, or a NumPy object array of 1-D arrays (how Ray hands fixed_size_list
    columns over in "numpy" batches)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if isinstance(column, pa.Array):
        if len(column) == 0:
            return np.zeros((0, _list_size(column.type)), dtype=np.float32)
        if column.null_count:
            raise VidclustError("embeddings contain nulls")
        if pa.types.is_fixed_size_list(column.type):
            d = column.type.list_size
            flat = column.flatten()  # honours the array's offset
            return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, d)
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lengths = pc.list_value_length(column).to_numpy()
            if lengths.min() != lengths.max():
                raise VidclustError("embeddings have different lengths")
            flat = column.flatten()
            return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, int(lengths[0]))
        if hasattr(column, "to_numpy_ndarray"):  # Ray's ArrowTensorArray
            return np.asarray(column.to_numpy_ndarray(), dtype=np.float32)
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32)
    arr = np.asarray(column)
    if arr.dtype == object:
        if len(arr) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.asarray(v, dtype=np.float32) for v in arr])
    if arr.ndim != 2:
        raise VidclustError(f"expected a 2-D array of embeddings, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def _list_size(t: pa.DataType) -> int:
    return t.list_size if pa.types.is_fixed_size_list(t) else 0
