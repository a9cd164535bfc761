"""The embedding stage: video list -> per-frame CLIP embeddings in Parquet.

    video list --> decode + sample (CPU tasks) --> FrameEncoder (actor pool) --> driver: EmbeddingSink

Decode tasks emit each video's frames, then one marker row (frame_index -1) with the video's status.
The driver's `EmbeddingSink` keeps a video's rows until all of them are there, then writes them to
the current part file. A part is committed by writing its frames file, then its state file (the
list of videos it holds, with their status); files without a state file are left-overs of a killed
run and are deleted on the next start. So each video's frames are in OUT exactly once, and a re-run
skips every video a committed state file names.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidclust.config import Config, EmbedConfig, to_dict
from vidclust.decode import DecodeError, DecodeResult, local_file, sample_frames
from vidclust.encoder import EncoderSpec, FrameEncoder, encoder_spec
from vidclust.errors import VidclustError
from vidclust.layout import OutputLayout
from vidclust.runinfo import record_stage, timed
from vidclust.sources import list_videos

log = logging.getLogger("vidclust")

META_KEY = b"vidclust"
MARKER = -1  # frame_index of the per-video status row

STATE_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("n_frames_sampled", pa.int32()),
    ("duration_s", pa.float32()),
    ("fps", pa.float32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("codec", pa.string()),
    ("backend", pa.string()),
    ("node_id", pa.string()),  # the Ray node that decoded it: where to look when one fails
    ("captions", pa.list_(pa.string())),
    ("category", pa.string()),
    ("part", pa.string()),
])


def frames_schema(dim: int, signature: dict) -> pa.Schema:
    return pa.schema([
        ("video_id", pa.string()),
        ("frame_index", pa.int32()),
        ("timestamp_s", pa.float32()),
        ("embedding", pa.list_(pa.float32(), dim)),
    ], metadata={META_KEY: json.dumps(signature).encode()})


def embedding_signature(spec: EncoderSpec, cfg: EmbedConfig) -> dict:
    """Everything that decides what an embedding means; two runs mix only if theirs are equal."""
    s = cfg.sampling
    return {**spec.to_dict(),
            "sampling": {"frame_interval": None if s.fps else s.frame_interval, "fps": s.fps,
                         "max_frames": s.max_frames, "image_size": s.image_size},
            "preprocess": {"mean": list(cfg.preprocess.mean), "std": list(cfg.preprocess.std)}}


# ---------------------------------------------------------------------------------------------
# decoding: one video -> batches of frames, then its marker row


def decode_videos(batch: dict[str, np.ndarray], embed_cfg: EmbedConfig) -> Iterator[dict]:
    """Ray Data generator UDF over rows (video_id, path): yields batches with columns video_id,
    frame_index, timestamp_s, frame (uint8 N x S x S x 3) and info ('' for frames; a JSON status
    for the marker row that ends each video). Never raises for a bad video."""
    size = embed_cfg.sampling.image_size
    for video_id, path in zip(batch["video_id"], batch["path"]):
        video_id, path = str(video_id), str(path)
        result = DecodeResult()
        emitted, status, error = 0, "ok", None
        try:
            with local_file(path) as local:
                for chunk in sample_frames(local, embed_cfg.sampling, embed_cfg.decode, result):
                    n = len(chunk.frame_index)
                    emitted += n
                    yield {"video_id": np.full(n, video_id, dtype=object),
                           "frame_index": chunk.frame_index, "timestamp_s": chunk.timestamp_s,
                           "frame": chunk.frames, "info": np.full(n, "", dtype=object)}
        except DecodeError as exc:
            status, error = "failed", str(exc)
        except Exception as exc:  # a decoder bug must not kill the job: the video fails, loudly
            status, error = "failed", f"unexpected {type(exc).__name__}: {exc}"
            log.exception("unexpected error decoding %s", path)
        i = result.info
        info = {"status": status, "error": error, "n_emitted": emitted, "duration_s": i.duration_s,
                "fps": i.fps, "width": i.width, "height": i.height, "codec": i.codec,
                "backend": result.backend or None, "node_id": _node_id()}
        yield {"video_id": np.array([video_id], dtype=object),
               "frame_index": np.array([MARKER], np.int32), "timestamp_s": np.zeros(1, np.float32),
               "frame": np.zeros((1, size, size, 3), np.uint8),
               "info": np.array([json.dumps(info)], dtype=object)}


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # outside Ray (unit tests call decode_videos directly)
        return None


# ---------------------------------------------------------------------------------------------
# the driver's sink: complete videos -> part files, committed by their state file


class EmbeddingSink:
    """Collects encoder output on the driver and writes whole videos to part files.

    Tolerates rows that arrive twice (a retried task re-emits them): frames are keyed by
    (video_id, frame_index), and a video already written is ignored when it shows up again.
    """

    def __init__(self, layout: OutputLayout, schema: pa.Schema, videos: dict[str, dict],
                 max_rows: int, max_seconds: float, done: set[str]):
        self.layout, self.schema, self.videos = layout, schema, videos
        self.max_rows, self.max_seconds = max_rows, max_seconds
        self.done = set(done)  # videos committed in this or an earlier run
        self.pending: dict[str, dict[int, tuple[float, np.ndarray]]] = defaultdict(dict)
        self.markers: dict[str, dict] = {}
        self.counts = {"ok": 0, "failed": 0, "frames": 0}
        self.failures: list[tuple[str, str]] = []
        self._run = uuid.uuid4().hex[:8]
        self._seq = _next_part_seq(layout)
        self._open_part()

    def _open_part(self) -> None:
        self.part = f"{self._seq:06d}-{self._run}"
        self._seq += 1
        self.part_rows: list[pa.Table] = []  # written videos not yet handed to the writer
        self.buffered_rows = 0  # rows in part_rows
        self.part_nrows = 0  # rows in the whole part
        self.part_states: list[dict] = []
        self.part_opened = time.monotonic()
        self.writer: Optional[pq.ParquetWriter] = None
        self.tmp_path = self.layout.path("frames", f"part-{self.part}.parquet.tmp")

    def add(self, batch: dict[str, np.ndarray]) -> None:
        vids, idx, ts, emb, info = (batch["video_id"], batch["frame_index"], batch["timestamp_s"],
                                    batch["embedding"], batch["info"])
        touched = set()
        for r in range(len(vids)):
            vid = str(vids[r])
            if vid in self.done:
                continue
            if idx[r] == MARKER:
                self.markers[vid] = json.loads(info[r])
            else:
                self.pending[vid][int(idx[r])] = (float(ts[r]), emb[r])
            touched.add(vid)
        for vid in touched:
            marker = self.markers.get(vid)
            if marker is not None and len(self.pending.get(vid, ())) >= marker["n_emitted"]:
                self._complete(vid, marker)
        if self.part_nrows >= self.max_rows or (
                self.part_states and time.monotonic() - self.part_opened >= self.max_seconds):
            self.commit()

    def _complete(self, vid: str, marker: dict) -> None:
        frames = self.pending.pop(vid, {})
        del self.markers[vid]
        self.done.add(vid)
        status = marker["status"]
        if status == "ok":
            order = sorted(frames)
            table = pa.table({
                "video_id": pa.array([vid] * len(order), pa.string()),
                "frame_index": pa.array(order, pa.int32()),
                "timestamp_s": pa.array([frames[i][0] for i in order], pa.float32()),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.concatenate([frames[i][1] for i in order]).astype(np.float32)),
                    self.schema.field("embedding").type.list_size),
            }).cast(self.schema)
            self._write(table)
            self.counts["frames"] += len(order)
        else:
            self.failures.append((vid, marker["error"]))
        self.counts[status] += 1
        meta = self.videos[vid]
        self.part_states.append({
            "video_id": vid, "path": meta["path"], "status": status, "error": marker["error"],
            "n_frames_sampled": len(frames) if status == "ok" else 0,
            "duration_s": marker["duration_s"], "fps": marker["fps"], "width": marker["width"],
            "height": marker["height"], "codec": marker["codec"], "backend": marker["backend"], "node_id": marker.get("node_id"),
            "captions": meta.get("captions") or [], "category": meta.get("category"),
            "part": self.part if status == "ok" else None})

    def _write(self, table: pa.Table) -> None:
        self.part_rows.append(table)
        self.part_nrows += table.num_rows
        self.buffered_rows += table.num_rows
        if self.buffered_rows >= 8192:
            self._flush()

    def _flush(self) -> None:
        if not self.part_rows:
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp_path, self.schema, filesystem=self.layout.fs)
        self.writer.write_table(pa.concat_tables(self.part_rows))
        self.part_rows = []
        self.buffered_rows = 0

    def commit(self) -> None:
        """Make the current part durable: frames file first, then its state file (the commit)."""
        if not self.part_states:
            return
        self._flush()
        fs = self.layout.fs
        if self.writer is not None:
            self.writer.close()
            fs.move(self.tmp_path, self.layout.path("frames", f"part-{self.part}.parquet"))
        state = pa.Table.from_pylist(self.part_states, schema=STATE_SCHEMA)
        state = state.replace_schema_metadata({META_KEY: self.schema.metadata[META_KEY]})
        tmp = self.layout.path("frames", "_state", f"state-{self.part}.parquet.tmp")
        pq.write_table(state, tmp, filesystem=fs)
        fs.move(tmp, tmp[: -len(".tmp")])
        self._open_part()

    def close(self) -> None:
        # A video whose marker never came (it cannot happen unless Ray lost rows) is not written:
        # the next run decodes it again. Say so rather than hide it.
        lost = set(self.pending) | set(self.markers)
        if lost:
            log.warning("%d videos did not complete and will be redone by a re-run: %s",
                        len(lost), ", ".join(sorted(lost)[:5]))
        self.commit()  # a part with rows always has states, so no writer is left open here


def _next_part_seq(layout: OutputLayout) -> int:
    names = [i.base_name for i in layout.fs.get_file_info(pafs.FileSelector(layout.state_dir))]
    seqs = [int(n.split("-")[1]) for n in names if n.startswith("state-") and n.endswith(".parquet")]
    return max(seqs, default=-1) + 1


# ---------------------------------------------------------------------------------------------
# state of an OUT folder: what is done, and with which model


def prepare_output(layout: OutputLayout, signature: dict) -> None:
    """Create OUT, refuse a model/sampling that differs from what OUT holds, and delete the
    uncommitted left-overs of a killed run."""
    layout.makedirs(layout.state_dir)
    sig_path = layout.path("frames", "_state", "embedding.json")
    if layout.exists(sig_path):
        held = json.loads(layout.read_bytes(sig_path))
        if held != signature:
            diff = [k for k in signature if held.get(k) != signature.get(k)]
            raise VidclustError(
                f"{layout.root} already holds embeddings made with other settings ({', '.join(diff)}: "
                f"{ {k: held.get(k) for k in diff} } here, { {k: signature.get(k) for k in diff} } asked "
                "for). Embeddings of different models or samplings never mix: use another OUT.")
    else:
        layout.write_bytes_atomic(sig_path, json.dumps(signature, indent=2).encode())
    fs = layout.fs
    states = {i.base_name[len("state-"):-len(".parquet")]
              for i in fs.get_file_info(pafs.FileSelector(layout.state_dir))
              if i.base_name.startswith("state-") and i.base_name.endswith(".parquet")}
    for info in fs.get_file_info(pafs.FileSelector(layout.frames_dir)):
        name = info.base_name
        orphan = name.startswith("part-") and name.endswith(".parquet") and name[5:-8] not in states
        if name.endswith(".tmp") or orphan:
            log.info("removing %s left by an interrupted run", name)
            fs.delete_file(info.path)
    for info in fs.get_file_info(pafs.FileSelector(layout.state_dir)):
        if info.base_name.endswith(".tmp"):
            fs.delete_file(info.path)


def read_state(layout: OutputLayout) -> pa.Table:
    """Every video's latest status row over all committed parts (one row per video)."""
    files = sorted(i.path for i in layout.fs.get_file_info(pafs.FileSelector(layout.state_dir, allow_not_found=True))
                   if i.base_name.startswith("state-") and i.base_name.endswith(".parquet"))
    if not files:
        return STATE_SCHEMA.empty_table()
    tables = [pq.read_table(f, filesystem=layout.fs, schema=STATE_SCHEMA) for f in files]
    table = pa.concat_tables(tables)
    # keep the last row of each video (a retried failure supersedes the failure before it)
    order = np.arange(table.num_rows)
    last = {vid: i for i, vid in zip(order, table.column("video_id").to_pylist())}
    keep = np.array(sorted(last.values()), dtype=np.int64)
    table = table.take(keep)
    return table.sort_by("video_id")


def write_videos_table(layout: OutputLayout) -> pa.Table:
    state = read_state(layout)
    table = state.drop_columns(["part"])
    meta = state.schema.metadata or {}
    table = table.replace_schema_metadata(meta)
    tmp = layout.videos + ".tmp"
    pq.write_table(table, tmp, filesystem=layout.fs)
    layout.fs.move(tmp, layout.videos)
    return table


# ---------------------------------------------------------------------------------------------
# the stage


def plan_pool(cfg: EmbedConfig, resources: dict) -> dict:
    """Encoder actor pool size and per-actor resources from what the cluster has."""
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    enc = cfg.encoder
    if gpus:
        size = enc.num_actors or gpus
        return {"size": size, "num_gpus": 1, "num_cpus": 1, "threads": None}
    # On CPUs the encoder is the slow stage (decoding one frame costs a small fraction of
    # embedding it): half the CPUs are reserved for encoder actors, and each actor's torch uses
    # its share of all of them, the decode tasks' light load running beside it.
    size = enc.num_actors or max(1, int(cpus // (2 * enc.cpus_per_actor)))
    return {"size": size, "num_gpus": 0, "num_cpus": enc.cpus_per_actor,
            "threads": max(1, cpus // size)}


def run_embed(cfg: Config, source: str, out: str, show_progress: bool = True) -> dict:
    """Embed every video of SOURCE not already embedded in OUT; returns the run's summary."""
    import ray

    from vidclust.runtime import cluster_resources, init_ray

    ecfg = cfg.embed
    layout = OutputLayout.open(out)
    with timed() as t_list:
        videos = list_videos(source)
    spec, model_size = encoder_spec(ecfg.encoder.model, ecfg.encoder.pretrained)
    if model_size != ecfg.sampling.image_size:
        raise VidclustError(f"model {spec.model} takes {model_size}x{model_size} images but "
                            f"embed.sampling.image_size is {ecfg.sampling.image_size}")
    signature = embedding_signature(spec, ecfg)
    prepare_output(layout, signature)
    state = read_state(layout)
    done_status = dict(zip(state.column("video_id").to_pylist(), state.column("status").to_pylist()))
    done = {v for v, s in done_status.items() if s == "ok" or not ecfg.retry_failed}
    todo = videos.filter(pc.invert(pc.is_in(videos.column("video_id"), pa.array(sorted(done), pa.string()))))
    n_skipped = videos.num_rows - todo.num_rows
    log.info("%d videos in SOURCE: %d already done in %s, %d to embed", videos.num_rows, n_skipped,
             out, todo.num_rows)
    sink_summary = {"ok": 0, "failed": 0, "frames": 0}
    failures: list = []
    with timed() as t_embed:
        if todo.num_rows:
            init_ray(cfg)
            ray.data.DataContext.get_current().enable_progress_bars = show_progress
            pool = plan_pool(ecfg, cluster_resources())
            log.info("encoder pool: %d actor(s), %s per actor", pool["size"],
                     f"{pool['num_gpus']} GPU" if pool["num_gpus"] else f"{pool['num_cpus']} CPU")
            meta = {r["video_id"]: r for r in todo.select(["video_id", "path", "captions", "category"]).to_pylist()}
            sink = EmbeddingSink(layout, frames_schema(spec.embed_dim, signature), meta,
                                 ecfg.part_max_rows, ecfg.part_max_seconds, done)
            ds = ray.data.from_items(todo.select(["video_id", "path"]).to_pylist(),
                                     override_num_blocks=min(todo.num_rows, 2000))
            # Decoding runs in its own CPU tasks, in parallel with the encoder. Ray Data fuses
            # consecutive maps whose resources are equal; the memory each stage declares differs,
            # which also keeps the decode tasks out of the encoder's actors.
            ds = ds.map_batches(decode_videos, batch_size=1, batch_format="numpy",
                                fn_kwargs={"embed_cfg": ecfg}, num_cpus=ecfg.decode.cpus_per_task,
                                memory=ecfg.decode.memory_mb * 2**20)
            ds = ds.map_batches(
                FrameEncoder, batch_size=ecfg.encoder.batch_size, batch_format="numpy",
                fn_constructor_kwargs={"model": ecfg.encoder.model, "pretrained": ecfg.encoder.pretrained,
                                       "mean": ecfg.preprocess.mean, "std": ecfg.preprocess.std,
                                       "precision": ecfg.encoder.precision, "threads": pool["threads"]},
                compute=ray.data.ActorPoolStrategy(size=pool["size"]),
                num_gpus=pool["num_gpus"], num_cpus=pool["num_cpus"],
                memory=ecfg.encoder.memory_mb * 2**20)
            try:
                needed_cpus = pool["size"] * pool["num_cpus"] + ecfg.decode.cpus_per_task
                for batch in _batches_unless_starved(ds, needed_cpus):
                    sink.add(batch)
            finally:
                sink.close()
            sink_summary, failures = sink.counts, sink.failures
    table = write_videos_table(layout)
    status = table.column("status").to_pylist()
    summary = {
        "source": source, "out": out, "videos_in_source": videos.num_rows, "skipped_already_done": n_skipped,
        "embedded_ok": sink_summary["ok"], "failed": sink_summary["failed"], "frames": sink_summary["frames"],
        "total_ok": status.count("ok"), "total_failed": status.count("failed"),
        "seconds": round(t_list["seconds"] + t_embed["seconds"], 3),
        "frames_per_second": round(sink_summary["frames"] / t_embed["seconds"], 2) if t_embed["seconds"] else None,
        "model": spec.model, "weights": spec.weights, "embed_dim": spec.embed_dim,
        # what `assign` embeds new videos with (run.json's top-level config is the latest stage's)
        "embed_config": to_dict(ecfg),
    }
    record_stage(layout, cfg, "embed", summary)
    _print_summary(summary, failures)
    return summary


STARVED_AFTER_S = 60.0  # no batch for this long, on a cluster that lost nodes: give up (see below)


def _batches_unless_starved(ds, needed_cpus: float, stall_s: float = STARVED_AFTER_S) -> Iterator[dict]:
    """`ds.iter_batches()`, run in a thread of its own so that the driver notices a pipeline that
    can no longer move: when a node is lost, Ray restarts the encoder actors it held on the nodes
    left, and once they hold every CPU there, the decode tasks that must re-make the frames the
    lost node held (and that those actors wait for) never get one. Ray waits on that forever. So
    when no batch came for `stall_s` seconds and the cluster now has fewer CPUs than it started
    with and than the encoder pool plus one decode task need, raise a VidclustError: every video
    written so far is committed, and running the same command again continues from there."""
    import queue
    import threading

    from vidclust.runtime import cluster_resources

    cpus_at_start = cluster_resources().get("CPU", 0.0)
    items: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                if not put(("batch", batch)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the driver's thread, raised there
            put(("error", exc))

    threading.Thread(target=produce, name="vidclust-embed-batches", daemon=True).start()
    try:
        while True:
            try:
                kind, item = items.get(timeout=stall_s)
            except queue.Empty:
                cpus = cluster_resources().get("CPU", 0.0)
                if cpus < cpus_at_start and cpus < needed_cpus:
                    raise VidclustError(
                        f"no frames for {stall_s:.0f} s after the Ray cluster lost nodes ({cpus:g} of "
                        f"{cpus_at_start:g} CPUs left; the encoder pool and decoding need {needed_cpus:g}): "
                        "the videos done so far are saved, run the same command again to continue") from None
                continue
            if kind == "batch":
                yield item
            elif kind == "done":
                return
            else:
                raise item
    finally:
        stop.set()


def _print_summary(s: dict, failures: list) -> None:
    print(f"embed: {s['embedded_ok']} videos embedded ({s['frames']} frames), {s['failed']} failed, "
          f"{s['skipped_already_done']} already done; OUT holds {s['total_ok']} ok and "
          f"{s['total_failed']} failed videos")
    for vid, err in failures[:10]:
        print(f"  failed: {vid}: {err}")
    if len(failures) > 10:
        print(f"  ... and {len(failures) - 10} more (see videos.parquet)")


def embedding_config_of(out: str, cfg: Config) -> Config:
    """`cfg` with the embedding settings (model, weights, sampling) that OUT was embedded with."""
    from vidclust.config import _apply_mapping
    from vidclust.runinfo import read_run_json

    layout = OutputLayout.open(out)
    run = read_run_json(layout)
    stage = run.get("stages", {}).get("embed")
    if not stage or "embed_config" not in stage:
        raise VidclustError(f"{out} holds no embeddings: run `vidclust embed SOURCE {out}` first")
    _apply_mapping(cfg.embed, stage["embed_config"], prefix="embed.")
    return cfg.validate()
