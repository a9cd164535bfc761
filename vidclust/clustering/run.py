"""`vidclust cluster` and `vidclust assign`: the two stage drivers, `run_cluster` and
`run_assign_new` (vidclust.api calls them).

They read OUT through the contract's readers (vidclust.contract), aggregate the frames on Ray Data
(vidclust.aggregate), fit a VideoClusterer (vidclust.video_clusterer; the k sweep:
vidclust.k_sweep), score it (vidclust.scores), find near-duplicates (vidclust.near_duplicates)
and write the `clusters/` files through the contract's writers, committed together as one set
(`contract.CLUSTERS`: a stopped run leaves a set no reader takes). `assign` puts new videos at
their nearest saved centre (vidclust.clustering.clusterer.nearest_center).
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import NamedTuple, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidclust.clustering.aggregate import aggregate_with_ray, vectors_table
from vidclust.clustering.clusterer import check_size, distances_to_own_center, nearest_center
from vidclust.config import Config
from vidclust.store.contract import (ASSIGNMENTS_SCHEMA, CLUSTERS, NEAR_DUPLICATES_SCHEMA, begin_outputs, centers_schema,
                               clear_staging, commit_outputs, committed_file, committed_outputs, embedding_matrix,
                               metadata_differences, metadata_of, read_assignments, read_center_vectors,
                               read_frames_metadata, read_metrics, read_video_vectors, read_videos, with_metadata,
                               write_assignments, write_centers, write_metrics, write_near_duplicates,
                               write_video_cluster_mapping, write_video_vectors)
from vidclust.errors import VidclustError
from vidclust.formatting import fmt
from vidclust.clustering.k_sweep import sweep_k
from vidclust.store.layout import (ASSIGNMENTS_FILE, CENTERS_FILE, METRICS_FILE, NEAR_DUPLICATES_FILE, VIDEO_VECTORS_FILE,
                             OutputLayout)
from vidclust.clustering.near_duplicates import INDEX_ABOVE, NPROBE, NearDuplicates, near_duplicate_search, representatives
from vidclust.clustering.scores import external_scores, score_clustering
from vidclust.clustering.video_clusterer import VideoClusterer
from vidclust.store.writer_lock import refuse_while_written

log = logging.getLogger("vidclust")


# --------------------------------------------------------------------------------------------
# fitting


class ClusterFit(NamedTuple):
    """The clustering the stage writes: a VideoClusterer's fit, with every row's label (under
    cluster.dedup_first also the rows that were not fitted: their representative's)."""
    labels: np.ndarray  # int32 [n]; -1 = left out (HDBSCAN noise)
    centers: np.ndarray  # float32 [k, D]: KMeans centres; for HDBSCAN the mean of each cluster
    method: str  # the method that ran: kmeans | minibatch | faiss | hdbscan

    @classmethod
    def of(cls, fitted: VideoClusterer) -> "ClusterFit":
        return cls(fitted.labels_, fitted.cluster_centers_, fitted.method_)


# --------------------------------------------------------------------------------------------
# near-duplicates


def near_duplicate_groups(
    video_ids: Sequence[str],
    vectors: np.ndarray,
    threshold: float,
    centers: Optional[np.ndarray] = None,
    *,
    block: int = 2048,
    search: str = "auto",
    index_above: int = INDEX_ABOVE,
    nprobe: int = NPROBE,
    found: Optional[NearDuplicates] = None,
) -> pa.Table:
    """Groups of videos whose vectors have cosine similarity >= `threshold`, linked transitively
    (a, b similar and b, c similar: one group). Never holds an n x n matrix: blocks of
    `block` x `block` similarities. With `centers`, only pairs that can be that close are compared
    (exact: a pair at distance eps from each other whose nearest centres are A and B has
    d(b, A) - d(b, B) <= 2 eps); that prunes much of the n^2 work when clusters lie well apart
    and little when the vectors are diffuse (then it costs what the all-pairs search costs).

    Returns a table (group_id int32, video_id, group_size int32, max_similarity float32: the
    video's highest similarity to another video in its group), ordered by group_id, video_id;
    groups are numbered in order of their smallest video_id. `found`: the search's result where
    it ran already (cluster.dedup_first)."""
    schema = NEAR_DUPLICATES_SCHEMA
    n = len(video_ids)
    if n < 2:
        return schema.empty_table()
    if found is None:
        found = near_duplicate_search(vectors, threshold, search=search, centers=centers, index_above=index_above,
                                      nprobe=nprobe, block=block)
    comp, best = found.groups, found.best
    members = np.flatnonzero(comp >= 0)
    if len(members) == 0:
        return schema.empty_table()
    sizes = np.bincount(comp[members])
    all_ids = np.asarray(video_ids, dtype=object)
    members = members[np.argsort(all_ids[members].astype(str), kind="stable")]  # by video_id
    # groups numbered in the order their smallest video_id comes
    _, first, inverse = np.unique(comp[members], return_index=True, return_inverse=True)
    group_of_root = np.argsort(np.argsort(first))
    gid = group_of_root[inverse].astype(np.int32)
    order = np.argsort(gid, kind="stable")  # stable: video_id order inside a group
    members, gid = members[order], gid[order]
    return pa.table({
        "group_id": pa.array(gid, type=pa.int32()),
        "video_id": pa.array(all_ids[members].tolist(), type=pa.string()),
        "group_size": pa.array(sizes[comp[members]].astype(np.int32), type=pa.int32()),
        "max_similarity": pa.array(best[members], type=pa.float32()),
    }, schema=schema)


def _status_column(videos: pa.Table) -> np.ndarray:
    return np.asarray(videos.column("status").to_pylist(), dtype=object)


# --------------------------------------------------------------------------------------------
# writing clusters/

def assignments_table(video_ids: Sequence[str], labels: np.ndarray, distances: np.ndarray) -> pa.Table:
    dist = np.asarray(distances, dtype=np.float32)
    return pa.table({
        "video_id": pa.array(list(video_ids), type=pa.string()),
        "cluster_id": pa.array(np.asarray(labels, dtype=np.int32)),
        "distance": pa.array(dist, mask=np.isnan(dist), type=pa.float32()),
    }, schema=ASSIGNMENTS_SCHEMA)


def centers_table(centers: np.ndarray, sizes: np.ndarray) -> pa.Table:
    t = vectors_table([str(i) for i in range(len(centers))], centers, column="center")
    return pa.table({
        "cluster_id": pa.array(np.arange(len(centers), dtype=np.int32)),
        "center": t.column("center"),
        "size": pa.array(np.asarray(sizes, dtype=np.int64)),
    }, schema=centers_schema(t.schema.field("center").type.list_size))


# --------------------------------------------------------------------------------------------
# stages


def _near_duplicate_search(cfg: Config, vectors: np.ndarray, centers: Optional[np.ndarray]) -> NearDuplicates:
    """The configured near-duplicate search: exact up to cluster.near_duplicates_index_above
    videos, the (approximate) cells search above (vidclust.near_duplicates)."""
    c = cfg.cluster
    search = c.near_duplicates_search
    if search == "auto":
        search = "cells" if len(vectors) > c.near_duplicates_index_above else "exact"
    return near_duplicate_search(vectors, c.near_duplicate_threshold, search=search, centers=centers,
                                 nprobe=c.near_duplicates_nprobe)


def _write_near_duplicates(cfg: Config, layout: OutputLayout, ids: Sequence[str], vectors: np.ndarray,
                           found: NearDuplicates, meta: dict) -> dict:
    """near_duplicates.parquet from a search's result. Returns the metrics.json entry."""
    c = cfg.cluster
    dups = near_duplicate_groups(ids, vectors, c.near_duplicate_threshold, found=found)
    write_near_duplicates(layout, with_metadata(dups, {**meta, "threshold": c.near_duplicate_threshold,
                                                       "search": found.search}))
    out = {"threshold": c.near_duplicate_threshold, "search": found.search,
           "n_groups": len(set(dups.column("group_id").to_pylist())), "n_videos": dups.num_rows}
    if found.search != "exact":
        out["nprobe"] = c.near_duplicates_nprobe
    return out


def _fit_deduplicated(cfg: Config, vectors: np.ndarray, found: NearDuplicates) -> tuple[ClusterFit, Optional[list], np.ndarray]:
    """cluster.dedup_first: the fit on one video per near-duplicate group, every other member
    taking its representative's cluster. Returns (the fit over all rows, the sweep's table,
    the rows fitted)."""
    keep, rep = representatives(found.groups)
    _check_k_fits(cfg, len(keep))
    fit, sweep_table = _fit(cfg, vectors[keep])
    return ClusterFit(fit.labels[rep].astype(np.int32), fit.centers, fit.method), sweep_table, keep


def _check_k_fits(cfg: Config, n: int) -> None:
    c = cfg.cluster
    if c.method == "hdbscan" and not c.k_sweep:
        check_size(n, None)
        if c.hdbscan_min_cluster_size > n:
            raise VidclustError(f"cluster.hdbscan_min_cluster_size={c.hdbscan_min_cluster_size} is larger than the "
                                f"number of videos ({n}); lower it")
    else:
        check_size(n, max(c.k_sweep) if c.k_sweep else c.k)


def _aggregate_ok_videos(cfg: Config, layout: OutputLayout, strategy: str,
                         only: Optional[Sequence[str]] = None,
                         precheck: bool = False) -> tuple[list[str], np.ndarray, dict, pa.Table]:
    files = layout.frame_files()
    if not files:
        if layout.exists(layout.videos):  # embed ran: say what became of its videos
            status = _status_column(read_videos(layout))
            if len(status) and not (status == "ok").any():
                raise VidclustError(f"every input video failed ({int((status == 'failed').sum())} of "
                                    f"{len(status)}): see {layout.videos}")
        raise VidclustError(f"{layout.root} has no frame embeddings (frames/*.parquet): run `vidclust embed` first")
    videos = read_videos(layout)
    if precheck:  # fail before the Ray job when the counts already say it cannot work
        _check_k_fits(cfg, int((_status_column(videos) == "ok").sum()))
    embed_meta = read_frames_metadata(layout, files)
    from vidclust.runtime import init_ray

    init_ray(cfg)
    ids, vectors = aggregate_with_ray(files, strategy, filesystem=layout.fs, only_video_ids=only)
    ok = set(np.asarray(videos.column("video_id").to_pylist(), dtype=object)[_status_column(videos) == "ok"].tolist())
    keep = [i for i, v in enumerate(ids) if v in ok]
    if len(keep) != len(ids):
        log.warning("%d videos have frames but are not status=ok in videos.parquet; left out", len(ids) - len(keep))
        ids = [ids[i] for i in keep]
        vectors = vectors[keep]
    return ids, vectors, embed_meta, videos


def _fit(cfg: Config, vectors: np.ndarray) -> tuple[ClusterFit, Optional[list[dict]]]:
    """The configured clustering of `vectors`, through the k sweep when one is configured:
    (the fit, the sweep's table or None)."""
    c = cfg.cluster
    if not c.k_sweep:
        return ClusterFit.of(VideoClusterer(c.k, c.method, cfg.seed, c.n_init, exact_up_to=c.exact_up_to,
                                            min_cluster_size=c.hdbscan_min_cluster_size).fit(vectors)), None
    k, sweep_table, fit = sweep_k(vectors, c.k_sweep, method=c.method, seed=cfg.seed, n_init=c.n_init,
                                  metric=c.sweep_metric, sample_above=c.silhouette_sample,
                                  exact_up_to=c.exact_up_to, fit_sample_above=c.sweep_sample)
    log.info("k sweep picked k=%d by %s", k, c.sweep_metric)
    return ClusterFit.of(fit), sweep_table


def _scores(cfg: Config, vectors: np.ndarray, labels: np.ndarray, ids: Sequence[str],
            videos: pa.Table) -> tuple[dict, Optional[dict]]:
    """(internal scores, scores against the videos' categories or None when they have none)."""
    scores = score_clustering(vectors, labels, cfg.seed, cfg.cluster.silhouette_sample)
    if "category" not in videos.column_names:
        return scores, None
    cat_of = dict(zip(videos.column("video_id").to_pylist(), videos.column("category").to_pylist()))
    return scores, external_scores(labels, [cat_of.get(v) for v in ids])


def _write_fit(layout: OutputLayout, ids: Sequence[str], vectors: np.ndarray, fit: ClusterFit,
               meta: dict) -> np.ndarray:
    """video_vectors, centers, assignments and the mapping CSV of a fit; returns the cluster sizes."""
    labels, centers, _ = fit
    sizes = np.bincount(labels[labels >= 0], minlength=len(centers))
    assignments = assignments_table(ids, labels, distances_to_own_center(vectors, centers, labels))
    layout.makedirs(layout.clusters_dir)
    write_video_vectors(layout, with_metadata(vectors_table(ids, vectors), meta))
    write_centers(layout, with_metadata(centers_table(centers, sizes), meta))
    write_assignments(layout, with_metadata(assignments, meta))
    write_video_cluster_mapping(layout, assignments)
    return sizes


def _metrics(cfg: Config, fit: ClusterFit, sizes: np.ndarray, scores: dict, external: Optional[dict],
             sweep_table: Optional[list], near_dups: dict, counts: dict, embed_meta: dict, dim: int) -> dict:
    """metrics.json of a fit."""
    c = cfg.cluster
    return {
        "k": len(fit.centers),
        "method": fit.method,
        "method_requested": c.method,
        "aggregation": c.aggregation,
        "seed": cfg.seed,
        "n_init": c.n_init,
        **{key: scores[key] for key in ("silhouette", "silhouette_sampled", "silhouette_sample_size",
                                        "davies_bouldin", "calinski_harabasz")},
        "k_sweep": sweep_table,
        "sweep_metric": c.sweep_metric if sweep_table else None,
        **counts,
        "n_left_out": int((fit.labels < 0).sum()),  # HDBSCAN noise: cluster_id -1
        "n_empty_clusters": int((sizes == 0).sum()),  # no video is nearest their centre
        "cluster_sizes": sizes.tolist(),
        "external": external,
        "near_duplicates": near_dups,
        "embedding": embed_meta,
        "vector_dim": dim,
        "n_assigned_after_fit": 0,
    }


@contextmanager
def _empty_clusters_said_by_vidclust():
    """Without scikit-learn's "Number of distinct clusters (13) found smaller than n_clusters (14)"
    warning: the stage says it in a line of its own, after the fit (`_warn_empty_clusters`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Number of distinct clusters \(\d+\) found smaller than n_clusters")
        yield


def _warn_empty_clusters(k: int, sizes: np.ndarray) -> None:
    """One line when clusters are left empty: k above the distinct videos (copies of each other)."""
    empty = int((sizes == 0).sum())
    if empty:
        log.warning("k=%d leaves %d of its clusters empty: fewer distinct videos than clusters (copies of each "
                    "other: see %s); lower cluster.k", k, empty, NEAR_DUPLICATES_FILE)


def _log_clustered(info: dict) -> None:
    external = info["external"]
    log.info(
        "clustered %d videos (%d failed, left out) into k=%d with %s on %s vectors: silhouette=%s%s "
        "davies_bouldin=%s calinski_harabasz=%s%s; near-duplicate groups: %s; %.1fs",
        info["n_videos"], info["n_failed"], info["k"], info["method"], info["aggregation"],
        fmt(info["silhouette"], "n/a"), " (sampled)" if info["silhouette_sampled"] else "",
        fmt(info["davies_bouldin"], "n/a"), fmt(info["calinski_harabasz"], "n/a"),
        "" if not external else f" NMI={external['nmi']:.3f} ARI={external['ari']:.3f} purity={external['purity']:.3f}",
        "skipped" if info["near_duplicate_groups"] is None else info["near_duplicate_groups"],
        info["seconds"]["total"],
    )


def run_cluster(cfg: Config, out: str) -> dict:
    """Aggregate OUT/frames per video, cluster, score, and write OUT/clusters/ (vidclust.contract).
    Returns the summary that also goes to run.json and (with more detail) metrics.json."""
    from vidclust.store.runinfo import record_stage, timed

    c = cfg.cluster
    layout = OutputLayout.open(out)
    if not layout.exists(layout.videos):  # no embed has finished: one may be running
        refuse_while_written(layout, then="run `vidclust cluster`")
    clear_staging(layout, "cluster")
    with timed() as t_total:
        with timed() as t_agg:
            ids, vectors, embed_meta, videos = _aggregate_ok_videos(cfg, layout, c.aggregation, precheck=True)
            if c.vector_dtype == "float16":  # the driver holds half the bytes from here on
                vectors = vectors.astype(np.float16)
        status = _status_column(videos)
        n, n_ok = len(ids), int((status == "ok").sum())
        counts = {"n_videos": n, "n_failed": int((status == "failed").sum()), "n_ok_without_frames": n_ok - n}
        if n < n_ok:
            log.warning("%d ok videos have no frames; left out", n_ok - n)
        _check_k_fits(cfg, n)
        found, fitted = None, None
        t_dup = {"seconds": 0.0}
        if c.dedup_first:  # near-duplicates first: each group is fitted as one video
            with timed() as t_dup:
                found = _near_duplicate_search(cfg, vectors, None)
        with timed() as t_fit, _empty_clusters_said_by_vidclust():
            if found is not None:
                fit, sweep_table, fitted = _fit_deduplicated(cfg, vectors, found)
            else:
                fit, sweep_table = _fit(cfg, vectors)
        with timed() as t_score:  # with dedup_first: scored on the videos fitted
            scores, external = (_scores(cfg, vectors, fit.labels, ids, videos) if fitted is None else
                                _scores(cfg, vectors[fitted], fit.labels[fitted], [ids[i] for i in fitted], videos))
        # from here to the commit, clusters/ is one set being rewritten: readers refuse it meanwhile
        run_id = begin_outputs(layout, CLUSTERS)
        meta = {"aggregation": c.aggregation, "vector_dim": int(vectors.shape[1]), "embedding": embed_meta,
                "method": fit.method, "k": len(fit.centers), "seed": cfg.seed, "clustering_id": run_id,
                "run_id": run_id}
        sizes = _write_fit(layout, ids, vectors, fit, meta)
        if found is None:
            with timed() as t_dup:
                found = _near_duplicate_search(cfg, vectors, fit.centers)
        near_dups = _write_near_duplicates(cfg, layout, ids, vectors, found, meta)
        counts["dedup_first"] = bool(c.dedup_first)
        counts["n_fitted"] = n if fitted is None else int(len(fitted))
        write_metrics(layout, {**_metrics(cfg, fit, sizes, scores, external, sweep_table, near_dups, counts,
                                          embed_meta, int(vectors.shape[1])), "clustering_id": run_id, "run_id": run_id})
        commit_outputs(layout, CLUSTERS, run_id, CLUSTERS.files, clustering_id=run_id)
        _warn_empty_clusters(len(fit.centers), sizes)

    info = {
        "k": len(fit.centers), "method": fit.method, "aggregation": c.aggregation, "n_videos": n,
        "n_failed": counts["n_failed"], "silhouette": scores["silhouette"],
        "silhouette_sampled": scores["silhouette_sampled"], "davies_bouldin": scores["davies_bouldin"],
        "calinski_harabasz": scores["calinski_harabasz"], "external": external,
        "near_duplicate_groups": near_dups.get("n_groups"), "n_empty_clusters": int((sizes == 0).sum()),
        "clustering_id": run_id,
        "seconds": {"total": t_total["seconds"], "aggregate": t_agg["seconds"], "fit": t_fit["seconds"],
                    "score": t_score["seconds"], "near_duplicates": t_dup["seconds"]},
    }
    record_stage(layout, cfg, "cluster", info)
    _log_clustered(info)
    return info


def check_clusters_saved(layout: OutputLayout) -> None:
    """The clustering that `assign` adds videos to is in OUT, whole (checked before it embeds
    them): a half-written clusters/ is refused as the other readers refuse it."""
    for rel in (METRICS_FILE, CENTERS_FILE, ASSIGNMENTS_FILE, VIDEO_VECTORS_FILE):
        committed_file(layout, rel)


def run_assign_new(cfg: Config, out: str) -> dict:
    """Assign the videos of OUT that are ok but not yet clustered to the saved centres (which do
    not move), and append them to assignments.parquet, video_cluster_mapping.csv and
    video_vectors.parquet (each rewritten atomically; a video is never listed twice).

    Call it after the new videos were embedded into the same OUT. The aggregation is the one the
    centres were fitted with (from metrics.json), whatever cfg.cluster.aggregation says."""
    from vidclust.store.runinfo import record_stage, timed

    layout = OutputLayout.open(out)
    clear_staging(layout, "cluster")
    check_clusters_saved(layout)
    clusters = committed_outputs(layout, CLUSTERS)
    metrics = read_metrics(layout)
    strategy = metrics["aggregation"]
    if strategy != cfg.cluster.aggregation:
        log.info("assigning with aggregation %r, the one the centres were fitted with", strategy)
    assignments = read_assignments(layout)
    done = set(assignments.column("video_id").to_pylist())
    videos = read_videos(layout)
    status = _status_column(videos)
    ok_ids = np.asarray(videos.column("video_id").to_pylist(), dtype=object)[status == "ok"]
    new = sorted(set(ok_ids.tolist()) - done)
    centers = read_center_vectors(layout)
    with timed() as t_total:
        if new:
            files = layout.frame_files()
            embed_meta = read_frames_metadata(layout, files)
            saved_meta = metrics.get("embedding") or {}
            if embed_meta != saved_meta:
                raise VidclustError(
                    f"frames in {layout.root} were embedded with {metadata_differences(embed_meta, saved_meta)}, but the "
                    f"clusters were fitted on {metadata_differences(saved_meta, embed_meta)}; re-run `vidclust cluster`"
                )
            ids, vectors, _, _ = _aggregate_ok_videos(cfg, layout, strategy, only=new)
            ids_new = [v for v in ids if v not in done]
            if len(ids_new) != len(ids):
                keep = [i for i, v in enumerate(ids) if v not in done]
                vectors = vectors[keep]
            ids = ids_new
        else:
            ids, vectors = [], np.zeros((0, centers.shape[1]), dtype=np.float32)
        if ids:
            labels, dist = nearest_center(vectors, centers)
            saved = read_video_vectors(layout)  # before the set is withdrawn: readers refuse it from then
            # the same clustering (its centres and ids), rewritten by this run: one set again at the commit
            run_id = begin_outputs(layout, CLUSTERS, stage="assign")
            meta = {**metadata_of(assignments.schema), "run_id": run_id}
            fresh = assignments_table(ids, labels, dist)
            # same columns as the saved table (a user may have added some): null where unknown
            added = pa.table({f.name: (fresh.column(f.name).cast(f.type) if f.name in fresh.column_names
                                       else pa.nulls(len(ids), type=f.type)) for f in assignments.schema},
                             schema=assignments.schema)
            combined = with_metadata(pa.concat_tables([assignments, added]), meta)
            write_assignments(layout, combined)
            write_video_cluster_mapping(layout, combined)
            saved = saved.filter(pc.invert(pc.is_in(saved.column("video_id"), value_set=pa.array(ids))))
            all_vectors = pa.concat_tables([saved, vectors_table(ids, vectors).cast(saved.schema)])
            all_vectors = with_metadata(all_vectors, {**metadata_of(saved.schema), "run_id": run_id})
            write_video_vectors(layout, all_vectors)
            every_vector = embedding_matrix(all_vectors.column("vector"))
            metrics["near_duplicates"] = _write_near_duplicates(
                cfg, layout, all_vectors.column("video_id").to_pylist(), every_vector,
                _near_duplicate_search(cfg, every_vector, centers), meta)
            metrics["n_assigned_after_fit"] = int(metrics.get("n_assigned_after_fit", 0)) + len(ids)
            metrics["n_failed"] = int((status == "failed").sum())
            metrics["run_id"] = run_id
            write_metrics(layout, metrics)
            commit_outputs(layout, CLUSTERS, run_id, [f for f in CLUSTERS.files if f != CENTERS_FILE],
                           stage="assign", clustering_id=clusters.get("clustering_id"))
            counts = np.bincount(labels, minlength=len(centers)).tolist()
        else:
            counts = [0] * len(centers)
    info = {"n_new": len(ids), "n_already_assigned": len(done), "aggregation": strategy,
            "new_per_cluster": counts, "seconds": t_total["seconds"]}
    record_stage(layout, cfg, "assign", info)
    log.info("assigned %d new videos to the %d saved centres (%d were already assigned)", len(ids), len(centers), len(done))
    return info
