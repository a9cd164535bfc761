"""Bad input and hostile environments (issue 11): every input listed once, every failure one clear
line. Real files, real links, real file systems, real CLI processes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vidclust.embedding.decode import probe_video
from vidclust.errors import DecodeError
from vidclust.example import write_video
from vidclust.store.sources import list_videos

SIZE = (64, 64)


def tiny(path: Path, n: int = 12, **kw) -> Path:
    return write_video(path, n, size=SIZE, **kw)


def cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`vidclust ARGS` as a user runs it; RAY_ADDRESS=local: a Ray of its own."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_ADDRESS": "local", **(env or {})}
    return subprocess.run([sys.executable, "-m", "vidclust.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[1])


def model_args(tiny_clip) -> list[str]:
    model_json, ckpt = tiny_clip
    return ["--model", model_json, "--pretrained", ckpt, "-q", "--set", "embed.encoder.batch_size=8"]


def videos_of(out: Path) -> dict[str, dict]:
    return {r["video_id"]: r for r in pq.read_table(out / "videos.parquet").to_pylist()}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vidclust: error:")]


# ---------------------------------------------------------------------------------------------
# 1, 2: links in a folder SOURCE


@pytest.fixture
def linked_folder(tmp_path) -> Path:
    root = tmp_path / "videos"
    for rel in ["a.mp4", "b.mp4", "sub/c.mp4", "sub/deeper/d.mp4"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "dirloop").symlink_to(".")  # a folder holding a link to itself
    (root / "sub" / "deeper" / "up").symlink_to("../..")  # a link to a folder above
    (root / "alias").symlink_to("sub")  # a second way into a folder that is listed anyway
    (root / "a_again.mp4").symlink_to("a.mp4")  # a link to a file: an input of its own
    return root


def test_symlink_loops_list_each_file_once(linked_folder):
    t = list_videos(str(linked_folder))
    assert t.column("video_id").to_pylist() == ["a", "a_again", "b", "sub/c", "sub/deeper/d"]
    assert t.column("path").to_pylist() == [str(linked_folder / p) for p in
                                            ["a.mp4", "a_again.mp4", "b.mp4", "sub/c.mp4", "sub/deeper/d.mp4"]]
    # a glob goes through the same listing
    assert list_videos(str(linked_folder / "*.mp4")).num_rows == 5


def test_a_linked_folder_outside_source_is_followed(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.mp4").write_bytes(b"x")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "s.mp4").write_bytes(b"x")
    (tmp_path / "src" / "more").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "src" / "more_again").symlink_to(tmp_path / "elsewhere")
    assert list_videos(str(tmp_path / "src")).column("video_id").to_pylist() == ["more/e", "s"]


def test_broken_and_looping_links_are_listed_and_fail_with_their_reason(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"x")
    (root / "broken.mp4").symlink_to("nowhere.mp4")
    (root / "self.mp4").symlink_to("self.mp4")
    (root / "gone").symlink_to("no_such_folder")  # a broken link without a video name: not an input
    t = list_videos(str(root))
    assert t.column("video_id").to_pylist() == ["a", "broken", "self"]
    with pytest.raises(DecodeError, match=r"^broken symbolic link -> nowhere\.mp4$"):
        probe_video(str(root / "broken.mp4"))
    with pytest.raises(DecodeError, match=r"^symbolic link loop -> self\.mp4$"):
        probe_video(str(root / "self.mp4"))
    with pytest.raises(DecodeError, match=r"^file not found$"):
        probe_video(str(root / "missing.mp4"))


# ---------------------------------------------------------------------------------------------
# 3: the options of an S3 SOURCE (a real S3 server on 127.0.0.1: moto's)

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(bucket URI options, local copies): a moto S3 server on 127.0.0.1 with bucket `vids`
    holding src/{a,b}.mp4, src/sub/c.mp4 and src/list.csv (a manifest of a and c)."""
    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
    import socket
    import time

    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="vids")
    local = tmp_path_factory.mktemp("s3src")
    for i, rel in enumerate(["a.mp4", "b.mp4", "sub/c.mp4"]):
        client.upload_file(str(tiny(local / rel, seed=i)), "vids", f"src/{rel}")
    client.put_object(Bucket="vids", Key="src/list.csv", Body=b"path,video_id\na.mp4,\nsub/c.mp4,cee\n")
    try:
        yield f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1", local
    finally:
        server.stop()


def test_s3_source_keeps_its_options_for_every_form(s3, monkeypatch):
    from vidclust.store.storage import local_file

    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    opts, local = s3
    forms = {
        f"s3://vids/src/?{opts}": ["a", "b", "sub/c"],
        f"s3://vids/src?{opts}": ["a", "b", "sub/c"],
        f"s3://vids/src/*.mp4?{opts}": ["a", "b", "sub/c"],
        f"s3://vids/src/?.mp4?{opts}": ["a", "b"],  # `?` before the options is a wildcard
        f"s3://vids/src/list.csv?{opts}": ["a", "cee"],
        f"s3://vids/src/sub/c.mp4?{opts}": ["c"],
    }
    for source, ids in forms.items():
        t = list_videos(source)
        assert t.column("video_id").to_pylist() == ids, source
        for p in t.column("path").to_pylist():
            assert p.startswith("s3://vids/src/") and p.endswith(f"?{opts}"), p
    path = list_videos(f"s3://vids/src/sub/c.mp4?{opts}").column("path")[0].as_py()
    with local_file(path) as f:  # what a decode task does: it reaches the same server
        assert Path(f).read_bytes() == (local / "sub" / "c.mp4").read_bytes()
    # user info (credentials in the URI) stays on the paths too
    t = list_videos(f"s3://testing:testing@vids/src/?{opts}")
    assert t.column("path")[0].as_py() == f"s3://testing:testing@vids/src/a.mp4?{opts}"


def test_cli_embeds_an_s3_source_with_options(s3, tiny_clip, tmp_path):
    opts, _ = s3
    out = tmp_path / "out"
    proc = cli("embed", f"s3://vids/src/?{opts}", str(out), *model_args(tiny_clip), env=S3_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    videos = videos_of(out)
    assert sorted(videos) == ["a", "b", "sub/c"]
    assert {v["status"] for v in videos.values()} == {"ok"}, videos
    assert [v["n_frames_sampled"] for v in videos.values()] == [2, 2, 2]


# ---------------------------------------------------------------------------------------------
# 7, 8: what decoding keeps: a file without a frame rate, files cut short


def decode_all(path: Path, backend: str = "auto"):
    from vidclust.config import DecodeConfig, SamplingConfig
    from vidclust.embedding.decode import DecodeResult, sample_frames

    result = DecodeResult()
    chunks = list(sample_frames(str(path), SamplingConfig(image_size=32),
                                DecodeConfig(backend=backend, chunk_frames=4), result))
    return [int(i) for c in chunks for i in c.frame_index], result


def write_asf(path: Path) -> Path:
    """A valid 2-second ASF (msmpeg4) file of 2 frames: ASF states no frame rate, and PyAV
    guesses its time base (1/1000 s) as one."""
    return tiny(path, 2, fps=1, codec="msmpeg4")


def write_faststart_mp4(path: Path, n: int) -> Path:
    """An MP4 whose index (moov) comes first: it announces all n frames even when cut short."""
    from fractions import Fraction

    import av
    import numpy as np

    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.height, s.width = SIZE
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "ultrafast"}
        rng = np.random.default_rng(0)
        for _ in range(n):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_a_video_without_a_frame_rate_is_not_called_truncated(tmp_path):
    path = write_asf(tmp_path / "clip.asf")
    info = probe_video(str(path))
    assert info.duration_s == pytest.approx(2.0) and info.fps is None and info.n_frames is None
    idx, result = decode_all(path)
    assert idx == [0] and result.n_frames_decoded == 2 and result.warning is None


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_a_truncated_mp4_keeps_the_frames_that_decode(tmp_path, backend):
    full = write_faststart_mp4(tmp_path / "full.mp4", 444).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: len(full) // 6])
    idx, result = decode_all(cut, backend)
    decoded = result.n_frames_decoded
    assert 10 < decoded < 444 and result.backend == "pyav"  # decord refuses the cut file
    assert idx == list(range(0, decoded, 10))  # every sampled frame before the cut
    assert result.warning.startswith(
        f"truncated or corrupt: its container announces 444 frames, {decoded} decoded; "
        f"kept {len(idx)} of 45 sampled frames (pyav: failed after frame {decoded - 1}: ")


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_a_truncated_mkv_keeps_the_frames_that_decode(tmp_path, backend):
    from videos import write_truncated

    (vid, warning), = write_truncated(tmp_path).items()
    idx, result = decode_all(tmp_path / f"{vid}.mkv", backend)
    assert 5 < len(idx) < 25 and idx == list(range(0, 10 * len(idx), 10))
    assert result.warning.startswith(warning) and f"kept {len(idx)} of 25 sampled frames" in result.warning


def test_a_file_cut_before_its_first_frame_still_fails(tmp_path):
    full = write_faststart_mp4(tmp_path / "full.mp4", 60).read_bytes()
    moov_end = full.index(b"mdat") + 4
    (tmp_path / "head.mp4").write_bytes(full[:moov_end + 16])
    with pytest.raises(DecodeError, match="pyav: failed after frame -1"):
        decode_all(tmp_path / "head.mp4")


# ---------------------------------------------------------------------------------------------
# 4, 5: an OUT that cannot be written, an OUT that fills up


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount_tmpfs(options) -> a fresh tmpfs mounted with those options (needs root: else skip)."""
    mounted = []

    def mount(options: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "none", str(target)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}): "
                        "the test needs root or CAP_SYS_ADMIN")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_read_only_out_is_one_line_before_any_work(mount_tmpfs, tmp_path, tiny_clip):
    src = tmp_path / "src"
    tiny(src / "a.mp4")
    ro = mount_tmpfs("ro,size=1m")
    for out, command in [(ro / "out", "embed"), (ro, "run"), (ro, "cluster")]:
        args = [command, str(src), str(out)] if command != "cluster" else [command, str(out)]
        proc = cli(*args, *(model_args(tiny_clip) if command != "cluster" else []))
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.splitlines() == [f"vidclust: error: cannot write to OUT {out}: read-only file system"]
        assert proc.stdout == ""


def test_full_disk_is_one_line_and_a_rerun_finishes(mount_tmpfs, tmp_path, tiny_clip):
    src = tmp_path / "src"
    for i in range(3):
        tiny(src / f"v{i}.mp4", seed=i)
    disk = mount_tmpfs("size=1m")
    fill = disk / "fill"
    with open(fill, "wb", buffering=0) as f:  # fill the disk, then free 16 KiB: OUT starts, then fills up
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(fill, os.path.getsize(fill) - 16384)
    out = disk / "out"
    args = ["embed", str(src), str(out), *model_args(tiny_clip), "--set", "embed.commit_seconds=0"]
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "no space left on device" in line]
    assert len(lines) == 1 and lines == error_lines(proc.stderr), proc.stderr[-3000:]
    assert lines[0].startswith(f"vidclust: error: no space left on device writing {out} (")
    assert lines[0].endswith("); free space and run the same command again: finished videos are kept")
    fill.unlink()  # space freed: the same command finishes the job, each video once
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    videos = videos_of(out)
    assert sorted(videos) == ["v0", "v1", "v2"] and {v["status"] for v in videos.values()} == {"ok"}
    frames = pq.ParquetDataset(sorted(str(p) for p in (out / "frames").glob("part-*.parquet"))).read()
    pairs = list(zip(frames.column("video_id").to_pylist(), frames.column("frame_index").to_pylist()))
    assert sorted(pairs) == [(f"v{i}", f) for i in range(3) for f in (0, 10)]


# ---------------------------------------------------------------------------------------------
# 6: a video id that OUT holds for another file


def test_check_same_paths():
    import pyarrow as pa

    from vidclust.errors import VidclustError
    from vidclust.store.sources import check_same_paths

    def table(rows):
        return pa.table({"video_id": [r[0] for r in rows], "path": [r[1] for r in rows]})

    committed = table([("a", "/A/a.mp4"), ("b", "/A/b.mp4"), ("s", "s3://k:s@bkt/x/s.mp4?region=eu-west-1")])
    check_same_paths(table([("a", "/A/a.mp4"), ("c", "/B/c.mp4")]), committed)  # same files, new ids
    check_same_paths(table([("s", "s3://bkt/x/s.mp4?endpoint_override=h:1")]), committed)  # same object
    with pytest.raises(VidclustError, match=r"^video id b in SOURCE is already in OUT for another file "
                       r"\(/A/b\.mp4 vs /B/b\.mp4\): give the new videos other names or ids "
                       r"\(a manifest's video_id column\)$"):
        check_same_paths(table([("a", "/A/a.mp4"), ("b", "/B/b.mp4")]), committed)
    with pytest.raises(VidclustError, match=r"^video id a .* \(and 1 more ids\): "):
        check_same_paths(table([("a", "/B/a.mp4"), ("b", "/B/b.mp4")]), committed)


def test_local_file_reached_by_another_path_is_the_same(tmp_path):
    import pyarrow as pa

    from vidclust.store.sources import check_same_paths

    tiny(tmp_path / "real" / "a.mp4")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    check_same_paths(pa.table({"video_id": ["a"], "path": [str(tmp_path / "link" / "a.mp4")]}),
                     pa.table({"video_id": ["a"], "path": [str(tmp_path / "real" / "a.mp4")]}))


def test_new_videos_named_like_done_ones_are_refused(tmp_path, tiny_clip):
    a, b = tmp_path / "A", tmp_path / "B"
    tiny(a / "a.mp4", seed=1)
    tiny(a / "b.mp4", seed=2)
    tiny(b / "b.mp4", seed=3)  # another clip, the same name
    tiny(b / "c.mp4", seed=4)
    out = tmp_path / "out"
    proc = cli("embed", str(a), str(out), *model_args(tiny_clip))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = cli("cluster", str(out), "-q", "--set", "cluster.k=2")  # assign refuses an OUT without clusters first
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = (out / "videos.parquet").read_bytes()
    line = (f"vidclust: error: video id b in SOURCE is already in OUT for another file ({a / 'b.mp4'} vs "
            f"{b / 'b.mp4'}): give the new videos other names or ids (a manifest's video_id column)")
    for args in (["embed", str(b), str(out), *model_args(tiny_clip)], ["assign", str(out), str(b), "-q"]):
        proc = cli(*args)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.splitlines() == [line]
    assert (out / "videos.parquet").read_bytes() == before  # nothing was done


# ---------------------------------------------------------------------------------------------
# 9: every input failed


def test_run_where_every_input_failed_says_so(tmp_path, tiny_clip):
    src = tmp_path / "src"
    src.mkdir()
    (src / "empty.mp4").write_bytes(b"")
    (src / "text.mp4").write_text("not a video\n")
    out = tmp_path / "out"
    proc = cli("run", str(src), str(out), *model_args(tiny_clip))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert error_lines(proc.stderr) == [
        f"vidclust: error: every input video failed (2 of 2): see {out / 'videos.parquet'}"]
    assert "Traceback" not in proc.stderr
    assert {v["status"] for v in videos_of(out).values()} == {"failed"}
