"""Driver cost and aggregation at scale: the new embed design against the old one, in one run.

    .venv/bin/python bench/bench_scale.py [--quick] [--manifest-rows 1000000] [--agg-rows 10000000] ...

"Old" is commit 1fcf7fd (every embedding row went back to the driver, whose EmbeddingSink wrote
Parquet; aggregation was a Ray Data groupby/map_groups shuffle), run from a git worktree of it.
"New" is a worktree of HEAD by default (the committed code, not a working tree someone is editing;
`--new-src PATH` measures another tree). Every measurement runs in a fresh Python subprocess with
PYTHONPATH set to the tree under test and RAY_ADDRESS=local, so that VmHWM (the peak RSS of a
process image) is that measurement's own.

1. Driver cost of `run_embed` (driver in-process: process_time / VmHWM are the driver's only) on
   short clips with a tiny random open_clip model, at two embedding sizes (same vision tower,
   different `embed_dim`); the gap between the two peaks is what the driver holds per frame.
   A run on one clip gives the fixed cost, so the marginal driver CPU per 1,000 frames is shown
   beside the plain average.
2. Driver peak memory for a manifest of N rows up to the decode stage: new (init_ray,
   video_dataset, the video_id/path columns pulled as Arrow, check_unique_ids) against old
   `list_videos` (Python dicts for every row; then, as the old run_embed went on, init_ray, the
   per-video `meta` dict and `ray.data.from_items` of the rows).
3. Aggregation of synthetic frames/ folders (the exact `frames_schema`): new `aggregate_with_ray`
   (two maps over the files), old `aggregate_with_ray` (groupby shuffle), and one process that
   reads each file with pyarrow and calls `aggregate_frames` (carrying a video cut by a file
   boundary over to the next file). Peak memory of the whole process tree is sampled every 0.5 s
   with psutil (sum of RSS, which counts shared object-store pages once per process that maps
   them, and sum of PSS, which counts them once). The results of the three are checked equal.

Prints one table (measure, before, after, after/before) and writes everything as JSON.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20

TINY_VISION = {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32}
TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}


# ---------------------------------------------------------------------------------------------
# helpers shared by parent and children


def proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def hwm_mib() -> float:
    return proc_status_kib("VmHWM") / 1024


def emit(tag: str, payload) -> None:
    print(f"@@{tag} {json.dumps(payload)}", flush=True)


def digest(ids: list, vectors) -> dict:
    import numpy as np

    v = np.ascontiguousarray(vectors, dtype=np.float32)
    return {"n_videos": len(ids), "ids_sha": hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16],
            "vectors_sha": hashlib.sha256(v.tobytes()).hexdigest()[:16],
            "vectors_sum": float(v.astype(np.float64).sum()), "dim": int(v.shape[1]) if v.ndim == 2 else 0}


def vidclust_file() -> str:
    import vidclust

    return vidclust.__file__


# ---------------------------------------------------------------------------------------------
# children: one measurement each, in a fresh process (PYTHONPATH = the tree under test)


def child_embed(a: dict) -> None:
    import resource

    import open_clip  # noqa: F401  imports before the measurement: it is the run's own cost
    import ray
    import ray.data  # noqa: F401
    import torch  # noqa: F401

    from vidclust.config import load_config
    from vidclust.embedding.run import run_embed

    cfg = load_config(None, a["overrides"])
    hwm0 = hwm_mib()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, t0 = time.process_time(), time.perf_counter()
    summary = run_embed(cfg, a["source"], a["out"], show_progress=False)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    hwm1 = hwm_mib()
    worker_file = ray.get(ray.remote(vidclust_file).remote())
    emit("RESULT", {"frames": summary["frames"], "videos_ok": summary["embedded_ok"],
                    "embed_dim": summary["embed_dim"], "wall_s": wall, "cpu_s": cpu,
                    "rusage_cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
                    "hwm_before_mib": hwm0, "hwm_peak_mib": hwm1,
                    "vidclust": vidclust_file(), "worker_vidclust": worker_file})


def child_manifest_new(a: dict) -> None:
    import ray.data  # noqa: F401  (imported before the first memory mark, as in child_manifest_old)

    from vidclust.config import load_config
    from vidclust.runtime import collect_table, init_ray, set_progress_bars
    from vidclust.store.sources import check_unique_ids, video_dataset

    cfg = load_config(None, [])
    hwm0 = hwm_mib()
    t0 = time.perf_counter()
    init_ray(cfg)
    set_progress_bars(False)
    hwm_ray = hwm_mib()
    videos = video_dataset(a["manifest"])
    listed = collect_table(videos, columns=["video_id", "path"])
    ids = listed.column("video_id").combine_chunks()
    check_unique_ids(ids, listed.column("path").combine_chunks(), a["manifest"])
    wall = time.perf_counter() - t0
    emit("RESULT", {"rows": len(ids), "wall_s": wall, "hwm_before_mib": hwm0, "hwm_after_init_ray_mib": hwm_ray,
                    "hwm_peak_mib": hwm_mib(), "vidclust": vidclust_file()})


def child_manifest_old(a: dict) -> None:
    import ray
    import ray.data  # noqa: F401

    from vidclust.config import load_config
    from vidclust.runtime import init_ray
    from vidclust.store.sources import list_videos

    cfg = load_config(None, [])
    hwm0 = hwm_mib()
    t0 = time.perf_counter()
    videos = list_videos(a["manifest"])
    t_list = time.perf_counter() - t0
    hwm_list = hwm_mib()
    # what the old run_embed did next, up to the decode stage (nothing done yet: todo == videos)
    init_ray(cfg)
    ray.data.DataContext.get_current().enable_progress_bars = False
    meta = {r["video_id"]: r for r in videos.select(["video_id", "path", "captions", "category"]).to_pylist()}
    ds = ray.data.from_items(videos.select(["video_id", "path"]).to_pylist(),
                             override_num_blocks=min(videos.num_rows, 2000))
    wall = time.perf_counter() - t0
    emit("RESULT", {"rows": videos.num_rows, "list_s": t_list, "wall_s": wall, "hwm_before_mib": hwm0,
                    "hwm_list_videos_mib": hwm_list, "hwm_peak_mib": hwm_mib(), "meta": len(meta),
                    "blocks": ds.num_blocks() if hasattr(ds, "num_blocks") else None,
                    "vidclust": vidclust_file()})


def child_agg(a: dict) -> None:
    import pyarrow.fs as pafs

    files = json.loads(Path(a["files"]).read_text())
    mode = a["mode"]
    if mode == "base":
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from vidclust.clustering.aggregate import aggregate_frames

        hwm0 = hwm_mib()
        emit("PHASE", {"start": time.time()})
        t0 = time.perf_counter()
        all_ids, vecs, carry = [], [], None
        for f in files:  # in video order: only the last video of a file may go on in the next one
            t = pq.read_table(f, columns=["video_id", "frame_index", "embedding"])
            if carry is not None:
                t = pa.concat_tables([carry, t])
            last = pc.equal(t.column("video_id"), t.column("video_id")[-1])
            carry, t = t.filter(last), t.filter(pc.invert(last))
            ids, v = aggregate_frames(t, "mean")
            all_ids += ids
            vecs.append(v)
        ids, v = aggregate_frames(carry, "mean")
        all_ids += ids
        vecs.append(v)
        import numpy as np

        order = np.argsort(np.array(all_ids, dtype=object))
        vectors = np.concatenate(vecs)[order]
        all_ids = [all_ids[i] for i in order]
    else:
        import ray
        import ray.data  # noqa: F401

        from vidclust.clustering.aggregate import aggregate_with_ray

        ray.init(address="local", logging_level="WARNING")
        ray.data.DataContext.get_current().enable_progress_bars = False
        time.sleep(2)  # let the idle workers Ray prestarts come up before the start mark
        hwm0 = hwm_mib()
        emit("PHASE", {"start": time.time()})
        t0 = time.perf_counter()
        all_ids, vectors = aggregate_with_ray(files, "mean", filesystem=pafs.LocalFileSystem())
    wall = time.perf_counter() - t0
    emit("PHASE", {"end": time.time()})
    driver_peak = hwm_mib()
    plan = {}
    if mode == "new":  # after the measurement: the work items the new code planned, and what they read
        import os as _os

        import pyarrow as pa

        from vidclust.clustering.aggregate import plan_aggregation, videos_in_files

        fv = videos_in_files({"file": files}, pafs.LocalFileSystem())
        work = plan_aggregation(pa.table({"file": pa.array(list(fv["file"]), pa.string()),
                                          "video_id": pa.array(list(fv["video_id"]), pa.string())}),
                                 by_parts=True)
        size = {f: _os.path.getsize(f) for f in files}
        plan = {"work_items": len(work), "multi_file_items": sum(len(w["files"]) > 1 for w in work),
                "videos_in_multi_file_items": sum(len(w["video_ids"]) for w in work if len(w["files"]) > 1),
                "file_reads": sum(len(w["files"]) for w in work),
                "read_amplification": sum(size[f] for w in work for f in w["files"]) / sum(size.values())}
    emit("RESULT", {"mode": mode, "files": len(files), "wall_s": wall, "hwm_before_mib": hwm0,
                    "driver_hwm_peak_mib": driver_peak, "vidclust": vidclust_file(), "plan": plan,
                    **digest(all_ids, vectors)})


CHILDREN = {"embed": child_embed, "manifest_new": child_manifest_new, "manifest_old": child_manifest_old,
            "agg": child_agg}


# ---------------------------------------------------------------------------------------------
# the parent: runs children, samples the process tree


class TreeSampler:
    """Samples the summed RSS and PSS of a process and all its descendants every `interval` s."""

    def __init__(self, pid: int, interval: float = 0.5):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float, float, int]] = []  # (time, rss MiB, pss MiB, processes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                break
            rss = pss = 0
            for p in procs:
                try:
                    m = p.memory_full_info()
                    rss += m.rss
                    pss += m.pss
                except psutil.Error:
                    pass
            self.samples.append((time.time(), rss / MiB, pss / MiB, len(procs)))
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, start: float, end: float) -> dict:
        inside = [s for s in self.samples if start - self.interval <= s[0] <= end + self.interval]
        before = [s for s in self.samples if s[0] <= start] or self.samples[:1]
        if not inside:
            return {}
        return {"tree_rss_peak_mib": max(s[1] for s in inside), "tree_pss_peak_mib": max(s[2] for s in inside),
                "tree_rss_at_start_mib": before[-1][1], "tree_pss_at_start_mib": before[-1][2],
                "tree_max_processes": max(s[3] for s in inside), "samples": len(inside)}


def run_child(task: str, tree: Path, args: dict, *, sample_tree: bool = False, timeout: float = 3600) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "RAY_ADDRESS": "local", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", task, json.dumps(args)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(tree), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid) if sample_tree else None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"child {task} timed out after {timeout} s:\n{err[-3000:]}")
    finally:
        if sampler:
            sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"child {task} {args} failed ({proc.returncode}):\n{err[-5000:]}\n{out[-2000:]}")
    result, phases = None, {}
    for line in out.splitlines():
        if line.startswith("@@RESULT "):
            result = json.loads(line[9:])
        elif line.startswith("@@PHASE "):
            phases.update(json.loads(line[8:]))
    if result is None:
        raise RuntimeError(f"child {task} printed no result:\n{out[-2000:]}\n{err[-3000:]}")
    if not str(result.get("vidclust", "")).startswith(str(tree)):
        raise RuntimeError(f"child {task} imported vidclust from {result.get('vidclust')}, not {tree}")
    if result.get("worker_vidclust") and not result["worker_vidclust"].startswith(str(tree)):
        raise RuntimeError(f"child {task}: a Ray worker imported vidclust from {result['worker_vidclust']}")
    result["process_s"] = time.perf_counter() - t0
    if sampler and "start" in phases and "end" in phases:
        result.update(sampler.window(phases["start"], phases["end"]))
    return result


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def worktree(path: Path, commit: str) -> Path:
    """A detached git worktree of `commit` at `path` (re-used when it is already there at that commit)."""
    want = subprocess.run(["git", "-C", str(REPO), "rev-parse", commit], capture_output=True, text=True,
                          check=True).stdout.strip()
    if (path / ".git").exists():
        have = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        if have == want:
            return path
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), want], check=True,
                   capture_output=True)
    return path


# ---------------------------------------------------------------------------------------------
# inputs


def tiny_models(work: Path, dims: list[int]) -> dict[int, tuple[str, str]]:
    """{dim: (model-config JSON, checkpoint)}: the same tiny vision tower, random weights."""
    import open_clip
    import torch

    out = {}
    for dim in dims:
        cfg_path = work / "models" / f"bench-clip-{dim}.json"
        ckpt = work / "models" / f"bench-clip-{dim}.pt"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(json.dumps({"embed_dim": dim, "vision_cfg": TINY_VISION, "text_cfg": TINY_TEXT}))
        if not ckpt.exists():
            open_clip.add_model_config(str(cfg_path))
            torch.manual_seed(0)
            model = open_clip.create_model(cfg_path.stem, pretrained=None)
            torch.save(model.state_dict(), ckpt)
        out[dim] = (str(cfg_path), str(ckpt))
    return out


def write_manifest(path: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists() and pq.read_metadata(path).num_rows == rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    n = np.arange(1, rows + 1)
    ids = pa.array([f"clip_{i:07d}" for i in n], pa.string())
    paths = pa.array([f"/data/clip_{i:07d}.mp4" for i in n], pa.string())
    words = ["a dog runs on a beach", "two people cook pasta", "a car drives at night", "kids play football",
             "a cat sleeps on a sofa", "rain falls on a city street", "a chef slices onions"]
    caps = pa.array([[words[i % 7], words[(i * 3 + 1) % 7]] for i in range(rows)], pa.list_(pa.string()))
    cats = pa.array([f"cat{i % 20}" for i in range(rows)], pa.string())
    pq.write_table(pa.table({"video_id": ids, "path": paths, "captions": caps, "category": cats}), path)


def write_frames(folder: Path, rows: int, dim: int, rows_per_file: int, seed: int = 0) -> list[str]:
    """`rows` frame rows in files of `rows_per_file` rows (frames_schema(dim)): videos of 6..14
    frames (10 on average) numbered in order, each file sorted by video then frame, so every
    file holds whole videos except the one its boundary cuts, which goes on in the next file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vidclust.store.contract import frames_schema

    done = folder / "_done.json"
    spec = {"rows": rows, "dim": dim, "rows_per_file": rows_per_file, "seed": seed}
    if done.exists() and json.loads(done.read_text()).get("spec") == spec:
        return json.loads(done.read_text())["files"]
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "frames").mkdir(parents=True)
    schema = frames_schema(dim, {"model": "synthetic", "embed_dim": dim})
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, 15, size=rows // 6 + 2)
    video_of_row = np.repeat(np.arange(len(lengths)), lengths)[:rows]
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    frame_of_row = (np.arange(rows) - starts[video_of_row]).astype(np.int32)
    files = []
    for k, lo in enumerate(range(0, rows, rows_per_file)):
        hi = min(rows, lo + rows_per_file)
        v = video_of_row[lo:hi]
        uniq, inverse = np.unique(v, return_inverse=True)
        names = pa.array([f"v{u:08d}" for u in uniq], pa.string())
        emb = rng.random((hi - lo, dim), dtype=np.float32)
        emb -= 0.5
        table = pa.table({
            "video_id": names.take(pa.array(inverse)),
            "frame_index": pa.array(frame_of_row[lo:hi] * 2, pa.int32()),  # frame_interval 2
            "timestamp_s": pa.array(frame_of_row[lo:hi] * np.float32(2 / 25), pa.float32()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        }, schema=schema)
        path = folder / "frames" / f"part-{k:05d}.parquet"
        pq.write_table(table, path)
        files.append(str(path))
    done.write_text(json.dumps({"spec": spec, "files": files}))
    return files


def du_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet")) / MiB


# ---------------------------------------------------------------------------------------------
# the three parts


def bench_embed(args, work: Path, old: Path, new: Path, results: dict) -> None:
    from vidclust.example import write_topic_clips

    corpus = work / f"videos-{args.clips}x{args.clip_seconds:g}s"  # write_topic_clips keeps existing files
    clips = write_topic_clips(corpus, args.clips, args.clip_seconds, size=(120, 160))
    one = work / f"one-{args.clip_seconds:g}s"
    one.mkdir(exist_ok=True)
    if not (one / clips[0].name).exists():
        (one / clips[0].name).symlink_to(clips[0])
    models = tiny_models(work, args.dims)
    res = results.setdefault("embed", {})
    for design, tree in (("old", old), ("new", new)):
        for dim in args.dims:
            model_json, ckpt = models[dim]
            overrides = [f"embed.encoder.model={model_json}", f"embed.encoder.pretrained={ckpt}",
                         f"embed.sampling.frame_interval={args.frame_interval}"]
            for kind, src in (("full", corpus), ("one", one)):
                if kind == "one" and not args.fixed_cost:
                    continue
                out = work / "out" / f"{design}-{dim}-{kind}"
                shutil.rmtree(out, ignore_errors=True)
                log(f"embed: {design} design, embed_dim {dim}, {kind} corpus")
                r = run_child("embed", tree, {"overrides": overrides, "source": str(src), "out": str(out)})
                r["cpu_ms_per_1000_frames"] = 1000 * 1000 * r["cpu_s"] / max(1, r["frames"])
                res[f"{design}_{dim}_{kind}"] = r
                log(f"  {r['frames']} frames, driver CPU {r['cpu_s']:.2f} s, peak {r['hwm_peak_mib']:.0f} MiB, "
                    f"wall {r['wall_s']:.1f} s")
                shutil.rmtree(out, ignore_errors=True)
            if args.fixed_cost:
                full, one_r = res[f"{design}_{dim}_full"], res[f"{design}_{dim}_one"]
                df = full["frames"] - one_r["frames"]
                full["marginal_cpu_ms_per_1000_frames"] = 1e6 * (full["cpu_s"] - one_r["cpu_s"]) / df if df > 0 else None


def bench_manifest(args, work: Path, old: Path, new: Path, results: dict) -> None:
    manifest = work / f"manifest-{args.manifest_rows}.parquet"
    log(f"manifest: writing {args.manifest_rows} rows")
    write_manifest(manifest, args.manifest_rows)
    res = results.setdefault("manifest", {"rows": args.manifest_rows, "file_mib": manifest.stat().st_size / MiB})
    log("manifest: new (init_ray, video_dataset, ids+paths as Arrow, check_unique_ids)")
    res["new"] = run_child("manifest_new", new, {"manifest": str(manifest)})
    log(f"  peak {res['new']['hwm_peak_mib']:.0f} MiB in {res['new']['wall_s']:.1f} s")
    log("manifest: old (list_videos; then init_ray, meta dict, from_items)")
    res["old"] = run_child("manifest_old", old, {"manifest": str(manifest)})
    log(f"  list_videos peak {res['old']['hwm_list_videos_mib']:.0f} MiB, up to decode {res['old']['hwm_peak_mib']:.0f} MiB")


def bench_agg(args, work: Path, old: Path, new: Path, results: dict) -> None:
    res = results.setdefault("aggregate", {})
    sets = [("small", args.agg_small_rows, args.dim, ("old", "new", "base")),
            ("large", args.agg_rows, args.agg_dim, ("new", "base"))]
    for name, rows, dim, modes in sets:
        if rows <= 0:
            continue
        folder = work / f"frames-{rows}-{dim}"
        t0 = time.perf_counter()
        log(f"aggregate: writing {rows} frame rows at {dim}-d in files of {args.rows_per_file}")
        files = write_frames(folder, rows, dim, args.rows_per_file)
        files_json = folder / "files.json"
        files_json.write_text(json.dumps(files))
        entry = res.setdefault(name, {"rows": rows, "dim": dim, "files": len(files), "parquet_mib": du_mib(folder),
                                      "write_s": time.perf_counter() - t0})
        for mode in modes:
            tree = old if mode == "old" else new
            log(f"aggregate {name}: {mode}")
            r = run_child("agg", tree, {"files": str(files_json), "mode": mode}, sample_tree=True)
            entry[mode] = r
            log(f"  {r['wall_s']:.1f} s, tree RSS peak {r.get('tree_rss_peak_mib', 0):.0f} MiB, "
                f"PSS peak {r.get('tree_pss_peak_mib', 0):.0f} MiB, driver peak {r['driver_hwm_peak_mib']:.0f} MiB, "
                f"{r['n_videos']} videos")
        ref = entry["base"]
        entry["results_equal"] = {m: all(entry[m][k] == ref[k] for k in ("n_videos", "ids_sha", "vectors_sha"))
                                  for m in modes if m != "base"}
        entry["results_close"] = {m: abs(entry[m]["vectors_sum"] - ref["vectors_sum"]) < 1e-3 * max(1.0, abs(ref["vectors_sum"]))
                                  and entry[m]["n_videos"] == ref["n_videos"] for m in modes if m != "base"}
        if not args.keep_data:
            shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the table


def ratio(before, after):
    return after / before if before and after is not None else None


def _growth(r: dict, kind: str):
    if f"tree_{kind}_peak_mib" not in r:
        return None
    return r[f"tree_{kind}_peak_mib"] - r[f"tree_{kind}_at_start_mib"]


def build_table(results: dict) -> list[dict]:
    rows = []

    def add(measure, before, after, unit, r=None):
        rows.append({"measure": measure, "before": before, "after": after, "unit": unit,
                     "ratio": r if r is not None else ratio(before, after)})

    e = results.get("embed", {})
    dims = sorted({int(k.split("_")[1]) for k in e})
    for dim in dims:
        o, n = e.get(f"old_{dim}_full"), e.get(f"new_{dim}_full")
        if not (o and n):
            continue
        tag = f"embed {dim}-d ({n['frames']} frames)"
        add(f"{tag}: driver CPU per run", o["cpu_s"], n["cpu_s"], "s")
        add(f"{tag}: driver CPU per 1,000 frames (average)", o["cpu_ms_per_1000_frames"], n["cpu_ms_per_1000_frames"], "ms")
        if o.get("marginal_cpu_ms_per_1000_frames") is not None:
            add(f"{tag}: driver CPU per 1,000 frames (marginal, beyond a 1-clip run)",
                o["marginal_cpu_ms_per_1000_frames"], n["marginal_cpu_ms_per_1000_frames"], "ms")
        add(f"{tag}: driver peak RSS (VmHWM)", o["hwm_peak_mib"], n["hwm_peak_mib"], "MiB")
        add(f"{tag}: driver peak growth during run_embed", o["hwm_peak_mib"] - o["hwm_before_mib"],
            n["hwm_peak_mib"] - n["hwm_before_mib"], "MiB")
    if len(dims) >= 2:
        lo, hi = dims[0], dims[-1]
        if all(f"{d}_{hi}_full" in e and f"{d}_{lo}_full" in e for d in ("old", "new")):
            gap = {d: e[f"{d}_{hi}_full"]["hwm_peak_mib"] - e[f"{d}_{lo}_full"]["hwm_peak_mib"] for d in ("old", "new")}
            add(f"embed: driver peak {hi}-d minus {lo}-d (goal <= 150 MiB)", gap["old"], gap["new"], "MiB")
    m = results.get("manifest", {})
    if "old" in m and "new" in m:
        tag = f"manifest {m['rows']:,} rows"
        add(f"{tag}: driver peak (old: list_videos; new: init_ray..check_unique_ids)",
            m["old"]["hwm_list_videos_mib"], m["new"]["hwm_peak_mib"], "MiB")
        add(f"{tag}: driver peak growth over imports (same)", m["old"]["hwm_list_videos_mib"] - m["old"]["hwm_before_mib"],
            m["new"]["hwm_peak_mib"] - m["new"]["hwm_before_mib"], "MiB")
        add(f"{tag}: driver peak up to decode (old: + init_ray, meta dict, from_items)",
            m["old"]["hwm_peak_mib"], m["new"]["hwm_peak_mib"], "MiB")
        add(f"{tag}: driver wall time up to decode", m["old"]["wall_s"], m["new"]["wall_s"], "s")
    for name, a in results.get("aggregate", {}).items():
        tag = f"aggregate {a['rows'] / 1e6:g}M rows {a['dim']}-d ({a['files']} files, {a['parquet_mib'] / 1024:.1f} GiB)"
        base = a.get("base")
        plan = a.get("new", {}).get("plan") or {}
        if plan:
            add(f"{tag}: bytes read / folder size (new: {plan['work_items']} items, "
                f"{plan['multi_file_items']} multi-file)", 1.0, plan["read_amplification"], "x")
        for mode in ("old", "new"):
            if mode not in a:
                continue
            if mode == "new" and "old" not in a:
                add(f"{tag}: wall, one process (before) vs new Ray maps", base["wall_s"], a["new"]["wall_s"], "s")
                add(f"{tag}: process-tree peak PSS, one process vs new", base.get("tree_pss_peak_mib"),
                    a["new"].get("tree_pss_peak_mib"), "MiB")
                add(f"{tag}: tree peak PSS above its start, one process vs new",
                    _growth(base, "pss"), _growth(a["new"], "pss"), "MiB")
                add(f"{tag}: process-tree peak RSS sum, one process vs new", base.get("tree_rss_peak_mib"),
                    a["new"].get("tree_rss_peak_mib"), "MiB")
                add(f"{tag}: driver peak (VmHWM), one process vs new", base["driver_hwm_peak_mib"],
                    a["new"]["driver_hwm_peak_mib"], "MiB")
        if "old" in a and "new" in a:
            add(f"{tag}: wall, old groupby vs new maps", a["old"]["wall_s"], a["new"]["wall_s"], "s")
            add(f"{tag}: process-tree peak PSS, old vs new", a["old"].get("tree_pss_peak_mib"),
                a["new"].get("tree_pss_peak_mib"), "MiB")
            add(f"{tag}: tree peak PSS above its start (idle Ray), old vs new",
                _growth(a["old"], "pss"), _growth(a["new"], "pss"), "MiB")
            add(f"{tag}: process-tree peak RSS sum, old vs new", a["old"].get("tree_rss_peak_mib"),
                a["new"].get("tree_rss_peak_mib"), "MiB")
            add(f"{tag}: driver peak (VmHWM), old vs new", a["old"]["driver_hwm_peak_mib"],
                a["new"]["driver_hwm_peak_mib"], "MiB")
            if base:
                add(f"{tag}: wall, one process (pyarrow + aggregate_frames) vs new", base["wall_s"], a["new"]["wall_s"], "s")
    return rows


def format_table(rows: list[dict]) -> str:
    def f(v):
        if v is None:
            return "-"
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"

    w = max(len(r["measure"]) for r in rows) if rows else 10
    lines = [f"{'measure':<{w}}  {'unit':>4}  {'before':>10}  {'after':>10}  {'after/before':>12}", "-" * (w + 44)]
    for r in rows:
        rat = "-" if r["ratio"] is None else f"{r['ratio']:.3g}x"
        lines.append(f"{r['measure']:<{w}}  {r['unit']:>4}  {f(r['before']):>10}  {f(r['after']):>10}  {rat:>12}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few minutes")
    ap.add_argument("--parts", default="embed,manifest,agg", help="comma-separated: embed, manifest, agg")
    ap.add_argument("--work", default="/tmp/vidclust-bench-scale", help="inputs and outputs (large files)")
    ap.add_argument("--old-commit", default="1fcf7fd")
    ap.add_argument("--old-tree", default="/tmp/vidclust-old", help="where the old commit's worktree goes")
    ap.add_argument("--new-commit", default="HEAD")
    ap.add_argument("--new-tree", default="/tmp/vidclust-new", help="where the new commit's worktree goes")
    ap.add_argument("--new-src", default=None, help="measure this source tree as 'new' instead (e.g. /work/main)")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--clip-seconds", type=float, default=10.0)
    ap.add_argument("--frame-interval", type=int, default=2)
    ap.add_argument("--dims", default="512,8192", help="embed_dim of the two tiny models")
    ap.add_argument("--no-fixed-cost", dest="fixed_cost", action="store_false",
                    help="skip the 1-clip runs that give the marginal driver CPU per frame")
    ap.add_argument("--manifest-rows", type=int, default=1_000_000)
    ap.add_argument("--agg-small-rows", type=int, default=2_000_000, help="rows at --dim: old, new and one process")
    ap.add_argument("--dim", type=int, default=512, help="embedding dim of the --agg-small-rows set")
    ap.add_argument("--agg-rows", type=int, default=10_000_000, help="rows at --agg-dim: new and one process")
    ap.add_argument("--agg-dim", type=int, default=64,
                    help="embedding dim of the --agg-rows set (10M x 512-d is 20 GiB: too slow to write "
                         "and read on 2 cores within the time budget)")
    ap.add_argument("--rows-per-file", type=int, default=31_250)
    ap.add_argument("--keep-data", action="store_true", help="keep the synthetic frames folders")
    ap.add_argument("--keep-worktrees", action="store_true")
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "bench_scale.json"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        CHILDREN[args.child[0]](json.loads(args.child[1]))
        return

    if args.quick:
        args.clips, args.clip_seconds = 3, 3.0
        args.manifest_rows = min(args.manifest_rows, 20_000)
        args.agg_small_rows, args.agg_rows, args.rows_per_file = 60_000, 120_000, 10_000
        if args.results == ap.get_default("results"):
            args.results = str(REPO / "bench" / "results" / "bench_scale_quick.json")
    args.dims = [int(d) for d in args.dims.split(",")]
    parts = set(args.parts.split(","))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    t_start = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    old = worktree(Path(args.old_tree), args.old_commit)
    new = Path(args.new_src).resolve() if args.new_src else worktree(Path(args.new_tree), args.new_commit)
    sys.path.insert(0, str(new))  # the parent writes inputs with the new tree's code

    def commit_of(tree: Path) -> str:
        r = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "vidclust"],
                               capture_output=True, text=True).stdout.strip()
        return r.stdout.strip() + (" + uncommitted changes" if dirty else "")

    import psutil
    import torch

    results: dict = {
        "machine": f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, torch {torch.__version__}",
        "old": {"tree": str(old), "commit": commit_of(old)}, "new": {"tree": str(new), "commit": commit_of(new)},
        "args": {k: v for k, v in vars(args).items() if k != "child"},
    }
    log(f"old: {results['old']}; new: {results['new']}")
    try:
        if "embed" in parts:
            bench_embed(args, work, old, new, results)
        if "manifest" in parts:
            bench_manifest(args, work, old, new, results)
        if "agg" in parts:
            bench_agg(args, work, old, new, results)
    finally:
        results["total_s"] = time.perf_counter() - t_start
        results["table"] = build_table(results)
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(results, indent=2))
        if not args.keep_worktrees:
            for tree in {old, Path(args.new_tree)}:
                if tree != new or not args.new_src:
                    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                                   capture_output=True)
    print()
    print(format_table(results["table"]))
    print(f"\n(total {results['total_s'] / 60:.1f} min; JSON in {args.results})")


if __name__ == "__main__":
    main()
