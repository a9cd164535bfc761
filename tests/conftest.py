"""Shared fixtures: a real local Ray, a tiny open_clip model saved to disk, real video files."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> tuple[str, str]:
    """(model-config JSON path, checkpoint path) of a tiny open_clip model with random weights,
    saved the way real weights are, so tests load it through the same code path."""
    import open_clip
    import torch

    d = tmp_path_factory.mktemp("tiny_clip")
    cfg_path = d / "tiny-clip.json"
    cfg_path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(cfg_path))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    ckpt = d / "tiny-clip.pt"
    torch.save(model.state_dict(), ckpt)
    return str(cfg_path), str(ckpt)


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the whole session (starting Ray costs seconds on 2 cores)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def example_corpus(tmp_path_factory) -> Path:
    """The example corpus (three captioned topics) that `vidclust example` writes; its manifest."""
    from vidclust.example import make_example_corpus

    return make_example_corpus(tmp_path_factory.mktemp("example"), per_topic=4, seconds=2.0)


@pytest.fixture
def cluster(tmp_path):
    """Real `ray start` nodes on loopback (tests/raycluster.py), stopped by process group."""
    from raycluster import LocalRayCluster

    c = LocalRayCluster(tmp_path)
    yield c
    c.stop()
