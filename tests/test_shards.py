"""WebDataset shards (video2dataset's output) as SOURCE: real tar files, real videos."""
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vidclust.errors import DecodeError, VidclustError
from vidclust.example import write_video
from vidclust.store.shards import expand_braces, shard_items
from vidclust.store.sources import list_videos
from vidclust.store.storage import local_file, split_member_path


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, samples: dict, video: Path):
    """samples: {key: {"txt": str | None, "json": dict | None, "ext": "mp4"}}"""
    data = video.read_bytes()
    with tarfile.open(path, "w") as tar:
        for key, s in samples.items():
            _add(tar, f"{key}.{s.get('ext', 'mp4')}", data)
            if s.get("txt") is not None:
                _add(tar, f"{key}.txt", s["txt"].encode())
            if s.get("json") is not None:
                _add(tar, f"{key}.json", json.dumps(s["json"]).encode())
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    video = write_video(d / "src" / "clip.mp4", 30)
    write_shard(d / "00000.tar", {
        "000000000": {"txt": "a dog runs on the beach", "json": {"caption": "ignored: the txt wins"}},
        "000000001": {"json": {"caption": "a red car on a road", "category": "cars"}},
        "000000002": {"json": {"captions": ["two", "captions"]}},
    }, video)
    write_shard(d / "00001.tar", {"000000010": {"txt": "a cat sleeps"}, "000000011": {}}, video)
    write_shard(d / "00002.tar", {"000000020": {"txt": "a bird"}}, video)
    return d


def test_one_shard_lists_its_samples_with_captions_from_txt_and_json(shards):
    t = list_videos(str(shards / "00000.tar"))
    rows = {r["video_id"]: r for r in t.to_pylist()}
    assert sorted(rows) == ["000000000", "000000001", "000000002"]
    assert rows["000000000"]["captions"] == ["a dog runs on the beach"]
    assert rows["000000001"]["captions"] == ["a red car on a road"] and rows["000000001"]["category"] == "cars"
    assert rows["000000002"]["captions"] == ["two", "captions"]
    assert rows["000000000"]["path"] == f"{shards / '00000.tar'}#000000000.mp4"


def test_brace_pattern_glob_and_comma_list(shards):
    assert expand_braces("s/{00000..00002}.tar") == ["s/00000.tar", "s/00001.tar", "s/00002.tar"]
    assert expand_braces("s/{a,b}-{0..1}.tar") == ["s/a-0.tar", "s/a-1.tar", "s/b-0.tar", "s/b-1.tar"]
    assert shard_items("videos/") is None and shard_items("m.csv") is None
    everything = {"000000000", "000000001", "000000002", "000000010", "000000011", "000000020"}
    brace = list_videos(f"{shards}/{{00000..00002}}.tar")
    assert set(brace.column("video_id").to_pylist()) == everything
    assert set(list_videos(f"{shards}/*.tar").column("video_id").to_pylist()) == everything
    some = list_videos(f"{shards}/00001.tar,{shards}/00002.tar")
    assert some.column("video_id").to_pylist() == ["000000010", "000000011", "000000020"]
    assert some.column("captions").to_pylist() == [["a cat sleeps"], [], ["a bird"]]
    with pytest.raises(VidclustError, match="not found"):
        list_videos(f"{shards}/{{00000..00003}}.tar")


def test_a_uri_source_keeps_its_scheme_on_member_paths(shards):
    t = list_videos(f"file://{shards}/00001.tar")
    assert t.column("path").to_pylist()[0].endswith("00001.tar#000000010.mp4")


def test_local_file_extracts_one_member(shards):
    path = f"{shards / '00000.tar'}#000000001.mp4"
    assert split_member_path(path) == (str(shards / "00000.tar"), "000000001.mp4")
    with local_file(path) as local:
        assert local.endswith(".mp4") and os.path.getsize(local) == (shards / "src" / "clip.mp4").stat().st_size
    assert not os.path.exists(local)
    with pytest.raises(DecodeError, match="no member"):
        with local_file(f"{shards / '00000.tar'}#nope.mp4"):
            pass
    with pytest.raises(DecodeError, match="file not found"):
        with local_file(f"{shards / 'gone.tar'}#x.mp4"):
            pass


def test_embed_a_shard_end_to_end(tiny_clip, shards, tmp_path):
    model_json, ckpt = tiny_clip
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_ADDRESS": "local"}
    proc = subprocess.run([sys.executable, "-m", "vidclust", "embed", f"{shards}/{{00000..00001}}.tar", str(out),
                           "-q", "--model", model_json, "--pretrained", ckpt, "--set", "embed.encoder.batch_size=16"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    videos = pq.read_table(out / "videos.parquet").to_pylist()
    assert sorted(v["video_id"] for v in videos) == ["000000000", "000000001", "000000002", "000000010", "000000011"]
    assert all(v["status"] == "ok" for v in videos), [(v["video_id"], v["error"]) for v in videos]
    caps = {v["video_id"]: v["captions"] for v in videos}
    assert caps["000000000"] == ["a dog runs on the beach"] and caps["000000011"] == []
