"""Key phrases of a cluster: KeyBERT over the joined summaries of its nearest videos.

Candidate phrases (1-2 words by default, English stop words removed) are taken from each summary
on its own, so no phrase spans the end of one summary and the start of the next; KeyBERT ranks them
by cosine similarity to the embedding of the whole joined text; the top `top_n` scoring at least
`threshold` are kept (the notebook's rule).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from vidclust.vectors import l2_normalise

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


# --------------------------------------------------------------------------- labels that separate clusters

def _unique_texts(texts: Sequence[Optional[str]]) -> list[str]:
    seen, out = set(), []
    for t in texts:
        t = (t or "").strip()
        if t and t.lower() not in seen:
            seen.add(t.lower())
            out.append(t)
    return out


def class_tfidf(texts_per_cluster: Sequence[Sequence[Optional[str]]], ngram_range: Sequence[int] = (1, 2)
                ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """BERTopic's class-based TF-IDF: (vocabulary, weights (n_clusters, n_terms), counts).

    Each cluster is one class; a term's count in a class is summed over the class's texts (each
    text vectorised on its own, so no n-gram spans two texts). weight(t, c) = tf(t, c) x
    log(1 + A / f(t)), tf the term's frequency within c (counts / the class's total), A the
    average number of words per class, f(t) the term's count over all classes: a term frequent in
    one cluster and rare elsewhere weighs most."""
    from sklearn.feature_extraction.text import CountVectorizer

    texts = [_unique_texts(t) for t in texts_per_cluster]
    flat = [t for ts in texts for t in ts]
    n = len(texts)
    if not flat:
        return [], np.zeros((n, 0)), np.zeros((n, 0))
    try:
        vec = CountVectorizer(ngram_range=tuple(ngram_range), stop_words=STOP_WORDS)
        per_text = vec.fit_transform(flat)
    except ValueError:  # nothing but stop words
        return [], np.zeros((n, 0)), np.zeros((n, 0))
    owner = np.repeat(np.arange(n), [len(ts) for ts in texts])
    counts = np.zeros((n, per_text.shape[1]))
    np.add.at(counts, owner, per_text.toarray())
    words = [str(w) for w in vec.get_feature_names_out()]
    unigram = np.array([" " not in w for w in words])
    words_per_class = counts[:, unigram].sum(axis=1)
    avg_words = max(words_per_class.mean(), 1.0)
    f = counts.sum(axis=0)
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    idf = np.log(1 + avg_words / np.maximum(f, 1))
    return words, tf * idf, counts


def distinctive_keywords(texts_per_cluster: Sequence[Sequence[Optional[str]]], keybert_model: Any = None,
                         top_n: int = 10, threshold: float = 0.2, ngram_range: Sequence[int] = (1, 2)
                         ) -> list[list[tuple[str, float]]]:
    """Key phrases per cluster that tell the clusters apart, best first: [(phrase, score)].

    A cluster's candidates are the phrases of its texts (captions, summaries). Each is scored by
    its class-based TF-IDF (`class_tfidf`, scaled to the cluster's best = 1) times KeyBERT's
    relevance, the cosine similarity of the phrase's embedding to the cluster's joined text
    (`keybert_model`; None ranks by c-TF-IDF alone); a phrase whose relevance is below
    `threshold` is dropped, as KeyBERT's score was. Then top labels are made distinct: taking
    (cluster, phrase) pairs best score first, each cluster's top label is the best phrase no
    other cluster took as its top, unless that cluster's texts are the same as its own."""
    texts = [_unique_texts(t) for t in texts_per_cluster]
    n = len(texts)
    words, weights, counts = class_tfidf(texts, ngram_range)
    out: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    if not words:
        return out
    relevance = np.ones_like(weights)
    if keybert_model is not None:
        todo = [i for i in range(n) if texts[i]]
        backend = keybert_model.model  # KeyBERT's embedding backend: .embed(list of str) -> array
        used = sorted({j for i in todo for j in np.flatnonzero(counts[i])})
        word_emb = l2_normalise(backend.embed([words[j] for j in used]), np.float64)
        doc_emb = l2_normalise(backend.embed([" ".join(texts[i]) for i in todo]), np.float64)
        relevance = np.full_like(weights, -1.0)
        relevance[np.ix_(todo, used)] = doc_emb @ word_emb.T
    ranked: list[list[tuple[str, float]]] = []
    for i in range(n):
        cand = np.flatnonzero((counts[i] > 0) & (relevance[i] >= (threshold if keybert_model is not None else -np.inf)))
        if not len(cand):
            ranked.append([])
            continue
        score = weights[i, cand] / max(weights[i, cand].max(), 1e-12) * np.clip(relevance[i, cand], 0, None)
        order = cand[np.lexsort((np.arange(len(cand)), -score))]
        s = dict(zip(cand, score))
        ranked.append([(words[j], float(round(s[j], 4))) for j in order])
    same = [" ".join(sorted(t.lower() for t in ts)) for ts in texts]
    top = _distinct_tops(ranked, same)
    for i in range(n):
        phrases = ranked[i]
        if top[i] is not None:
            phrases = [phrases[top[i]]] + phrases[:top[i]] + phrases[top[i] + 1:]
        out[i] = phrases[:top_n]
    return out


def _distinct_tops(ranked: list[list[tuple[str, float]]], same: list[str]) -> list[Optional[int]]:
    """Per cluster, the index in its ranking of its top label (None: no phrases)."""
    pairs = sorted(((score, -pos, i, pos, phrase) for i, r in enumerate(ranked)
                    for pos, (phrase, score) in enumerate(r)), reverse=True)
    top: list[Optional[int]] = [None] * len(ranked)
    owner: dict[str, set] = {}  # phrase -> the texts of the clusters holding it as their top
    for _, _, i, pos, phrase in pairs:
        if top[i] is not None:
            continue
        holders = owner.get(phrase, set())
        if holders and holders != {same[i]}:
            continue
        top[i] = pos
        owner.setdefault(phrase, set()).add(same[i])
    for i, r in enumerate(ranked):  # every phrase taken elsewhere: keep its own best
        if top[i] is None and r:
            top[i] = 0
    return top




_SENTENCE_END = __import__("re").compile(r"(?<=[.!?])\s+")


def dedupe_sentences(text: Optional[str], said: Optional[set] = None) -> Optional[str]:
    """`text` without sentences repeated within it (case and spacing aside), nor, where it says
    something new, those in `said` (sentences already said in the cluster; updated)."""
    if text is None:
        return None
    said = set() if said is None else said
    own: list[tuple[str, str]] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        key = " ".join(sentence.lower().split()).rstrip(".!?")
        if key and key not in {k for k, _ in own}:
            own.append((key, sentence))
    new = [s for k, s in own if k not in said]
    said |= {k for k, _ in own}
    return " ".join(new or [s for _, s in own])
