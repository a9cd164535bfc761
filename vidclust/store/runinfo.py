"""`run.json`: the resolved configuration, versions, timings per stage and counts of a run; and
what later stages read back from it (the embedding settings OUT was embedded with)."""
from __future__ import annotations

import platform
import time
from collections import Counter
from contextlib import contextmanager
from importlib import metadata
from typing import Any, Iterator

from vidclust.config import Config, apply_mapping, to_dict
from vidclust.store.contract import read_json, write_json
from vidclust.errors import VidclustError
from vidclust.store.layout import OutputLayout

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


class EmbedUsage:
    """Where the embed stage's time went, summed over the videos' status rows as they are
    committed: the decode tasks' CPU-seconds (`decode_cpu_s`), the decoder that made each video's
    frames (`backend`, as in videos.parquet), and the latest reading of each encoder's GPU meter
    (`gpu_busy`, cumulative per meter: see vidclust.gpu_meter)."""

    def __init__(self) -> None:
        self.decode_cpu_s = 0.0
        self.decoders: Counter = Counter()
        self.meters: dict[str, dict] = {}
        self.why: set[str] = set()
        self.videos = 0

    def add(self, info: dict) -> None:
        self.videos += 1
        self.decode_cpu_s += float(info.get("decode_cpu_s") or 0.0)
        self.decoders[info.get("backend") or "none"] += 1  # none: failed before any decoder ran
        reading = info.get("gpu_busy")
        if isinstance(reading, dict):
            if "meter" in reading:
                held = self.meters.get(reading["meter"])
                if held is None or reading["samples"] > held["samples"]:
                    self.meters[reading["meter"]] = reading
            elif reading.get("why"):
                self.why.add(str(reading["why"]))

    def summary(self, frames: int) -> dict:
        """run.json's keys: decode CPU-seconds in all and per embedded frame, videos per decoder,
        and the GPUs' busy fraction over the encoders' lifetime (or why there is none)."""
        samples = sum(m["samples"] for m in self.meters.values())
        if samples:
            busy = {"fraction": round(sum(m["busy_sum"] for m in self.meters.values()) / samples / 100, 3),
                    "samples": samples, "encoders": len(self.meters)}
        else:
            why = "; ".join(sorted(self.why)) or ("no video was embedded in this run" if not self.videos
                                                  else "the encoder ran on CPUs")
            busy = {"fraction": None, "why": why}
        return {"decode_cpu_s": round(self.decode_cpu_s, 3),
                "decode_cpu_s_per_frame": round(self.decode_cpu_s / frames, 6) if frames else None,
                "decoders": dict(sorted(self.decoders.items())), "gpu_busy": busy}
