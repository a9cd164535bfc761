"""Data-set statistics: probing real video files, summarising, histograms, `vidclust stats`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidclust.config import load_config
from vidclust.example import write_video
from vidclust.store.contract import PROBE_SCHEMA
from vidclust.statistics.run import format_stats, probe_row, probe_table, run_stats
from vidclust.statistics.video_stats import plot_stats, summarise_stats

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_videos(tmp_path_factory) -> dict[str, Path]:
    """Real files: two codecs, two frame rates, two sizes, one broken file, one empty file."""
    d = tmp_path_factory.mktemp("stats_videos")
    files = {
        "a": write_video(d / "a.mp4", 50, fps=25, size=(96, 128), codec="libx264"),  # 2.0 s
        "b": write_video(d / "b.mp4", 30, fps=10, size=(64, 80), codec="mpeg4"),  # 3.0 s
        "c": write_video(d / "c.mkv", 25, fps=25, size=(96, 128), codec="libx264"),  # 1.0 s
    }
    (d / "broken.mp4").write_bytes(b"this is not a video at all" * 100)
    files["broken"] = d / "broken.mp4"
    (d / "empty.mp4").write_bytes(b"")
    files["empty"] = d / "empty.mp4"
    files["missing"] = d / "missing.mp4"
    return files


def test_probe_row_reads_container_metadata(small_videos):
    a = probe_row(str(small_videos["a"]))
    assert a["status"] == "ok" and a["error"] is None
    assert a["codec"] == "h264" and (a["width"], a["height"]) == (128, 96)
    assert a["fps"] == pytest.approx(25.0)
    assert a["duration_s"] == pytest.approx(2.0, abs=0.1)
    b = probe_row(str(small_videos["b"]))
    assert b["codec"] == "mpeg4" and (b["width"], b["height"]) == (80, 64)
    assert b["fps"] == pytest.approx(10.0) and b["duration_s"] == pytest.approx(3.0, abs=0.15)


@pytest.mark.parametrize("name,reason", [("broken", "not a readable video"), ("empty", "empty file"),
                                         ("missing", "file not found")])
def test_probe_row_failure_is_a_row_with_a_reason(small_videos, name, reason):
    row = probe_row(str(small_videos[name]))
    assert row["status"] == "failed"
    assert reason in row["error"]
    assert row["duration_s"] is None and row["codec"] is None


def _table(small_videos) -> pa.Table:
    names = ["a", "b", "c", "broken", "missing"]
    return pa.table({"video_id": names, "path": [str(small_videos[n]) for n in names]})


def test_probe_table_with_ray_keeps_every_video_in_order(small_videos, ray_local):
    videos = _table(small_videos)
    probed = probe_table(videos, use_ray=True)
    assert probed.schema == PROBE_SCHEMA
    assert probed.column("video_id").to_pylist() == videos.column("video_id").to_pylist()
    assert probed.column("status").to_pylist() == ["ok", "ok", "ok", "failed", "failed"]
    local = probe_table(videos, use_ray=False)
    assert local.to_pylist() == probed.to_pylist()


def test_summarise_stats_counts_and_distributions(small_videos):
    probed = probe_table(_table(small_videos), use_ray=False)
    s = summarise_stats(probed)
    assert (s["count"], s["n_ok"], s["n_failed"]) == (5, 3, 2)
    assert s["total_hours"] == pytest.approx(6.0 / 3600, abs=0.3 / 3600)
    assert s["duration_s"]["n"] == 3
    assert s["duration_s"]["min"] == pytest.approx(1.0, abs=0.1)
    assert s["duration_s"]["max"] == pytest.approx(3.0, abs=0.15)
    assert s["fps_counts"] == {"25": 2, "10": 1}
    assert s["resolution_counts"] == {"128x96": 2, "80x64": 1}
    assert s["codec_counts"] == {"h264": 2, "mpeg4": 1}
    failed = {f["video_id"]: f["error"] for f in s["failures"]}
    assert set(failed) == {"broken", "missing"} and "file not found" in failed["missing"]
    text = format_stats(s)
    assert "videos          5" in text and "h264: 2" in text and "missing: file not found" in text


def test_summarise_stats_works_on_a_videos_parquet_like_table():
    """OUT/videos.parquet has nulls for failed videos, no n_frames, and maybe no codec column."""
    table = pa.table({
        "video_id": ["v1", "v2", "v3", "v4"],
        "path": ["/x/v1.mp4", "/x/v2.mp4", "/x/v3.mp4", "/x/v4.mp4"],
        "status": ["ok", "ok", "failed", "ok"],
        "error": [None, None, "decord: cannot open", None],
        "duration_s": [10.0, 3590.0, None, None],
        "fps": [29.97002997, 30.0, None, 29.97],
        "width": pa.array([1920, 640, None, 1920], pa.int32()),
        "height": pa.array([1080, 480, None, 1080], pa.int32()),
    })
    s = summarise_stats(table)
    assert (s["count"], s["n_ok"], s["n_failed"]) == (4, 3, 1)
    assert s["total_hours"] == pytest.approx(1.0)
    assert s["duration_s"]["n"] == 2  # a decoded video without a known duration is not a zero
    assert s["fps_counts"] == {"29.97": 2, "30": 1}
    assert s["resolution_counts"] == {"1920x1080": 2, "640x480": 1}
    assert s["codec_counts"] == {}
    assert s["failures"] == [{"video_id": "v3", "path": "/x/v3.mp4", "error": "decord: cannot open"}]
    assert s["failure_reasons"] == {"decord": 1}
    assert summarise_stats(table.drop_columns(["status", "error"]))["n_failed"] == 0


def test_plot_stats_writes_pngs(small_videos, tmp_path):
    probed = probe_table(_table(small_videos), use_ray=False)
    pngs = plot_stats(probed, str(tmp_path / "plots"))
    assert set(pngs) == {"stats_duration.png", "stats_fps.png", "stats_resolution.png", "stats_codec.png"}
    for name, data in pngs.items():
        assert data.startswith(PNG) and len(data) > 5000
        assert (tmp_path / "plots" / name).read_bytes() == data
    # no decoded video: nothing to draw, and no error
    assert plot_stats(probed.filter(pa.compute.equal(probed.column("status"), "failed"))) == {}


def test_run_stats_on_a_manifest(example_corpus, ray_local, tmp_path, capsys):
    out = tmp_path / "stats"
    summary = run_stats(load_config(), str(example_corpus), str(out))
    printed = capsys.readouterr().out
    assert summary["count"] == 12 and summary["n_ok"] == 12 and summary["n_failed"] == 0
    assert summary["codec_counts"] == {"h264": 12}
    assert summary["resolution_counts"] == {"128x96": 12}
    assert 0 < summary["total_hours"] < 12 * 3.1 / 3600
    assert "videos          12" not in printed  # the summary is returned; the command line prints it
    text = format_stats(summary)
    assert "videos          12" in text and "h264: 12" in text
    assert json.loads((out / "stats.json").read_text())["count"] == 12
    assert pq.read_table(out / "stats.parquet").num_rows == 12
    for name in ("stats_duration.png", "stats_fps.png", "stats_resolution.png", "stats_codec.png"):
        assert (out / name).read_bytes().startswith(PNG)
    assert np.isfinite(summary["duration_s"]["median"])


def test_the_stats_command_prints_the_table(example_corpus, ray_local, tmp_path, capsys):
    """`vidclust stats SOURCE --out DIR` prints what the API returns: the table and the files."""
    from vidclust import cli

    out = tmp_path / "stats"
    cli.dispatch(cli.build_parser().parse_args(["stats", str(example_corpus), "--out", str(out)]))
    printed = capsys.readouterr().out
    assert "videos          12" in printed and "h264: 12" in printed
    assert any(line.startswith("wrote stats.json, stats.parquet, stats_") and line.endswith(f" to {out}")
               for line in printed.splitlines())
    assert json.loads((out / "stats.json").read_text())["count"] == 12
