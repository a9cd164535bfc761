"""Key phrases of a cluster: KeyBERT over the joined summaries of its nearest videos.

Candidate phrases (1-2 words by default, English stop words removed) are taken from each summary
on its own, so no phrase spans the end of one summary and the start of the next; KeyBERT ranks them
by cosine similarity to the embedding of the whole joined text; the top `top_n` scoring at least
`threshold` are kept (the notebook's rule).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

STOP_WORDS = "english"


def load_keybert(sentence_model: Any):
    """A KeyBERT around an already loaded sentence-transformers model (load it once per run)."""
    from keybert import KeyBERT

    return KeyBERT(model=sentence_model)


def phrase_candidates(texts: Sequence[str], ngram_range: Sequence[int] = (1, 2)) -> list[str]:
    """The n-grams of every text, each text on its own (no n-gram across two texts)."""
    from sklearn.feature_extraction.text import CountVectorizer

    texts = [t for t in texts if t and t.strip()]
    if not texts:
        return []
    try:
        vec = CountVectorizer(ngram_range=tuple(ngram_range), stop_words=STOP_WORDS).fit(texts)
    except ValueError:  # nothing but stop words
        return []
    return [str(w) for w in vec.get_feature_names_out()]


def extract_keywords(text: str, keybert_model: Any, top_n: int = 10, threshold: float = 0.2,
                     ngram_range: Sequence[int] = (1, 2), candidates: Optional[Sequence[str]] = None
                     ) -> list[tuple[str, float]]:
    """[(phrase, score)] best first: at most `top_n`, each scoring at least `threshold`."""
    if not text or not text.strip():
        return []
    if candidates is not None and len(candidates) == 0:
        return []
    found = keybert_model.extract_keywords(
        text, candidates=list(candidates) if candidates is not None else None,
        keyphrase_ngram_range=tuple(ngram_range), stop_words=STOP_WORDS, top_n=top_n)
    return [(str(k), float(s)) for k, s in found if float(s) >= threshold]


def keywords_of_summaries(summaries: Sequence[Optional[str]], keybert_model: Any, top_n: int = 10,
                          threshold: float = 0.2, ngram_range: Sequence[int] = (1, 2)
                          ) -> list[tuple[str, float]]:
    """Key phrases of a cluster from its videos' summaries (None entries skipped)."""
    return keywords_for_clusters([summaries], keybert_model, top_n, threshold, ngram_range)[0]


def keywords_for_clusters(summaries_per_cluster: Sequence[Sequence[Optional[str]]], keybert_model: Any,
                          top_n: int = 10, threshold: float = 0.2, ngram_range: Sequence[int] = (1, 2)
                          ) -> list[list[tuple[str, float]]]:
    """Key phrases of many clusters at once: every candidate phrase (over all clusters) and every
    joined text are embedded in one batched pass, then KeyBERT ranks each cluster's candidates."""
    texts = [[s.strip() for s in summaries if s and s.strip()] for summaries in summaries_per_cluster]
    docs = [" ".join(t) for t in texts]
    candidates = [phrase_candidates(t, ngram_range) if t else [] for t in texts]
    todo = [i for i, c in enumerate(candidates) if c]
    out: list[list[tuple[str, float]]] = [[] for _ in texts]
    if not todo:
        return out
    vocabulary = sorted({w for i in todo for w in candidates[i]})
    index = {w: j for j, w in enumerate(vocabulary)}
    backend = keybert_model.model  # KeyBERT's embedding backend: .embed(list of str) -> array
    word_emb = np.asarray(backend.embed(vocabulary))
    doc_emb = np.asarray(backend.embed([docs[i] for i in todo]))
    for row, i in enumerate(todo):
        rows = [index[w] for w in candidates[i]]
        found = keybert_model.extract_keywords(
            docs[i], candidates=candidates[i], keyphrase_ngram_range=tuple(ngram_range), stop_words=STOP_WORDS,
            top_n=top_n, doc_embeddings=doc_emb[row:row + 1], word_embeddings=word_emb[rows])
        out[i] = [(str(k), float(sc)) for k, sc in found if float(sc) >= threshold]
    return out
