import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidclust.errors import VidclustError
from vidclust.store.sources import list_videos


@pytest.fixture
def folder(tmp_path):
    for rel in ["a.mp4", "sub/b.avi", "sub/deeper/c.MKV", "notes.txt", "sub/a.mp4", ".hidden.mp4"]:
        p = tmp_path / "videos" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return tmp_path / "videos"


def test_folder_is_searched_recursively_for_video_files(folder):
    t = list_videos(str(folder))
    assert t.column("video_id").to_pylist() == ["a", "sub/a", "sub/b", "sub/deeper/c"]
    assert all(p.startswith(str(folder)) for p in t.column("path").to_pylist())


def test_glob(folder):
    t = list_videos(str(folder / "sub" / "*.avi"))
    assert t.column("video_id").to_pylist() == ["b"]


def test_csv_manifest_with_captions_and_relative_paths(tmp_path):
    (tmp_path / "m.csv").write_text(
        'path,video_id,category,captions\n'
        'clips/x.mp4,vx,sports,"[""a man runs"", ""a race""]"\n'
        '/abs/y.mp4,,music,one caption|two captions\n')
    t = list_videos(str(tmp_path / "m.csv")).to_pylist()
    assert t[0] == {"video_id": "vx", "path": str(tmp_path / "clips/x.mp4"),
                    "captions": ["a man runs", "a race"], "category": "sports", "explicit_id": True,
                    "listing_error": None}
    assert t[1]["video_id"] == "y" and t[1]["captions"] == ["one caption", "two captions"]
    assert t[1]["explicit_id"] is False  # y is the file's name


def test_parquet_and_jsonl_manifests(tmp_path):
    rows = [{"path": "/v/1.mp4", "video_id": "one", "captions": ["c1", "c2"]}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for name in ("m.parquet", "m.jsonl"):
        t = list_videos(str(tmp_path / name)).to_pylist()
        assert t == [{"video_id": "one", "path": "/v/1.mp4", "captions": ["c1", "c2"], "category": None,
                      "explicit_id": True, "listing_error": None}]


def test_msrvtt_root(tmp_path):
    (tmp_path / "videos" / "all").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "videos" / "all" / f"video{i}.mp4").write_bytes(b"x")
    info = {"videos": [{"video_id": f"video{i}", "category": i * 2, "split": "train"} for i in range(3)],
            "sentences": [{"video_id": "video1", "caption": "a dog", "sen_id": 0},
                          {"video_id": "video1", "caption": "a dog runs", "sen_id": 1}]}
    (tmp_path / "train_val_videodatainfo.json").write_text(json.dumps(info))
    t = list_videos(str(tmp_path)).to_pylist()
    assert [r["video_id"] for r in t] == ["video0", "video1", "video2"]
    assert t[1]["captions"] == ["a dog", "a dog runs"] and t[1]["category"] == "2"
    assert t[0]["captions"] == []


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "not found"),
    (lambda p: p.mkdir(), "holds no videos"),
    (lambda p: p.with_suffix(".csv").write_text("file,id\nx,y\n"), "no `path` column"),
    (lambda p: p.with_suffix(".csv").write_text("path,video_id\na.mp4,v\nb.mp4,v\n"), "appears twice"),
])
def test_bad_sources_are_clear_errors(tmp_path, make, message):
    target = tmp_path / "src"
    make(target)
    arg = target if target.exists() else target.with_suffix(".csv")
    if not arg.exists():
        arg = target
    with pytest.raises(VidclustError, match=message):
        list_videos(str(arg))
