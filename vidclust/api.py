"""The Python API: every command of the command line as a function, and the one place that
sequences the stages (the command line parses its arguments and calls these).

    import vidclust
    vidclust.run("videos/", "out/", cluster__k=8)
    vidclust.cluster("out/", cluster={"k": 8, "aggregation": "max"})
    vidclust.assign("out/", "new_videos/")
    vidclust.stats("videos/")

Settings are keyword overrides of the configuration tree (the same fields as `--set`): a
double underscore stands for the dot (`embed__encoder__batch_size=32` is
`--set embed.encoder.batch_size=32`), and a section may be given as a nested dict
(`embed={"encoder": {"model": "ViT-B-16"}}`). `config=` names a YAML file, applied first, as
`--config` does. Each function returns the stage's summary dict (what run.json records); `run`
and `assign`, which run several stages, one per stage.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from vidclust.config import Config, load_config, set_field
from vidclust.errors import VidclustError, reason

__all__ = ["make_config", "run", "embed", "cluster", "describe", "report", "assign", "stats"]


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


def check_out_writable(out: str, create: bool) -> None:
    """For a local OUT: create it (if `create`) and write and delete a file in it, so that a
    read-only or forbidden OUT is one line before any work starts. Remote OUTs are not probed."""
    from vidclust.store.storage import local_path

    if "://" in out and not out.startswith("file://"):
        return
    path = local_path(out)
    try:
        if create:
            os.makedirs(path, exist_ok=True)
        elif not os.path.isdir(path):
            return  # the stage says what is missing
        fd, tmp = tempfile.mkstemp(prefix=".vidclust-write-check-", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise VidclustError(f"cannot write to OUT {out}: {reason(exc, with_file=False)}") from None


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


def _start(config, settings: dict, out: str | os.PathLike, create: bool) -> tuple[Config, str]:
    """What every command over OUT does first: the configuration (its mistakes before anything
    else), logging, and OUT probed for writing (created by the commands that embed)."""
    cfg = make_config(config, **settings)
    _ensure_logging()
    out = _str(out)
    check_out_writable(out, create=create)
    return cfg, out


def embed(source: str | os.PathLike, out: str | os.PathLike, *, config=None, show_progress: bool = False,
          **settings: Any) -> dict:
    """`vidclust embed SOURCE OUT`: decode, sample and embed every video of SOURCE into OUT/frames."""
    from vidclust.embedding.run import run_embed

    cfg, out = _start(config, settings, out, create=True)
    return run_embed(cfg, _str(source), out, show_progress=show_progress)


def cluster(out: str | os.PathLike, *, config=None, **settings: Any) -> dict:
    """`vidclust cluster OUT`: aggregate per video, cluster, score (OUT/clusters)."""
    from vidclust.clustering.run import run_cluster

    cfg, out = _start(config, settings, out, create=False)
    return run_cluster(cfg, out)


def describe(out: str | os.PathLike, *, config=None, **settings: Any) -> dict:
    """`vidclust describe OUT`: key phrases and summaries of every cluster."""
    from vidclust.descriptions.run import run_describe

    cfg, out = _start(config, settings, out, create=False)
    return run_describe(cfg, out)


def report(out: str | os.PathLike, *, config=None, **settings: Any) -> dict:
    """`vidclust report OUT`: plots and OUT/report/index.html."""
    from vidclust.reporting.run import run_report

    cfg, out = _start(config, settings, out, create=False)
    return run_report(cfg, out)


def run(source: str | os.PathLike, out: str | os.PathLike, *, config=None, show_progress: bool = False,
        **settings: Any) -> dict:
    """`vidclust run SOURCE OUT`: every stage; {"embed": ..., "cluster": ..., "describe": ...,
    "report": ...}, each the stage's summary."""
    from vidclust.clustering.run import run_cluster
    from vidclust.descriptions.run import run_describe
    from vidclust.embedding.run import run_embed
    from vidclust.reporting.run import run_report

    cfg, out = _start(config, settings, out, create=True)
    return {"embed": run_embed(cfg, _str(source), out, show_progress=show_progress),
            "cluster": run_cluster(cfg, out),
            "describe": run_describe(cfg, out),
            "report": run_report(cfg, out)}


def assign(out: str | os.PathLike, new_source: str | os.PathLike, *, config=None, show_progress: bool = False,
           **settings: Any) -> dict:
    """`vidclust assign OUT NEW_SOURCE`: embed the videos of NEW_SOURCE into OUT with the model and
    sampling OUT was embedded with (whatever the settings say of them), then assign the new ones
    to the saved cluster centres, which do not move; {"embed": ..., "assign": ...}, each the
    stage's summary. A clustering that OUT does not hold whole is refused before any embedding."""
    from vidclust.clustering.run import check_clusters_saved, run_assign_new
    from vidclust.embedding.run import run_embed
    from vidclust.store.layout import OutputLayout
    from vidclust.store.runinfo import embedding_config_of

    cfg, out = _start(config, settings, out, create=False)
    cfg = embedding_config_of(out, cfg)  # the model and sampling OUT was embedded with
    check_clusters_saved(OutputLayout.open(out))  # before the new videos are embedded
    return {"embed": run_embed(cfg, _str(new_source), out, show_progress=show_progress),
            "assign": run_assign_new(cfg, out)}


def stats(source: str | os.PathLike, out: Optional[str | os.PathLike] = None, *, config=None,
          **settings: Any) -> dict:
    """`vidclust stats SOURCE [--out DIR]`: durations, frame rates, sizes and codecs of every video
    of SOURCE (container metadata, no decoding); with `out`, also written there (stats.json,
    stats.parquet, histograms as PNG). Returns the summary (stats.json's content) and prints
    nothing: `vidclust.statistics.run.format_stats(summary)` is the table the command line prints."""
    from vidclust.statistics.run import run_stats

    cfg = make_config(config, **settings)
    _ensure_logging()
    return run_stats(cfg, _str(source), None if out is None else _str(out))
