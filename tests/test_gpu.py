"""The GPU path, on a real GPU (skipped where torch sees none): run by bench/bench_gpu.py on a lent
GPU machine. A GPU run's outputs have the CPU run's schema and the same embeddings (to fp16's
precision), and fp16/bf16 autocast agree with fp32 on real video frames."""
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

from vidclust.config import DecodeConfig, SamplingConfig, load_config  # noqa: E402
from vidclust.embedding.decode import sample_frames  # noqa: E402
from vidclust.embedding.run import run_embed  # noqa: E402
from vidclust.models.encoder import FrameEncoder  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def frames_of(corpus_manifest: Path) -> np.ndarray:
    videos = sorted((corpus_manifest.parent / "videos").glob("*.mp4"))[:4]
    return np.concatenate([c.frames for p in videos for c in
                           sample_frames(str(p), SamplingConfig(image_size=224), DecodeConfig(backend="pyav"))])


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_matches_fp32_on_real_frames(tiny_clip, example_corpus, precision):
    frames = frames_of(example_corpus)
    ref = FrameEncoder(*tiny_clip, MEAN, STD, precision="fp32").embed(frames)
    enc = FrameEncoder(*tiny_clip, MEAN, STD, precision=precision)
    assert enc.device == "cuda" and enc.precision == precision
    cos = (enc.embed(frames) * ref).sum(1)
    assert cos.min() >= 0.999, (precision, cos.min())


def test_compiled_encoder_pads_to_one_shape_and_matches(tiny_clip, example_corpus):
    frames = frames_of(example_corpus)[:37]  # not a multiple of the batch: the last chunk is padded
    ref = FrameEncoder(*tiny_clip, MEAN, STD, precision="fp16").embed(frames)
    enc = FrameEncoder(*tiny_clip, MEAN, STD, precision="fp16", compile=True, batch_size=16)
    z = enc.embed(frames)
    assert z.shape == ref.shape and (z * ref).sum(1).min() >= 0.999


def _embed(tiny_clip, manifest, out, device):
    cfg = load_config(None, [f"embed.encoder.model={tiny_clip[0]}", f"embed.encoder.pretrained={tiny_clip[1]}",
                             "embed.encoder.batch_size=16", f"embed.encoder.device={device}"])
    summary = run_embed(cfg, str(manifest), str(out), show_progress=False)
    assert summary["failed"] == 0
    return summary


def _frames_table(out: Path):
    from vidclust.store.layout import OutputLayout

    return pq.ParquetDataset(OutputLayout.open(str(out)).frame_files()).read()


def test_gpu_run_has_the_cpu_runs_schema_and_embeddings(ray_local, tiny_clip, example_corpus, tmp_path):
    import ray

    assert ray.cluster_resources().get("GPU", 0) >= 1
    gpu = _embed(tiny_clip, example_corpus, tmp_path / "gpu", "gpu")
    cpu = _embed(tiny_clip, example_corpus, tmp_path / "cpu", "cpu")
    assert gpu["frames"] == cpu["frames"] > 0
    for name in ("videos.parquet",):
        assert pq.read_schema(tmp_path / "gpu" / name).remove_metadata() == \
            pq.read_schema(tmp_path / "cpu" / name).remove_metadata()
    g, c = _frames_table(tmp_path / "gpu"), _frames_table(tmp_path / "cpu")
    assert g.schema.remove_metadata() == c.schema.remove_metadata()
    assert set((g.schema.metadata or {})) == set((c.schema.metadata or {}))

    def by_key(t):
        keys = [f"{v}/{i}" for v, i in zip(t["video_id"].to_pylist(), t["frame_index"].to_pylist())]
        return dict(zip(keys, np.asarray(t["embedding"].to_pylist(), np.float32)))

    gk, ck = by_key(g), by_key(c)
    assert gk.keys() == ck.keys()
    cos = np.array([float(gk[k] @ ck[k]) for k in gk])
    assert cos.min() >= 0.999, cos.min()
