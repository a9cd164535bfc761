"""The Python API: the command line's stages as functions.

    import vidclust
    vidclust.run("videos/", "out/", cluster__k=8)
    vidclust.cluster("out/", cluster={"k": 8, "aggregation": "max"})

Settings are keyword overrides of the configuration tree (the same fields as `--set`): a
double underscore stands for the dot (`embed__encoder__batch_size=32` is
`--set embed.encoder.batch_size=32`), and a section may be given as a nested dict
(`embed={"encoder": {"model": "ViT-B-16"}}`). `config=` names a YAML file, applied first, as
`--config` does. Each function returns the stage's summary dict (what run.json records).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

from vidclust.config import Config, load_config, set_field

__all__ = ["make_config", "run", "embed", "cluster", "describe", "report"]


def make_config(config: Optional[str | os.PathLike | Config] = None, **settings: Any) -> Config:
    """The configuration a call runs with: defaults, then the YAML file `config` (or a Config
    itself), then `settings` in the order given (keyword `a__b=v` or section `a={"b": v}`)."""
    import copy

    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        cfg = load_config(config)
    for key, value in settings.items():
        set_field(cfg, key.replace("__", "."), value)
    return cfg.validate()


def _ensure_logging() -> None:
    """vidclust's progress lines on stderr when the caller has not configured logging."""
    log = logging.getLogger("vidclust")
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s vidclust %(levelname)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _str(path: str | os.PathLike) -> str:
    return str(path) if not isinstance(path, Path) else os.fspath(path)


def embed(source: str | os.PathLike, out: str | os.PathLike, *, config=None, show_progress: bool = False,
          **settings: Any) -> dict:
    """`vidclust embed SOURCE OUT`: decode, sample and embed every video of SOURCE into OUT/frames."""
    from vidclust.cli import check_out_writable
    from vidclust.embed import run_embed

    cfg = make_config(config, **settings)
    _ensure_logging()
    out = _str(out)
    check_out_writable(out, create=True)
    return run_embed(cfg, _str(source), out, show_progress=show_progress)


def cluster(out: str | os.PathLike, *, config=None, **settings: Any) -> dict:
    """`vidclust cluster OUT`: aggregate per video, cluster, score (OUT/clusters)."""
    from vidclust.cluster import run_cluster

    cfg = make_config(config, **settings)
    _ensure_logging()
    return run_cluster(cfg, _str(out))


def describe(out: str | os.PathLike, *, config=None, **settings: Any) -> dict:
    """`vidclust describe OUT`: key phrases and summaries of every cluster."""
    from vidclust.describe import run_describe

    cfg = make_config(config, **settings)
    _ensure_logging()
    return run_describe(cfg, _str(out))


def report(out: str | os.PathLike, *, config=None, **settings: Any) -> dict:
    """`vidclust report OUT`: plots and OUT/report/index.html."""
    from vidclust.report import run_report

    cfg = make_config(config, **settings)
    _ensure_logging()
    return run_report(cfg, _str(out))


def run(source: str | os.PathLike, out: str | os.PathLike, *, config=None, show_progress: bool = False,
        **settings: Any) -> dict:
    """`vidclust run SOURCE OUT`: every stage; {"embed": ..., "cluster": ..., "describe": ...,
    "report": ...}, each the stage's summary."""
    cfg = make_config(config, **settings)
    return {"embed": embed(source, out, config=cfg, show_progress=show_progress),
            "cluster": cluster(out, config=cfg),
            "describe": describe(out, config=cfg),
            "report": report(out, config=cfg)}
