"""Frames in OUT as one write: `FrameSink`, with the four verbs of Ray Data's Datasink.

    driver:   on_write_start()          OUT prepared (signature, staging, reconcile); its committed videos
    workers:  write(batch)              frames/part-<uuid>.parquet + one accounting row per video
    driver:   on_write_returned(rows)   done videos -> _vidclust/commits/commit-<seq>-<run>.parquet
    driver:   on_write_complete()       the last commit, reconcile, videos.parquet
              on_write_failed(error)    what finished is committed; the next run goes on from there

Ray's Datasink commits once, when every write task is done; this sink also commits while the job
runs (`on_write_returned`, the verb Ray's lacks), so a killed run keeps its finished videos and a
re-run skips them. It imports no Ray: `vidclust.embedding.run` wires it (its `write` is the write stage's
function, and the driver hands it each write task's rows as they come), a test drives it directly.

A write task writes whatever rows its batch holds (a video's frames may span several files) and
returns, per video, the file and its row count, plus the video's status row when the batch held
it. The driver sees only those per-video rows, never a frame: a video is done when its status
row came and its frames counted in files add up to the frames its decoder emitted (with the same
sum of frame indices). Done videos are committed every few seconds, with the files that hold them.
The batches and rows are those declared in vidclust.contract (encoded_schema, WRITTEN_SCHEMA,
STATUS_INFO_SCHEMA), checked as they arrive.

Whatever no commit accounts for (files of a killed run, the rows of a video that never completed
or failed half-way, a write task that died after writing) is removed by `reconcile`, which
rewrites just the files holding such rows. So after any run, killed or not, a re-run leaves each
video's frames in OUT exactly once, and a reader pointed at frames/ sees only frame rows.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidclust.store.contract import (BOOKKEEPING_COLUMNS, META_KEY, STATE_SCHEMA, WRITTEN_SCHEMA, check_batch,
                               check_status_info, clear_staging, encoded_schema, frames_schema,
                               is_corrupt_parquet, write_json, write_parquet)
from vidclust.errors import VidclustError, first_line
from vidclust.store.layout import OutputLayout
from vidclust.store.runinfo import EmbedUsage

log = logging.getLogger("vidclust")

# the columns of a commit row that do not come from the status row's info under their own name
_NOT_FROM_INFO = {"video_id", "n_frames_sampled", "captions", *BOOKKEEPING_COLUMNS}


class FrameSink:
    """frames/, the commit log and videos.parquet of OUT, written by one embed run (holding the
    writer lock) with the embedding `signature` and `dim`-sized embeddings. On the driver it holds
    only the videos in flight, never a frame; pickled into the write tasks it carries only OUT and
    the frames' schema. `on_video(video_id, info)`, when given, is called on the driver for each
    video as it is done, with its status row's info (what the decoder and encoder reported)."""

    def __init__(self, layout: OutputLayout, signature: dict, dim: int, commit_seconds: float,
                 on_video: Optional[Callable[[str, dict], None]] = None):
        self.layout, self.signature, self.commit_seconds = layout, signature, commit_seconds
        self.schema = frames_schema(dim, signature)
        self.on_video = on_video
        self.metadata = {META_KEY: json.dumps(signature).encode()}
        self.pending: dict[str, dict] = {}
        self.closed: set[str] = set()  # completed in this run: late or repeated rows are ignored
        self.ready: list[dict] = []
        self.counts = {"ok": 0, "failed": 0, "frames": 0, "rows_received": 0}  # rows: per video, not frame
        self.failures: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []
        self.decode_notes: dict[str, int] = {}  # why NVDEC did not decode a video -> how many videos
        self.incomplete: list[str] = []  # in flight when the write ended: left to the next run
        self._run = uuid.uuid4().hex[:8]
        self.usage = EmbedUsage()  # run.json's decode CPU, decoders and GPU busy fraction
        self._last_commit = time.monotonic()

    @property
    def dim(self) -> int:
        return self.schema.field("embedding").type.list_size

    def __getstate__(self) -> dict:
        # what a write task needs: OUT (opened again where it runs, as the user named it) and the schema
        return {"layout": None if self.layout.uri else self.layout, "out": self.layout.uri, "schema": self.schema}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # -----------------------------------------------------------------------------------------
    # on_write_start: the driver, before any write

    def on_write_start(self) -> pa.Table:
        """Create OUT, refuse a signature other than the one OUT's embeddings were made with, drop
        what a killed run left half-written, make frames/ match the commits, and return every
        committed video's latest row (`read_state`): what this run skips. Call it holding the
        writer lock (every embed temporary file is then a stopped run's)."""
        layout = self.layout
        layout.makedirs(layout.frames_dir)
        layout.makedirs(layout.commits_dir)
        # a signature binds OUT once a video was embedded with it: a run that embedded nothing (its
        # weights did not load, it was stopped at once) leaves none that refuses the next settings
        if layout.exists(layout.signature_file) and self._holds_embeddings():
            held = json.loads(layout.read_bytes(layout.signature_file))
            signature = self.signature
            if held != signature:
                diff = [k for k in signature if held.get(k) != signature.get(k)]
                raise VidclustError(
                    f"{layout.root} already holds embeddings made with other settings ({', '.join(diff)}: "
                    f"{ {k: held.get(k) for k in diff} } here, { {k: signature.get(k) for k in diff} } asked "
                    "for). Embeddings of different models or samplings never mix: use another OUT.")
        else:
            write_json(layout, self.signature, layout.signature_file)
        clear_staging(layout, "embed", every_writer=True)
        reconcile(layout)
        return read_state(layout)

    def _holds_embeddings(self) -> bool:
        """Whether a commit of OUT has a video embedded (status ok)."""
        status = read_state(self.layout).column("status")
        return pc.any(pc.equal(status, "ok")).as_py() is True

    # -----------------------------------------------------------------------------------------
    # write: a write task (a Ray worker)

    def write(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Write the frame rows of `batch` (encoded_schema) to one new frames/ file (sorted by
        video, then frame), and return the accounting rows (WRITTEN_SCHEMA) for the driver.
        Status rows are not written: they travel back as `info`."""
        check_batch(batch, encoded_schema(self.dim), "the write task's input")
        if self.layout is None:  # in a write task: OUT opened once per worker
            self.layout = OutputLayout.open(self.out)
        vids = np.asarray(batch["video_id"], dtype=object).astype(str)
        idx = np.asarray(batch["frame_index"], dtype=np.int64)
        is_frame = idx >= 0
        acc_vid, acc_file, acc_n, acc_sum, acc_info = [], [], [], [], []
        if is_frame.any():
            fv, fi = vids[is_frame], idx[is_frame]
            order = np.lexsort((fi, fv))
            emb = np.asarray(batch["embedding"], dtype=np.float32)[is_frame][order]
            table = pa.table({
                "video_id": pa.array(fv[order], pa.string()),
                "frame_index": pa.array(fi[order], pa.int32()),
                "timestamp_s": pa.array(np.asarray(batch["timestamp_s"], np.float32)[is_frame][order]),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), self.dim),
            }, schema=self.schema)
            name = f"part-{uuid.uuid4().hex}.parquet"
            write_parquet(self.layout, table, self.layout.path("frames", name))
            uniq, first, counts = np.unique(fv[order], return_index=True, return_counts=True)
            sums = np.add.reduceat(fi[order], first)
            for v, n, s in zip(uniq, counts, sums):
                acc_vid.append(v), acc_file.append(name), acc_n.append(int(n)), acc_sum.append(int(s))
                acc_info.append(None)
        for r in np.flatnonzero(~is_frame):
            acc_vid.append(vids[r]), acc_file.append(None), acc_n.append(0), acc_sum.append(0)
            acc_info.append(str(batch["info"][r]))
        return {"video_id": np.array(acc_vid, dtype=object), "file": np.array(acc_file, dtype=object),
                "n_rows": np.array(acc_n, dtype=np.int64), "index_sum": np.array(acc_sum, dtype=np.int64),
                "info": np.array(acc_info, dtype=object)}

    # -----------------------------------------------------------------------------------------
    # on_write_returned: the driver, as each write task's rows arrive (the streaming commits)

    def on_write_returned(self, batch: dict[str, np.ndarray]) -> None:
        """Take a write task's accounting rows (WRITTEN_SCHEMA) and commit every video whose
        frames are now all in files, at most every `commit_seconds`."""
        check_batch(batch, WRITTEN_SCHEMA, "the write tasks' rows")
        touched = set()
        self.counts["rows_received"] += len(batch["video_id"])
        for vid, file, n, s, info in zip(batch["video_id"], batch["file"], batch["n_rows"],
                                         batch["index_sum"], batch["info"]):
            vid = str(vid)
            if vid in self.closed:
                continue
            p = self.pending.setdefault(vid, {"files": defaultdict(int), "n": 0, "sum": 0, "info": None})
            # a column of None only comes back from Ray as NaN floats: a status is text, and a
            # file counts by its rows
            if isinstance(info, str):
                p["info"] = json.loads(info)
                check_status_info(p["info"], vid)
            elif n:
                p["files"][str(file)] += int(n)
                p["n"] += int(n)
                p["sum"] += int(s)
            touched.add(vid)
        for vid in touched:
            self._complete_if_done(vid)
        if self.ready and time.monotonic() - self._last_commit >= self.commit_seconds:
            self.commit()

    def _complete_if_done(self, vid: str) -> None:
        p = self.pending[vid]
        info = p["info"]
        if info is None:
            return
        ok = info["status"] == "ok"
        if ok and (p["n"] != info["n_emitted"] or p["sum"] != info["index_sum"]):
            return  # frames still on their way (or repeated: then it stays open and is redone)
        del self.pending[vid]
        self.closed.add(vid)
        self.usage.add(info)
        files = sorted(p["files"]) if ok else []
        self.ready.append({
            **{name: info.get(name) for name in STATE_SCHEMA.names if name not in _NOT_FROM_INFO},
            "video_id": vid, "n_frames_sampled": info["n_emitted"] if ok else 0,
            "captions": info.get("captions") or [],
            "files": files, "file_rows": [p["files"][f] for f in files]})
        self.counts[info["status"]] += 1
        if ok:
            self.counts["frames"] += p["n"]
            if info.get("warning"):
                self.warnings.append((vid, info["warning"]))
            if info.get("decode_note"):
                self.decode_notes[info["decode_note"]] = self.decode_notes.get(info["decode_note"], 0) + 1
        else:
            self.failures.append((vid, info.get("error") or ""))
        if self.on_video is not None:
            self.on_video(vid, info)

    def commit(self) -> None:
        """Commit the videos done since the last commit (one commit file)."""
        if self.ready:
            write_commit(self.layout, pa.Table.from_pylist(self.ready, schema=STATE_SCHEMA), self._run,
                         self.metadata)
            self.ready = []
        self._last_commit = time.monotonic()

    def _close(self) -> None:
        """Commit what is done; the videos still in flight (their frames never all came: a lost
        task, or rows seen twice) are left to the next run (`incomplete`)."""
        self.commit()
        self.incomplete = sorted(self.pending)

    # -----------------------------------------------------------------------------------------
    # on_write_complete / on_write_failed: the driver, at the end

    def on_write_complete(self) -> pa.Table:
        """After the last write task's rows: commit what is done, make frames/ hold exactly the
        committed videos' frames, and write videos.parquet (one row per video ever listed into
        OUT, its latest status), which is returned."""
        self._close()
        reconcile(self.layout)
        table = read_state(self.layout).drop_columns(list(BOOKKEEPING_COLUMNS))
        write_parquet(self.layout, table, self.layout.videos)
        return table

    def on_write_failed(self, error: BaseException) -> None:
        """After the job failed: commit the videos that finished (a re-run skips them), unless
        `error` is the storage's own (an OSError: a full disk takes no commit either). What the
        rest left in frames/ goes at the next run's on_write_start."""
        if not isinstance(error, OSError):
            self._close()


def write_commit(layout: OutputLayout, entries: pa.Table, run: str, metadata: dict) -> None:
    seq = _next_commit_seq(layout)
    write_parquet(layout, entries.replace_schema_metadata(metadata),
                     layout.path("_vidclust", "commits", f"commit-{seq:06d}-{run}.parquet"))


def _commit_files(layout: OutputLayout) -> list[str]:
    infos = layout.fs.get_file_info(pafs.FileSelector(layout.commits_dir, allow_not_found=True))
    return sorted(i.path for i in infos if i.base_name.startswith("commit-") and i.base_name.endswith(".parquet"))


def _next_commit_seq(layout: OutputLayout) -> int:
    layout.makedirs(layout.commits_dir)
    seqs = [int(p.rsplit("/", 1)[-1].split("-")[1]) for p in _commit_files(layout)]
    return max(seqs, default=-1) + 1


def read_state(layout: OutputLayout) -> pa.Table:
    """Every committed video's latest row (STATE_SCHEMA), sorted by video_id."""
    files = _commit_files(layout)
    if not files:
        return STATE_SCHEMA.empty_table()
    table = pa.concat_tables([pq.read_table(f, filesystem=layout.fs, schema=STATE_SCHEMA) for f in files])
    meta = pq.read_schema(files[-1], filesystem=layout.fs).metadata
    # the last row of each video wins: reverse, keep each id's first occurrence
    ids = table.column("video_id").to_numpy(zero_copy_only=False)[::-1]
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(table.num_rows - 1 - first)
    return table.take(pa.array(keep)).sort_by("video_id").replace_schema_metadata(meta)


# ---------------------------------------------------------------------------------------------
# reconcile: frames/ holds exactly what is committed


def reconcile(layout: OutputLayout) -> dict:
    """Make frames/ hold exactly the committed videos' frames, each once.

    Files whose row count equals what the commits say they hold are left alone (the usual case:
    only their Parquet footers are read). The others are rewritten with only the committed
    videos' rows, or deleted when they hold none; the commits are updated to the new files first,
    so a kill at any moment leaves a state the next reconcile finishes. A committed video whose
    frames are no longer all there (a file deleted by hand) is marked `lost`: the next run embeds
    it again, and its remaining rows go. A file that is not readable Parquet (planted, or damaged
    since), or that no commit names and that holds no vidclust frames, is moved to
    _vidclust/unreadable/ with a warning; a committed one's videos are then lost."""
    for _ in range(3):
        state = read_state(layout)
        ok = state.filter(pc.equal(state.column("status"), "ok"))
        expected: dict[str, dict[str, int]] = defaultdict(dict)
        for vid, files, rows in zip(ok.column("video_id").to_pylist(), ok.column("files").to_pylist(),
                                    ok.column("file_rows").to_pylist()):
            for f, n in zip(files or [], rows or []):
                expected[f][vid] = n
        on_disk = {p.rsplit("/", 1)[-1]: p for p in layout.frame_files()}
        n_rows = {name: _row_count(layout, path) for name, path in on_disk.items()}
        for name in sorted(on_disk):
            why = _not_a_frames_file(layout, on_disk[name], n_rows[name], committed=name in expected)
            if why:
                _set_aside(layout, on_disk.pop(name), why)
                del n_rows[name]
        # a committed file set aside is missing now: its videos are lost, and embedded again
        lost = {v for f, vids in expected.items() if f not in on_disk for v in vids}
        if lost:
            _mark_lost(layout, ok, lost)
            continue
        dirty = [name for name in on_disk if n_rows[name] != sum(expected.get(name, {}).values())]
        rewritten: dict[str, str] = {}
        for name in dirty:
            keep = expected.get(name, {})
            if not keep:
                continue
            table = pq.read_table(on_disk[name], filesystem=layout.fs)
            table = _drop_repeated_frames(table.filter(
                pc.is_in(table.column("video_id"), pa.array(sorted(keep), pa.string()))))
            counts = dict(zip(*np.unique(table.column("video_id").to_numpy(zero_copy_only=False),
                                         return_counts=True)))
            lost |= {v for v, n in keep.items() if counts.get(v, 0) != n}  # a file altered by hand
            new = f"part-{uuid.uuid4().hex}.parquet"
            write_parquet(layout, table, layout.path("frames", new))
            rewritten[name] = new
        if lost:
            _mark_lost(layout, ok, lost)  # then once more: their rows go too
            continue
        if rewritten:  # point the commits at the new files before the old ones go
            moved = ok.filter(pc.is_in(ok.column("video_id"), pa.array(
                sorted({v for n in rewritten for v in expected[n]}), pa.string())))
            files = [[rewritten.get(f, f) for f in fs] for fs in moved.column("files").to_pylist()]
            moved = moved.set_column(moved.schema.get_field_index("files"), "files",
                                     pa.array(files, pa.list_(pa.string())))
            write_commit(layout, moved, "reconcile", state.schema.metadata or {})
        for name in dirty:
            layout.fs.delete_file(on_disk[name])
        if dirty:
            log.info("frames/: %d file(s) held rows no commit accounts for: %d rewritten, %d removed",
                     len(dirty), len(rewritten), len(dirty) - len(rewritten))
        return {"files_checked": len(on_disk), "rewritten": len(rewritten),
                "removed": len(dirty) - len(rewritten)}
    raise RuntimeError(f"frames/ of {layout.root} could not be reconciled with its commits")


def _row_count(layout: OutputLayout, path: str) -> int | Exception:
    """The rows of a frames/ file from its footer, or the error that says it is not Parquet."""
    try:
        return pq.read_metadata(path, filesystem=layout.fs).num_rows
    except Exception as exc:
        if is_corrupt_parquet(exc):
            return exc
        raise


def _not_a_frames_file(layout: OutputLayout, path: str, n_rows: int | Exception, committed: bool) -> str:
    """Why a frames/ file must go out of the way ('' when it is a frames file): it is not
    readable Parquet, or no commit names it and it holds no vidclust frames (a file of the
    user's: moved, never deleted, as a killed run's leftovers are)."""
    if isinstance(n_rows, Exception):
        return (f"{', which a commit accounts for,' if committed else ''} is not a readable Parquet file "
                f"({first_line(n_rows)}){'' if committed else ' and no vidclust run wrote it'}")
    if not committed and META_KEY not in (pq.read_schema(path, filesystem=layout.fs).metadata or {}):
        return " holds no vidclust frames (its schema has no vidclust metadata)"
    return ""


def _set_aside(layout: OutputLayout, path: str, why: str) -> None:
    """Move a file out of frames/ to _vidclust/unreadable/ (out of the way of every reader of
    frames/, kept for whoever wants to look at it), saying why in one line."""
    name = path.rsplit("/", 1)[-1]
    layout.makedirs(layout.unreadable_dir)
    target = layout.path("_vidclust", "unreadable", name)
    if layout.exists(target):
        target = layout.path("_vidclust", "unreadable", f"{uuid.uuid4().hex[:8]}-{name}")
    layout.fs.move(path, target)
    log.warning("frames/%s%s: moved to %s", name, why, target)


def _mark_lost(layout: OutputLayout, ok: pa.Table, lost: set[str]) -> None:
    log.warning("%d committed videos no longer have all their frames in frames/ (a file was removed "
                "or altered): they will be embedded again", len(lost))
    rows = ok.filter(pc.is_in(ok.column("video_id"), pa.array(sorted(lost), pa.string())))
    n = rows.num_rows
    for name, value in (("status", pa.array(["lost"] * n)),
                        ("error", pa.array(["frames missing from OUT: embedded again by the next run"] * n)),
                        ("files", pa.array([[]] * n, pa.list_(pa.string()))),
                        ("file_rows", pa.array([[]] * n, pa.list_(pa.int64())))):
        rows = rows.set_column(rows.schema.get_field_index(name), name, value)
    write_commit(layout, rows, "lost", ok.schema.metadata or {})


def _drop_repeated_frames(table: pa.Table) -> pa.Table:
    if table.num_rows < 2:
        return table
    table = table.sort_by([("video_id", "ascending"), ("frame_index", "ascending")])
    v = table.column("video_id").to_numpy(zero_copy_only=False)
    f = table.column("frame_index").to_numpy()
    repeat = np.r_[False, (v[1:] == v[:-1]) & (f[1:] == f[:-1])]
    return table.filter(pa.array(~repeat)) if repeat.any() else table

