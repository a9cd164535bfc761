"""The map beyond openTSNE's transform: videos placed at the median of their nearest fitted videos."""
import numpy as np

from vidclust.reporting.projection import project_tsne

from test_report import blobs


def test_many_videos_are_placed_by_their_nearest_fitted_neighbours():
    x, labels = blobs(4, 500, d=96, seed=3)
    xy, cxy, info = project_tsne(x, None, seed=5, sample_above=400, transform_up_to=100,
                                 labels=labels, center_ids=np.arange(4))
    assert info["sampled"] and info["n_fitted"] == 400 and info["n_placed"] == 1600
    assert info["placed_by"].startswith("median of") and np.isfinite(xy).all()
    fitted = np.zeros(len(x), bool)
    fitted[np.sort(np.random.default_rng(5).choice(len(x), 400, replace=False))] = True
    # each placed video's nearest fitted video on the map is of its own blob
    d = np.linalg.norm(xy[~fitted][:, None, :] - xy[fitted][None, :, :], axis=2)
    assert (labels[fitted][d.argmin(axis=1)] == labels[~fitted]).mean() > 0.98
    again, _, _ = project_tsne(x, None, seed=5, sample_above=400, transform_up_to=100)
    np.testing.assert_array_equal(xy, again)
    # below the limit the transform places them, in the same frame
    _, _, small = project_tsne(x[:600], None, seed=5, sample_above=400, transform_up_to=1000)
    assert small["placed_by"] == "openTSNE transform" and small["n_placed"] == 200


def test_the_report_says_how_the_videos_outside_the_sample_were_placed():
    from vidclust.reporting.projection import tsne_note as _tsne_note

    info = {"method": "openTSNE", "sampled": True, "n_fitted": 20_000, "n_videos": 1_000_000, "n_placed": 980_000,
            "perplexity": 30.0, "placed_by": "median of 10 nearest fitted videos"}
    assert "at the median of 10 nearest fitted videos" in _tsne_note(info, 28)
    assert "openTSNE's transform" in _tsne_note({**info, "placed_by": "openTSNE transform"}, 28)
