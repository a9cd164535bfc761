import numpy as np
import pytest

from vidclust.config import DecodeConfig, SamplingConfig
from vidclust.embedding.decode import DecodeResult, probe_video, sample_frames, sampled_indices
from vidclust.errors import DecodeError
from vidclust.models.encoder import FrameEncoder

from videos import write_broken, write_mixed


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_mixed(tmp_path_factory.mktemp("videos"))


def decode(path, backend="auto", **sampling):
    result = DecodeResult()
    chunks = list(sample_frames(str(path), SamplingConfig(**{"image_size": 224, **sampling}), DecodeConfig(backend=backend,
                                chunk_frames=4), result))
    idx = np.concatenate([c.frame_index for c in chunks])
    ts = np.concatenate([c.timestamp_s for c in chunks])
    frames = np.concatenate([c.frames for c in chunks])
    return idx, ts, frames, result


def test_sampled_indices():
    cfg = SamplingConfig
    assert sampled_indices(53, 25, cfg()).tolist() == [0, 10, 20, 30, 40, 50]
    assert sampled_indices(53, 25, cfg(fps=5)).tolist() == list(range(0, 53, 5))
    assert sampled_indices(53, 25, cfg(max_frames=3)).tolist() == [0, 20, 50]
    assert sampled_indices(0, 25, cfg()).tolist() == []


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_frames_sampled_from_a_known_video(videos, backend):
    idx, ts, frames, result = decode(videos["h264.mp4"], backend)
    assert idx.tolist() == [0, 10, 20, 30, 40, 50]
    np.testing.assert_allclose(ts, idx / 25.0, atol=1e-3)
    assert frames.shape == (6, 224, 224, 3) and frames.dtype == np.uint8
    assert result.backend == backend and result.n_frames_sampled == 6
    assert (result.info.width, result.info.height, result.info.fps) == (128, 96, 25.0)


@pytest.mark.parametrize("name", ["h264.mp4", "mpeg4.avi", "mjpeg.mkv", "vp8.webm", "mpeg1.mpg", "long.mp4"])
def test_every_codec_decodes(videos, name):
    idx, ts, frames, result = decode(videos[name])
    n = {"h264.mp4": 53, "mpeg4.avi": 80, "mjpeg.mkv": 31, "vp8.webm": 45, "mpeg1.mpg": 60, "long.mp4": 400}[name]
    assert idx.tolist() == list(range(0, n, 10))
    assert np.all(np.diff(ts) > 0) and ts[0] == pytest.approx(0, abs=1e-3)
    if name == "mpeg1.mpg":
        assert result.backend == "pyav"  # decord misreads MPEG-1 timestamps: PyAV took over


def test_fps_sampling_and_cap(videos):
    idx, ts, _, _ = decode(videos["long.mp4"], fps=2)
    assert idx.tolist() == list(range(0, 400, 12))[: len(idx)] or np.allclose(np.diff(ts), 0.5, atol=0.05)
    idx, _, _, _ = decode(videos["long.mp4"], max_frames=5)
    assert len(idx) == 5 and idx[0] == 0 and idx[-1] == 390


def test_broken_files_raise_decode_error_with_a_reason(tmp_path, videos):
    broken = write_broken(tmp_path, videos["h264.mp4"])
    for name, reason in broken.items():
        path, = tmp_path.glob(name + ".*")
        with pytest.raises(DecodeError, match=reason):
            decode(path)
    with pytest.raises(DecodeError, match="not found"):
        probe_video(str(tmp_path / "missing.mp4"))


def test_same_frame_same_embedding_from_decord_and_pyav(videos, tiny_clip):
    model_json, ckpt = tiny_clip
    _, _, a, _ = decode(videos["h264.mp4"], "decord")
    _, _, b, _ = decode(videos["h264.mp4"], "pyav")
    enc = FrameEncoder(model_json, ckpt, mean=(0.48145466, 0.4578275, 0.40821073),
                       std=(0.26862954, 0.26130258, 0.27577711))
    ea, eb = enc.embed(a), enc.embed(b)
    np.testing.assert_allclose(np.linalg.norm(ea, axis=1), 1.0, atol=1e-5)
    cos = (ea * eb).sum(axis=1)
    assert cos.min() > 0.999, cos
    # and different frames are told apart by the same measure
    assert (ea[0] * ea[-1]).sum() < cos.min()


def test_torchcodec_without_ffmpeg_is_skipped_by_auto(videos, tmp_path):
    """torchcodec imports without the system's FFmpeg and fails at its first VideoDecoder: `auto`
    must see that up front and decode with PyAV, saying why in the log. FFmpeg is hidden from a
    child process only (a private mount namespace, one library bound to /dev/null)."""
    import shutil
    import subprocess
    import sys

    lib = "/usr/lib/x86_64-linux-gnu/libavformat.so.59"
    if not (shutil.which("unshare") and __import__("os").path.exists(lib) and __import__("os").geteuid() == 0):
        pytest.skip("needs root, unshare and Debian's libavformat59 (installed by scripts/test.sh)")
    code = ("import sys; from vidclust.embedding.decode import backend_unavailable; from test_decode import decode; "
            "why = backend_unavailable('torchcodec'); idx, _, _, r = decode(sys.argv[1]); "
            "print(repr(why)); print(r.backend, r.warning, idx.tolist())")
    script = f"mount --bind /dev/null {lib} && exec {sys.executable} -c \"$0\" \"$1\""
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, code, str(videos["h264.mp4"])],
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": __import__("os").pathsep.join(sys.path)})
    if "mount:" in proc.stderr:
        pytest.skip(f"cannot mount here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    why, decoded = proc.stdout.splitlines()[-2:]
    assert why.startswith("'torchcodec cannot be loaded: Could not load libtorchcodec")
    assert decoded == "pyav None [0, 10, 20, 30, 40, 50]"
