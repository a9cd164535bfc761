"""Issue 21: NVDEC through PyAV's CUDA hwaccel, as far as a machine without a GPU decides it: which
videos go to NVDEC and why the others do not, the NV12 -> RGB conversion against PyAV's own, the
NVDEC code path's sampling on NV12 frames, and the placement (decoding inside the GPU encoder
actors: no task waits for a share of a GPU). tests/test_gpu_nvdec.py decodes on a real GPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from vidclust.embedding import nvdec as nvdec_mod
from vidclust.config import DecodeConfig, EmbedConfig, SamplingConfig
from vidclust.embedding.decode import DecodeResult, _pyav_chunks, probe_video, sample_frames
from vidclust.embedding.run import DecodingEncoder, decode_stage, encoder_stage
from vidclust.models.encoder import FrameEncoder
from vidclust.embedding.nvdec import (BACKEND, NvdecEnvironment, NvdecFrames, environment, nv12_to_rgb, nvdec_refusal,
                            takes_share)

from test_decode_modes import MODES, write_gop_video
from videos import write_coded, write_nvdec_kinds

ROOT = Path(__file__).resolve().parents[1]
HERE = NvdecEnvironment()  # "a CUDA device visible, libnvcuvid loads": facts injected, nothing mocked
REASONS = {  # video id -> why NVDEC does not take it, on a GPU node that has NVDEC
    "h264": None,
    "av1": "codec av1 is not NVDEC-capable",
    "mjpeg": "codec mjpeg is not NVDEC-capable",
    "h264_10bit": "h264 yuv420p10le is not NVDEC-capable (8-bit 4:2:0 only)",
}
NO_CUDA = "no CUDA device visible"


@pytest.fixture(scope="module")
def kinds(tmp_path_factory) -> dict[str, Path]:
    return write_nvdec_kinds(tmp_path_factory.mktemp("kinds") / "src")


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory):
    return write_gop_video(tmp_path_factory.mktemp("gop") / "gop.mp4")


@pytest.fixture(scope="module")
def big_frame(tmp_path_factory):
    """A decoded 640x360 H.264 frame (yuv420p) with edges and smooth colour."""
    path = write_coded(tmp_path_factory.mktemp("big") / "big.mp4", "libx264", "yuv420p", 3, size=(360, 640))
    with av.open(str(path)) as c:
        return next(iter(c.decode(c.streams.video[0])))


# ---------------------------------------------------------------------------------------------
# the decision, from facts


def test_the_decision_from_probe_facts_and_the_process(kinds):
    for vid, why in REASONS.items():
        info = probe_video(str(kinds[vid]))
        assert nvdec_refusal(info, HERE) == why, vid
        # the video's facts say the most: a codec NVDEC refuses is named on any node
        assert nvdec_refusal(info, NvdecEnvironment(cuda=NO_CUDA)) == (why or NO_CUDA)
    h264 = probe_video(str(kinds["h264"]))
    assert h264.codec_id == "h264" and h264.pix_fmt == "yuv420p"
    assert probe_video(str(kinds["av1"])).codec_id == "av1"  # whichever decoder PyAV picks (libdav1d)
    no_nvcuvid = NvdecEnvironment(nvcuvid="no libnvcuvid.so.1 (the driver's video decoder; containers need "
                                          "NVIDIA_DRIVER_CAPABILITIES=video)")
    assert nvdec_refusal(h264, no_nvcuvid) == no_nvcuvid.nvcuvid
    # profiles NVDEC refuses, even where the pixel format would pass
    assert nvdec_refusal(type(h264)(codec="h264", codec_id="h264", pix_fmt="yuv420p", profile="High 4:2:2"), HERE) \
        == "h264 profile High 4:2:2 is not NVDEC-capable"
    assert nvdec_refusal(type(h264)(codec="hevc", codec_id="hevc", pix_fmt="yuv420p", profile="Main"), HERE) is None


def test_this_machine_has_no_cuda_and_says_so():
    if torch.cuda.is_available():
        pytest.skip("a real GPU")
    assert environment().cuda == NO_CUDA


def test_the_share_is_stable_and_near_its_value():
    ids = [f"video-{i}" for i in range(2000)]
    assert all(takes_share(v, 1.0) for v in ids) and not any(takes_share(v, 0.0) for v in ids)
    taken = [v for v in ids if takes_share(v, 0.6)]
    assert 0.55 < len(taken) / len(ids) < 0.65
    assert taken == [v for v in ids if takes_share(v, 0.6)]  # a re-run sends each video the same way


# ---------------------------------------------------------------------------------------------
# frames: NV12 -> RGB in torch against PyAV's own conversion


def _nv12_planes(frame):
    nv12 = frame.reformat(format="nv12")
    return torch.from_dlpack(nv12.planes[0].__dlpack__()), torch.from_dlpack(nv12.planes[1].__dlpack__())


def test_nv12_to_rgb_matches_pyavs_rgb24_on_a_real_frame(big_frame):
    y, uv = _nv12_planes(big_frame)
    assert y.shape == (360, 640) and uv.shape == (180, 320, 2)
    ours = nv12_to_rgb(y, uv, colorspace=big_frame.colorspace)[0].numpy().astype(np.int16)
    ref = big_frame.to_ndarray(format="rgb24").astype(np.int16)
    d = np.abs(ours - ref)
    assert d.mean() < 1.5 and d.max() <= 3, (d.mean(), d.max())  # rounding: swscale's fixed point
    bt709 = nv12_to_rgb(y, uv, colorspace=1)[0].numpy().astype(np.int16)
    assert np.abs(bt709 - ref).mean() > 3  # the matrix matters: the check could fail


def test_resized_then_converted_is_close_to_pyavs_resize(big_frame):
    """The GPU path's order: each plane resized to 224x224 (bilinear, antialias), then converted;
    PyAV's CPU path (vidclust's `_Chunker`) scales with swscale's bilinear filter."""
    y, uv = _nv12_planes(big_frame)
    ours = nv12_to_rgb(y, uv, 224, big_frame.colorspace)[0].numpy().astype(np.int16)
    ref = big_frame.to_ndarray(width=224, height=224, format="rgb24", interpolation="BILINEAR").astype(np.int16)
    d = np.abs(ours - ref)
    # the two bilinear filters differ a little, most at the sawtooth's sharp edges (the last 1-2%)
    assert ours.shape == (224, 224, 3) and d.mean() < 3 and np.percentile(d, 95) <= 5, (d.mean(), np.percentile(d, 95))
    swapped = nv12_to_rgb(y, uv.flip(-1), 224, big_frame.colorspace)[0].numpy().astype(np.int16)
    assert np.abs(swapped - ref).mean() > 10  # Cb and Cr swapped: far off


class HostNv12(NvdecFrames):
    """NVDEC's part played by the CPU: PyAV opens the file without the hwaccel and the frames
    reach NvdecFrames.rgb as NV12 in host memory (their planes through DLPack, as NVDEC's are).
    Everything else is the NVDEC code path: vidclust's PyAV loop, the chunker, the conversion."""

    def open(self, path):
        return av.open(path)

    def rgb(self, frame, size):
        return super().rgb(frame.reformat(format="nv12"), size)


@pytest.mark.parametrize("mode", list(MODES))
def test_the_nvdec_code_path_samples_as_the_cpu_path_does(gop_video, mode):
    sampling = SamplingConfig(image_size=224, **MODES[mode][0])
    decode = DecodeConfig(chunk_frames=4)

    def frames(nvdec):
        result = DecodeResult(info=probe_video(str(gop_video)))
        chunks = list(_pyav_chunks(str(gop_video), sampling, decode, result, after=-1, nvdec=nvdec))
        return chunks, result

    gpu, gpu_result = frames(HostNv12())
    cpu, cpu_result = frames(None)
    assert all(isinstance(c.frames, torch.Tensor) for c in gpu)
    assert [c.frame_index.tolist() for c in gpu] == [c.frame_index.tolist() for c in cpu]
    assert np.concatenate([c.timestamp_s for c in gpu]).tolist() == np.concatenate([c.timestamp_s for c in cpu]).tolist()
    assert gpu_result.n_frames_decoded == cpu_result.n_frames_decoded
    d = np.abs(torch.cat([c.frames for c in gpu]).numpy().astype(np.int16) - np.concatenate([c.frames for c in cpu]))
    assert d.mean() < 3, d.mean()


def test_the_encoder_embeds_torch_frames_as_numpy_ones(gop_video, tiny_clip):
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    frames = np.concatenate([c.frames for c in sample_frames(str(gop_video), SamplingConfig(image_size=224),
                                                             DecodeConfig(device="cpu"))])
    enc = FrameEncoder(*tiny_clip, mean, std)
    assert np.allclose(enc.embed(torch.from_numpy(frames)), enc.embed(frames), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# decode.device=cuda|auto on a machine without a GPU: every video on the CPU, each with its reason


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_each_video_decodes_on_the_cpu_with_its_reason(kinds, device):
    for vid, path in kinds.items():
        result = DecodeResult()
        n = sum(len(c.frame_index) for c in sample_frames(str(path), SamplingConfig(image_size=32),
                                                          DecodeConfig(device=device), result))
        assert n == 3 and result.backend == "pyav", vid
        assert result.note == (REASONS[vid] or environment().cuda or NO_CUDA), vid
    result = DecodeResult()
    list(sample_frames(str(kinds["h264"]), SamplingConfig(image_size=32), DecodeConfig(device="cpu"), result))
    assert result.note is None and result.backend == "pyav"  # asked for: no reason to give


def test_an_open_the_hwaccel_refuses_falls_back_with_its_reason(kinds, monkeypatch):
    """The process claims CUDA and libnvcuvid (injected facts): PyAV's real hwaccel then fails to
    open on this machine (no GPU: av.error.PermissionError) and the CPU decodes the video."""
    if torch.cuda.is_available():
        pytest.skip("a real GPU: tests/test_gpu_nvdec.py")
    monkeypatch.setattr(nvdec_mod, "_ENVIRONMENT", HERE)
    for sampling in (SamplingConfig(image_size=32), SamplingConfig(image_size=32, keyframes=True)):
        result = DecodeResult()
        chunks = list(sample_frames(str(kinds["h264"]), sampling, DecodeConfig(device="cuda"), result, gpu_frames=True))
        assert sum(len(c.frame_index) for c in chunks) >= 1 and result.backend == "pyav"
        assert result.note == "NVDEC failed: cannot open on NVDEC: av.error.PermissionError: [Errno 1] " \
                              "Operation not permitted"
    result = DecodeResult()
    list(sample_frames(str(kinds["mjpeg"]), SamplingConfig(image_size=32), DecodeConfig(device="cuda"), result,
                       gpu_frames=True))
    assert result.note == REASONS["mjpeg"]  # never tried on NVDEC
    result = DecodeResult()  # a caller that wants NumPy frames (a CPU decode task) never gets NVDEC's
    chunks = list(sample_frames(str(kinds["h264"]), SamplingConfig(image_size=32), DecodeConfig(device="cuda"), result))
    assert isinstance(chunks[0].frames, np.ndarray) and result.backend == "pyav"
    assert result.note == "frames wanted in host memory (NVDEC decodes inside the GPU encoder actors)"


def test_a_node_without_libnvcuvid_decodes_on_the_cpu_with_the_reason(kinds, monkeypatch):
    """A GPU node whose container lacks the driver's video library (facts injected): the video is
    never tried on NVDEC, and says why."""
    missing = nvdec_mod._nvcuvid_missing() or "no libnvcuvid.so.1 (the driver's video decoder; containers need " \
        "NVIDIA_DRIVER_CAPABILITIES=video)"
    monkeypatch.setattr(nvdec_mod, "_ENVIRONMENT", NvdecEnvironment(nvcuvid=missing))
    result = DecodeResult()
    chunks = list(sample_frames(str(kinds["h264"]), SamplingConfig(image_size=32), DecodeConfig(device="auto"), result,
                                gpu_frames=True))
    assert isinstance(chunks[0].frames, np.ndarray) and result.backend == "pyav" and result.note == missing
    assert missing.startswith("no libnvcuvid.so.1")


# ---------------------------------------------------------------------------------------------
# placement: NVDEC inside the GPU encoder actors, CPU decode tasks beside them


def test_no_decode_task_asks_for_a_gpu_and_the_gpu_actors_decode():
    """The 0.25-GPU decode tasks of before waited for ever beside whole-GPU encoder actors (a
    1-GPU node: the actor holds it). Now the tasks take CPUs only, whatever decode.device says."""
    gpus = {"CPU": 16, "GPU": 1}
    for device in ("cuda", "auto", "cpu"):
        cfg = EmbedConfig()
        cfg.decode.device = device
        assert decode_stage(cfg, gpus).num_gpus == 0
        enc = encoder_stage(cfg, gpus)
        assert enc.num_gpus == 1 and (enc.fn is DecodingEncoder) == (device != "cpu")
        assert decode_stage(cfg, gpus).kwargs["nvdec"] == (device != "cpu")
        assert decode_stage(cfg, {"CPU": 16}).kwargs["nvdec"] is False  # no GPU encoder: each task decides
    cfg = EmbedConfig()
    cfg.decode.nvdec_sessions = 12
    assert encoder_stage(cfg, gpus).kwargs["sessions"] == 12


def test_the_decoding_encoder_embeds_the_videos_handed_on_as_the_cpu_path_does(kinds, gop_video, tiny_clip):
    """Without Ray: decode tasks' rows (nvdec=True) into the GPU actor's class. The H.264 videos
    come as DEFERRED rows and are decoded by its threads (on its CPU here: no CUDA), frames of
    several videos embedded together in batch_size batches; the other videos' frames pass as
    FrameEncoder's. Every video ends with its status row and the embeddings are the CPU path's."""
    from vidclust.embedding.run import DEFERRED, decode_videos, resolve_embed_config

    cfg = EmbedConfig()
    cfg.encoder.model, cfg.encoder.pretrained = tiny_clip
    cfg.decode.nvdec_share, cfg.decode.chunk_frames = 1.0, 4
    _, cfg = resolve_embed_config(cfg)
    paths = {**{v: str(p) for v, p in kinds.items()}, "gop": str(gop_video)}
    rows = list(decode_videos({"video_id": np.array(list(paths), dtype=object),
                               "path": np.array(list(paths.values()), dtype=object)}, cfg, nvdec=True))
    batch = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    assert sorted(batch["video_id"][batch["frame_index"] == DEFERRED]) == ["gop", "h264"]
    args = (*tiny_clip, cfg.preprocess.mean, cfg.preprocess.std)
    out = DecodingEncoder(*args, embed_cfg=cfg, sessions=2, batch_size=8)(batch)
    status = {v: json.loads(i) for v, i, f in zip(out["video_id"], out["info"], out["frame_index"]) if f < 0}
    assert {v: (s["status"], s["backend"], s["n_emitted"]) for v, s in status.items()} == \
        {**{v: ("ok", "pyav", 3) for v in kinds}, "gop": ("ok", "pyav", 10)}
    assert status["h264"]["decode_note"] == f"{environment().cuda} (in the GPU encoder actor)"
    assert status["av1"]["decode_note"] == REASONS["av1"]
    plain = FrameEncoder(*args)
    for vid, path in paths.items():
        mine = out["frame_index"] >= 0
        mine &= out["video_id"] == vid
        order = np.argsort(out["frame_index"][mine])
        frames = np.concatenate([c.frames for c in sample_frames(path, cfg.sampling, DecodeConfig(device="cpu"))])
        assert np.allclose(out["embedding"][mine][order], plain.embed(frames), atol=1e-5), vid


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "RAY_ADDRESS": "local", **(env or {})}
    return subprocess.run([sys.executable, "-m", "vidclust.cli", *args], env=env, capture_output=True, text=True,
                          timeout=400, cwd=ROOT)


def _videos(out: Path) -> dict[str, dict]:
    return {r["video_id"]: r for r in pq.read_table(out / "videos.parquet").to_pylist()}


def test_embed_with_device_cuda_without_a_gpu_decodes_every_video_on_the_cpu(kinds, tiny_clip, tmp_path):
    """`vidclust embed` as a user runs it, decode.device=cuda on a machine without a GPU: every
    video is decoded by PyAV on the CPU, videos.parquet says so, run.json and the log say why."""
    out = tmp_path / "out"
    proc = _cli("embed", str(kinds["h264"].parent), str(out), "--model", tiny_clip[0], "--pretrained", tiny_clip[1],
                "--set", "embed.encoder.batch_size=8",
                "--set", "embed.decode.device=cuda", "--set", "embed.sampling.frame_interval=10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    videos = _videos(out)
    assert {v: (r["status"], r["backend"]) for v, r in videos.items()} == {v: ("ok", "pyav") for v in REASONS}
    notes = json.loads((out / "run.json").read_text())["stages"]["embed"]["decoded_on_cpu_not_nvdec"]
    want = {}
    for vid, why in REASONS.items():
        want[why or NO_CUDA] = want.get(why or NO_CUDA, 0) + 1
    assert notes == want
    info = [line.split(" vidclust INFO: ", 1)[1] for line in proc.stderr.splitlines() if " vidclust INFO: " in line]
    assert [line for line in info if line.startswith("decoded on the CPU, not NVDEC")] == [
        f"decoded on the CPU, not NVDEC: {n} video(s): {why}" for why, n in sorted(want.items())], proc.stderr[-3000:]


_LOGICAL_GPU_RUN = """
import json, sys, ray, vidclust
ray.init(address="local", num_cpus=3, num_gpus=1, include_dashboard=False, log_to_driver=False)
summary = vidclust.embed(sys.argv[1], sys.argv[2], **{"embed.encoder.model": sys.argv[3],
    "embed.encoder.pretrained": sys.argv[4], "embed.encoder.batch_size": 8, "embed.decode.device": "auto",
    "embed.decode.nvdec_share": 1.0, "embed.decode.nvdec_sessions": 2})
print(json.dumps(summary["decoded_on_cpu_not_nvdec"]))
"""


def test_a_one_gpu_node_schedules_the_decoding_encoder_and_it_decodes(kinds, tiny_clip, tmp_path):
    """A Ray node with one logical GPU (no hardware): the encoder actor takes the whole GPU, the
    decode tasks their CPUs, and the run ends: the H.264 video goes to the actor undecoded, which
    (seeing no CUDA device) decodes it on its own CPU with the reason; the others decode in the
    CPU tasks with theirs."""
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", _LOGICAL_GPU_RUN, str(kinds["h264"].parent), str(out), *tiny_clip],
                          env=env, capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert notes == {why: 1 for why in REASONS.values() if why} | {f"{NO_CUDA} (in the GPU encoder actor)": 1}
    videos = _videos(out)
    assert {v: (r["status"], r["backend"], r["n_frames_sampled"]) for v, r in videos.items()} == \
        {v: ("ok", "pyav", 3) for v in REASONS}
    assert BACKEND == "pyav-nvdec"  # what the backend column says where NVDEC made the frames (GPU test)
