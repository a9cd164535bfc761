"""Clustering: planted structure recovered, k sweep, scores, assignment, near-duplicates (plain
functions, no Ray), and the `cluster` / `assign` stages end to end on a real Parquet OUT."""
from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import adjusted_rand_score

from vidclust.vectors import l2_normalise
from vidclust.clustering.run import near_duplicate_groups, run_assign_new, run_cluster
from vidclust.clustering.clusterer import choose_method, distances_to_centers, distances_to_own_center, nearest_center
from vidclust.config import load_config
from vidclust.store.contract import read_vectors
from vidclust.errors import VidclustError
from vidclust.clustering.k_sweep import sweep_k
from vidclust.store.layout import OutputLayout
from vidclust.clustering.scores import external_scores, score_clustering
from vidclust.clustering.video_clusterer import VideoClusterer

PLANTED_K = 6


def blobs(n_per: int, k: int = PLANTED_K, d: int = 48, spread: float = 0.15, seed: int = 0):
    """k well separated groups of unit vectors: (vectors float32 [k*n_per, d], labels)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.normal(size=(k, d)))
    labels = np.repeat(np.arange(k), n_per)
    x = centres[labels] + rng.normal(scale=spread / np.sqrt(d), size=(len(labels), d))
    return l2_normalise(x).astype(np.float32), labels


@pytest.fixture(scope="module")
def planted():
    return blobs(40)


# ------------------------------------------------------------------------------ fitting


@pytest.mark.parametrize("method", ["kmeans", "minibatch", "faiss", "hdbscan"])
def test_planted_structure_is_recovered(planted, method):
    x, y = planted
    fit = VideoClusterer(PLANTED_K, method, 28).fit(x)
    assert fit.method_ == method
    assert fit.labels_.dtype == np.int32 and fit.labels_.shape == (len(x),)
    assert fit.cluster_centers_.shape == (PLANTED_K, x.shape[1])
    scores = external_scores(fit.labels_, [f"topic{v}" for v in y])
    assert scores["nmi"] >= 0.95 and scores["ari"] >= 0.9 and scores["purity"] >= 0.95


def test_auto_switches_to_faiss_above_the_limit(planted):
    x, y = planted
    assert choose_method("auto", 1000, 1000) == "kmeans"
    assert choose_method("auto", 1001, 1000) == "faiss"
    assert VideoClusterer(PLANTED_K, "auto", exact_up_to=len(x)).fit(x).method_ == "kmeans"
    fit = VideoClusterer(PLANTED_K, "auto", exact_up_to=len(x) - 1).fit(x)
    assert fit.method_ == "faiss"
    assert external_scores(fit.labels_, list(map(str, y)))["nmi"] >= 0.95


def test_fit_is_deterministic_for_a_seed(planted):
    x, _ = planted
    a, b = VideoClusterer(4, "kmeans", 28).fit(x), VideoClusterer(4, "kmeans", 28).fit(x)
    assert np.array_equal(a.labels_, b.labels_) and np.array_equal(a.cluster_centers_, b.cluster_centers_)


def test_hdbscan_leaves_outliers_out():
    x, y = blobs(30, k=3, seed=1, spread=0.05)
    rng = np.random.default_rng(9)
    # on the far side of the sphere from every group: the last points to join anything
    away = -x.mean(axis=0)
    outliers = l2_normalise(l2_normalise(away[None]) + rng.normal(scale=0.05, size=(3, x.shape[1]))).astype(np.float32)
    fit = VideoClusterer(n_clusters=99, method="hdbscan").fit(np.vstack([x, outliers]))  # k is ignored
    assert len(fit.cluster_centers_) == 3
    assert (fit.labels_[-3:] == -1).all()
    assert external_scores(fit.labels_[:-3], list(map(str, y)))["nmi"] >= 0.95


def test_size_errors_are_clear(planted):
    x, _ = planted
    with pytest.raises(VidclustError, match="larger than the number of videos"):
        VideoClusterer(6, "kmeans").fit(x[:5])
    with pytest.raises(VidclustError, match="at least 2 videos"):
        VideoClusterer(1, "kmeans").fit(x[:1])
    with pytest.raises(VidclustError, match="larger than the number of videos"):
        sweep_k(x[:8], [2, 9])


# ------------------------------------------------------------------------------ scores, sweep


@pytest.mark.parametrize("metric", ["silhouette", "davies_bouldin", "calinski_harabasz"])
def test_sweep_picks_the_planted_k(planted, metric):
    x, _ = planted
    best, table, fit = sweep_k(x, [2, 3, 4, 6, 9, 12], method="kmeans", metric=metric)
    assert best == PLANTED_K and len(fit.cluster_centers_) == PLANTED_K
    assert [row["k"] for row in table] == [2, 3, 4, 6, 9, 12]
    for row in table:
        assert {"silhouette", "davies_bouldin", "calinski_harabasz", "method", "fit_seconds"} <= set(row)


def test_sweep_fits_a_sample_above_the_limit_and_says_so():
    x, labels = blobs(300)
    best, table, fit = sweep_k(x, [3, 6, 9], method="kmeans", fit_sample_above=1000)
    assert best == PLANTED_K and [row["fitted_on"] for row in table] == [1000, 1000, 1000]
    assert len(fit.labels_) == len(x)  # the chosen k, fitted on every vector
    assert adjusted_rand_score(labels, fit.labels_) == pytest.approx(1.0)
    _, whole, _ = sweep_k(x, [3, 6], method="kmeans", fit_sample_above=len(x))
    assert [row["fitted_on"] for row in whole] == [len(x), len(x)]


def test_scores_match_sklearn_and_sample_when_large(planted):
    from sklearn.metrics import davies_bouldin_score, silhouette_score

    x, y = planted
    full = score_clustering(x, y, sample_above=10_000)
    assert not full["silhouette_sampled"]
    assert full["silhouette"] == pytest.approx(silhouette_score(x, y), abs=1e-6)
    assert full["davies_bouldin"] == pytest.approx(davies_bouldin_score(x, y))
    sampled = score_clustering(x, y, seed=28, sample_above=100)
    assert sampled["silhouette_sampled"] and sampled["silhouette_sample_size"] == 100
    assert sampled["silhouette"] == pytest.approx(full["silhouette"], abs=0.05)
    assert sampled == score_clustering(x, y, seed=28, sample_above=100)  # fixed seed: same sample
    assert full["davies_bouldin"] == sampled["davies_bouldin"]  # only silhouette is sampled


@pytest.mark.parametrize("k", [2, 5, 9])
def test_blockwise_dispersion_scores_equal_sklearn(planted, k, monkeypatch):
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    import vidclust.clustering.scores as scores

    monkeypatch.setattr(scores, "BLOCK", 37)  # many blocks, a ragged last one
    x, _ = planted
    labels = VideoClusterer(k, "kmeans").fit(x).labels_
    labels[::7] = -1  # left out: not scored
    db, ch = scores.dispersion_scores(x, labels)
    keep = labels >= 0
    assert db == pytest.approx(davies_bouldin_score(x[keep], labels[keep]), rel=1e-6)
    assert ch == pytest.approx(calinski_harabasz_score(x[keep], labels[keep]), rel=1e-6)


def test_scores_skip_left_out_videos_and_undefined_cases(planted):
    x, y = planted
    noisy = y.copy()
    noisy[:5] = -1
    s = score_clustering(x, noisy)
    assert s["n_scored"] == len(x) - 5 and s["silhouette"] > 0.5
    assert score_clustering(x, np.zeros(len(x), int))["silhouette"] is None  # one cluster


def test_external_scores_purity_and_missing_categories():
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    cats = ["a", "a", "b", "c", "c", "c", None]
    s = external_scores(labels, cats)
    assert s["purity"] == pytest.approx(5 / 6)
    assert s["n_labelled"] == 6 and s["n_categories"] == 3
    assert external_scores(labels, [None] * 7) is None


# ------------------------------------------------------------------------------ distances, assign


def test_distances_to_centers_is_cdist(planted):
    x, _ = planted
    centers = VideoClusterer(PLANTED_K, "kmeans").fit(x).cluster_centers_
    np.testing.assert_allclose(distances_to_centers(x, centers), cdist(x, centers), atol=1e-5)


def test_distance_to_own_centre_and_left_out_videos(planted):
    x, y = planted
    fit = VideoClusterer(PLANTED_K, "kmeans").fit(x)
    labels = fit.labels_.copy()
    labels[:3] = -1
    d = distances_to_own_center(x, fit.cluster_centers_, labels)
    assert np.isnan(d[:3]).all()
    full = cdist(x, fit.cluster_centers_)
    np.testing.assert_allclose(d[3:], full[np.arange(3, len(x)), labels[3:]], atol=1e-5)


def test_assign_puts_held_out_points_in_their_planted_cluster():
    x, y = blobs(50, seed=4)
    held = np.zeros(len(x), dtype=bool)
    held[::5] = True
    fit = VideoClusterer(PLANTED_K, "kmeans").fit(x[~held])
    # the fitted cluster of each planted group (majority vote on the training points)
    cluster_of = {g: np.bincount(fit.labels_[y[~held] == g]).argmax() for g in range(PLANTED_K)}
    before = fit.cluster_centers_.copy()
    ids, dist = nearest_center(x[held], fit.cluster_centers_)
    assert np.array_equal(ids, [cluster_of[g] for g in y[held]])
    np.testing.assert_allclose(dist, cdist(x[held], fit.cluster_centers_).min(axis=1), atol=1e-5)
    assert np.array_equal(before, fit.cluster_centers_)
    with pytest.raises(VidclustError, match="cannot be assigned"):
        nearest_center(x[:3, :10], fit.cluster_centers_)


# ------------------------------------------------------------------------------ near-duplicates


def _with_duplicates():
    x, y = blobs(40, seed=2)
    rng = np.random.default_rng(7)
    extra = [x[0] + rng.normal(scale=1e-3, size=x.shape[1]),  # dup of 0
             x[5] + rng.normal(scale=1e-3, size=x.shape[1])]  # dup of 5
    # a pair on the border of groups 0 and 1, one on each side: their nearest centres differ
    c0, c1 = x[y == 0].mean(axis=0), x[y == 1].mean(axis=0)
    mid = l2_normalise((c0 + c1)[None])[0]
    extra += [mid + 0.005 * (c0 - c1), mid - 0.005 * (c0 - c1)]
    xs = np.vstack([x, np.asarray(extra)]).astype(np.float32)
    ids = [f"v{i:04d}" for i in range(len(xs))]
    return ids, xs, y


def test_near_duplicates_found_with_and_without_centre_pruning():
    ids, xs, planted = _with_duplicates()
    sim = l2_normalise(xs) @ l2_normalise(xs).T
    np.fill_diagonal(sim, -1)
    threshold = 0.999
    t = near_duplicate_groups(ids, xs, threshold, block=16)  # small blocks: many block pairs
    groups = {}
    for g, v in zip(t.column("group_id").to_pylist(), t.column("video_id").to_pylist()):
        groups.setdefault(g, set()).add(v)
    assert {"v0000", "v0240"} in groups.values() and {"v0005", "v0241"} in groups.values()
    assert {"v0242", "v0243"} in groups.values()
    # every video in a group has a partner at or above the threshold, and none outside has one
    in_group = set(t.column("video_id").to_pylist())
    for i, v in enumerate(ids):
        assert (sim[i].max() >= threshold) == (v in in_group)
    for v, s in zip(t.column("video_id").to_pylist(), t.column("max_similarity").to_pylist()):
        assert s == pytest.approx(sim[ids.index(v)].max(), abs=1e-5)
    planted_centres = np.stack([xs[:240][planted == g].mean(axis=0) for g in range(PLANTED_K)])
    nearest = distances_to_centers(l2_normalise(xs), planted_centres).argmin(axis=1)
    assert nearest[242] != nearest[243]  # a pair across two clusters is found too
    fitted = VideoClusterer(PLANTED_K, "kmeans").fit(xs).cluster_centers_
    for pruned in (near_duplicate_groups(ids, xs, threshold, planted_centres, block=16),
                   near_duplicate_groups(ids, xs, threshold, fitted, block=4096)):
        assert pruned.drop_columns(["max_similarity"]).equals(t.drop_columns(["max_similarity"]))
        np.testing.assert_allclose(pruned.column("max_similarity").to_numpy(),
                                   t.column("max_similarity").to_numpy(), atol=1e-5)


def test_near_duplicate_chain_is_one_group():
    base = l2_normalise(np.random.default_rng(0).normal(size=(1, 16)))[0]
    step = l2_normalise(np.random.default_rng(1).normal(size=(1, 16)))[0]
    chain = l2_normalise(np.stack([base + 0.15 * i * step for i in range(4)])).astype(np.float32)
    sim = chain @ chain.T
    threshold = float(min(sim[i, i + 1] for i in range(3))) - 1e-4
    assert sim[0, 3] < threshold  # the ends are not similar themselves, only through the chain
    t = near_duplicate_groups(["a", "b", "c", "d"], chain, threshold)
    assert t.column("group_id").to_pylist() == [0, 0, 0, 0]
    assert t.column("group_size").to_pylist() == [4, 4, 4, 4]


def test_many_similar_pairs_are_compacted_without_changing_groups(monkeypatch):
    import importlib

    nd = importlib.import_module("vidclust.clustering.near_duplicates")  # the module (vidclust exports a function of that name)

    x, _ = blobs(30, k=3, seed=5, spread=0.05)  # every pair within a group is similar
    ids = [f"v{i:03d}" for i in range(len(x))]
    whole = near_duplicate_groups(ids, x, 0.9, block=8)
    assert whole.column("group_size").to_pylist() == [30] * 90
    monkeypatch.setattr(nd, "MAX_EDGES", 5)
    assert near_duplicate_groups(ids, x, 0.9, block=8).equals(whole)


def test_no_near_duplicates_in_spread_out_vectors():
    x = l2_normalise(np.random.default_rng(0).normal(size=(300, 32))).astype(np.float32)
    assert near_duplicate_groups([str(i) for i in range(300)], x, 0.98).num_rows == 0


# ------------------------------------------------------------------------------ stages on a real OUT

TOPICS = ["ocean", "forest", "fire", "city"]
D = 24


def topic_centres() -> np.ndarray:
    return l2_normalise(np.random.default_rng(11).normal(size=(len(TOPICS), D)))


def write_out(out, video_ids, topics, *, failed=(), seed=0, meta=None, append=False, copies=None):
    """A synthetic OUT as `vidclust embed` leaves it: frames/part-*.parquet (3-6 frames a video,
    around its topic's direction) and videos.parquet (with categories, and failed videos).
    `copies` {new_id: id}: another video with the same frames as `id` (a re-upload)."""
    rng = np.random.default_rng(seed)
    video_ids, topics = list(video_ids), list(topics)
    centres = topic_centres()
    rows = {"video_id": [], "frame_index": [], "timestamp_s": [], "embedding": []}
    for vid, topic in zip(video_ids, topics):
        video_dir = centres[topic] + rng.normal(scale=0.1, size=D)
        for j in range(int(rng.integers(3, 7))):
            f = l2_normalise((video_dir + rng.normal(scale=0.1, size=D))[None])[0]
            rows["video_id"].append(vid)
            rows["frame_index"].append(10 * j)
            rows["timestamp_s"].append(j * 0.4)
            rows["embedding"].append(f.astype(np.float32))
    for copy_id, of in (copies or {}).items():
        picked = [i for i, v in enumerate(rows["video_id"]) if v == of]
        for name in rows:
            rows[name].extend(copy_id if name == "video_id" else rows[name][i] for i in picked)
        video_ids.append(copy_id)
        topics.append(topics[video_ids.index(of)])
    emb = np.stack(rows["embedding"])
    table = pa.table({
        "video_id": pa.array(rows["video_id"], pa.string()),
        "frame_index": pa.array(rows["frame_index"], pa.int32()),
        "timestamp_s": pa.array(rows["timestamp_s"], pa.float32()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), pa.float32()), D),
    })
    meta = meta or {"model": "tiny-clip", "weights": "none", "embed_dim": D,
                    "sampling": {"frame_interval": 10, "fps": None, "max_frames": None, "image_size": 224}}
    table = table.replace_schema_metadata({b"vidclust": json.dumps(meta).encode()})
    frames = out / "frames"
    (frames / "_state").mkdir(parents=True, exist_ok=True)
    (frames / "_state" / "ignore-me.parquet").write_bytes(b"not parquet")
    start = len(list(frames.glob("part-*.parquet")))
    half = table.num_rows // 2  # a video may straddle the two files
    pq.write_table(table.slice(0, half), frames / f"part-{start}.parquet")
    pq.write_table(table.slice(half), frames / f"part-{start + 1}.parquet")
    ok = list(video_ids)
    all_ids = ok + list(failed)
    videos = pa.table({
        "video_id": pa.array(all_ids, pa.string()),
        "path": pa.array([f"/videos/{v}.mp4" for v in all_ids]),
        "status": pa.array(["ok"] * len(ok) + ["failed"] * len(failed)),
        "error": pa.array([None] * len(ok) + ["cannot decode"] * len(failed), pa.string()),
        "n_frames_sampled": pa.array([4] * len(ok) + [0] * len(failed), pa.int32()),
        "duration_s": pa.array([2.0] * len(all_ids), pa.float32()),
        "fps": pa.array([25.0] * len(all_ids), pa.float32()),
        "width": pa.array([320] * len(all_ids), pa.int32()),
        "height": pa.array([240] * len(all_ids), pa.int32()),
        "codec": pa.array(["h264"] * len(all_ids)),
        "captions": pa.array([[] for _ in all_ids], pa.list_(pa.string())),
        "category": pa.array([TOPICS[t] for t in topics] + [None] * len(failed), pa.string()),
    })
    if append:
        videos = pa.concat_tables([pq.read_table(out / "videos.parquet"), videos])
    pq.write_table(videos, out / "videos.parquet")


def corpus(n_per_topic: int, prefix: str = "v"):
    topics = [t for t in range(len(TOPICS)) for _ in range(n_per_topic)]
    ids = [f"{prefix}{i:03d}_{TOPICS[t]}" for i, t in enumerate(topics)]
    return ids, topics


def cfg_with(*overrides):
    return load_config(None, ["cluster.k=4", "cluster.near_duplicate_threshold=0.995", *overrides])


def read_assignments(out):
    return pq.read_table(out / "clusters" / "assignments.parquet")


def test_run_cluster_writes_the_contract_and_is_deterministic(ray_local, tmp_path):
    out = tmp_path / "out"
    ids, topics = corpus(10)
    write_out(out, ids, topics, failed=["bad1", "bad2"], copies={"zz_copy_of_v003": ids[3]})
    ids, topics = ids + ["zz_copy_of_v003"], topics + [topics[3]]
    info = run_cluster(cfg_with(), str(out))
    assert info["k"] == 4 and info["method"] == "kmeans" and info["n_videos"] == 41 and info["n_failed"] == 2

    a = read_assignments(out)
    assert a.column_names == ["video_id", "cluster_id", "distance"]  # the map's x, y are the report's
    assert a.column("video_id").to_pylist() == sorted(ids)  # failed videos absent
    topic_of = dict(zip(ids, topics))
    m = json.loads((out / "clusters" / "metrics.json").read_text())
    assert m["external"]["nmi"] >= 0.95 and m["external"]["purity"] >= 0.95
    assert m["n_videos"] == 41 and m["n_failed"] == 2 and m["method"] == "kmeans" and m["k"] == 4
    assert m["silhouette"] > 0.3 and m["silhouette_sampled"] is False
    assert m["davies_bouldin"] > 0 and m["calinski_harabasz"] > 0 and m["k_sweep"] is None
    assert m["embedding"]["model"] == "tiny-clip"

    centers = pq.read_table(out / "clusters" / "centers.parquet")
    assert centers.column("cluster_id").to_pylist() == [0, 1, 2, 3]
    assert sum(centers.column("size").to_pylist()) == 41
    assert centers.schema.field("center").type == pa.list_(pa.float32(), D)

    vids, vectors = read_vectors(OutputLayout.open(str(out)))
    assert vids == sorted(ids) and vectors.shape == (41, D)
    center_arr = np.stack(centers.column("center").to_numpy(zero_copy_only=False))
    labels, dist = nearest_center(vectors, center_arr)
    assert labels.tolist() == a.column("cluster_id").to_pylist()
    np.testing.assert_allclose(dist, a.column("distance").to_numpy(), atol=1e-5)
    # a planted topic is one cluster
    assert all(len({c for v, c in zip(vids, labels) if topic_of[v] == t}) == 1 for t in range(4))

    with open(out / "clusters" / "video_cluster_mapping.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["video_id", "cluster_id"]
    assert [(r[0], int(r[1])) for r in rows[1:]] == list(zip(vids, labels.tolist()))
    dups = pq.read_table(out / "clusters" / "near_duplicates.parquet")
    assert dups.column("video_id").to_pylist() == [ids[3], "zz_copy_of_v003"]
    assert dups.column("group_id").to_pylist() == [0, 0]
    assert dups.column("max_similarity").to_pylist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert m["near_duplicates"]["n_groups"] == 1
    run = json.loads((out / "run.json").read_text())
    assert run["stages"]["cluster"]["n_videos"] == 41

    before = {p.name: p.read_bytes() for p in (out / "clusters").iterdir() if p.suffix in (".csv",)}
    run_cluster(cfg_with(), str(out))  # re-run: same result
    assert read_assignments(out).equals(a)
    assert pq.read_table(out / "clusters" / "centers.parquet").equals(centers)
    assert before == {p.name: p.read_bytes() for p in (out / "clusters").iterdir() if p.suffix in (".csv",)}


def test_run_cluster_sweep_and_other_aggregation(ray_local, tmp_path):
    out = tmp_path / "out"
    ids, topics = corpus(8)
    write_out(out, ids, topics)
    (out / "clusters").mkdir()
    (out / "clusters" / "near_duplicates.parquet").write_bytes(b"stale")
    info = run_cluster(cfg_with("cluster.k_sweep=[2,3,4,6,8]", "cluster.aggregation=mean+max",
                                "cluster.near_duplicates_index_above=10", "cluster.vector_dtype=float16"), str(out))
    assert info["k"] == 4
    m = json.loads((out / "clusters" / "metrics.json").read_text())
    assert m["near_duplicates"]["search"] == "cells"  # above the limit: the approximate search, never skipped
    dups = pq.read_table(out / "clusters" / "near_duplicates.parquet")  # the stale file is replaced
    assert dups.num_rows == m["near_duplicates"]["n_videos"]
    assert [r["k"] for r in m["k_sweep"]] == [2, 3, 4, 6, 8] and m["sweep_metric"] == "silhouette"
    assert m["aggregation"] == "mean+max"
    _, vectors = read_vectors(OutputLayout.open(str(out)))
    assert vectors.shape == (32, 2 * D)


def test_run_cluster_errors(tmp_path):  # caught before any Ray work
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VidclustError, match="no frame embeddings"):
        run_cluster(cfg_with(), str(empty))
    out = tmp_path / "few"
    ids, topics = corpus(1)
    write_out(out, ids, topics)
    with pytest.raises(VidclustError, match="larger than the number of videos"):
        run_cluster(cfg_with("cluster.k=5"), str(out))
    one = tmp_path / "one"
    write_out(one, ids[:1], topics[:1])
    with pytest.raises(VidclustError, match="at least 2 videos"):
        run_cluster(cfg_with(), str(one))


def test_assign_new_videos_to_saved_centres(ray_local, tmp_path):
    out = tmp_path / "out"
    ids, topics = corpus(8)
    write_out(out, ids, topics, failed=["bad1"])
    run_cluster(cfg_with(), str(out))
    first = read_assignments(out)
    centers_before = (out / "clusters" / "centers.parquet").read_bytes()
    cluster_of_topic = {t: c for v, c in zip(first.column("video_id").to_pylist(),
                                             first.column("cluster_id").to_pylist())
                        for t in [topics[ids.index(v)]]}

    # someone has added a column of their own since
    n_old = first.num_rows
    first = first.append_column("label", pa.array(["old"] * n_old))
    pq.write_table(first, out / "clusters" / "assignments.parquet")
    # the lead's embed appends new videos to frames/ and videos.parquet
    new_ids, new_topics = corpus(3, prefix="new")
    write_out(out, new_ids, new_topics, seed=5, append=True, failed=["bad2"])
    info = run_assign_new(cfg_with("cluster.aggregation=max"), str(out))  # saved aggregation wins
    assert info["n_new"] == 12 and info["aggregation"] == "mean"

    a = read_assignments(out)
    got = a.column("video_id").to_pylist()
    assert len(got) == len(set(got)) == 32 + 12
    assert got[:32] == first.column("video_id").to_pylist()  # appended, old rows untouched
    assert a.slice(0, 32).equals(first)
    assert a.slice(32).column("label").null_count == 12
    new_rows = dict(zip(got[32:], a.column("cluster_id").to_pylist()[32:]))
    assert all(new_rows[v] == cluster_of_topic[t] for v, t in zip(new_ids, new_topics))
    assert (out / "clusters" / "centers.parquet").read_bytes() == centers_before  # centres not moved
    vids, vectors = read_vectors(OutputLayout.open(str(out)))
    assert sorted(vids) == sorted(got) and len(vids) == len(set(vids))
    with open(out / "clusters" / "video_cluster_mapping.csv") as f:
        assert len(list(csv.reader(f))) == 1 + 44
    m = json.loads((out / "clusters" / "metrics.json").read_text())
    assert m["n_assigned_after_fit"] == 12 and m["n_failed"] == 2

    again = run_assign_new(cfg_with(), str(out))  # nothing new: nothing changes
    assert again["n_new"] == 0
    assert read_assignments(out).equals(a)

    # frames of another model or sampling never mix with these
    other = {"model": "ViT-B-32", "weights": "openai", "embed_dim": D, "sampling": {"frame_interval": 5}}
    write_out(out, ["late1"], [0], append=True, meta=other)
    with pytest.raises(VidclustError, match="different settings"):
        run_assign_new(cfg_with(), str(out))
    assert read_assignments(out).equals(a)


def test_assign_before_cluster_is_a_clear_error(tmp_path):
    out = tmp_path / "out"
    ids, topics = corpus(3)
    write_out(out, ids, topics)
    with pytest.raises(VidclustError, match="run `vidclust cluster` first"):
        run_assign_new(cfg_with(), str(out))


def test_dedup_first_fits_one_video_per_near_duplicate_group(ray_local, tmp_path):
    """cluster.dedup_first: a video re-uploaded 30 times is fitted once (its copies would pull a
    centre towards it); every copy takes its representative's cluster."""
    ids, topics = corpus(10)
    copies = {f"zz_copy{i:02d}": ids[3] for i in range(30)}
    runs = {}
    for dedup in (False, True):
        out = tmp_path / f"out-{dedup}"
        write_out(out, ids, topics, copies=copies)
        info = run_cluster(cfg_with(f"cluster.dedup_first={str(dedup).lower()}"), str(out))
        assert info["n_videos"] == 70
        m = json.loads((out / "clusters" / "metrics.json").read_text())
        a = read_assignments(out)
        cluster_of = dict(zip(a.column("video_id").to_pylist(), a.column("cluster_id").to_pylist()))
        assert len({cluster_of[v] for v in [ids[3], *copies]}) == 1
        centers = pq.read_table(out / "clusters" / "centers.parquet")
        assert sum(centers.column("size").to_pylist()) == 70  # every video counted in its cluster
        runs[dedup] = (m, np.stack(centers.column("center").to_numpy(zero_copy_only=False)), out)
    m, centers, out = runs[True]
    assert m["dedup_first"] is True and m["n_fitted"] == 40 and m["near_duplicates"]["n_groups"] == 1
    assert runs[False][0]["dedup_first"] is False and runs[False][0]["n_fitted"] == 70
    # the centres are those of a fit on the 40 distinct videos alone
    vids, vectors = read_vectors(OutputLayout.open(str(out)))
    distinct = [i for i, v in enumerate(vids) if not v.startswith("zz_copy")]
    ref = VideoClusterer(4, "kmeans", 28).fit(vectors[distinct]).cluster_centers_
    order = lambda c: c[np.lexsort(c.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(centers), order(ref), atol=1e-5)
    assert not np.allclose(order(runs[False][1]), order(ref), atol=1e-3)  # the copies pulled a centre
