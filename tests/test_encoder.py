"""FrameEncoder's feeding of the model: on CPU the embeddings of the path before issue 21 (one
normalisation on the host, then the model); on a GPU (CUDA-only tests, skipped elsewhere) pinned
double-buffered copies of uint8 frames, normalised there, give the CPU's embeddings."""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vidclust.config import DecodeConfig, SamplingConfig  # noqa: E402
from vidclust.embedding.decode import sample_frames  # noqa: E402
from vidclust.models.encoder import FrameEncoder, load_clip  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


def frames_of(corpus_manifest: Path, n: int = 37) -> np.ndarray:
    videos = sorted((corpus_manifest.parent / "videos").glob("*.mp4"))[:6]
    frames = np.concatenate([c.frames for p in videos for c in
                             sample_frames(str(p), SamplingConfig(image_size=224, frame_interval=5),
                                           DecodeConfig(backend="pyav"))])
    assert len(frames) >= n
    return frames[:n]  # not a multiple of the batch sizes below: a short last chunk


def old_path(tiny_clip, frames: np.ndarray) -> np.ndarray:
    """The embeddings as FrameEncoder made them before: float frames normalised on the host."""
    model, _ = load_clip(*tiny_clip, device="cpu")
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        z = model.encode_image(x)
    return torch.nn.functional.normalize(z.float(), dim=-1).numpy()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path: this process sees a GPU")
def test_cpu_embeddings_are_the_old_paths(tiny_clip, example_corpus):
    frames = frames_of(example_corpus)
    ref = old_path(tiny_clip, frames)
    enc = FrameEncoder(*tiny_clip, MEAN, STD, precision="fp32", batch_size=16)
    assert enc.device == "cpu" and enc.meter is None
    np.testing.assert_allclose(enc.embed(frames), ref, atol=1e-5)
    # through the Ray Data call, status rows (frame_index -1) among the frames
    index = np.arange(len(frames) + 1, dtype=np.int32)
    index[5] = -1
    batch = {"frame": np.concatenate([frames[:5], np.zeros((1, 224, 224, 3), np.uint8), frames[5:]]),
             "frame_index": index, "info": np.array([""] * 5 + ['{"status": "ok"}'] + [""] * len(frames[5:]),
                                                    dtype=object)}
    out = enc(batch)
    np.testing.assert_allclose(np.delete(out["embedding"], 5, axis=0), ref, atol=1e-5)
    assert not out["embedding"][5].any() and "gpu_busy" not in out["info"][5]


@cuda
@pytest.mark.parametrize("batch_size", [16, 64])
def test_cuda_feed_gives_the_cpu_embeddings(tiny_clip, example_corpus, batch_size):
    """Chunks of batch_size through two pinned slots (three chunks, the last short; or one
    short chunk), normalised on the GPU: the CPU's embeddings, also from two threads at once."""
    frames = frames_of(example_corpus)
    ref = old_path(tiny_clip, frames)
    enc = FrameEncoder(*tiny_clip, MEAN, STD, precision="fp32", batch_size=batch_size)
    assert enc.device == "cuda"
    z = enc.embed(frames)
    assert z.dtype == np.float32 and z.shape == ref.shape
    np.testing.assert_allclose(z, ref, atol=2e-3)
    assert (z * ref).sum(1).min() >= 0.9999
    feed = enc._local.feed
    assert all(s.dtype == torch.uint8 and s.is_cuda for s in feed.gpu)  # uint8 crosses the bus
    assert all(h.is_pinned() for h in feed.host)
    with ThreadPoolExecutor(2) as pool:  # the actor's two concurrent calls (encoder_stage)
        parts = list(pool.map(enc.embed, [frames[:20], frames[20:], frames[:20], frames[20:]]))
    np.testing.assert_allclose(np.concatenate(parts[:2]), z, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(parts[2:]), z, atol=1e-5)


@cuda
def test_cuda_fp16_feed_matches_cpu_and_meters_the_gpu(tiny_clip, example_corpus):
    frames = frames_of(example_corpus)
    ref = old_path(tiny_clip, frames)
    enc = FrameEncoder(*tiny_clip, MEAN, STD, precision="fp16", batch_size=16)
    assert (enc.embed(frames) * ref).sum(1).min() >= 0.999
    import time

    deadline = time.monotonic() + 10  # the meter samples every 0.1 s
    while "why" not in enc.meter.reading() and enc.meter.reading()["samples"] < 2 and time.monotonic() < deadline:
        enc.embed(frames)
    reading = enc.meter.reading()
    assert reading.get("samples", 0) >= 1 or "why" in reading, reading



def test_a_stage_of_two_concurrent_calls_runs_them_at_once(ray_local):
    """Stage.concurrent_calls (the GPU encoder's 2): Ray Data runs that many calls of one actor at once."""
    from vidclust.runtime import apply_stage, dataset_of_items
    from vidclust.stage import Stage

    class Pair:  # defined here: Ray's workers get it by value (they cannot import a test module)
        """Its calls wait (30 s at most) until two of them are inside at once."""

        def __init__(self):
            import threading

            self.barrier = threading.Barrier(2, timeout=30)

        def __call__(self, batch):
            import threading

            self.barrier.wait()  # BrokenBarrierError after 30 s if the calls come one at a time
            batch["thread"] = np.full(len(batch["x"]), threading.get_ident())
            return batch

    ds = apply_stage(dataset_of_items([{"x": i} for i in range(32)]),
                     Stage("pair", Pair, batch_size=4, num_cpus=0.5, actors=(1, 1), concurrent_calls=2))
    rows = ds.take_all()
    assert sorted(r["x"] for r in rows) == list(range(32)) and len({r["thread"] for r in rows}) == 2
