"""Issue 19, decoding and configuration: a variable-frame-rate file (item 4), a rotated phone video
(item 15) and configuration mistakes (item 9). Real files written with PyAV, real CLI processes."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from vidclust.config import DecodeConfig, SamplingConfig
from vidclust.embedding.decode import DecodeResult, backend_unavailable, sample_frames
from vidclust.errors import DecodeError
from vidclust.store.layout import OutputLayout

from test_faults import cli, model_args, videos_of

BACKENDS = ["pyav", "torchcodec", "decord"]  # every backend `auto` may pick


def write_vfr_mkv(path: Path, n: int = 40, size=(64, 64), seed: int = 0) -> np.ndarray:
    """A variable-frame-rate Matroska file as phones and screen recorders write them: `n` H.264
    frames 0.05 to 0.5 s apart (time base 1/1000), the header announcing 25 fps. Returns the
    frames' pts in seconds."""
    import av

    gaps_ms = np.random.default_rng(seed).integers(50, 500, n - 1)
    pts_ms = np.concatenate([[0], np.cumsum(gaps_ms)])
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"preset": "ultrafast"}
        for t, p in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), t * 6 % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(p), Fraction(1, 1000)
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return pts_ms / 1000.0


def upright_frame(t: int, size=(80, 48)) -> np.ndarray:
    """Frame t of a portrait clip (80 high, 48 wide): grey ramps down the frame, 12 rows each,
    which look different in every orientation (also to the random tiny CLIP)."""
    h, w = size
    yy = np.broadcast_to(np.arange(h)[:, None], (h, w))
    ramp = ((yy + t) % 12) * 255 // 11
    return np.stack([ramp] * 3, -1).astype(np.uint8)


def write_portrait(path: Path, rotation: int = 0, n: int = 20) -> Path:
    """A portrait clip as a phone stores it: with `rotation` (degrees counter-clockwise, as players
    turn it) the frames are stored turned the other way (landscape for 90 and 270), with a display
    matrix on the stream; 0: stored upright, no display matrix."""
    import av

    k = rotation // 90
    stored = [np.ascontiguousarray(np.rot90(upright_frame(t), -k)) for t in range(n)]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.height, s.width = stored[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "4"}
        if rotation:
            s.set_display_rotation(rotation)
        for img in stored:
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def need(backend: str, path: Path) -> None:
    """Skip where the backend cannot run here (torchcodec without the system's FFmpeg)."""
    if backend_unavailable(backend):
        pytest.skip(backend_unavailable(backend))
    try:
        list(sample_frames(str(path), SamplingConfig(image_size=64, max_frames=1), DecodeConfig(backend=backend)))
    except DecodeError as exc:
        if "Could not load libtorchcodec" in str(exc):
            pytest.skip(f"{backend} cannot load FFmpeg here")
        raise


def decode(path: Path, backend: str, size: int = 64, **sampling):
    result = DecodeResult()
    chunks = list(sample_frames(str(path), SamplingConfig(image_size=size, **sampling),
                                DecodeConfig(backend=backend, chunk_frames=4), result))
    return (np.concatenate([c.frame_index for c in chunks]).tolist(),
            np.concatenate([c.timestamp_s for c in chunks]), np.concatenate([c.frames for c in chunks]), result)


def frames_of(out: Path) -> dict[str, tuple[list, np.ndarray, np.ndarray]]:
    """{video_id: (frame indices, timestamps, embeddings)} from OUT/frames/, by frame index."""
    table = pq.ParquetDataset(OutputLayout.open(str(out)).frame_files()).read().to_pandas()
    got = {}
    for vid, rows in table.sort_values("frame_index").groupby("video_id"):
        got[vid] = (rows["frame_index"].tolist(), rows["timestamp_s"].to_numpy(),
                    np.stack(rows["embedding"].to_numpy()))
    return got


# ---------------------------------------------------------------------------------------------
# item 4: a variable-frame-rate file is neither truncated nor sampled by its average rate;
# item 15: a rotated phone video is turned upright as players do


@pytest.fixture(scope="module")
def phone_clips(tmp_path_factory):
    """A folder of phone-like clips: vfr.mkv, and one portrait clip stored upright and turned by
    90, 180 and 270 degrees; returns (folder, the pts of vfr.mkv in seconds)."""
    folder = tmp_path_factory.mktemp("phone") / "videos"
    folder.mkdir()
    pts = write_vfr_mkv(folder / "vfr.mkv")
    for rotation in (0, 90, 180, 270):
        write_portrait(folder / f"rot{rotation}.mp4", rotation)
    return folder, pts


@pytest.fixture(scope="module")
def embedded_phone_clips(phone_clips, tiny_clip, tmp_path_factory):
    """`vidclust embed` of the phone clips (one run for the tests that read its OUT)."""
    folder, _ = phone_clips
    out = tmp_path_factory.mktemp("phone_out") / "out"
    proc = cli("embed", str(folder), str(out), *model_args(tiny_clip))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_a_vfr_file_is_sampled_by_the_frames_it_holds_through_the_command(phone_clips, embedded_phone_clips):
    _, pts = phone_clips
    out, proc = embedded_phone_clips
    row = videos_of(out)["vfr"]
    assert (row["status"], row["warning"], row["error"]) == ("ok", None, None)
    assert row["n_frames_sampled"] == 4  # every 10th of the 40 frames it holds
    idx, ts, _ = frames_of(out)["vfr"]
    assert idx == [0, 10, 20, 30]
    np.testing.assert_allclose(ts, pts[[0, 10, 20, 30]], atol=1e-3)  # the frames' own pts
    assert "truncated" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_samples_a_vfr_file_by_the_frames_it_holds(phone_clips, backend):
    folder, pts = phone_clips
    need(backend, folder / "vfr.mkv")
    idx, ts, _, result = decode(folder / "vfr.mkv", backend)
    assert idx == [0, 10, 20, 30] and result.backend == backend
    np.testing.assert_allclose(ts, pts[[0, 10, 20, 30]], atol=1e-3)
    assert result.warning is None and result.n_frames_sampled == 4
    # the other plans: at most 3 of the 40 frames held; its keyframes (all that it holds: none lost)
    idx, _, _, result = decode(folder / "vfr.mkv", backend, max_frames=3)
    assert idx == [0, 20, 30] and result.warning is None
    idx, _, _, result = decode(folder / "vfr.mkv", backend, keyframes=True)
    assert idx[0] == 0 and result.warning is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_every_backend_turns_a_rotated_video_upright(phone_clips, backend, rotation):
    folder, _ = phone_clips
    need(backend, folder / "rot0.mp4")
    idx_up, _, upright, _ = decode(folder / "rot0.mp4", backend)
    idx, _, frames, result = decode(folder / f"rot{rotation}.mp4", backend)
    assert idx == idx_up == [0, 10] and result.backend == backend and result.warning is None
    diff = np.abs(frames.astype(int) - upright.astype(int)).mean()
    sideways = np.abs(np.rot90(frames, -rotation // 90, axes=(1, 2)).astype(int) - upright.astype(int)).mean()
    assert diff < 3 < 30 < sideways, (diff, sideways)  # codec noise only; as stored: far off


def test_a_rotated_video_embeds_as_the_upright_one_through_the_command(phone_clips, embedded_phone_clips, tiny_clip):
    from vidclust.models.encoder import FrameEncoder, encoder_spec

    out, _ = embedded_phone_clips
    rows = videos_of(out)
    got = frames_of(out)
    up_idx, _, up = got["rot0"]
    for rotation in (90, 180, 270):
        assert (rows[f"rot{rotation}"]["status"], rows[f"rot{rotation}"]["warning"]) == ("ok", None)
        idx, _, emb = got[f"rot{rotation}"]
        assert idx == up_idx == [0, 10]
        cos = (emb * up).sum(axis=1)
        assert cos.min() > 0.99, (rotation, cos)
    # the same frames as stored (turned, unrotated) embed differently: the test tells them apart
    spec = encoder_spec(*tiny_clip)
    enc = FrameEncoder(*tiny_clip, mean=spec.mean, std=spec.std)
    _, _, upright, _ = decode(Path(rows["rot0"]["path"]), "pyav", size=spec.image_size)
    e_up = enc.embed(upright)
    assert (e_up * up).sum(axis=1).min() > 0.999  # the encoder here is the command's
    for k in (1, 2, 3):
        e_turned = enc.embed(np.ascontiguousarray(np.rot90(upright, k, axes=(1, 2))))
        assert (e_turned * up).sum(axis=1).max() < 0.97


# ---------------------------------------------------------------------------------------------
# item 9: configuration mistakes are one line, exit 2, before any work


def assert_refused(proc, line: str) -> None:
    """The command stopped with exit 2 and said `line`, and nothing else, on stderr."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [line]


def test_a_list_value_of_the_wrong_type_is_one_line(tmp_path):
    out = tmp_path / "out"
    proc = cli("embed", str(tmp_path), str(out), "--set", "embed.preprocess.mean=[0.5,0.5,0.5]",
               "--set", "embed.preprocess.std=[0.26,0.26,0.27x]")
    assert_refused(proc, "vidclust: error: config key embed.preprocess.std[2] must be a number, got '0.27x'")
    assert not out.exists()
    # the same in a YAML file: named in full too
    bad = tmp_path / "bad.yaml"
    bad.write_text("embed:\n  preprocess:\n    mean: [0.5, 0.5, 0.5]\n    std: [0.26, 0.26, 0.27x]\n")
    proc = cli("embed", str(tmp_path), str(out), "--config", str(bad))
    assert_refused(proc, "vidclust: error: config key embed.preprocess.std[2] must be a number, got '0.27x'")
    assert not out.exists()


def test_a_yaml_file_with_a_key_twice_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster:\n  k: 3\nembed:\n  commit_seconds: 5\ncluster:\n  k: 4\n")
    proc = cli("cluster", str(tmp_path / "out"), "--config", str(bad))
    assert_refused(proc, f"vidclust: error: config file {bad} is not valid YAML: duplicate key 'cluster' "
                   "(line 5, column 1; first on line 1)")
    # within a section too
    bad.write_text("cluster:\n  k: 3\n  method: kmeans\n  k: 4\n")
    proc = cli("cluster", str(tmp_path / "out"), "--config", str(bad))
    assert_refused(proc, f"vidclust: error: config file {bad} is not valid YAML: duplicate key 'k' "
                   "(line 4, column 3; first on line 2)")
    # a merge key's mapping (`<<: *base`) may still be given again key by key: that is no mistake
    from vidclust.config import load_config

    bad.write_text("cluster:\n  <<: {k: 3, method: kmeans}\n  k: 5\n")
    assert (load_config(bad).cluster.k, load_config(bad).cluster.method) == (5, "kmeans")


def test_a_tab_in_a_yaml_file_is_one_line_with_its_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 3\ncluster:\n\tk: 3\n")
    proc = cli("cluster", str(tmp_path / "out"), "--config", str(bad))
    assert_refused(proc, f"vidclust: error: config file {bad} is not valid YAML: found character '\\t' that cannot "
                   "start any token (line 3, column 1): indent with spaces, not tabs")
