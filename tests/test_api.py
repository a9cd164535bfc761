"""The Python API (vidclust.api): the stages as functions, settings as keyword overrides, a light
`import vidclust`, FrameEncoder in a user's own Ray Data pipeline; `--version`, `python -m vidclust`;
`assign` and `stats` from Python; the command line calling the API."""
import csv
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import vidclust
from vidclust.api import make_config
from vidclust.config import load_config
from vidclust.errors import VidclustError


def test_import_is_light_and_names_resolve():
    code = ("import sys, vidclust; heavy = [m for m in ('ray', 'torch', 'sklearn', 'pyarrow') if m in sys.modules];"
            "print(heavy, vidclust.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"[] {vidclust.__version__}"
    for name in ("run", "embed", "cluster", "describe", "report", "assign", "stats"):
        assert callable(getattr(vidclust, name))
    # the stages' modules are plain modules in their folders (no module shares an API verb's name)
    from vidclust.embedding.run import run_embed
    from vidclust.statistics.run import run_stats
    import vidclust.clustering.run as cluster_module
    assert callable(run_embed) and hasattr(cluster_module, "run_cluster")
    assert callable(run_stats) and vidclust.statistics.run.run_stats is run_stats
    assert vidclust.FrameEncoder.__name__ == "FrameEncoder"
    with pytest.raises(AttributeError):
        vidclust.no_such_thing


def test_settings_as_double_underscores_nested_dicts_and_a_yaml_file(tmp_path):
    cfg = make_config(cluster__k=8, embed={"encoder": {"batch_size": 7}, "sampling": {"fps": 2}})
    assert cfg.cluster.k == 8 and cfg.embed.encoder.batch_size == 7 and cfg.embed.sampling.fps == 2.0
    assert make_config(cluster__n_clusters=5).cluster.k == 5  # scikit-learn's name
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("cluster:\n  k: 4\n  aggregation: max\n")
    cfg = make_config(str(yaml_file), cluster__k=6)  # the file first, then the keywords
    assert cfg.cluster.k == 6 and cfg.cluster.aggregation == "max"
    with pytest.raises(VidclustError, match="unknown config key: cluster.kk"):
        make_config(cluster__kk=3)
    with pytest.raises(VidclustError, match="cluster.k must be >= 2"):
        make_config(cluster={"k": 1})


def test_n_clusters_is_cluster_k_in_set_and_yaml(tmp_path):
    assert load_config(None, ["cluster.n_clusters=20"]).cluster.k == 20
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("cluster:\n  n_clusters: 9\n")
    assert load_config(str(yaml_file)).cluster.k == 9
    with pytest.raises(VidclustError, match="must be an integer"):
        load_config(None, ["cluster.n_clusters=many"])


def test_version_and_python_dash_m():
    for cmd in ([sys.executable, "-m", "vidclust", "--version"], [sys.executable, "-m", "vidclust.cli", "--version"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.strip() == f"vidclust {vidclust.__version__}"
    proc = subprocess.run([sys.executable, "-m", "vidclust", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "embed" in proc.stdout


def test_frame_encoder_in_a_users_own_map_batches(ray_local, tiny_clip):
    import ray

    model_json, ckpt = tiny_clip
    rng = np.random.default_rng(0)
    rows = [{"video_id": f"v{i // 3}", "frame_index": i % 3,
             "frame": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)} for i in range(6)]
    ds = ray.data.from_items(rows)
    ds = ds.map_batches(vidclust.FrameEncoder,
                        fn_constructor_kwargs={"model": model_json, "pretrained": ckpt,
                                               "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
                        compute=ray.data.ActorPoolStrategy(size=1), batch_size=4)
    out = ds.take_all()
    assert len(out) == 6 and all("frame" not in r for r in out)
    emb = np.stack([r["embedding"] for r in out])
    assert emb.shape == (6, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)


def test_embed_then_cluster_from_python(ray_local, tiny_clip, example_corpus, tmp_path):
    model_json, ckpt = tiny_clip
    out = tmp_path / "out"
    summary = vidclust.embed(example_corpus, out, embed={"encoder": {"model": model_json, "pretrained": ckpt}},
                             embed__encoder__batch_size=16)
    assert summary["embedded_ok"] == 12 and summary["failed"] == 0
    result = vidclust.cluster(out, cluster__n_clusters=3)
    assert result["k"] == 3
    assign = pq.read_table(out / "clusters" / "assignments.parquet")
    assert set(assign.column("cluster_id").to_pylist()) == {0, 1, 2} and assign.num_rows == 12


def _split_manifest(manifest, folder) -> tuple:
    """The example corpus as two manifests (absolute paths): the first three clips of each topic,
    and the fourth of each, to add later."""
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    parts = {"first": [r for r in rows if not r["video_id"].endswith("3")],
             "new": [r for r in rows if r["video_id"].endswith("3")]}
    paths = []
    for name, part in parts.items():
        path = folder / f"{name}.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**r, "path": str(manifest.parent / r["path"])} for r in part)
        paths.append(path)
    return tuple(paths)


def test_assign_from_python(ray_local, tiny_clip, example_corpus, tmp_path):
    model_json, ckpt = tiny_clip
    first, new = _split_manifest(example_corpus, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(VidclustError, match="holds no embeddings: run `vidclust embed SOURCE"):
        vidclust.assign(out, new)
    vidclust.embed(first, out, embed={"encoder": {"model": model_json, "pretrained": ckpt, "batch_size": 16}})
    before = (out / "videos.parquet").read_bytes()
    with pytest.raises(VidclustError, match="has no clusters/metrics.json: run `vidclust cluster` first"):
        vidclust.assign(out, new)
    assert (out / "videos.parquet").read_bytes() == before  # refused before any embedding
    assert vidclust.cluster(out, cluster__k=3)["k"] == 3
    fitted = pq.read_table(out / "clusters" / "centers.parquet")
    # no model given: the new videos are embedded with the one OUT was embedded with
    result = vidclust.assign(out, new, cluster__aggregation="max")
    assert set(result) == {"embed", "assign"}
    assert result["embed"]["embedded_ok"] == 3 and result["embed"]["failed"] == 0
    assert (result["assign"]["n_new"], result["assign"]["n_already_assigned"]) == (3, 9)
    assert result["assign"]["aggregation"] == "mean"  # the one the centres were fitted with
    assert sum(result["assign"]["new_per_cluster"]) == 3
    assign = pq.read_table(out / "clusters" / "assignments.parquet")
    assert assign.num_rows == 12 and set(assign.column("cluster_id").to_pylist()) <= {0, 1, 2}
    assert pq.read_table(out / "clusters" / "centers.parquet").equals(fitted)  # the centres do not move
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert stages["assign"]["n_new"] == 3


def test_stats_from_python(ray_local, example_corpus, tmp_path, capsys):
    summary = vidclust.stats(example_corpus, tmp_path / "stats")
    assert (summary["count"], summary["n_ok"], summary["n_failed"]) == (12, 12, 0)
    assert summary["codec_counts"] == {"h264": 12}
    assert json.loads((tmp_path / "stats" / "stats.json").read_text())["count"] == 12
    assert pq.read_table(tmp_path / "stats" / "stats.parquet").num_rows == 12
    assert "videos          12" not in capsys.readouterr().out  # returned, not printed: the CLI prints it
    alone = vidclust.stats(str(example_corpus))  # no OUT: the table only
    assert alone["count"] == 12 and "files" not in alone


def test_the_command_line_calls_the_api(monkeypatch, tmp_path):
    """Each command is its vidclust.api function, called with the configuration that the
    arguments make; the command line sequences nothing itself."""
    from vidclust import api, cli

    from vidclust.store.contract import PROBE_SCHEMA
    from vidclust.statistics.video_stats import summarise_stats

    calls = []
    returns = {"stats": {**summarise_stats(PROBE_SCHEMA.empty_table()), "files": []}}  # the CLI prints it
    for name in ("embed", "cluster", "describe", "report", "run", "assign", "stats"):
        monkeypatch.setattr(api, name, lambda *args, _name=name, **kwargs: calls.append((_name, args, kwargs))
                            or returns.get(_name, {}))
    out, src = str(tmp_path / "out"), str(tmp_path / "src")
    for argv in (["embed", src, out, "-q", "--model", "ViT-B-16", "--set", "cluster.k=5"],
                 ["cluster", out, "--set", "cluster.k=6"], ["describe", out], ["report", out], ["run", src, out],
                 ["assign", out, src], ["stats", src, "--out", out], ["stats", src]):
        cli.dispatch(cli.build_parser().parse_args(argv))  # what main() calls once logging is set up
    assert [(name, args) for name, args, _ in calls] == [
        ("embed", (src, out)), ("cluster", (out,)), ("describe", (out,)), ("report", (out,)), ("run", (src, out)),
        ("assign", (out, src)), ("stats", (src, out)), ("stats", (src, None))]
    embed_kwargs = calls[0][2]
    assert embed_kwargs["show_progress"] is False  # -q
    assert embed_kwargs["config"].embed.encoder.model == "ViT-B-16" and embed_kwargs["config"].cluster.k == 5
    assert calls[1][2]["config"].cluster.k == 6
    assert calls[4][2]["show_progress"] is True and calls[5][2]["show_progress"] is True
