"""What the report reads of OUT, through vidclust.contract's readers only: the assignments,
centres, video vectors, metrics and descriptions of the clustering in OUT, and videos.parquet
(paths, captions, the data set's statistics), as one `ReportInputs`. Nothing is written.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from vidclust.store.contract import (embedding_matrix, read_assignments, read_centers, read_cluster_descriptions,
                               read_descriptions, read_metrics, read_video_vectors, read_videos)
from vidclust.errors import StaleOutputs
from vidclust.store.layout import OutputLayout
from vidclust.reporting.palette import NOISE_ID

log = logging.getLogger("vidclust")


@dataclass(frozen=True, eq=False)
class ReportInputs:
    """Everything the report shows, as read from OUT. A row per clustered video in `video_ids`,
    `labels`, `distance`, `has_vector`."""
    out: str  # OUT as given
    video_ids: list[str]
    labels: np.ndarray  # int64 [n], noise -1
    distance: np.ndarray  # float [n] to the video's centre, NaN unknown
    center_ids: list[int]
    centers: Optional[np.ndarray]  # float32 [k, D], None without centres
    vectors: Optional[np.ndarray]  # float32 [m, D] of the videos that have one (None without video_vectors)
    has_vector: np.ndarray  # bool [n]
    metrics: dict  # metrics.json ({} without it)
    keywords: dict[int, list[str]]  # {cluster_id: key phrases}
    summaries: dict[int, list[str]]  # {cluster_id: summaries}
    videos: Optional[pa.Table]  # videos.parquet, None without it
    video_info: dict[str, dict]  # {video_id: {path, captions}} from videos.parquet
    local_report_dir: Optional[str]  # report/ when OUT is on local disk


def read_report_inputs(layout: OutputLayout) -> ReportInputs:
    """The `ReportInputs` of the clustering in OUT; a half-written clusters/ is refused."""
    assignments = read_assignments(layout, ("video_id", "cluster_id"))
    video_ids = assignments.column("video_id").to_pylist()
    labels = np.array([NOISE_ID if c is None else int(c) for c in assignments.column("cluster_id").to_pylist()],
                      np.int64)
    distance = (np.array([np.nan if d is None else float(d) for d in assignments.column("distance").to_pylist()])
                if "distance" in assignments.column_names else np.full(len(labels), np.nan))
    centers_t = read_centers(layout, required=False)
    center_ids, centers = [], None
    if centers_t is not None and "cluster_id" in centers_t.column_names:
        center_ids = [int(c) for c in centers_t.column("cluster_id").to_pylist()]
        if "center" in centers_t.column_names:
            centers = embedding_matrix(centers_t.column("center"))
    vectors, has_vector = _vectors_of(read_video_vectors(layout, required=False), video_ids)
    metrics = read_metrics(layout, required=False)
    videos = read_videos(layout, required=False)
    keywords, summaries = _words_of(layout)
    return ReportInputs(
        out=layout.root, video_ids=video_ids, labels=labels, distance=distance, center_ids=center_ids,
        centers=centers, vectors=vectors, has_vector=has_vector,
        metrics=metrics if isinstance(metrics, dict) else {}, keywords=keywords, summaries=summaries,
        videos=videos, video_info=_video_info(videos),
        local_report_dir=layout.report_dir if layout.is_local else None)


def _words_of(layout: OutputLayout) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """({cluster_id: key phrases}, {cluster_id: summaries}) of the descriptions of the clustering
    there now; none, with a warning, for descriptions of another clustering or a stopped
    describe (left out rather than refused: the rest of the report holds, and words shown over
    another cluster's videos would be wrong without a word)."""
    try:
        return (_keywords_by_cluster(read_cluster_descriptions(layout, required=False)),
                _summaries_by_cluster(read_descriptions(layout, required=False)))
    except StaleOutputs as exc:
        log.warning("%s (this report shows no words)", exc)
        return {}, {}


def _video_info(videos: Optional[pa.Table]) -> dict[str, dict]:
    """{video_id: {path, captions}} from videos.parquet (empty without it)."""
    if videos is None or "video_id" not in videos.column_names:
        return {}
    cols = [c for c in ("video_id", "path", "captions") if c in videos.column_names]
    return {row["video_id"]: row for row in videos.select(cols).to_pylist()}


def _vectors_of(table: Optional[pa.Table], video_ids: list) -> tuple[Optional[np.ndarray], np.ndarray]:
    """(the vectors of those of `video_ids` that have one, in their order; which have one)."""
    if table is None or not {"video_id", "vector"} <= set(table.column_names):
        return None, np.zeros(len(video_ids), bool)
    pos = {v: i for i, v in enumerate(table.column("video_id").to_pylist())}
    rows = np.array([pos.get(v, -1) for v in video_ids], np.int64)
    return embedding_matrix(table.column("vector"))[rows[rows >= 0]], rows >= 0


def _keywords_by_cluster(data: Any) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            try:
                cid = int(key)
            except (TypeError, ValueError):
                continue
            if isinstance(value, (list, tuple)):
                out[cid] = [str(v[0] if isinstance(v, (list, tuple)) and v else v) for v in value]
            elif isinstance(value, str):
                out[cid] = [value]
    return out


def _summaries_by_cluster(descriptions: Optional[pa.Table]) -> dict[int, list[str]]:
    if descriptions is None or "summaries" not in descriptions.column_names \
            or "cluster_id" not in descriptions.column_names:
        return {}
    out = {}
    for cid, s in zip(descriptions.column("cluster_id").to_pylist(), descriptions.column("summaries").to_pylist()):
        if cid is None:
            continue
        if isinstance(s, str):
            s = [s]
        out[int(cid)] = [str(x) for x in (s or []) if x]
    return out
