"""NVDEC on a real GPU (skipped where torch sees none, or the driver's libnvcuvid is missing): the
frames PyAV's CUDA hwaccel decodes, converted on the GPU, against the CPU's, and an embed run whose
GPU actors decode the H.264 videos themselves. For a lent GPU machine (issue 21)."""
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

from vidclust.config import DecodeConfig, SamplingConfig, load_config  # noqa: E402
from vidclust.embedding.decode import DecodeResult, sample_frames  # noqa: E402
from vidclust.embedding.run import run_embed  # noqa: E402
from vidclust.embedding.nvdec import BACKEND, environment  # noqa: E402

from videos import write_coded, write_nvdec_kinds  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def nvdec_here():
    if environment().nvcuvid:
        pytest.skip(environment().nvcuvid)


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> Path:
    return write_coded(tmp_path_factory.mktemp("nvdec") / "h264_360p.mp4", "libx264", "yuv420p", 120, size=(360, 640))


def _decode(path, sampling, device, gpu_frames):
    result = DecodeResult()
    chunks = list(sample_frames(str(path), sampling, DecodeConfig(device=device, chunk_frames=8), result,
                                gpu_frames=gpu_frames))
    return chunks, result


@pytest.mark.parametrize("sampling", [{}, {"keyframes": True}, {"fps": 2.0}], ids=["every 10th", "keyframes", "fps=2"])
def test_nvdec_gives_the_cpus_frames(h264, sampling):
    sampling = SamplingConfig(image_size=224, **sampling)
    gpu, gpu_result = _decode(h264, sampling, "cuda", gpu_frames=True)
    cpu, cpu_result = _decode(h264, sampling, "cpu", gpu_frames=False)
    assert gpu_result.backend == BACKEND and gpu_result.note is None, gpu_result.note
    assert all(c.frames.is_cuda for c in gpu)  # never through host memory
    assert [c.frame_index.tolist() for c in gpu] == [c.frame_index.tolist() for c in cpu]
    np.testing.assert_allclose(np.concatenate([c.timestamp_s for c in gpu]),
                               np.concatenate([c.timestamp_s for c in cpu]), atol=1e-4)
    assert gpu_result.n_frames_decoded == cpu_result.n_frames_decoded
    d = np.abs(torch.cat([c.frames for c in gpu]).cpu().numpy().astype(np.int16)
               - np.concatenate([c.frames for c in cpu]).astype(np.int16))
    assert d.mean() < 3 and np.percentile(d, 95) <= 6, (d.mean(), np.percentile(d, 95))


def test_a_codec_nvdec_refuses_decodes_on_the_cpu(tmp_path):
    kinds = write_nvdec_kinds(tmp_path / "src")
    for vid in ("av1", "mjpeg", "h264_10bit"):
        chunks, result = _decode(kinds[vid], SamplingConfig(image_size=32), "cuda", gpu_frames=True)
        assert result.backend == "pyav" and "not NVDEC-capable" in result.note and len(chunks)


def test_embed_decodes_h264_on_the_gpu_actors(ray_local, tiny_clip, tmp_path):
    write_nvdec_kinds(tmp_path / "src")

    def embed(out, device):
        cfg = load_config(None, [f"embed.encoder.model={tiny_clip[0]}", f"embed.encoder.pretrained={tiny_clip[1]}",
                                 "embed.encoder.batch_size=16", "embed.encoder.device=gpu",
                                 f"embed.decode.device={device}", "embed.decode.nvdec_share=1.0"])
        summary = run_embed(cfg, str(tmp_path / "src"), str(out), show_progress=False)
        assert summary["failed"] == 0
        return summary, {r["video_id"]: r for r in pq.read_table(out / "videos.parquet").to_pylist()}

    summary, videos = embed(tmp_path / "gpu", "cuda")
    assert {v: r["backend"] for v, r in videos.items()} == \
        {"h264": BACKEND, "av1": "pyav", "mjpeg": "pyav", "h264_10bit": "pyav"}
    assert sorted(summary["decoded_on_cpu_not_nvdec"].values()) == [1, 1, 1]
    _, cpu_videos = embed(tmp_path / "cpu", "cpu")
    assert {v: r["n_frames_sampled"] for v, r in videos.items()} == {v: r["n_frames_sampled"] for v, r in cpu_videos.items()}

    def h264_embeddings(out):
        t = pq.ParquetDataset(sorted(str(p) for p in (out / "frames").glob("*.parquet"))).read()
        rows = sorted((i, e) for v, i, e in zip(t["video_id"].to_pylist(), t["frame_index"].to_pylist(),
                                                t["embedding"].to_pylist()) if v == "h264")
        return np.asarray([e for _, e in rows], np.float32)

    cos = (h264_embeddings(tmp_path / "gpu") * h264_embeddings(tmp_path / "cpu")).sum(1)
    assert cos.min() >= 0.99, cos.min()
