"""`run.json`: the resolved configuration, versions, timings per stage and counts of a run; and
what later stages read back from it (the embedding settings OUT was embedded with)."""
from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from importlib import metadata
from typing import Any, Iterator

from vidclust.config import Config, apply_mapping, to_dict
from vidclust.contract import read_json, write_json
from vidclust.errors import VidclustError
from vidclust.layout import OutputLayout

_PACKAGES = ("vidclust", "ray", "torch", "open_clip_torch", "decord", "av", "pyarrow", "numpy",
             "scikit-learn", "transformers", "keybert", "openTSNE")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def read_run_json(layout: OutputLayout) -> dict:
    return read_json(layout, layout.run_json) or {}


def record_stage(layout: OutputLayout, cfg: Config, stage: str, info: dict[str, Any]) -> None:
    """Merge one stage's timings and counts into run.json (other stages' entries are kept)."""
    run = read_run_json(layout)
    run["config"] = to_dict(cfg)
    run["versions"] = versions()
    run.setdefault("stages", {})[stage] = {**info, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    layout.makedirs(layout.root)
    write_json(layout, run, layout.run_json)


def embedding_config_of(out: str, cfg: Config) -> Config:
    """`cfg` with the embedding settings (model, weights, sampling) that OUT was embedded with."""
    run = read_run_json(OutputLayout.open(out))
    stage = run.get("stages", {}).get("embed")
    if not stage or "embed_config" not in stage:
        raise VidclustError(f"{out} holds no embeddings: run `vidclust embed SOURCE {out}` first")
    apply_mapping(cfg.embed, stage["embed_config"], prefix="embed.")
    return cfg.validate()


@contextmanager
def timed() -> Iterator[dict]:
    """`with timed() as t: ...` then t["seconds"] holds the elapsed wall time."""
    t: dict = {}
    start = time.perf_counter()
    try:
        yield t
    finally:
        t["seconds"] = round(time.perf_counter() - start, 3)
