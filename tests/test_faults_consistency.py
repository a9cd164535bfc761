"""Outputs that never disagree (issue 19: items 1, 2, the hdbscan part of 9, 15's second and fourth
clauses): each stage's files are one committed set that records the run it derives from, readers
refuse (or, for the report's words, leave out) what does not match, and a stage killed mid-way
leaves nothing a later stage takes for whole. Real CLI processes on real clips; the kills are real
SIGKILLs, timed by the writer's test hook (VIDCLUST_TEST_KILL)."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from test_faults import S3_ENV, cli, error_lines, model_args, s3  # noqa: F401 (s3: the fixture)

DESCRIBE = ["--set", "describe.summarizer=extractive", "--set", "describe.summary_num_actors=1",
            "--set", "describe.kw_k_nearest=4", "--set", "describe.zero_shot=never"]
N_COPIES = 3  # copies of the first clip, besides the example corpus's 12


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, example_corpus, tiny_clip) -> Path:
    """One `vidclust embed` of the example corpus (three captioned topics, 12 clips) and
    N_COPIES byte copies of its first clip, into an OUT that each test copies."""
    root = example_corpus.parent
    rows = list(csv.DictReader(example_corpus.open()))
    first = rows[0]
    for i in range(1, N_COPIES + 1):
        rel = f"videos/{first['video_id']}_copy{i}.mp4"
        shutil.copy(root / first["path"], root / rel)
        rows.append({**first, "path": rel, "video_id": f"{first['video_id']}_copy{i}"})
    manifest = root / "with_copies.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path_factory.mktemp("consistency") / "embedded"
    r = cli("embed", str(manifest), str(out), *model_args(tiny_clip), "--set", "embed.sampling.max_frames=4")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def out(embedded, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(embedded, copy)
    return copy


def warning_lines(stderr: str) -> list[str]:
    """vidclust's own warnings (`HH:MM:SS vidclust WARNING: ...`), their message only."""
    return [line.split(" vidclust WARNING: ", 1)[1] for line in stderr.splitlines() if " vidclust WARNING: " in line]


def cluster_of(out: Path) -> dict[str, int]:
    return {r["video_id"]: r["cluster_id"] for r in pq.read_table(out / "clusters" / "assignments.parquet").to_pylist()}


def metrics(out: Path) -> dict:
    return json.loads((out / "clusters" / "metrics.json").read_text())


def page_words(out: Path) -> dict[int, list[str]]:
    """{cluster_id: the key phrases its section of report/index.html shows}."""
    page = (out / "report" / "index.html").read_text()
    sections = re.findall(r'<section id="cluster-(-?\d+)" class="cluster">(.*?)</section>', page, re.S)
    assert sections
    return {int(cid): re.findall(r'<span class="kw">([^<]*)</span>', body) for cid, body in sections}


def described_words(out: Path) -> dict[int, list[str]]:
    rows = pq.read_table(out / "clusters" / "descriptions.parquet").to_pylist()
    return {r["cluster_id"]: [k["keyword"] for k in r["keywords"]] for r in rows}


def staging(out: Path) -> list[str]:
    folder = out / "_vidclust" / "staging"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def kill(when: str, rel: str) -> dict:
    """The environment that has the writer SIGKILL its own process inside (temporary file written,
    not yet moved into place) or right after writing OUT/`rel`."""
    return {"VIDCLUST_TEST_KILL": f"{when}:{rel}"}


# ---------------------------------------------------------------------------------------------
# 15 (fourth clause), 1: a describe killed inside a write; descriptions of an earlier clustering


def test_describe_killed_inside_a_write_then_a_recluster_never_shows_stale_words(out):
    host = socket.gethostname()
    assert cli("cluster", str(out), "-q", "--set", "cluster.k=3", "--set", "seed=1").returncode == 0
    first = cluster_of(out)
    clustering = metrics(out)["clustering_id"]

    # files being written by running stages (this test's process is alive): never removed
    (out / "_vidclust" / "staging").mkdir(parents=True, exist_ok=True)
    running = [f"report.{os.getpid()}.{host}.0123abcd.tmp", f"describe.{os.getpid()}.{host}.4567ef01.tmp"]
    for name in running:
        (out / "_vidclust" / "staging" / name).write_bytes(b"half")

    r = cli("describe", str(out), "-q", *DESCRIBE, env=kill("inside", "clusters/descriptions.parquet"))
    assert r.returncode == -9, r.stderr  # killed, as `kill -9` would
    left = [n for n in staging(out) if n not in running]
    assert len(left) == 1 and re.fullmatch(rf"describe\.\d+\.{re.escape(host)}\.[0-9a-f]+\.tmp", left[0]), left
    assert not (out / "clusters" / "descriptions.parquet").exists()

    r = cli("describe", str(out), "-q", *DESCRIBE)
    assert r.returncode == 0, r.stderr
    assert staging(out) == sorted(running)  # its own leftover cleared, the running stages' files kept
    words = described_words(out)
    assert sorted(words) == [0, 1, 2] and all(words.values())
    assert json.loads(pq.read_schema(out / "clusters" / "descriptions.parquet").metadata[b"vidclust"])[
        "clustering_id"] == clustering

    r = cli("report", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert warning_lines(r.stderr) == []
    assert page_words(out) == words  # each cluster with its own words

    # cluster again with another seed: the same three groups, every id another's
    assert cli("cluster", str(out), "-q", "--set", "cluster.k=3", "--set", "seed=3").returncode == 0
    second = cluster_of(out)
    assert sorted(second) == sorted(first) and all(second[v] != first[v] for v in first)
    assert metrics(out)["clustering_id"] != clustering

    r = cli("report", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert warning_lines(r.stderr) == [
        f"clusters/descriptions.parquet describes an earlier clustering: run vidclust describe {out} again "
        "(this report shows no words)"]
    assert page_words(out) == {0: [], 1: [], 2: []}  # no cluster shown with another's words
    for stale in (w for ws in words.values() for w in ws):
        assert f'<span class="kw">{stale}</span>' not in (out / "report" / "index.html").read_text()


# ---------------------------------------------------------------------------------------------
# 2: `cluster` killed mid-way


def test_a_cluster_killed_mid_way_is_refused_until_cluster_runs_again(out):
    assert cli("cluster", str(out), "-q", "--set", "cluster.k=3").returncode == 0
    r = cli("cluster", str(out), "-q", "--set", "cluster.k=4", env=kill("after", "clusters/video_vectors.parquet"))
    assert r.returncode == -9, r.stderr
    assert metrics(out)["k"] == 3  # the half-rewritten set: the old metrics beside new vectors

    refused = (f"vidclust: error: clusters/ is incomplete (a `vidclust cluster` run was stopped): "
               f"run vidclust cluster {out} again")
    for stage in ("describe", "report"):
        r = cli(stage, str(out), "-q", *(DESCRIBE if stage == "describe" else []))
        assert r.returncode == 2, r.stderr
        assert error_lines(r.stderr) == [refused] and "Traceback" not in r.stderr, r.stderr
    assert not (out / "clusters" / "descriptions.parquet").exists() and not (out / "report").exists()

    assert cli("cluster", str(out), "-q", "--set", "cluster.k=4").returncode == 0  # repairs it
    assert metrics(out)["k"] == 4 and pq.read_table(out / "clusters" / "centers.parquet").num_rows == 4
    r = cli("report", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert sorted(page_words(out)) == [0, 1, 2, 3]


def test_a_cluster_killed_mid_way_on_an_object_store_is_refused_until_cluster_runs_again(embedded, s3,
                                                                                      monkeypatch):
    import pyarrow.fs as pafs

    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    opts, _ = s3
    out = f"s3://vids/killed/?{opts}"
    fs, root = pafs.FileSystem.from_uri(out)
    pafs.copy_files(str(embedded), root, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)

    assert cli("cluster", out, "-q", "--set", "cluster.k=3", env=S3_ENV).returncode == 0
    r = cli("cluster", out, "-q", "--set", "cluster.k=4", env={**S3_ENV, **kill("after", "clusters/centers.parquet")})
    assert r.returncode == -9, r.stderr
    assert pq.read_table(f"{root}/clusters/centers.parquet", filesystem=fs).num_rows == 4  # beside k=3 metrics
    r = cli("describe", out, "-q", *DESCRIBE, env=S3_ENV)
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == [f"vidclust: error: clusters/ is incomplete (a `vidclust cluster` run was "
                                     f"stopped): run vidclust cluster {out} again"], r.stderr

    assert cli("cluster", out, "-q", "--set", "cluster.k=4", env=S3_ENV).returncode == 0
    with fs.open_input_stream(f"{root}/clusters/metrics.json") as f:
        m = json.loads(f.read())
    assert m["k"] == 4 and pq.read_table(f"{root}/clusters/centers.parquet", filesystem=fs).num_rows == 4
    r = cli("report", out, "-q", env=S3_ENV)
    assert r.returncode == 0 and warning_lines(r.stderr) == [], r.stderr


# ---------------------------------------------------------------------------------------------
# 9 (hdbscan), 15 (second clause): k and min_cluster_size against the videos there are


def test_hdbscan_min_cluster_size_above_the_videos_is_one_line_before_fitting(out):
    r = cli("cluster", str(out), "-q", "--set", "cluster.method=hdbscan",
            "--set", "cluster.hdbscan_min_cluster_size=50")
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == [
        f"vidclust: error: cluster.hdbscan_min_cluster_size=50 is larger than the number of videos "
        f"({12 + N_COPIES}); lower it"] and "Traceback" not in r.stderr, r.stderr
    assert not (out / "clusters").exists()


def test_k_above_the_distinct_videos_says_so_in_a_line_and_in_the_metrics(out):
    k = 12 + N_COPIES - 1  # one below the videos, above the distinct ones (the copies)
    r = cli("cluster", str(out), "-q", "--set", f"cluster.k={k}")
    assert r.returncode == 0, r.stderr
    m = metrics(out)
    empty = m["cluster_sizes"].count(0)
    assert m["k"] == k and empty >= 1 and m["n_empty_clusters"] == empty
    assert warning_lines(r.stderr) == [
        f"k={k} leaves {empty} of its clusters empty: fewer distinct videos than clusters (copies of each "
        "other: see clusters/near_duplicates.parquet); lower cluster.k"]
    assert "ConvergenceWarning" not in r.stderr  # the library's warning is vidclust's line now
