"""run.json's account of the embed stage (vidclust.store.runinfo.EmbedUsage) from the status rows'
info, and the GPU meter where no GPU or no NVML is (plain objects, no Ray)."""
import pytest

from vidclust.models.gpu_meter import GpuMeter
from vidclust.store.runinfo import EmbedUsage


def test_usage_sums_decode_cpu_counts_decoders_and_keeps_each_meters_latest_reading():
    usage = EmbedUsage()
    usage.add({"decode_cpu_s": 0.5, "backend": "pyav", "gpu_busy": {"meter": "a", "busy_sum": 800, "samples": 10}})
    usage.add({"decode_cpu_s": 0.25, "backend": "pyav", "gpu_busy": {"meter": "a", "busy_sum": 90, "samples": 1}})
    usage.add({"decode_cpu_s": 0.25, "backend": "decord", "gpu_busy": {"meter": "b", "busy_sum": 600, "samples": 10}})
    usage.add({"status": "failed", "backend": None})  # failed before any decoder: no CPU recorded
    s = usage.summary(frames=40)
    assert s["decode_cpu_s"] == 1.0 and s["decode_cpu_s_per_frame"] == 0.025
    assert s["decoders"] == {"decord": 1, "none": 1, "pyav": 2}
    # meter a's reading of 10 samples is its latest (readings are cumulative): (800 + 600) / 20
    assert s["gpu_busy"] == {"fraction": 0.7, "samples": 20, "encoders": 2}


def test_usage_says_why_it_has_no_gpu_figure():
    assert EmbedUsage().summary(0)["gpu_busy"] == {"fraction": None, "why": "no video was embedded in this run"}
    cpu = EmbedUsage()
    cpu.add({"decode_cpu_s": 0.1, "backend": "pyav"})
    assert cpu.summary(3)["gpu_busy"] == {"fraction": None, "why": "the encoder ran on CPUs"}
    no_nvml = EmbedUsage()
    no_nvml.add({"backend": "pyav", "gpu_busy": {"why": "nvidia-ml-py is not installed where the encoder ran"}})
    assert no_nvml.summary(3)["gpu_busy"]["why"].startswith("nvidia-ml-py is not installed")


def test_gpu_meter_without_a_gpu_or_nvml_says_why():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    meter = GpuMeter()
    reading = meter.reading()
    assert set(reading) == {"why"} and ("nvidia-ml-py" in reading["why"] or "NVML" in reading["why"])
    meter.stop()
