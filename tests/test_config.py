from pathlib import Path

import pytest

from vidclust.config import Config, load_config, to_dict
from vidclust.errors import VidclustError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_notebooks():
    cfg = load_config()
    assert cfg.seed == 28
    assert cfg.embed.sampling.frame_interval == 10
    assert cfg.embed.encoder.model == "ViT-B-32" and cfg.embed.encoder.pretrained == "openai"
    assert cfg.embed.encoder.batch_size is None  # the notebook's 128 on CPUs, 512 on a GPU (measured)
    # 224x224 and CLIP's mean/std: the model's own preprocessing, read from open_clip's configs
    from vidclust.models.encoder import encoder_spec

    spec = encoder_spec(cfg.embed.encoder.model, cfg.embed.encoder.pretrained)
    assert spec.image_size == 224 and spec.embed_dim == 512
    assert spec.mean == (0.48145466, 0.4578275, 0.40821073)
    assert spec.std == (0.26862954, 0.26130258, 0.27577711)
    assert cfg.cluster.k == 20 and cfg.cluster.aggregation == "mean"
    d = cfg.describe
    assert (d.kw_k_nearest, d.kw_top_n, d.kw_score_threshold) == (20, 10, 0.2)
    assert (d.summary_min_tokens, d.summary_max_tokens) == (20, 100)


def test_local_yaml_spells_out_the_defaults():
    import yaml

    path = ROOT / "cluster_configs" / "local.yaml"
    assert yaml.safe_load(path.read_text()) == to_dict(Config())  # every key, every value
    assert to_dict(load_config(path)) == to_dict(Config())


def test_set_overrides_by_dotted_name(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("embed:\n  sampling:\n    frame_interval: 5\ncluster:\n  k: 7\n")
    cfg = load_config(f, ["cluster.k=9", "cluster.k_sweep=[5,10]", "embed.sampling.fps=2.5"])
    assert cfg.embed.sampling.frame_interval == 5
    assert cfg.cluster.k == 9 and cfg.cluster.k_sweep == [5, 10]
    assert cfg.embed.sampling.fps == 2.5
    assert load_config(None, ["cluster.k_sweep=5-20:5"]).cluster.k_sweep == [5, 10, 15, 20]


def test_summariser_is_another_spelling_of_describe_summarizer(tmp_path):
    assert load_config(None, ["describe.summariser=extractive"]).describe.summarizer == "extractive"
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("describe:\n  summariser: extractive\n")
    assert load_config(yaml_file).describe.summarizer == "extractive"
    assert to_dict(load_config(yaml_file))["describe"]["summarizer"] == "extractive"  # the key run.json keeps


@pytest.mark.parametrize("override, message", [
    ("embed.sampling.frame_intervl=5", "did you mean 'frame_interval'"),
    ("embed.sampling.frame_interval=zero", "must be an integer"),
    ("embed.sampling.frame_interval=0", "frame_interval must be >= 1"),
    ("cluster.aggregation=mode", "cluster.aggregation"),
    ("nonsense", "key=value"),
    ("embed=3", "section"),
])
def test_bad_values_are_one_clear_error(override, message):
    with pytest.raises(VidclustError, match=message):
        load_config(None, [override])


def test_bad_config_file(tmp_path):
    with pytest.raises(VidclustError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("embed: [1, 2\n")
    with pytest.raises(VidclustError, match="not valid YAML"):
        load_config(bad)
