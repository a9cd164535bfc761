"""The embedding stage end to end: real Ray, real videos, real Parquet, a real (tiny) model."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from vidclust.config import load_config
from vidclust.embedding.run import run_embed
from vidclust.errors import VidclustError
from vidclust.store.layout import OutputLayout

from videos import MIXED, write_broken, write_mixed, write_truncated

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    good = write_mixed(folder)
    broken = write_broken(folder, good["h264.mp4"])
    write_truncated(folder)  # cut short, its first frames decode: kept
    return folder, broken


def config(tiny_clip, *overrides):
    model_json, ckpt = tiny_clip
    return load_config(None, [f"embed.encoder.model={model_json}", f"embed.encoder.pretrained={ckpt}",
                              "embed.encoder.batch_size=16", *overrides])


def read_frames(out):
    layout = OutputLayout.open(str(out))
    return pq.ParquetDataset(layout.frame_files()).read() if layout.frame_files() else None


def test_embed_mixed_folder_accounts_for_every_video_once(ray_local, tiny_clip, corpus, tmp_path):
    folder, broken = corpus
    out = tmp_path / "out"
    summary = run_embed(config(tiny_clip), str(folder), str(out), show_progress=False)
    videos = pq.read_table(out / "videos.parquet")
    ids = videos.column("video_id").to_pylist()
    expected_ok = {Path(n).stem for n, _, _ in MIXED} | {"short"}
    assert sorted(ids) == sorted(expected_ok | set(broken)) and len(ids) == len(set(ids))
    status = dict(zip(ids, videos.column("status").to_pylist()))
    errors = dict(zip(ids, videos.column("error").to_pylist()))
    assert {v for v, s in status.items() if s == "ok"} == expected_ok
    for vid, reason in broken.items():
        assert status[vid] == "failed" and reason in errors[vid]
    assert summary["embedded_ok"] == len(expected_ok) and summary["failed"] == len(broken)
    # the driver saw a few rows per video (its status, the files holding its frames), no frame
    assert summary["driver_rows_received"] <= 3 * len(ids) and summary["driver_rows_received"] < summary["frames"]

    frames = read_frames(out)
    # schema of the contract, and metadata naming the model and sampling
    t = frames.schema.field("embedding").type
    assert t.value_type == "float" and t.list_size == 32 and str(t).startswith("fixed_size_list")
    assert str(frames.schema.field("frame_index").type) == "int32"
    meta = json.loads(pq.read_schema(OutputLayout.open(str(out)).frame_files()[0]).metadata[b"vidclust"])
    assert meta["model"] == "tiny-clip" and meta["embed_dim"] == 32
    assert meta["weights"].startswith("file:tiny-clip.pt#sha256:")
    assert meta["sampling"]["frame_interval"] == 10
    # each video's frames exactly once, as many as videos.parquet says
    pairs = list(zip(frames.column("video_id").to_pylist(), frames.column("frame_index").to_pylist()))
    assert len(pairs) == len(set(pairs))
    per_video = {v: n for v, n in zip(ids, videos.column("n_frames_sampled").to_pylist())}
    for vid in expected_ok:
        got = sorted(i for v, i in pairs if v == vid)
        assert len(got) == per_video[vid] and got == list(range(0, 10 * len(got), 10))
    emb = np.stack(frames.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    row = videos.to_pylist()[ids.index("h264")]
    assert (row["width"], row["height"], row["fps"], row["codec"]) == (128, 96, 25.0, "h264")
    assert row["duration_s"] == pytest.approx(53 / 25, abs=0.1)

    # a re-run skips everything; a different model or sampling into the same OUT is refused
    again = run_embed(config(tiny_clip), str(folder), str(out), show_progress=False)
    assert again["skipped_already_done"] == len(ids) and again["frames"] == 0
    assert read_frames(out).num_rows == frames.num_rows
    with pytest.raises(VidclustError, match="other settings.*sampling"):
        run_embed(config(tiny_clip, "embed.sampling.frame_interval=5"), str(folder), str(out))


def test_new_videos_are_appended_and_failed_ones_retried_on_request(ray_local, tiny_clip, tmp_path):
    from vidclust.example import write_video

    src = tmp_path / "src"
    write_video(src / "one.mp4", 30)
    (src / "two.mp4").write_text("not yet a video")
    out = tmp_path / "out"
    run_embed(config(tiny_clip), str(src), str(out), show_progress=False)
    write_video(src / "two.mp4", 30)  # fixed since
    write_video(src / "three.mp4", 30)  # new
    s = run_embed(config(tiny_clip, "embed.retry_failed=true"), str(src), str(out), show_progress=False)
    assert s["embedded_ok"] == 2 and s["skipped_already_done"] == 1
    videos = pq.read_table(out / "videos.parquet").to_pylist()
    assert [(v["video_id"], v["status"]) for v in videos] == [("one", "ok"), ("three", "ok"), ("two", "ok")]
    assert read_frames(out).num_rows == 9


def _cli(*args, **kw):
    # RAY_ADDRESS=local: a Ray of its own, never one that another test left running
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_ADDRESS": "local"}
    return subprocess.Popen([sys.executable, "-m", "vidclust.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_killed_run_resumes_with_no_duplicate_and_no_missing_frame(tiny_clip, tmp_path):
    from vidclust.example import write_video

    src = tmp_path / "src"
    for i in range(14):
        write_video(src / f"v{i:02d}.mp4", 120 + 10 * i, seed=i)
    out = tmp_path / "out"
    model_json, ckpt = tiny_clip
    args = ["embed", str(src), str(out), "--model", model_json, "--pretrained", ckpt, "-q",
            "--set", "embed.commit_seconds=0", "--set", "embed.part_max_rows=8",
            "--set", "embed.encoder.batch_size=8", "--set", "embed.decode.chunk_frames=4"]
    proc = _cli(*args, start_new_session=True)
    commits = out / "_vidclust" / "commits"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if commits.exists() and len(list(commits.glob("commit-*.parquet"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, mid-way
    proc.wait()
    committed = len(list(commits.glob("commit-*.parquet")))
    assert 2 <= committed

    proc = _cli(*args)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "already done" in stdout
    frames = read_frames(out)
    pairs = list(zip(frames.column("video_id").to_pylist(), frames.column("frame_index").to_pylist()))
    assert len(pairs) == len(set(pairs)), "duplicate frame rows"
    for i in range(14):
        want = list(range(0, 120 + 10 * i, 10))
        assert sorted(f for v, f in pairs if v == f"v{i:02d}") == want, f"frames of v{i:02d}"
    videos = pq.read_table(out / "videos.parquet")
    assert videos.num_rows == 14 and set(videos.column("status").to_pylist()) == {"ok"}
    assert not list((out / "frames").glob("*.tmp"))


def test_user_mistakes_are_one_line_errors_not_tracebacks(tmp_path, tiny_clip):
    model_json, ckpt = tiny_clip
    cases = [
        (["embed", str(tmp_path / "nowhere"), str(tmp_path / "o"), "--pretrained", "none",
          "--model", model_json], "SOURCE not found"),
        (["embed", str(tmp_path), str(tmp_path / "o"), "--set", "embed.sampling.frame_interval=-1"],
         "frame_interval must be >= 1"),
        (["embed", str(tmp_path), str(tmp_path / "o"), "--model", "ViT-NOPE"], "unknown open_clip model"),
        (["embed", str(tmp_path), str(tmp_path / "o")], "--pretrained PATH"),  # no hub here
    ]
    from vidclust.example import write_video

    write_video(tmp_path / "a.mp4", 10)
    for args, message in cases:
        proc = _cli(*args)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, stderr
        assert message in stderr and "Traceback" not in stderr, stderr


def test_encoder_pool_follows_the_cluster_resources():
    from vidclust.embedding.run import encoder_stage

    cfg = load_config().embed
    gpu = encoder_stage(cfg, {"CPU": 64, "GPU": 8})
    assert (gpu.actors, gpu.num_gpus, gpu.num_cpus, gpu.kwargs["threads"]) == ((1, 8), 1, 1, None)
    assert gpu.batch_size == gpu.kwargs["batch_size"] == 512  # measured on an H200: 1.44x the frames/s of 128
    assert encoder_stage(cfg, {"CPU": 64, "GPU": 16}).actors == (1, 16)  # at least every GPU present
    assert not gpu.restart_actors  # lost with a node: fail fast, resume on a re-run
    cpu = encoder_stage(cfg, {"CPU": 2})
    assert cpu.actors == (1, 1) and cpu.num_gpus == 0 and cpu.kwargs["threads"] == 2
    assert cpu.batch_size == 128  # the notebook's
    # a GPU actor runs two calls at once (one batch's copy beside the other's kernels); CPU ones one
    assert (gpu.concurrent_calls, cpu.concurrent_calls) == (2, 1)
    assert encoder_stage(cfg, {"CPU": 1}).num_cpus == 0  # the one CPU stays free for tasks: no hang
    assert encoder_stage(cfg, {"CPU": 16}).actors == (1, 8)  # all 8 at start; idle ones go
    assert encoder_stage(cfg, {"CPU": 16}).initial_actors == 8
    cfg.encoder.device = "gpu"  # asks for GPUs although none are there yet: the autoscaler adds them
    assert encoder_stage(cfg, {"CPU": 4}).num_gpus == 1
    cfg.encoder.device = "cpu"
    assert encoder_stage(cfg, {"CPU": 16, "GPU": 4}).num_gpus == 0
    cfg.encoder.device, cfg.encoder.num_actors = "auto", 3
    assert encoder_stage(cfg, {"CPU": 16, "GPU": 4}).actors == (3, 3)


def test_local_dir_model_embeds_with_its_own_preprocessing(ray_local, tmp_path):
    """A model kept the way a hub keeps it (open_clip_config.json with model_cfg and a SigLIP-like
    preprocess_cfg of mean = std = 0.5, the weights beside it): its frames are normalised with
    its own mean/std, and the frames' metadata says so."""
    import open_clip
    import torch

    from conftest import TINY_CLIP
    from vidclust.embedding.decode import sample_frames
    from vidclust.example import write_video

    folder = tmp_path / "siglip-like"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": TINY_CLIP, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    torch.manual_seed(1)
    model = open_clip.create_model("tiny-clip", pretrained=None) if "tiny-clip" in open_clip.list_models() \
        else open_clip.CLIP(**TINY_CLIP)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    src = tmp_path / "src"
    write_video(src / "a.mp4", 30, seed=3)
    out = tmp_path / "out"
    cfg = load_config(None, [f"embed.encoder.model=local-dir:{folder}", "embed.encoder.batch_size=8"])
    run_embed(cfg, str(src), str(out), show_progress=False)

    frames = read_frames(out)
    meta = json.loads(frames.schema.metadata[b"vidclust"])
    assert meta["preprocess"]["mean"] == [0.5, 0.5, 0.5] and meta["preprocess"]["std"] == [0.5, 0.5, 0.5]
    assert meta["model"] == "local-dir:siglip-like" and meta["weights"].startswith("file:open_clip_pytorch_model.bin")
    # the stored embeddings are the model's on frames normalised with 0.5/0.5, not CLIP's mean/std
    chunk = next(sample_frames(str(src / "a.mp4"), cfg.embed.sampling.__class__(image_size=224), cfg.embed.decode))
    x = torch.from_numpy(chunk.frames[:1]).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        want = torch.nn.functional.normalize(model.eval().encode_image((x - 0.5) / 0.5), dim=-1)[0].numpy()
        clip_norm = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1), \
            torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        other = torch.nn.functional.normalize(model.encode_image((x - clip_norm[0]) / clip_norm[1]), dim=-1)[0].numpy()
    got = np.asarray(frames.filter(pc.equal(frames.column("frame_index"), 0)).column("embedding")[0].as_py())
    assert float(got @ want) > 0.9999
    assert float(got @ other) < float(got @ want) - 1e-4
