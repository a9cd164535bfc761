"""Where a model runs (a GPU or the CPU) and in which precision: torch only, never Ray."""
from __future__ import annotations

import logging

log = logging.getLogger("vidclust")

# the precisions a model can be asked to run in (embed.encoder.precision: config.py imports the
# list from here; the summariser takes those of vidclust.models.summarise.PRECISIONS)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def torch_device() -> str:
    """"cuda" where this process sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def reduced_precision(precision: str, device: str, setting: str) -> str | None:
    """"fp16" or "bf16" where a model runs in that precision, else None (fp32): `precision`
    (auto | fp32 | fp16 | bf16, the value of the configuration key `setting`) on `device`.
    auto: fp16 on a GPU, fp32 on the CPU; fp16 or bf16 without a GPU warns and runs in fp32."""
    wanted = "fp16" if precision == "auto" and device == "cuda" else precision
    if wanted not in ("fp16", "bf16"):
        return None
    if device != "cuda":
        log.warning("%s=%s but no GPU: running in fp32 on the CPU", setting, wanted)
        return None
    return wanted


def use_fp16(precision: str, device: str, setting: str) -> bool:
    """Whether a model runs in fp16 (see `reduced_precision`)."""
    return reduced_precision(precision, device, setting) == "fp16"
