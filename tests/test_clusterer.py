"""vidclust.VideoClusterer and vidclust.near_duplicates on small real arrays."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score as nmi

from vidclust.clustering.clusterer import choose_method, distances_to_centers
from vidclust.errors import VidclustError
from vidclust.clustering.near_duplicates import near_duplicate_search, near_duplicates, recall
from vidclust.clustering.video_clusterer import VideoClusterer

K, D = 5, 32


def blobs(n_per=60, k=K, d=D, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    y = np.repeat(np.arange(k), n_per)
    x = centres[y] + rng.normal(scale=spread / np.sqrt(d), size=(len(y), d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    return blobs()


@pytest.mark.parametrize("method", ["kmeans", "minibatch", "faiss", "hdbscan"])
def test_each_method_recovers_planted_blobs(data, method):
    x, y = data
    vc = VideoClusterer(n_clusters=K, method=method, random_state=28)
    assert vc.fit(x) is vc
    assert vc.method_ == method
    assert vc.labels_.dtype == np.int32 and vc.labels_.shape == (len(x),)
    assert vc.cluster_centers_.shape == (K, D) and vc.cluster_centers_.dtype == np.float32
    assert nmi(y, vc.labels_) >= 0.95
    assert vc.inertia_ >= 0
    # predict = nearest centre; transform = distances to every centre
    t = vc.transform(x)
    assert t.shape == (len(x), K)
    np.testing.assert_array_equal(vc.predict(x), t.argmin(axis=1))
    if method != "hdbscan":  # hdbscan's labels are its own, not the nearest mean
        np.testing.assert_array_equal(vc.predict(x), vc.labels_)
        np.testing.assert_allclose(vc.inertia_, (t.min(axis=1).astype(np.float64) ** 2).sum(), rtol=1e-3)
    held_out, y2 = blobs(n_per=10, seed=0)  # same centres, new points
    assert nmi(y2, vc.predict(held_out)) >= 0.95


@pytest.mark.parametrize("method", ["kmeans", "minibatch", "faiss"])
def test_fit_predict_is_deterministic_and_float16_works(data, method):
    x, y = data
    a = VideoClusterer(K, method, random_state=3).fit_predict(x)
    b = VideoClusterer(K, method, random_state=3).fit_predict(x)
    np.testing.assert_array_equal(a, b)
    c = VideoClusterer(K, method, random_state=3).fit_predict(x.astype(np.float16))
    assert nmi(y, c) >= 0.95


def test_faiss_spherical_centres_are_unit(data):
    x, y = data
    vc = VideoClusterer(K, "faiss", spherical=True).fit(x)
    np.testing.assert_allclose(np.linalg.norm(vc.cluster_centers_, axis=1), 1.0, atol=1e-4)
    assert nmi(y, vc.labels_) >= 0.95


def test_faiss_trains_on_a_sample_above_the_cap(data):
    x, y = data  # 300 rows; cap 10 per centroid = 50 rows sampled, all 300 assigned
    vc = VideoClusterer(K, "faiss", faiss_max_points_per_centroid=10).fit(x)
    assert vc.labels_.shape == (len(x),) and nmi(y, vc.labels_) >= 0.95


def test_auto_picks_by_size(data):
    x, _ = data
    assert choose_method("auto", 100, exact_up_to=100) == "kmeans"
    assert choose_method("auto", 101, exact_up_to=100) == "faiss"
    assert VideoClusterer(K, exact_up_to=len(x)).fit(x).method_ == "kmeans"
    assert VideoClusterer(K, exact_up_to=len(x) - 1).fit(x).method_ == "faiss"
    assert choose_method("kmeans", 10**9) == "kmeans"  # a named method is never overridden
    with pytest.raises(VidclustError, match="unknown clustering method"):
        choose_method("spectral", 10)


def test_errors_are_clear(data):
    x, _ = data
    with pytest.raises(VidclustError, match="larger than the number of videos"):
        VideoClusterer(n_clusters=len(x) + 1).fit(x)
    with pytest.raises(VidclustError, match="not fitted"):
        VideoClusterer().predict(x)



# ------------------------------------------------------------------------------ a scikit-learn estimator


def test_get_params_lists_the_constructors_parameters_and_clone_is_unfitted(data):
    import inspect

    from sklearn.base import clone

    x, _ = data
    params = inspect.signature(VideoClusterer).parameters
    assert len(params) == 10 and VideoClusterer().get_params() == {p: v.default for p, v in params.items()}
    vc = VideoClusterer(K, "kmeans", random_state=3, min_cluster_size=7).fit(x)
    copy = clone(vc)
    assert copy is not vc and copy.get_params() == vc.get_params()
    assert not hasattr(copy, "labels_") and not hasattr(copy, "cluster_centers_")
    assert vc.set_params(n_clusters=3) is vc and vc.n_clusters == 3
    assert repr(VideoClusterer(n_clusters=3, method="faiss")) == "VideoClusterer(method='faiss', n_clusters=3)"


def test_the_last_step_of_a_pipeline(data):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = data
    pipe = make_pipeline(StandardScaler(), VideoClusterer(K, "kmeans", random_state=28))
    labels = pipe.fit_predict(x)
    assert labels.shape == (len(x),) and nmi(y, labels) >= 0.95
    np.testing.assert_array_equal(pipe.predict(x), labels)
    assert pipe.transform(x).shape == (len(x), K)


def test_predict_before_fit_raises_sklearns_not_fitted_error(data):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    x, _ = data
    vc = VideoClusterer(K)
    for use in (vc.predict, vc.transform):
        with pytest.raises(NotFittedError, match="not fitted yet: call fit"):
            use(x)
    with pytest.raises(NotFittedError):
        check_is_fitted(vc)
    check_is_fitted(vc.fit(x))
    with pytest.raises(ValueError, match="features"):  # the fitted number of features is checked
        vc.predict(x[:, :-1])


def test_distances_match_cdist(data):
    from scipy.spatial.distance import cdist

    x, _ = data
    c = x[:7]
    np.testing.assert_allclose(distances_to_centers(x, c), cdist(x, c), atol=1e-5)


# ------------------------------------------------------------------------------ near-duplicates


def planted_duplicates(n=2000, d=D, n_groups=40, seed=1):
    """n spread-out unit vectors; rows 0..n_groups-1 each get 1-3 near copies appended
    (cosine ~0.995). Returns (vectors, true group per row: -1 for a singleton)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    copies, truth_extra = [], []
    for g in range(n_groups):
        for _ in range(int(rng.integers(1, 4))):
            v = base[g] + rng.normal(scale=0.1 / np.sqrt(d), size=d)
            copies.append(v / np.linalg.norm(v))
            truth_extra.append(g)
    x = np.vstack([base, np.array(copies)]).astype(np.float32)
    truth = np.concatenate([np.where(np.arange(n) < n_groups, np.arange(n), -1), truth_extra])
    return x, truth


@pytest.mark.parametrize("search", ["exact", "cells", "ivf"])
def test_near_duplicates_find_the_planted_groups(search):
    x, truth = planted_duplicates()
    groups = near_duplicates(x, 0.98, search=search, nlist=16, nprobe=4)
    assert groups.dtype == np.int32 and groups.shape == (len(x),)
    # the same partition as the truth (ids may differ), -1 exactly for the singletons
    np.testing.assert_array_equal(groups < 0, truth < 0)
    assert nmi(truth[truth >= 0], groups[truth >= 0]) == pytest.approx(1.0)
    assert recall(groups, truth) == 1.0
    assert sorted(set(groups[groups >= 0].tolist())) == list(range(40))  # numbered 0..


@pytest.mark.parametrize("search", ["cells", "ivf"])
def test_index_and_exact_agree_when_the_index_is_forced_on_small_data(search):
    x, _ = planted_duplicates(n=600, n_groups=15, seed=4)
    exact = near_duplicate_search(x, 0.98, search="exact")
    index = near_duplicate_search(x, 0.98, search=search, nlist=8, nprobe=8)  # every list probed: exact
    assert (exact.search, index.search) == ("exact", search)
    np.testing.assert_array_equal(exact.groups, index.groups)
    np.testing.assert_allclose(exact.best, index.best, atol=1e-5, equal_nan=True)
    default = near_duplicate_search(x, 0.98, search=search)  # default nlist, nprobe
    assert recall(default.groups, exact.groups) >= 0.95
    auto = near_duplicate_search(x, 0.98, index_above=len(x) - 1)
    assert auto.search == "cells"
    assert near_duplicate_search(x, 0.98, index_above=len(x)).search == "exact"


def test_singletons_are_minus_one_and_float16_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, D)).astype(np.float16)  # spread out: no pair near 0.98
    assert (near_duplicates(x, 0.98) == -1).all()
    assert (near_duplicates(x, 0.98, search="cells", nlist=4, nprobe=4) == -1).all()
    assert (near_duplicates(x, 0.98, search="ivf", nlist=4, nprobe=4) == -1).all()
    x[7] = x[3]
    g = near_duplicates(x, 0.98)
    assert g[3] == g[7] == 0 and (np.delete(g, [3, 7]) == -1).all()
    assert near_duplicates(x[:1]).tolist() == [-1]


@pytest.mark.parametrize("search", ["cells", "ivf"])
def test_a_large_group_is_found_whole_by_the_index(search):  # no k cap
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, D)).astype(np.float32)
    x[100:300] = x[5] + 1e-3 * rng.standard_normal((200, D))  # 201 copies of row 5
    g = near_duplicates(x, 0.98, search=search, nlist=4, nprobe=2)
    assert (g[100:300] == g[5]).all() and g[5] >= 0 and (np.delete(g, np.r_[5, 100:300]) == -1).all()


def test_the_cells_search_on_tight_topics_finds_what_exact_finds():
    """Tight topics (two vectors of one kind: cosine ~0.9, as real CLIP embeddings of one kind of
    video are) pass the 64-d sketch almost pair for pair: those blocks are compared on the full
    vectors at once. Same groups and similarities as the exact search; the planted copies found."""
    rng = np.random.default_rng(5)
    topics = rng.standard_normal((4, 512))
    x = topics[rng.integers(0, 4, 3000)] + 0.33 * rng.standard_normal((3000, 512))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    copies = x[:50] + rng.normal(scale=0.1 / np.sqrt(512), size=(50, 512))
    x = np.vstack([x, copies / np.linalg.norm(copies, axis=1, keepdims=True)]).astype(np.float32)
    truth = np.concatenate([np.where(np.arange(3000) < 50, np.arange(3000), -1), np.arange(50)])
    sims = x[:3000:7] @ x[1:3000:7].T
    assert 0.85 < np.median(sims[sims > 0.5]) < 0.95  # tight indeed
    exact = near_duplicate_search(x, 0.98, search="exact")
    for kwargs in ({"nlist": 16, "nprobe": 16}, {}):  # every cell (then exact), and the defaults
        cells = near_duplicate_search(x, 0.98, search="cells", **kwargs)
        np.testing.assert_array_equal(exact.groups, cells.groups)
        np.testing.assert_allclose(exact.best, cells.best, atol=1e-5, equal_nan=True)
    assert recall(exact.groups, truth) == 1.0


def test_the_package_exports_work_after_the_stage_modules_are_imported():
    """`vidclust.clustering.near_duplicates` is also a module name: importing the cluster stage (which imports
    that module) must not turn the exported function into an uncallable module."""
    import vidclust
    import vidclust.clustering.run  # noqa: F401  imports vidclust.near_duplicates

    x = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]
    assert vidclust.near_duplicates(x, threshold=0.98).tolist() == [0, 0, -1, -1]
    assert isinstance(vidclust.VideoClusterer(n_clusters=2), vidclust.VideoClusterer)


def test_the_cells_sketch_never_lengthens_a_difference_and_finds_what_exact_finds():
    """The cells search compares 64-d principal-axis sketches of 512-d vectors, then checks on the
    full vectors: an orthogonal projection cannot push a near-duplicate pair apart."""
    from vidclust.clustering.near_duplicates import _sketch

    x, truth = planted_duplicates(n=3000, n_groups=60, d=512, seed=7)
    z, zz = _sketch(x, 64, seed=0)
    assert z.shape == (len(x), 64) and np.allclose(zz, (z * z).sum(1), rtol=1e-5)
    rng = np.random.default_rng(1)
    i, j = rng.integers(0, len(x), 5000), rng.integers(0, len(x), 5000)
    assert (np.linalg.norm(z[i] - z[j], axis=1) <= np.linalg.norm(x[i] - x[j], axis=1) + 1e-5).all()
    exact = near_duplicate_search(x, 0.98, search="exact")
    cells = near_duplicate_search(x, 0.98, search="cells", nlist=16, nprobe=16)  # every cell: exact
    np.testing.assert_array_equal(exact.groups, cells.groups)
    np.testing.assert_allclose(exact.best, cells.best, atol=1e-5, equal_nan=True)
    assert recall(cells.groups, truth) == 1.0
