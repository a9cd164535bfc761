"""Issue 19, the SOURCE side: every SOURCE kind through the embed path (a JSONL manifest failed
there), manifest rows without a path, file names that are not UTF-8, a file keeps the id OUT holds
for it, and a truncated WebDataset shard among several. Real files, real Ray, real CLI processes."""
from __future__ import annotations

import json
import os
import tarfile
import urllib.parse
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vidclust
from vidclust.errors import VidclustError
from vidclust.example import write_video

from test_faults import cli, error_lines, model_args, tiny, videos_of
from test_shards import write_shard


def settings(tiny_clip) -> dict:
    """vidclust.embed's settings for the tiny model (as model_args are the CLI's)."""
    model_json, ckpt = tiny_clip
    return {"embed": {"encoder": {"model": model_json, "pretrained": ckpt, "batch_size": 8}}}


def frames_per_video(out: Path) -> Counter:
    files = sorted(str(p) for p in (out / "frames").glob("*.parquet"))
    return Counter(pq.ParquetDataset(files).read(columns=["video_id"]).column("video_id").to_pylist())


# ---------------------------------------------------------------------------------------------
# 5: every SOURCE kind through the embed path (folder, CSV, S3 and brace-pattern shards have
# theirs in test_embed, test_api, test_faults and test_shards; shards by a glob: item 13 below)


def test_cli_embeds_a_jsonl_manifest(tmp_path, tiny_clip):
    tiny(tmp_path / "clips" / "a.mp4", seed=1)
    tiny(tmp_path / "clips" / "b.mp4", seed=2)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": "clips/a.mp4", "video_id": "va", "captions": ["a red clip"]}) + "\n"
                        + json.dumps({"path": str(tmp_path / "clips" / "b.mp4"), "category": "blue"}) + "\n")
    out = tmp_path / "out"
    proc = cli("embed", str(manifest), str(out), *model_args(tiny_clip))
    assert proc.returncode == 0, proc.stderr[-3000:]
    videos = videos_of(out)
    assert sorted(videos) == ["b", "va"]
    assert [(v["status"], v["n_frames_sampled"]) for v in videos.values()] == [("ok", 2), ("ok", 2)]
    assert videos["va"]["path"] == str(tmp_path / "clips" / "a.mp4")
    assert videos["va"]["captions"] == ["a red clip"] and videos["b"]["category"] == "blue"


def test_glob_parquet_and_msrvtt_sources_embed(ray_local, tiny_clip, tmp_path):
    out = tmp_path / "out"
    # a glob: only the names it matches
    tiny(tmp_path / "g" / "x1.mp4", seed=1)
    tiny(tmp_path / "g" / "sub" / "x2.mp4", seed=2)
    tiny(tmp_path / "g" / "y.mp4", seed=3)
    # a Parquet manifest, a path relative to it
    tiny(tmp_path / "p" / "clips" / "p1.mp4", seed=4)
    pq.write_table(pa.table({"path": ["clips/p1.mp4"], "video_id": ["pee"], "captions": [["a parquet clip"]]}),
                   tmp_path / "p" / "m.parquet")
    # an MSR-VTT root
    root = tmp_path / "msrvtt"
    tiny(root / "videos" / "all" / "video7.mp4", seed=5)
    (root / "train_val_videodatainfo.json").write_text(json.dumps({
        "videos": [{"video_id": "video7", "category": 3, "split": "train"}],
        "sentences": [{"video_id": "video7", "caption": "a man sings", "sen_id": 0}]}))
    for source, n in ((tmp_path / "g" / "*x*.mp4", 2), (tmp_path / "p" / "m.parquet", 1), (root, 1)):
        summary = vidclust.embed(str(source), out, **settings(tiny_clip))
        assert (summary["embedded_ok"], summary["failed"]) == (n, 0), source
    videos = videos_of(out)
    assert sorted(videos) == ["pee", "sub/x2", "video7", "x1"]
    assert {v["status"] for v in videos.values()} == {"ok"}
    assert videos["pee"]["path"] == str(tmp_path / "p" / "clips" / "p1.mp4")
    assert videos["pee"]["captions"] == ["a parquet clip"]
    assert videos["video7"]["captions"] == ["a man sings"] and videos["video7"]["category"] == "3"
    assert frames_per_video(out) == {"pee": 2, "sub/x2": 2, "video7": 2, "x1": 2}


# ---------------------------------------------------------------------------------------------
# 6: manifest rows without a path (empty, blank, NaN as pandas writes it, JSON null, no key)


def test_a_manifest_row_without_a_path_is_one_line_naming_it(ray_local, tiny_clip, tmp_path):
    import pandas as pd

    tiny(tmp_path / "clips" / "a.mp4")
    csv = tmp_path / "m.csv"
    # a caption with a line break: the rows after it start a line further down
    pd.DataFrame({"path": ["clips/a.mp4", np.nan, "  "], "video_id": ["a", "b", "c"],
                  "captions": ["two\nlines", "", ""]}).to_csv(csv, index=False)
    parquet = tmp_path / "m.parquet"
    pd.DataFrame({"path": ["clips/a.mp4", np.nan], "video_id": ["a", "b"]}).to_parquet(parquet)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"path": "clips/a.mp4"}\n{"path": null, "video_id": "n"}\n\n'
                     '{"video_id": "nokey"}\n{"path": ""}\n')
    cases = {csv: "lines 4 and 5 have", parquet: "row 2 has", jsonl: "lines 2, 4 and 5 have"}
    for manifest, what in cases.items():
        out = tmp_path / f"out-{manifest.suffix[1:]}"
        with pytest.raises(VidclustError) as err:
            vidclust.embed(manifest, out, **settings(tiny_clip))
        assert str(err.value) == (f"manifest {manifest}: {what} no path (empty or NaN): give every row "
                                  "the path of its video, or remove the row")
        assert not (out / "videos.parquet").exists() and not (out / "frames").exists()  # no work done


# ---------------------------------------------------------------------------------------------
# 7 and 3: a file name that is not UTF-8; a file keeps the id OUT holds for it


def test_names_that_are_not_utf8_and_ids_that_stay(tmp_path, tiny_clip, ray_local):
    videos = tmp_path / "videos"
    tiny(videos / "a.mp4", seed=1)
    tiny(videos / "new" / "n1.mp4", seed=2)
    latin1 = os.path.join(os.fsencode(videos), b"caf\xe9.mp4")  # a name written on a latin-1 system
    os.rename(os.fsencode(tiny(tmp_path / "tmp.mp4", seed=3)), latin1)
    out = tmp_path / "out"
    proc = cli("embed", str(videos), str(out), *model_args(tiny_clip))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = videos_of(out)
    assert sorted(rows) == ["a", "caf\\xe9", "new/n1"]
    assert {v["status"] for v in rows.values()} == {"ok"}, rows
    # the name as the file system gives it, escaped (a file URI) where text is needed
    escaped = rows["caf\\xe9"]["path"]
    assert escaped == "file://" + urllib.parse.quote(latin1)
    assert rows["a"]["path"] == str(videos / "a.mp4")  # ordinary names stay as they are

    # a.mkv joins a.mp4: their ids would be a.mp4 and a.mkv; a.mp4 keeps its id a, is not embedded again
    tiny(videos / "a.mkv", seed=4)
    proc = cli("embed", str(videos), str(out), *model_args(tiny_clip))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("embed: 1 videos embedded (2 frames), 0 failed, 3 already done;"), proc.stdout
    rows = videos_of(out)
    assert sorted(rows) == ["a", "a.mkv", "caf\\xe9", "new/n1"]
    assert rows["a"]["path"] == str(videos / "a.mp4") and rows["a.mkv"]["path"] == str(videos / "a.mkv")

    # a SOURCE inside the first: n1 would be n1; it stays new/n1, nothing is embedded again
    proc = cli("embed", str(videos / "new"), str(out), *model_args(tiny_clip))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("embed: 0 videos embedded (0 frames), 0 failed, 1 already done;"), proc.stdout
    assert sorted(videos_of(out)) == ["a", "a.mkv", "caf\\xe9", "new/n1"]
    assert frames_per_video(out) == {"a": 2, "a.mkv": 2, "caf\\xe9": 2, "new/n1": 2}

    # an explicit id (a manifest's video_id) for a file OUT holds under another id: refused
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,video_id\nvideos/new/n1.mp4,n-one\nvideos/a.mkv,\n")
    before = (out / "videos.parquet").read_bytes()
    with pytest.raises(VidclustError) as err:
        vidclust.embed(manifest, out, **settings(tiny_clip))
    assert str(err.value) == (f"video id n-one in SOURCE is a file OUT already holds as new/n1 "
                              f"({videos / 'new' / 'n1.mp4'}): give it its id new/n1 in the manifest's "
                              "video_id column (or leave it empty), or use another OUT")
    assert (out / "videos.parquet").read_bytes() == before


# ---------------------------------------------------------------------------------------------
# 13: one truncated WebDataset shard among several


def test_a_truncated_shard_among_several(tmp_path, tiny_clip):
    video = write_video(tmp_path / "clip.mp4", 12, size=(64, 64))
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "00000.tar", {"k00": {"txt": "first"}, "k01": {"txt": "second"}}, video)
    whole = write_shard(tmp_path / "whole.tar", {"k10": {"txt": "kept"}, "k11": {"txt": "cut"},
                                                 "k12": {"txt": "gone"}}, video)
    write_shard(shards / "00002.tar", {"k20": {"txt": "last"}}, video)
    with tarfile.open(whole) as tar:
        cut_member = tar.getmember("k11.mp4")
    data = whole.read_bytes()
    (shards / "00001.tar").write_bytes(data[:cut_member.offset_data + cut_member.size // 2])  # inside k11.mp4
    out = tmp_path / "out"
    proc = cli("embed", str(shards / "*.tar"), str(out), *model_args(tiny_clip))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert error_lines(proc.stderr) == []
    rows = videos_of(out)
    assert sorted(rows) == ["00001.tar", "k00", "k01", "k10", "k20"]
    assert {vid for vid, v in rows.items() if v["status"] == "ok"} == {"k00", "k01", "k10", "k20"}
    assert rows["k10"]["captions"] == ["kept"]
    broken = rows["00001.tar"]
    assert (broken["status"], broken["path"]) == ("failed", str(shards / "00001.tar"))
    assert broken["error"] == f"truncated shard {shards / '00001.tar'}: members after byte {cut_member.offset} unreadable"
