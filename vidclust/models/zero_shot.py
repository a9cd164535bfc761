"""Describing clusters without captions: CLIP's text tower scores a vocabulary of labels against
each cluster centre (cosine similarity in CLIP's joint space) and the best few are kept.

The vocabulary is the built-in list (vidclust/data/labels.txt: everyday scenes, objects, people,
animals and activities) or the user's own file, one label per line.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from vidclust.errors import VidclustError
from vidclust.vectors import l2_normalise

log = logging.getLogger("vidclust")

# describe.zero_shot: auto (the clusters left without keywords, e.g. no captions) | always | never
MODES = ("auto", "always", "never")
BUILTIN_VOCABULARY = Path(__file__).resolve().parents[1] / "data" / "labels.txt"  # vidclust/data/


def load_vocabulary(path: Optional[str] = None) -> list[str]:
    """Labels, one a line; blank lines and lines starting with '#' are skipped; repeats dropped."""
    p = Path(path).expanduser() if path else BUILTIN_VOCABULARY
    if not p.is_file():
        raise VidclustError(f"describe.zero_shot_vocabulary: file not found: {p}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise VidclustError(f"describe.zero_shot_vocabulary: {p} is not UTF-8 text") from None
    labels = list(dict.fromkeys(" ".join(line.split()) for line in lines
                                if line.strip() and not line.lstrip().startswith("#")))
    if not labels:
        raise VidclustError(f"describe.zero_shot_vocabulary: {p} holds no labels (one label per line)")
    return labels


def encode_labels(model: Any, tokenizer: Any, labels: Sequence[str], prompt: str = "a photo of {}",
                  device: str = "cpu", batch_size: int = 256) -> np.ndarray:
    """(len(labels), D) float32, each row the L2-normalised CLIP text embedding of the prompted label."""
    import torch

    chunks = []
    with torch.inference_mode():
        for i in range(0, len(labels), batch_size):
            tokens = tokenizer([prompt.format(label) for label in labels[i:i + batch_size]]).to(device)
            z = model.encode_text(tokens).float()
            chunks.append(torch.nn.functional.normalize(z, dim=-1).cpu().numpy())
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), np.float32)


def centers_in_text_space(centers: np.ndarray, text_dim: int) -> np.ndarray:
    """Centres as unit vectors of CLIP's D-dim joint space. Centres of mean+max aggregation are
    2D long (mean part first): their mean part is used."""
    centers = np.asarray(centers, dtype=np.float32)
    if centers.ndim != 2:
        raise ValueError("centers must be a 2-D array (clusters x dims)")
    if centers.shape[1] == 2 * text_dim:
        centers = centers[:, :text_dim]
    elif centers.shape[1] != text_dim:
        raise VidclustError(f"zero-shot labels: cluster centres have {centers.shape[1]} dims but the CLIP "
                            f"text tower gives {text_dim}: the frames were embedded by another model")
    return l2_normalise(centers)


def zero_shot_labels(centers: np.ndarray, text_features: np.ndarray, labels: Sequence[str],
                     top_n: int = 5) -> list[list[tuple[str, float]]]:
    """For each centre, the `top_n` labels of highest cosine similarity, best first, with it."""
    text_features = np.asarray(text_features, dtype=np.float32)
    if len(labels) != len(text_features):
        raise ValueError("one text feature per label needed")
    c = centers_in_text_space(centers, text_features.shape[1])
    sims = c @ text_features.T  # (clusters, labels)
    n = min(top_n, len(labels))
    out = []
    for row in sims:
        best = np.argsort(-row, kind="stable")[:n]
        out.append([(labels[j], float(row[j])) for j in best])
    return out


def clip_for_zero_shot(meta: dict, model: str, pretrained: str) -> tuple[str, str]:
    """(model, pretrained) to give `load_clip` so that its text tower matches the embedded frames.

    `meta` is the b"vidclust" metadata of the frames ({} when unknown); `model`/`pretrained` are the
    configured embed.encoder settings, used when the metadata names no loadable weights, and
    checked against the metadata when it records which weights embedded the frames.
    """
    if not meta:
        return model, pretrained
    recorded_model = meta.get("model")
    if recorded_model and recorded_model not in (model, Path(model).stem):
        import open_clip

        if recorded_model not in open_clip.list_models():
            raise VidclustError(f"zero-shot labels need the CLIP model that embedded the frames "
                                f"({recorded_model}); give its model-config JSON with "
                                "--set embed.encoder.model=PATH")
        model = recorded_model
    recorded_weights = meta.get("weights")
    if recorded_weights:
        if str(recorded_weights).startswith("file:"):
            from vidclust.models.encoder import weights_id

            if not Path(pretrained).expanduser().is_file() or weights_id(pretrained) != recorded_weights:
                raise VidclustError(f"zero-shot labels need the checkpoint that embedded the frames "
                                    f"({recorded_weights}); give it with --set embed.encoder.pretrained=PATH")
        else:
            pretrained = str(recorded_weights)
    return model, pretrained
