"""`run.json`: the resolved configuration, versions, timings per stage and counts of a run."""
from __future__ import annotations

import json
import platform
import time
from contextlib import contextmanager
from importlib import metadata
from typing import Any, Iterator

from vidclust.config import Config, to_dict
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
    if not layout.exists(layout.run_json):
        return {}
    return json.loads(layout.read_bytes(layout.run_json))


def record_stage(layout: OutputLayout, cfg: Config, stage: str, info: dict[str, Any]) -> None:
    """Merge one stage's timings and counts into run.json (other stages' entries are kept)."""
    run = read_run_json(layout)
    run["config"] = to_dict(cfg)
    run["versions"] = versions()
    run.setdefault("stages", {})[stage] = {**info, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    layout.makedirs(layout.root)
    layout.write_bytes_atomic(layout.run_json, json.dumps(run, indent=2, default=str).encode())


@contextmanager
def timed() -> Iterator[dict]:
    """`with timed() as t: ...` then t["seconds"] holds the elapsed wall time."""
    t: dict = {}
    start = time.perf_counter()
    try:
        yield t
    finally:
        t["seconds"] = round(time.perf_counter() - start, 3)
