"""How busy a GPU is: NVML's utilisation (the share of time a kernel ran) sampled in a thread of
the process that uses the GPU, the encoder actor. nvidia-ml-py (`import pynvml`) is optional: where
it is missing, or NVML does not answer, the reading says why instead. No torch, no Ray."""
from __future__ import annotations

import os
import threading
import uuid
from typing import Optional

from vidclust.errors import first_line

PERIOD_S = 0.1  # NVML's own utilisation window is 1/6 s to 1 s, depending on the GPU


class GpuMeter:
    """Samples the utilisation of one GPU (by its UUID, else the first visible one) every
    `period_s` seconds until `stop`; `reading()` is cumulative, so the latest one of each meter
    says it all: {"meter": id, "busy_sum": percent summed, "samples": n} or {"why": reason}."""

    def __init__(self, device_uuid: Optional[str] = None, period_s: float = PERIOD_S):
        self.id = uuid.uuid4().hex[:12]
        self.period_s = period_s
        self.busy_sum, self.samples, self.why = 0, 0, None
        self._stop = threading.Event()
        try:
            import pynvml
        except ImportError:
            self.why = "nvidia-ml-py is not installed where the encoder ran (pip install nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, _handle(pynvml, device_uuid)
            pynvml.nvmlDeviceGetUtilizationRates(self._handle)
        except Exception as exc:
            self.why = f"NVML does not answer: {first_line(exc)}"
            return
        self._thread = threading.Thread(target=self._run, name="vidclust-gpu-meter", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
            except Exception as exc:
                self.why = f"NVML stopped answering: {first_line(exc)}"
                return
            self.busy_sum += int(util)
            self.samples += 1

    def reading(self) -> dict:
        if self.why and not self.samples:
            return {"why": self.why}
        return {"meter": self.id, "busy_sum": self.busy_sum, "samples": self.samples}

    def stop(self) -> None:
        self._stop.set()


def _handle(pynvml, device_uuid: Optional[str]):
    """The NVML handle of the GPU this process uses: NVML numbers every GPU of the machine,
    CUDA only those in CUDA_VISIBLE_DEVICES (which Ray sets per actor)."""
    if device_uuid:
        name = device_uuid if device_uuid.startswith(("GPU-", "MIG-")) else f"GPU-{device_uuid}"
        return pynvml.nvmlDeviceGetHandleByUUID(name)
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    if first.startswith(("GPU-", "MIG-")):
        return pynvml.nvmlDeviceGetHandleByUUID(first)
    return pynvml.nvmlDeviceGetHandleByIndex(int(first) if first.isdigit() else 0)
