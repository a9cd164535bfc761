"""Issue 21, item 2: the cheaper CPU decoding modes, reference frames only
(embed.sampling.frames=reference) and embed.decode.skip_loop_filter, on real H.264 files with
B-frames, through the decoder and through `vidclust embed`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from vidclust.config import Config, load_config
from vidclust.embedding.decode import DecodeResult, sample_frames, scan_packets
from vidclust.embedding.run import run_embed
from vidclust.errors import VidclustError
from vidclust.store.layout import OutputLayout

from test_decode_modes import FPS, N, gop_video, run, write_gop_video  # noqa: F401 (a fixture)
from videos import write_truncated

def shown(i: int) -> int:
    """The blue level of write_gop_video's frame i."""
    return (i * 37) % 256


def shows_frame(frame: np.ndarray, i: int) -> bool:
    """Whether a decoded frame is frame i of write_gop_video (its blue level, H.264 being lossy;
    the next frame's is 37 levels off)."""
    d = abs(float(frame[..., 2].mean()) - shown(i))
    return min(d, 256 - d) < 12


def test_reference_frames_are_placed_by_their_timestamps(gop_video):
    idx, ts, frames, result = run(gop_video, "pyav", frames="reference")
    every, _, _, full = run(gop_video, "pyav", frame_interval=1)
    # the first reference frame of each span of 10, where the B-frames between are never decoded
    assert len(idx) == N // 10 and (idx // 10).tolist() == list(range(N // 10))
    assert idx.tolist() == np.round(ts * FPS).astype(int).tolist()
    assert all(shows_frame(f, int(i)) for f, i in zip(frames, idx)), "a frame index that is not its frame"
    assert any(i % 10 for i in idx)  # a B-frame stood at a multiple of 10: the next reference frame
    assert result.n_frames_decoded < full.n_frames_decoded == N and result.n_frames_found == N
    assert result.backend == "pyav" and result.warning is None


def test_reference_frames_with_max_frames_spread_over_the_video(gop_video):
    idx, _, frames, result = run(gop_video, "auto", frames="reference", max_frames=3)
    assert len(idx) == 3 and idx[0] == 0 and idx[-1] >= N * 2 // 3 - 1 and result.warning is None
    assert all(shows_frame(f, int(i)) for f, i in zip(frames, idx))


def test_reference_frames_of_a_truncated_file_come_with_a_warning(tmp_path):
    expected = write_truncated(tmp_path)
    for name, start in expected.items():
        path, = tmp_path.glob(name + ".*")
        idx, _, _, result = run(path, "auto", frames="reference")
        assert len(idx) >= 1 and result.warning and result.warning.startswith(start), result.warning


def test_skip_loop_filter_changes_the_pixels_a_little(gop_video):
    idx, _, plain, _ = run(gop_video, "pyav")
    result = DecodeResult()
    from vidclust.config import DecodeConfig, SamplingConfig

    chunks = list(sample_frames(str(gop_video), SamplingConfig(image_size=224),
                                DecodeConfig(backend="pyav", device="cpu", skip_loop_filter=True), result))
    skipped = np.concatenate([c.frames for c in chunks]).astype(np.float32)
    assert np.concatenate([c.frame_index for c in chunks]).tolist() == idx.tolist()
    change = np.abs(skipped - plain).mean()
    assert 0 < change < 8, change  # deblocking left out: a few levels, not other frames
    assert all(shows_frame(f, int(i)) for f, i in zip(skipped, idx))


def test_old_and_new_spellings_of_keyframes_are_one_setting():
    from vidclust.embedding.run import embedding_signature
    from vidclust.models.encoder import EncoderSpec

    spec = EncoderSpec(model="m", weights="none", embed_dim=8, image_size=224, mean=(0.5,) * 3,
                       std=(0.5,) * 3, interpolation="bicubic")
    old = load_config(None, ["embed.sampling.keyframes=true"])
    new = load_config(None, ["embed.sampling.frames=keyframes"])
    assert old.embed.sampling.keyframes and new.embed.sampling.keyframes
    assert old.embed.sampling.frames == new.embed.sampling.frames == "keyframes"
    assert embedding_signature(spec, old.embed) == embedding_signature(spec, new.embed)
    plain = embedding_signature(spec, Config().embed)
    assert "frames" not in plain["sampling"] and "loop_filter" not in plain["preprocess"]  # as before
    ref = embedding_signature(spec, load_config(None, ["embed.sampling.frames=reference"]).embed)
    slf = embedding_signature(spec, load_config(None, ["embed.decode.skip_loop_filter=true"]).embed)
    assert ref["sampling"]["frames"] == "reference" and ref["sampling"]["frame_interval"] == 10
    assert slf["preprocess"]["loop_filter"] == "skipped" and slf["sampling"] == plain["sampling"]


@pytest.mark.parametrize("overrides, message", [
    (["embed.sampling.frames=refs"], "embed.sampling.frames: all, keyframes or reference"),
    (["embed.sampling.frames=reference", "embed.sampling.keyframes=true"], "exclude each other"),
    (["embed.sampling.frames=reference", "embed.decode.backend=decord"], "needs embed.decode.backend auto or pyav"),
    (["embed.decode.skip_loop_filter=true", "embed.decode.backend=torchcodec"], "auto or pyav"),
    (["embed.decode.skip_loop_filter=maybe"], "must be true or false"),
])
def test_bad_settings_are_one_clear_error(overrides, message):
    with pytest.raises(VidclustError, match=message):
        load_config(None, overrides)


def test_a_bad_choice_is_one_line_from_the_command(tmp_path, tiny_clip):
    from vidclust.example import write_video

    write_video(tmp_path / "a.mp4", 10)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": "local"}
    proc = subprocess.run([sys.executable, "-m", "vidclust.cli", "embed", str(tmp_path), str(tmp_path / "o"),
                           "--model", tiny_clip[0], "--pretrained", tiny_clip[1],
                           "--set", "embed.sampling.frames=nonref"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "vidclust: error: bad configuration: embed.sampling.frames: all, keyframes or reference"], proc.stderr


def _config(tiny_clip, *overrides):
    model_json, ckpt = tiny_clip
    return load_config(None, [f"embed.encoder.model={model_json}", f"embed.encoder.pretrained={ckpt}",
                              "embed.encoder.batch_size=16", *overrides])


def test_embed_reference_frames_and_skip_loop_filter(ray_local, tiny_clip, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_gop_video(src / "gop.mp4")
    assert len(scan_packets(str(src / "gop.mp4")).pts) == N

    out = tmp_path / "ref"
    s = run_embed(_config(tiny_clip, "embed.sampling.frames=reference"), str(src), str(out), show_progress=False)
    assert s["embedded_ok"] == 1 and s["frames"] == N // 10
    frames = pq.ParquetDataset(OutputLayout.open(str(out)).frame_files()).read().to_pydict()
    idx, ts = np.asarray(frames["frame_index"]), np.asarray(frames["timestamp_s"])
    assert idx.tolist() == np.round(ts * FPS).astype(int).tolist() and any(i % 10 for i in idx)
    video = pq.read_table(out / "videos.parquet").to_pylist()[0]
    assert video["status"] == "ok" and video["backend"] == "pyav" and video["n_frames_decoded"] < N
    assert not video["warning"]

    out = tmp_path / "slf"
    s = run_embed(_config(tiny_clip, "embed.decode.skip_loop_filter=true"), str(src), str(out), show_progress=False)
    assert s["embedded_ok"] == 1 and s["frames"] == N // 10
    signature = json.loads((out / "_vidclust" / "embedding.json").read_text())
    assert signature["preprocess"]["loop_filter"] == "skipped"
    files = OutputLayout.open(str(out)).frame_files()
    assert json.loads(pq.read_schema(files[0]).metadata[b"vidclust"]) == signature
    # frames embedded with it are never taken for frames embedded without it, nor the other way
    with pytest.raises(VidclustError, match=r"other settings \(preprocess:"):
        run_embed(_config(tiny_clip), str(src), str(out), show_progress=False)
    with pytest.raises(VidclustError, match=r"other settings \(sampling, preprocess:"):
        run_embed(_config(tiny_clip, "embed.decode.skip_loop_filter=true"), str(src), str(tmp_path / "ref"),
                  show_progress=False)
