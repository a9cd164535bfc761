"""Where each output lives under one OUT directory (what each holds: vidclust.contract).

OUT may be a local path or any URI pyarrow's filesystems reach (s3://, gs://, hdfs://).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs

from vidclust.errors import VidclustError

# The files of clusters/ and report/, relative to OUT: named here and nowhere else (vidclust.contract
# says what each holds and is the one code that reads and writes them; tests/test_output_owners.py
# keeps it so). Users read these files: their names and places stay.
VIDEO_VECTORS_FILE = "clusters/video_vectors.parquet"
CENTERS_FILE = "clusters/centers.parquet"
ASSIGNMENTS_FILE = "clusters/assignments.parquet"
MAPPING_FILE = "clusters/video_cluster_mapping.csv"
NEAR_DUPLICATES_FILE = "clusters/near_duplicates.parquet"
METRICS_FILE = "clusters/metrics.json"
DESCRIPTIONS_FILE = "clusters/descriptions.parquet"
CLUSTER_DESCRIPTIONS_FILE = "clusters/cluster_descriptions.json"
PROJECTION_FILE = "report/projection.parquet"
REPORT_PAGE_FILE = "report/index.html"

# the report page's files beside it, relative to report/ (as the page links them)
POINTS_SCRIPT = "points.js"  # the page's data (vidclust.explorer)
EXPLORE_SCRIPT = "explore.js"  # the page's script (vidclust/data/explore.js)
TSNE_PLOT = "tsne.png"
SWEEP_PLOT = "k_sweep.png"
# the data set's plots: in report/, and beside stats.parquet for `vidclust stats --out DIR`
STATS_PLOTS = DURATION_PLOT, FPS_PLOT, RESOLUTION_PLOT, CODEC_PLOT = (
    "stats_duration.png", "stats_fps.png", "stats_resolution.png", "stats_codec.png")
THUMBNAILS_DIR = "frames"  # in report/: the frames of the videos nearest each centre


def thumbnail_file(cluster_id: int, index: int) -> str:
    """The `index`-th thumbnail strip of a cluster, relative to report/."""
    return f"{THUMBNAILS_DIR}/c{cluster_id}_{index}.jpg"


def _file(rel: str) -> property:
    """An attribute of OutputLayout: the path of the file `rel` of OUT."""
    return property(lambda layout: layout.path(rel), doc=f"the path of OUT/{rel}")


@dataclass(frozen=True)
class OutputLayout:
    root: str  # path within `fs`
    fs: pafs.FileSystem
    uri: str = ""  # OUT as the user gave it (with a URI's scheme and options): what messages name

    @classmethod
    def open(cls, out: str) -> "OutputLayout":
        try:
            fs, root = pafs.FileSystem.from_uri(out) if "://" in out else (pafs.LocalFileSystem(), _abs(out))
        except Exception as exc:  # pyarrow raises several types for bad URIs
            raise VidclustError(f"cannot open output location {out!r}: {exc}") from None
        return cls(root=root.rstrip("/"), fs=fs, uri=out)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @property
    def frames_dir(self) -> str:
        return self.path("frames")

    @property
    def meta_dir(self) -> str:
        """vidclust's own bookkeeping, outside every data folder (readers pointed at frames/ never
        see it; pyarrow and Spark also skip `_`-prefixed paths)."""
        return self.path("_vidclust")

    @property
    def commits_dir(self) -> str:  # the embed stage's commit log: which videos are done, where
        return self.path("_vidclust", "commits")

    @property
    def staging_dir(self) -> str:  # files being written, moved into place when whole
        return self.path("_vidclust", "staging")

    @property
    def unreadable_dir(self) -> str:  # frames/ files that are not readable Parquet, moved out of the way
        return self.path("_vidclust", "unreadable")

    @property
    def signature_file(self) -> str:  # the model and sampling the frames were embedded with
        return self.path("_vidclust", "embedding.json")

    @property
    def lock_file(self) -> str:  # held by the one run writing OUT
        return self.path("_vidclust", "lock.json")

    def relative(self, path: str) -> str:
        """`path` relative to OUT (as the contract names its files)."""
        return path[len(self.root):].lstrip("/") if path.startswith(self.root + "/") else path

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def videos(self) -> str:
        return self.path("videos.parquet")

    @property
    def run_json(self) -> str:
        return self.path("run.json")

    @property
    def clusters_dir(self) -> str:
        return self.path("clusters")

    video_vectors = _file(VIDEO_VECTORS_FILE)
    centers = _file(CENTERS_FILE)
    assignments = _file(ASSIGNMENTS_FILE)
    video_cluster_mapping = _file(MAPPING_FILE)
    near_duplicates = _file(NEAR_DUPLICATES_FILE)
    metrics = _file(METRICS_FILE)
    descriptions = _file(DESCRIPTIONS_FILE)
    cluster_descriptions = _file(CLUSTER_DESCRIPTIONS_FILE)

    @property
    def report_dir(self) -> str:
        return self.path("report")

    report_page = _file(REPORT_PAGE_FILE)
    projection = _file(PROJECTION_FILE)

    def report_file(self, name: str) -> str:
        """A file beside the report page (`name` relative to report/)."""
        return self.path("report", name)

    def frame_files(self) -> list[str]:
        """The Parquet files of frames/, sorted: not hidden or temporary files (the rule pyarrow and
        Spark follow for `_` and `.` prefixes)."""
        if not self.exists(self.frames_dir):
            return []
        files = []
        for info in self.fs.get_file_info(pafs.FileSelector(self.frames_dir, recursive=True)):
            rel = info.path[len(self.frames_dir):].lstrip("/")
            if (info.type == pafs.FileType.File and info.path.endswith(".parquet")
                    and not any(part.startswith(("_", ".")) for part in rel.split("/"))):
                files.append(info.path)
        return sorted(files)

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def makedirs(self, path: str) -> None:
        self.fs.create_dir(path, recursive=True)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()


def _abs(path: str) -> str:
    import os

    return os.path.abspath(os.path.expanduser(path))
