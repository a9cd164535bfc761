"""Issue 10: every backend, every sampling mode, on a video whose keyframes are known."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vidclust.embedding import decode as decode_mod
from vidclust.config import Config, DecodeConfig, SamplingConfig
from vidclust.embedding.decode import AUTO_ORDER, DecodeResult, backend_unavailable, decode_cost, sample_frames, scan_packets
from vidclust.errors import DecodeError, VidclustError

from videos import write_broken, write_truncated

BACKENDS = ["torchcodec", "pyav", "decord"]
N, FPS, GOP = 100, 25, 20  # 4 s, a keyframe every 20 frames, B-frames


def need(backend: str) -> None:
    if backend_unavailable(backend):
        pytest.skip(backend_unavailable(backend))


def write_gop_video(path, n=N, gop=GOP, size=(96, 128)):
    """H.264 (x264, B-frames) with a keyframe every `gop` frames; frame t shows t in its colours."""
    import av

    h, w = size
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=Fraction(FPS))
        s.height, s.width, s.pix_fmt = h, w, "yuv420p"
        s.options = {"preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2"}
        yy, xx = np.mgrid[0:h, 0:w]
        for t in range(n):
            img = np.stack([(xx * 2 + t * 7) % 256, (yy * 2 + t * 3) % 256,
                            np.full_like(xx, (t * 37) % 256)], -1).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory):
    return write_gop_video(tmp_path_factory.mktemp("gop") / "gop.mp4")


def run(path, backend="auto", device="cpu", **sampling):
    result = DecodeResult()
    chunks = list(sample_frames(str(path), SamplingConfig(**{"image_size": 224, **sampling}),
                                DecodeConfig(backend=backend, device=device, chunk_frames=4), result))
    idx = np.concatenate([c.frame_index for c in chunks])
    ts = np.concatenate([c.timestamp_s for c in chunks])
    frames = np.concatenate([c.frames for c in chunks])
    return idx, ts, frames, result


# mode -> (sampling, frame indices, frames decoded). torchcodec and decord seek to a target's
# keyframe when it lies past the frame they are at (every 10th: 0..10, 20..30, ...: 5 x 11);
# PyAV decodes straight through unless samples lie SEEK_MIN_GAP apart (PYAV_DECODED), then seeks
MODES = {
    "every 10th": ({}, list(range(0, 91, 10)), 55),
    "keyframes": ({"keyframes": True}, [0, 20, 40, 60, 80], 5),
    "keyframes, max 3": ({"keyframes": True, "max_frames": 3}, [0, 40, 80], 3),
    "fps=1": ({"fps": 1.0}, [0, 25, 50, 75], 1 + 6 + 11 + 16),
    "max_frames=3": ({"max_frames": 3}, [0, 40, 90], 1 + 1 + 11),  # seeks to 40, then to 80
}
PYAV_DECODED = {"every 10th": 91}


def test_the_video_has_the_keyframes_it_was_made_with(gop_video):
    scan = scan_packets(str(gop_video))
    assert len(scan.pts) == N and scan.keyframes.tolist() == list(range(0, N, GOP))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", list(MODES))
def test_indices_timestamps_and_frames_decoded_per_mode(gop_video, backend, mode):
    need(backend)
    sampling, want, decoded = MODES[mode]
    idx, ts, frames, result = run(gop_video, backend, **sampling)
    assert idx.tolist() == want
    np.testing.assert_allclose(ts, np.asarray(want) / FPS, atol=1e-3)
    assert frames.shape == (len(want), 224, 224, 3)
    assert result.backend == backend and result.n_frames_sampled == len(want)
    assert result.n_frames_decoded == (PYAV_DECODED.get(mode, decoded) if backend == "pyav" else decoded)
    assert result.warning is None
    if sampling.get("keyframes"):
        assert result.n_frames_decoded / result.n_frames_sampled <= 1.5


@pytest.mark.parametrize("mode", list(MODES))
def test_every_backend_gives_the_same_frames(gop_video, mode):
    backends = [b for b in BACKENDS if not backend_unavailable(b)]
    ref = run(gop_video, "pyav", **MODES[mode][0])[2].astype(np.float32)
    for backend in backends:
        frames = run(gop_video, backend, **MODES[mode][0])[2].astype(np.float32)
        mse = float(((frames - ref) ** 2).mean())
        assert mse < 50, (backend, mse)  # resizers differ a little (< 2 levels on average)
    other = run(gop_video, "pyav", frame_interval=1, max_frames=N)[2][1::10].astype(np.float32)
    assert ((other[: len(ref)] - ref) ** 2).mean() > 1000  # one frame later: far off


def test_same_embedding_from_every_backend(gop_video, tiny_clip):
    from vidclust.models.encoder import FrameEncoder

    enc = FrameEncoder(*tiny_clip, mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
    ref = enc.embed(run(gop_video, "pyav")[2])
    for backend in [b for b in BACKENDS if not backend_unavailable(b)]:
        cos = (enc.embed(run(gop_video, backend)[2]) * ref).sum(axis=1)
        assert cos.min() > 0.999, (backend, cos)


@pytest.mark.parametrize("backend", BACKENDS)
def test_broken_files_fail_with_a_reason_under_every_backend(tmp_path, gop_video, backend):
    need(backend)
    broken = write_broken(tmp_path, gop_video)
    for name, reason in broken.items():
        path, = tmp_path.glob(name + ".*")
        with pytest.raises(DecodeError) as err:
            run(path, backend)
        text = str(err.value)
        # the container is read first (the same reason for all); past it, the backend says why
        assert reason in text or (name == "head" and text.startswith(f"{backend}: ")), text


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sampling", [{}, {"keyframes": True}])
def test_truncated_files_keep_their_frames_with_a_warning(tmp_path, backend, sampling):
    need(backend)
    expected = write_truncated(tmp_path)
    for name, start in expected.items():
        path, = tmp_path.glob(name + ".*")
        idx, _, _, result = run(path, backend, **sampling)
        assert len(idx) >= 1 and result.warning and result.warning.startswith("truncated or corrupt"), \
            result.warning


def test_auto_goes_on_without_a_backend_that_cannot_load(gop_video, monkeypatch):
    first, second = AUTO_ORDER[:2]
    need(second)
    monkeypatch.setitem(decode_mod._UNAVAILABLE, first, f"{first} cannot be loaded: no FFmpeg")
    idx, _, _, result = run(gop_video, "auto")
    assert result.backend == second and len(idx) == 10
    with pytest.raises(DecodeError, match="no FFmpeg"):
        run(gop_video, first)


# decode.device=cuda|auto (NVDEC through PyAV, torchcodec's CUDA path gone): tests/test_nvdec.py


def test_decode_cost():
    keys = [0, 20, 40]
    assert decode_cost([0, 10, 20, 30], [0, 40]) == (31, 30)  # straight through
    assert decode_cost([0, 10, 20, 30], keys) == (22, 30)  # 0..10, then from keyframe 20
    assert decode_cost([0, 45], keys) == (1 + 6, 45)  # seeks to 40
    assert decode_cost([20, 40], keys) == (2, 40)  # keyframes: one each
    assert decode_cost([21, 22], keys, pos=21) == (1, 22)  # goes on from where it is


def test_config_checks_and_signature():
    from vidclust.embedding.run import embedding_signature
    from vidclust.models.encoder import EncoderSpec

    def cfg(**kw):
        c = Config()
        for k, v in kw.items():
            section, name = k.split("__")
            setattr(getattr(c.embed, section), name, v)
        return c

    with pytest.raises(VidclustError, match="exclude"):
        cfg(sampling__keyframes=True, sampling__fps=2.0).validate()
    with pytest.raises(VidclustError, match="torchcodec"):
        cfg(decode__backend="opencv").validate()
    with pytest.raises(VidclustError, match="device"):
        cfg(decode__device="gpu").validate()
    cfg(decode__backend="torchcodec", decode__device="cuda", decode__threads=0).validate()

    spec = EncoderSpec(model="m", weights="none", embed_dim=8, image_size=224, mean=(0.5,) * 3,
                       std=(0.5,) * 3, interpolation="bicubic")
    plain = embedding_signature(spec, Config().embed)["sampling"]
    assert "keyframes" not in plain and plain["frame_interval"] == 10  # as before the setting
    keyed = embedding_signature(spec, cfg(sampling__keyframes=True).embed)["sampling"]
    assert keyed["keyframes"] is True and keyed["frame_interval"] is None
