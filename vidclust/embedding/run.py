"""The embedding stage: video list -> per-frame CLIP embeddings in Parquet.

    video list (Ray Data) -> decode + sample (CPU tasks) -> FrameEncoder (actor pool, one per GPU)
        -> FrameSink.write (tasks: frames/part-*.parquet) -> driver: FrameSink (per-video rows)

With decode.device=cuda|auto and the encoder on GPUs, the decode tasks send the NVDEC-capable
videos of their share on undecoded (a DEFERRED row) and the GPU actors (DecodingEncoder) decode
them on NVDEC, frames staying on the GPU; the CPUs decode the rest at the same time.

Decode tasks emit each video's frames, then one status row (frame_index -1) carrying what the
driver records about the video. The encoder passes status rows through. Write tasks write the
frames and hand back one accounting row per video and file; the driver never sees a frame, only
those rows, and commits finished videos (`vidclust.embedding.frame_store.FrameSink`: the write's start,
write tasks, streaming commits, completion and failure in one object). So the driver's work grows
with the number of videos, not frames, and the embedding rate grows with the cluster. The batches
between the steps are declared in vidclust.contract (decoded_schema, encoded_schema, WRITTEN_SCHEMA).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidclust.config import Config, DecodeConfig, EmbedConfig, EncoderConfig, to_dict
from vidclust.embedding.decode import DecodeResult, probe_video, sample_frames
from vidclust.models.encoder import EncoderSpec, FrameEncoder, check_weights_reachable, encoder_spec, warn_random_weights
from vidclust.models.encoder import check_checkpoint_fits
from vidclust.errors import DecodeError, VidclustError
from vidclust.store.contract import MARKER, BatchSchemaError, check_batch, decoded_schema
from vidclust.embedding.frame_store import FrameSink
from vidclust.store.layout import OutputLayout
from vidclust.embedding.nvdec import codec_refusal, environment, environment_refusal, takes_share
from vidclust.store.runinfo import record_stage, timed
from vidclust.runtime import current_node_id
from vidclust.stage import Stage
from vidclust.store.storage import local_file
from vidclust.store.writer_lock import WriterLock

log = logging.getLogger("vidclust")

FILE_TARGET_BYTES = 64 << 20  # a frames/ file holds about this much embedding data


def embedding_signature(spec: EncoderSpec, cfg: EmbedConfig) -> dict:
    """Everything that decides what an embedding means; two runs mix only if theirs are equal."""
    s = cfg.sampling
    return {**spec.to_dict(),
            "sampling": {"frame_interval": None if s.fps or s.keyframes else s.frame_interval,
                         "fps": s.fps, "max_frames": s.max_frames, "image_size": spec.image_size,
                         **({"keyframes": True} if s.keyframes else {}),
                         **({"frames": s.frames} if s.frames == "reference" else {})},
            "preprocess": {**spec.preprocess(), "resize": "squash, bilinear (decoder)",
                           **({"loop_filter": "skipped"} if cfg.decode.skip_loop_filter else {})}}


def resolve_embed_config(cfg: EmbedConfig) -> tuple[EncoderSpec, EmbedConfig]:
    """The encoder's spec, and a copy of `cfg` whose image size and mean/std are the model's own
    unless the user set them (a size other than the model's is refused)."""
    import copy

    enc = cfg.encoder
    spec = encoder_spec(enc.model, enc.pretrained, cfg.preprocess.mean, cfg.preprocess.std)
    check_weights_reachable(spec, enc.pretrained)
    check_checkpoint_fits(enc.model, enc.pretrained)
    if cfg.sampling.image_size not in (None, spec.image_size):
        raise VidclustError(f"model {spec.model} takes {spec.image_size}x{spec.image_size} images but "
                            f"embed.sampling.image_size is {cfg.sampling.image_size}")
    resolved = copy.deepcopy(cfg)
    resolved.sampling.image_size = spec.image_size
    resolved.preprocess.mean, resolved.preprocess.std = spec.mean, spec.std
    return spec, resolved


# ---------------------------------------------------------------------------------------------
# decoding: one video -> batches of frames, then its status row


DEFERRED = -2  # frame_index of a row that hands a video on undecoded, to the GPU actors' NVDEC
ACTOR = "the GPU encoder actor"  # where such a video was decoded, named in its note if not on NVDEC
ACTOR_NOTE = f" (in {ACTOR})"


def decode_videos(batch: dict[str, np.ndarray], embed_cfg: EmbedConfig, nvdec: bool = False) -> Iterator[dict]:
    """Generator over rows (video_id, path[, captions, category]): yields batches with columns
    video_id, frame_index, timestamp_s, frame (uint8 N x S x S x 3) and info ('' for frames; for
    the status row that ends each video, a JSON object with its status and metadata). Never
    raises for a bad video. `nvdec`: the encoder actors decode on NVDEC (DecodingEncoder); the
    videos they take (`nvdec_route`) pass on as one DEFERRED row each, their info the video's row."""
    n = len(batch["video_id"])
    captions = batch.get("captions", [None] * n)
    categories = batch.get("category", [None] * n)
    listing_errors = batch.get("listing_error", [None] * n)
    cpu_decode = dataclasses.replace(embed_cfg.decode, device="cpu")
    for video_id, path, caps, category, listing_error in zip(batch["video_id"], batch["path"], captions,
                                                             categories, listing_errors):
        video = {"video_id": str(video_id), "path": str(path), "category": None if category is None else str(category),
                 "captions": [str(c) for c in caps] if caps is not None else [], "listing_error": listing_error}
        if not nvdec:  # decode.device decides in this process (no GPU in a CPU task: the CPU)
            yield from video_rows(video, embed_cfg)
            continue
        route, note = nvdec_route(video, embed_cfg)
        if route:
            yield {"video_id": np.array([video["video_id"]], dtype=object),
                   "frame_index": np.array([DEFERRED], np.int32), "timestamp_s": np.zeros(1, np.float32),
                   "frame": np.zeros((1, embed_cfg.sampling.image_size, embed_cfg.sampling.image_size, 3), np.uint8),
                   "info": np.array([json.dumps({**video, "listing_error": None})], dtype=object)}
        else:
            yield from video_rows(video, embed_cfg, cpu_decode, note)


def nvdec_route(video: dict, embed_cfg: EmbedConfig) -> tuple[bool, str | None]:
    """(True, None) where a decode task hands `video` on to the GPU actors' NVDEC, else (False,
    why it decodes on the CPU): its codec (from the probe), or the CPUs' share of the videos
    (decode.nvdec_share). A file that cannot be probed stays here, to fail with its reason."""
    if video["listing_error"]:
        return False, None
    try:
        with local_file(video["path"]) as local:
            info = probe_video(local)
    except Exception:
        return False, None
    why = codec_refusal(info.codec_id, info.pix_fmt, info.profile)
    if why:
        return False, why
    if not takes_share(video["video_id"], embed_cfg.decode.nvdec_share):
        return False, "in the CPUs' share (embed.decode.nvdec_share)"
    return True, None


def video_rows(video: dict, embed_cfg: EmbedConfig, decode: DecodeConfig | None = None,
               note: str | None = None, where: str | None = None) -> Iterator[dict]:
    """One video's frame batches, then its status row. `decode`: embed_cfg.decode unless given;
    `note`: why NVDEC did not decode it, where the caller decided that. `where` (the GPU encoder
    actor that will embed them): frames from NVDEC stay on the GPU (torch), and `where` is named
    in the note of a video NVDEC did not decode; else NumPy frames, for Ray's object store."""
    size = embed_cfg.sampling.image_size
    declared = None if where else decoded_schema(size)  # the GPU actor's frames are torch, checked at the write
    video_id, path = video["video_id"], video["path"]
    # the decoding process's CPU, FFmpeg's threads too; in the GPU actor (`where`), this thread's
    # alone: the actor's other threads encode
    clock = time.thread_time if where else time.process_time
    cpu_start = clock()
    result = DecodeResult()
    emitted, index_sum, status, error = 0, 0, "ok", None
    try:
        if video["listing_error"]:  # found unreadable while listing (the rest of a truncated shard)
            raise DecodeError(str(video["listing_error"]))
        with local_file(path) as local:
            for chunk in sample_frames(local, embed_cfg.sampling, decode or embed_cfg.decode, result,
                                       gpu_frames=where is not None):
                k = len(chunk.frame_index)
                emitted += k
                index_sum += int(chunk.frame_index.astype(np.int64).sum())
                frames = {"video_id": np.full(k, video_id, dtype=object),
                          "frame_index": chunk.frame_index, "timestamp_s": chunk.timestamp_s,
                          "frame": chunk.frames, "info": np.full(k, "", dtype=object)}
                if declared is not None:
                    check_batch(frames, declared, "the decode task's output")
                yield frames
    except BatchSchemaError:  # not the video's fault: the job stops
        raise
    except DecodeError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # a decoder bug must not kill the job: the video fails, loudly
        status, error = "failed", f"unexpected {type(exc).__name__}: {exc}"
        log.exception("unexpected error decoding %s", path)
    i = result.info
    note = note or result.note
    note = f"{note} (in {where})" if note and where else note  # where=ACTOR: ends with ACTOR_NOTE
    if note and status == "ok":
        log.debug("%s decoded by %s, not NVDEC: %s", path, result.backend, note)
    info = {"status": status, "error": error, "warning": result.warning,
            "n_emitted": emitted, "index_sum": index_sum, "path": path,
            "n_frames_decoded": result.n_frames_decoded,
            "captions": video["captions"], "category": video["category"],
            "duration_s": i.duration_s, "fps": i.fps, "width": i.width, "height": i.height,
            "codec": i.codec, "backend": result.backend or None, "node_id": current_node_id(),
            "decode_note": note if status == "ok" else None,
            "decode_cpu_s": round(clock() - cpu_start, 6)}
    status_row = {"video_id": np.array([video_id], dtype=object),
                  "frame_index": np.array([MARKER], np.int32), "timestamp_s": np.zeros(1, np.float32),
                  "frame": np.zeros((1, size, size, 3), np.uint8),
                  "info": np.array([json.dumps(info)], dtype=object)}
    if declared is not None:
        check_batch(status_row, declared, "the decode task's output")
    yield status_row


class DecodingEncoder(FrameEncoder):
    """The GPU encoder actor, decoding too: the videos the decode tasks handed on (DEFERRED rows)
    are decoded here on NVDEC by `sessions` threads at once (the GPU's engines want several
    sessions; one thread's PyAV releases the GIL while FFmpeg decodes), and their frames embedded
    where NVDEC left them: they never leave the GPU. The threads live as long as the actor, on the
    GPU's one CUDA context, so a 30-frame clip pays a decoder's open, not a context's set-up.
    Frames are embedded `batch_size` at a time, whichever videos they come from, and at most
    2 x `sessions` chunks wait decoded: GPU memory stays bounded whatever the videos' lengths.
    A video NVDEC refuses or fails on decodes on this actor's CPU, its reason recorded; the other
    rows are FrameEncoder's."""

    def __init__(self, *args, embed_cfg: EmbedConfig, sessions: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self.embed_cfg, self.sessions = embed_cfg, max(1, int(sessions))
        self.pool = ThreadPoolExecutor(self.sessions, thread_name_prefix="nvdec")
        why = environment_refusal(environment())
        if why:
            log.warning("NVDEC cannot decode on this GPU actor (%s): the videos sent to it decode on its CPU", why)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        deferred = batch["frame_index"] == DEFERRED
        if not deferred.any():
            return super().__call__(batch)
        out = [super().__call__({k: v[~deferred] for k, v in batch.items()})] if not deferred.all() else []
        videos = [json.loads(i) for i in np.asarray(batch["info"], dtype=object)[deferred]]
        waiting, n = [], 0
        for part in self._decoded(videos):
            if part["frame_index"][0] < 0:  # a video's status row: its frames may still wait (FrameSink counts)
                out.append(super().__call__(part))
                continue
            waiting.append(part)
            n += len(part["frame_index"])
            if n >= self.batch_size:
                out.append(self._embedded(waiting))
                waiting, n = [], 0
        if waiting:
            out.append(self._embedded(waiting))
        return {k: np.concatenate([p[k] for p in out]) for k in out[0]}

    def _embedded(self, parts: list[dict]) -> dict:
        """Frame batches of any videos (torch on the GPU from NVDEC, NumPy from a CPU fallback) ->
        one batch with their embeddings."""
        import torch

        frames = [p.pop("frame") for p in parts]
        frames = torch.cat([f if isinstance(f, torch.Tensor) else torch.from_numpy(f).to(self.device) for f in frames]) \
            if any(isinstance(f, torch.Tensor) for f in frames) else np.concatenate(frames)
        batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        batch["embedding"] = self.embed(frames)
        return batch

    def _decoded(self, videos: list[dict]) -> Iterator[dict]:
        """The batches of video_rows for every video, `sessions` videos decoding at once; each
        video's in order, the videos' interleaved as they come."""
        import queue

        ready: queue.Queue = queue.Queue(maxsize=2 * self.sessions)
        done = object()

        def decode(video: dict) -> None:
            try:
                for part in video_rows(video, self.embed_cfg, where=ACTOR):
                    ready.put(part)
            finally:
                ready.put(done)

        futures = [self.pool.submit(decode, v) for v in videos]
        finished = 0
        while finished < len(videos):
            part = ready.get()
            if part is done:
                finished += 1
            else:
                yield part
        for f in futures:
            f.result()  # a thread's own error (video_rows records a video's): raised here


def drop_done(batch: pa.Table, done: pa.Array) -> pa.Table:
    return batch.filter(pc.invert(pc.is_in(batch.column("video_id"), value_set=done)))


def keep_held_ids(batch: pa.Table, paths: pa.Array, ids: pa.Array) -> pa.Table:
    """The rows whose path is in `paths` take the id at the same place of `ids` (the ids OUT
    holds for those files, see `sources.held_ids`); the others keep theirs."""
    at = pc.index_in(batch.column("path"), value_set=paths)
    renamed = pc.coalesce(pc.take(ids, at), batch.column("video_id"))
    return batch.set_column(batch.column_names.index("video_id"), "video_id", renamed)


# ---------------------------------------------------------------------------------------------
# the stages and their resources


GPU_BATCH_SIZE = 512  # embed.encoder.batch_size=None on a GPU: 1.44x the frames/s of 128 (H200, fp16)
CPU_BATCH_SIZE = 128  # ... and on CPUs: the notebook's
GPU_CONCURRENT_CALLS = 2  # encoder calls a GPU actor runs at once (see encoder_stage)


def encoder_stage(cfg: EmbedConfig, resources: dict) -> Stage:
    """The encoder actor pool: one actor per GPU, elastic (it grows as GPU nodes join, up to
    `max_actors`, and shrinks when they leave), or CPU actors that use their share of the cores,
    elastic too (idle actors go, so decoding always finds a CPU, also after a node is lost).
    An actor lost with its node is not restarted: the job fails fast and resumes on a re-run,
    rather than restarting actors that then hold every CPU the lost frames' decoding needs."""
    enc = cfg.encoder
    gpus = int(resources.get("GPU", 0))
    total_cpus = float(resources.get("CPU", 1))
    cpus = max(1, int(total_cpus))
    # an actor leaves at least one CPU to the tasks (the video list's repartition and decoding
    # take one each): on a 1-CPU node it shares the CPU rather than holding it, which would hang
    gpu = resolve_device(enc, resources) == "gpu"
    batch = enc.batch_size or (GPU_BATCH_SIZE if gpu else CPU_BATCH_SIZE)
    kwargs = {"model": enc.model, "pretrained": enc.pretrained, "mean": cfg.preprocess.mean,
              "std": cfg.preprocess.std, "precision": enc.precision, "threads": None,
              "compile": enc.compile, "batch_size": batch}
    if gpu:
        hi = enc.num_actors or max(enc.max_actors, gpus)
        lo = enc.num_actors or 1
        nvdec = decodes_on_nvdec(cfg, resources)
        if nvdec:
            kwargs.update(embed_cfg=cfg, sessions=cfg.decode.nvdec_sessions)
        # two calls at once per actor: one batch's copy to the GPU (and Ray's handing over of
        # the next) runs while the other's kernels do (FrameEncoder's per-thread CUDA feed)
        return Stage("encode", DecodingEncoder if nvdec else FrameEncoder, batch_size=batch, kwargs=kwargs,
                     num_cpus=min(1.0, max(0.0, total_cpus - 1)), num_gpus=1, memory_mb=enc.memory_mb,
                     actors=(lo, hi), restart_actors=False, concurrent_calls=GPU_CONCURRENT_CALLS)
    # On CPUs the encoder is the slow stage (decoding one frame costs a small fraction of
    # embedding it): half the CPUs go to encoder actors, and each actor's torch uses its share of
    # all of them, the decode tasks' light load running beside it.
    size = enc.num_actors or max(1, int(cpus // (2 * enc.cpus_per_actor)))
    kwargs["threads"] = max(1, cpus // size)
    return Stage("encode", FrameEncoder, batch_size=batch, kwargs=kwargs,
                 num_cpus=min(enc.cpus_per_actor, max(0.0, total_cpus - 1)), memory_mb=enc.memory_mb,
                 actors=(size, size) if enc.num_actors else (1, size), initial_actors=size,
                 restart_actors=False)


def resolve_device(enc: EncoderConfig, resources: dict) -> str:
    if enc.device == "auto":
        return "gpu" if resources.get("GPU", 0) >= 1 else "cpu"
    return enc.device


def decode_stage(cfg: EmbedConfig, resources: dict) -> Stage:
    # The memory the decode tasks declare differs from the encoder's: Ray Data fuses consecutive
    # stages of equal resources, which would pull decoding into the encoder's actors.
    # CPU tasks only, whatever decode.device says: NVDEC runs inside the GPU encoder actors
    # (DecodingEncoder), so no task waits for a share of a GPU that a whole-GPU actor holds
    return Stage("decode", decode_videos, batch_size=1,
                 kwargs={"embed_cfg": cfg, "nvdec": decodes_on_nvdec(cfg, resources, warn=True)},
                 num_cpus=min(cfg.decode.cpus_per_task, float(resources.get("CPU", 1)) / 2),
                 memory_mb=cfg.decode.memory_mb)


def decodes_on_nvdec(cfg: EmbedConfig, resources: dict, warn: bool = False) -> bool:
    """Whether the GPU encoder actors decode videos on NVDEC: decode.device=cuda|auto with the
    encoder on GPUs. Elsewhere each decode task decodes on the CPU (no GPU is visible to it),
    recording why not NVDEC; `warn`: say so once where decode.device=cuda asked for the GPU."""
    if cfg.decode.device == "cpu" or cfg.sampling.frames == "reference":  # reference: PyAV on the CPU only
        return False
    if resolve_device(cfg.encoder, resources) == "gpu":
        return True
    if warn and cfg.decode.device == "cuda":
        why = "the Ray cluster has no GPU" if not resources.get("GPU", 0) else "embed.encoder.device=cpu"
        log.warning(f"embed.decode.device=cuda, but {why}: decoding on the CPUs (as device=auto "
                    "does; embed.encoder.device=gpu waits for GPU nodes to join)")
    return False


def write_stage(cfg: EmbedConfig, sink: FrameSink) -> Stage:
    rows = cfg.part_max_rows or max(1024, FILE_TARGET_BYTES // (4 * sink.dim + 32))
    return Stage("write", sink.write, batch_size=rows, num_cpus=0)


def wait_for_gpus(enc: EncoderConfig, poll_s: float = 5.0) -> None:
    """device=gpu on a cluster that has no GPU yet: ask the autoscaler for one and wait for it."""

    from vidclust.runtime import cluster_resources, request_resources

    if enc.device != "gpu" or cluster_resources().get("GPU", 0) >= 1:
        return
    log.info("embed.encoder.device=gpu: waiting up to %.0f s for a GPU node to join", enc.gpu_wait_s)
    deadline = time.monotonic() + enc.gpu_wait_s
    try:
        while cluster_resources().get("GPU", 0) < 1:
            # asked again at every look: Ray Data clears its own requests (the same single
            # request channel) when a dataset's execution ends, which can overwrite ours
            request_resources([{"GPU": 1}])
            if time.monotonic() > deadline:
                raise VidclustError(
                    f"embed.encoder.device=gpu, but no GPU joined the Ray cluster in {enc.gpu_wait_s:.0f} s: "
                    "check the cluster's GPU node types (or use --set embed.encoder.device=auto)")
            time.sleep(poll_s)
    finally:
        request_resources([])  # the encoder pool's own demand keeps the nodes from here on


# ---------------------------------------------------------------------------------------------
# the stage


def run_embed(cfg: Config, source: str, out: str, show_progress: bool = True) -> dict:
    """Embed every video of SOURCE not already embedded in OUT; returns the run's summary."""
    from vidclust.runtime import (JobFailed, apply_stage, cluster_resources, collect_table, init_ray, repartition,
                                  set_progress_bars, stream_batches, user_error)
    from vidclust.store.sources import check_paths_given, check_same_paths, check_unique_ids, held_ids, video_dataset

    layout = OutputLayout.open(out)
    spec, ecfg = resolve_embed_config(cfg.embed)
    if spec.weights == "none":
        warn_random_weights()
    sink = FrameSink(layout, embedding_signature(spec, ecfg), spec.embed_dim, ecfg.commit_seconds)
    with WriterLock(layout):  # first: a second run into OUT is refused before any work
        with timed() as t_list:
            init_ray(cfg)
            set_progress_bars(show_progress)
            videos = video_dataset(source)
            # the driver holds the ids and paths of the videos (to skip the done ones), not the rows
            listed = collect_table(videos, columns=["video_id", "path", "explicit_id"])
        if not listed.num_rows:
            raise VidclustError(f"SOURCE {source} holds no videos")
        check_paths_given(listed.column("path"), source)
        check_unique_ids(listed.column("video_id").combine_chunks(), listed.column("path").combine_chunks(), source)
        state = sink.on_write_start()  # after SOURCE: a mistake there leaves no signature
        held = state.select(["video_id", "path"])
        renames = held_ids(listed, held)  # a file OUT holds keeps its id
        renamed_paths, held_for_them = (renames.column(c).combine_chunks() for c in ("path", "video_id"))
        if renames.num_rows:
            listed = keep_held_ids(listed, renamed_paths, held_for_them)
        check_same_paths(listed, held)
        ids = listed.column("video_id").combine_chunks()
        if renames.num_rows:
            check_unique_ids(ids, listed.column("path").combine_chunks(), source)
        done_status = state.filter(pc.is_in(state.column("status"),
                                            pa.array(["ok"] if ecfg.retry_failed else ["ok", "failed"])))
        done_ids = done_status.column("video_id").combine_chunks()
        done = pc.filter(done_ids, pc.is_in(done_ids, value_set=ids))  # ids are unique per commit state
        n_todo = len(ids) - len(done)
        log.info("%d videos in SOURCE: %d already done in %s, %d to embed", len(ids), len(done), out, n_todo)
        del listed, ids, state, held, done_status, done_ids
        with timed() as t_embed:
            if n_todo:
                wait_for_gpus(ecfg.encoder)
                resources = cluster_resources()
                encode = encoder_stage(ecfg, resources)
                log.info("encoder pool: %s", encode.describe())
                # light steps take a sliver of a CPU: on a 1-CPU node the encoder and decoding hold it
                if renames.num_rows:
                    videos = apply_stage(videos, Stage("keep held ids", keep_held_ids, batch_format="pyarrow",
                                                       kwargs={"paths": renamed_paths, "ids": held_for_them},
                                                       num_cpus=0.1))
                ds = apply_stage(videos, Stage("skip done", drop_done, batch_format="pyarrow",
                                               kwargs={"done": done}, num_cpus=0.1))
                # a decode task per few videos, however the list was read: they spread over the CPUs
                ds = repartition(ds, rows_per_block=ecfg.decode.videos_per_task)
                for stage in (decode_stage(ecfg, resources), encode, write_stage(ecfg, sink)):
                    ds = apply_stage(ds, stage)
                try:
                    for batch in stream_batches(ds):
                        sink.on_write_returned(batch)
                except JobFailed as exc:
                    cause = user_error(exc)
                    sink.on_write_failed(cause if isinstance(cause, OSError) else exc)
                    if isinstance(cause, OSError):  # a full disk in a write task: one line, by the CLI
                        raise cause from None
                    raise VidclustError(
                        f"the Ray job failed ({exc}); the videos finished so far are saved in {out}: "
                        "run the same command again to continue") from None
        table = sink.on_write_complete()
        for why, n in sorted(sink.decode_notes.items()):
            # a GPU actor that could not use NVDEC: a node to fix; device=auto: no news on CPU clusters
            level = logging.WARNING if why.endswith(ACTOR_NOTE) else \
                logging.INFO if ecfg.decode.device == "cuda" else logging.DEBUG
            log.log(level, "decoded on the CPU, not NVDEC: %d video(s): %s", n, why)
    status = table.column("status").to_pylist()
    summary = {
        "source": source, "out": out, "videos_in_source": n_todo + len(done), "skipped_already_done": len(done),
        "embedded_ok": sink.counts["ok"], "failed": sink.counts["failed"], "frames": sink.counts["frames"],
        "incomplete": len(sink.incomplete), "driver_rows_received": sink.counts["rows_received"],
        "total_ok": status.count("ok"), "total_failed": status.count("failed"),
        "seconds": round(t_list["seconds"] + t_embed["seconds"], 3),
        "frames_per_second": round(sink.counts["frames"] / t_embed["seconds"], 2) if t_embed["seconds"] else None,
        # where the time went: decode CPU per embedded frame, videos per decoder, GPU busy fraction
        **sink.usage.summary(sink.counts["frames"]),
        "model": spec.model, "weights": spec.weights, "embed_dim": spec.embed_dim,
        "decoded_on_cpu_not_nvdec": sink.decode_notes,  # why (decode.device=cuda|auto) -> videos
        # what `assign` embeds new videos with (run.json's top-level config is the latest stage's)
        "embed_config": to_dict(ecfg),
    }
    record_stage(layout, cfg, "embed", summary)
    _print_summary(summary, sink.failures, sink.warnings, sink.incomplete)
    return summary


def _print_summary(s: dict, failures: list, warnings: list, incomplete: list) -> None:
    print(f"embed: {s['embedded_ok']} videos embedded ({s['frames']} frames), {s['failed']} failed, "
          f"{s['skipped_already_done']} already done; OUT holds {s['total_ok']} ok and "
          f"{s['total_failed']} failed videos")
    for label, rows in (("failed", failures), ("warning", warnings)):
        for vid, text in rows[:10]:
            print(f"  {label}: {vid}: {text}")
        if len(rows) > 10:
            print(f"  ... and {len(rows) - 10} more (see videos.parquet)")
    if incomplete:
        print(f"  {len(incomplete)} videos did not complete (e.g. {', '.join(incomplete[:3])}): "
              "run the same command again to embed them")

