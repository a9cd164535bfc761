"""The embedding stage: video list -> per-frame CLIP embeddings in Parquet.

    video list (Ray Data) -> decode + sample (CPU tasks) -> FrameEncoder (actor pool, one per GPU)
        -> write_frames_file (tasks: frames/part-*.parquet) -> driver: CommitLog (per-video rows)

Decode tasks emit each video's frames, then one status row (frame_index -1) carrying what the
driver records about the video. The encoder passes status rows through. Write tasks write the
frames and hand back one accounting row per video and file; the driver never sees a frame, only
those rows, and commits finished videos (see `vidclust.frame_store`). So the driver's work grows
with the number of videos, not frames, and the embedding rate grows with the cluster.
"""
from __future__ import annotations

import json
import logging
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidclust.config import Config, DecodeConfig, EmbedConfig, EncoderConfig, to_dict
from vidclust.decode import DecodeResult, sample_frames
from vidclust.encoder import EncoderSpec, FrameEncoder, check_weights_reachable, encoder_spec, warn_random_weights
from vidclust.encoder import check_checkpoint_fits
from vidclust.errors import DecodeError, VidclustError
from vidclust.contract import BOOKKEEPING_COLUMNS, frames_schema, write_json, write_parquet
from vidclust.frame_store import MARKER, CommitLog, clear_staging, read_state, reconcile, write_frames_file
from vidclust.layout import OutputLayout
from vidclust.runinfo import record_stage, timed
from vidclust.runtime import current_node_id
from vidclust.stage import Stage
from vidclust.storage import local_file
from vidclust.writer_lock import WriterLock

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


def decode_videos(batch: dict[str, np.ndarray], embed_cfg: EmbedConfig) -> Iterator[dict]:
    """Generator over rows (video_id, path[, captions, category]): yields batches with columns
    video_id, frame_index, timestamp_s, frame (uint8 N x S x S x 3) and info ('' for frames; for
    the status row that ends each video, a JSON object with its status and metadata). Never
    raises for a bad video."""
    size = embed_cfg.sampling.image_size
    n = len(batch["video_id"])
    captions = batch.get("captions", [None] * n)
    categories = batch.get("category", [None] * n)
    listing_errors = batch.get("listing_error", [None] * n)
    for video_id, path, caps, category, listing_error in zip(batch["video_id"], batch["path"], captions,
                                                             categories, listing_errors):
        video_id, path = str(video_id), str(path)
        result = DecodeResult()
        emitted, index_sum, status, error = 0, 0, "ok", None
        try:
            if listing_error:  # found unreadable while listing (the rest of a truncated shard)
                raise DecodeError(str(listing_error))
            with local_file(path) as local:
                for chunk in sample_frames(local, embed_cfg.sampling, embed_cfg.decode, result):
                    k = len(chunk.frame_index)
                    emitted += k
                    index_sum += int(chunk.frame_index.astype(np.int64).sum())
                    yield {"video_id": np.full(k, video_id, dtype=object),
                           "frame_index": chunk.frame_index, "timestamp_s": chunk.timestamp_s,
                           "frame": chunk.frames, "info": np.full(k, "", dtype=object)}
        except DecodeError as exc:
            status, error = "failed", str(exc)
        except Exception as exc:  # a decoder bug must not kill the job: the video fails, loudly
            status, error = "failed", f"unexpected {type(exc).__name__}: {exc}"
            log.exception("unexpected error decoding %s", path)
        i = result.info
        info = {"status": status, "error": error, "warning": result.warning,
                "n_emitted": emitted, "index_sum": index_sum, "path": path,
                "n_frames_decoded": result.n_frames_decoded,
                "captions": [str(c) for c in caps] if caps is not None else [],
                "category": None if category is None else str(category),
                "duration_s": i.duration_s, "fps": i.fps, "width": i.width, "height": i.height,
                "codec": i.codec, "backend": result.backend or None, "node_id": current_node_id()}
        yield {"video_id": np.array([video_id], dtype=object),
               "frame_index": np.array([MARKER], np.int32), "timestamp_s": np.zeros(1, np.float32),
               "frame": np.zeros((1, size, size, 3), np.uint8),
               "info": np.array([json.dumps(info)], dtype=object)}


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
        return Stage("encode", FrameEncoder, batch_size=batch, kwargs=kwargs,
                     num_cpus=min(1.0, max(0.0, total_cpus - 1)), num_gpus=1, memory_mb=enc.memory_mb,
                     actors=(lo, hi), restart_actors=False)
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
    # decode.device=cuda: a share of a GPU, without which Ray hides the GPUs from the task (NVDEC)
    return Stage("decode", decode_videos, batch_size=1, kwargs={"embed_cfg": cfg},
                 num_cpus=min(cfg.decode.cpus_per_task, float(resources.get("CPU", 1)) / 2),
                 num_gpus=0.25 if decode_on_gpus(cfg.decode, resources) else 0.0, memory_mb=cfg.decode.memory_mb)


def decode_on_gpus(decode: DecodeConfig, resources: dict) -> bool:
    """Whether the decode tasks ask for a share of a GPU: decode.device=cuda on a cluster that
    has one. Without a GPU such tasks would wait for one for ever; they decode on the CPUs, as
    each task does where it sees no GPU, and as device=auto does."""
    if decode.device != "cuda":
        return False
    if resources.get("GPU", 0) > 0:
        return True
    log.warning("embed.decode.device=cuda, but the Ray cluster has no GPU: decoding on the CPUs (as device=auto "
                "does; embed.encoder.device=gpu waits for GPU nodes to join)")
    return False


def write_stage(cfg: EmbedConfig, out: str, schema: pa.Schema) -> Stage:
    dim = schema.field("embedding").type.list_size
    rows = cfg.part_max_rows or max(1024, FILE_TARGET_BYTES // (4 * dim + 32))
    return Stage("write", write_frames_file, batch_size=rows, kwargs={"out": out, "schema": schema},
                 num_cpus=0)


def wait_for_gpus(enc: EncoderConfig, poll_s: float = 5.0) -> None:
    """device=gpu on a cluster that has no GPU yet: ask the autoscaler for one and wait for it."""
    import time

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
    from vidclust.sources import check_paths_given, check_same_paths, check_unique_ids, held_ids, video_dataset

    layout = OutputLayout.open(out)
    spec, ecfg = resolve_embed_config(cfg.embed)
    if spec.weights == "none":
        warn_random_weights()
    signature = embedding_signature(spec, ecfg)
    schema = frames_schema(spec.embed_dim, signature)
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
        prepare_output(layout, signature)  # after SOURCE: a mistake there leaves no signature
        state = read_state(layout)
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
        commits = CommitLog(layout, signature, ecfg.commit_seconds)
        incomplete: list[str] = []
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
                for stage in (decode_stage(ecfg, resources), encode, write_stage(ecfg, out, schema)):
                    ds = apply_stage(ds, stage)
                try:
                    for batch in stream_batches(ds):
                        commits.add(batch)
                except JobFailed as exc:
                    cause = user_error(exc)
                    if isinstance(cause, OSError):  # a full disk in a write task: one line, by the CLI
                        raise cause from None
                    commits.close()
                    raise VidclustError(
                        f"the Ray job failed ({exc}); the videos finished so far are saved in {out}: "
                        "run the same command again to continue") from None
                incomplete = commits.close()
        reconcile(layout)
        table = write_videos_table(layout)
    status = table.column("status").to_pylist()
    summary = {
        "source": source, "out": out, "videos_in_source": n_todo + len(done), "skipped_already_done": len(done),
        "embedded_ok": commits.counts["ok"], "failed": commits.counts["failed"], "frames": commits.counts["frames"],
        "incomplete": len(incomplete), "driver_rows_received": commits.counts["rows_received"],
        "total_ok": status.count("ok"), "total_failed": status.count("failed"),
        "seconds": round(t_list["seconds"] + t_embed["seconds"], 3),
        "frames_per_second": round(commits.counts["frames"] / t_embed["seconds"], 2) if t_embed["seconds"] else None,
        "model": spec.model, "weights": spec.weights, "embed_dim": spec.embed_dim,
        # what `assign` embeds new videos with (run.json's top-level config is the latest stage's)
        "embed_config": to_dict(ecfg),
    }
    record_stage(layout, cfg, "embed", summary)
    _print_summary(summary, commits.failures, commits.warnings, incomplete)
    return summary


# ---------------------------------------------------------------------------------------------
# state of an OUT folder: what is done, and with which model


def prepare_output(layout: OutputLayout, signature: dict) -> None:
    """Create OUT, refuse a model/sampling that differs from what OUT holds, drop what a killed
    run left half-written, and make frames/ match the commits (call it holding the lock)."""
    layout.makedirs(layout.frames_dir)
    layout.makedirs(layout.commits_dir)
    # a signature binds OUT once a video was embedded with it: a run that embedded nothing (its
    # weights did not load, it was stopped at once) leaves none that refuses the next settings
    if layout.exists(layout.signature_file) and holds_embeddings(layout):
        held = json.loads(layout.read_bytes(layout.signature_file))
        if held != signature:
            diff = [k for k in signature if held.get(k) != signature.get(k)]
            raise VidclustError(
                f"{layout.root} already holds embeddings made with other settings ({', '.join(diff)}: "
                f"{ {k: held.get(k) for k in diff} } here, { {k: signature.get(k) for k in diff} } asked "
                "for). Embeddings of different models or samplings never mix: use another OUT.")
    else:
        write_json(layout, signature, layout.signature_file)
    clear_staging(layout)
    reconcile(layout)


def holds_embeddings(layout: OutputLayout) -> bool:
    """Whether a commit of OUT has a video embedded (status ok)."""
    status = read_state(layout).column("status")
    return pc.any(pc.equal(status, "ok")).as_py() is True


def write_videos_table(layout: OutputLayout) -> pa.Table:
    """videos.parquet: one row per video ever listed into OUT, its latest status."""
    table = read_state(layout).drop_columns(list(BOOKKEEPING_COLUMNS))
    write_parquet(layout, table, layout.videos)
    return table


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

