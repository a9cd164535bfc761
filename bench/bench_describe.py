"""Time of the describe stage per cluster, on a synthetic OUT shaped like MSR-VTT's notebook run.

    .venv/bin/python bench/bench_describe.py                      # extractive summaries (no seq2seq weights)
    .venv/bin/python bench/bench_describe.py --summarizer PATH    # a local seq2seq model directory
    .venv/bin/python bench/bench_describe.py --summarizer bart-large-random --clusters 2 --videos 4
    ... --keybert-random     # KeyBERT on a MiniLM-L6-shaped random model (a GPU machine without the package)
        # a BART-large-shaped model with random weights (406M parameters): the cost of the default
        # facebook/bart-large-cnn where its weights cannot be had; random weights never stop early,
        # so every summary runs to summary_max_tokens: an upper bound.

The OUT holds `--clusters` clusters of `--videos` videos each (20 x 20 by default: the notebook's
k and kw_k_nearest, so every video of a cluster is summarised), each video with `--captions`
captions (MSR-VTT has 20) written from per-topic word lists, and no frames: zero-shot labels are
switched off (`describe.zero_shot=never`) unless `--zero-shot` names a CLIP (config JSON, checkpoint).
Prints one JSON line: the stage's timings (run.json's describe entry) and seconds per cluster.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOPICS = {
    "music": ("singer guitar stage concert band song microphone crowd", "sings plays performs"),
    "sports": ("player football ball field team goal stadium referee", "kicks runs scores"),
    "cooking": ("chef kitchen pan vegetables knife onion soup oven", "cuts stirs cooks"),
    "animals": ("dog cat puppy kitten pet garden toy grass", "jumps plays runs"),
    "vehicles": ("car truck road engine driver highway wheel racing", "drives speeds turns"),
    "news": ("reporter anchor studio news politician camera interview desk", "reports speaks talks"),
    "gaming": ("character game level player screen sword monster map", "fights jumps explores"),
    "beauty": ("woman makeup lipstick mirror brush hair face eyeshadow", "applies shows paints"),
    "travel": ("tourist city beach mountain hotel street temple island", "walks visits explores"),
    "science": ("scientist laboratory experiment liquid tube chemical microscope teacher", "mixes explains shows"),
    "kids": ("child toy baby cartoon blocks playground doll swing", "laughs plays builds"),
    "education": ("teacher students classroom board lecture math lesson book", "explains writes teaches"),
    "movie": ("actor scene film villain hero explosion car chase", "fights runs escapes"),
    "animation": ("cartoon animated character rabbit bear forest house adventure", "jumps talks dances"),
    "documentary": ("narrator history war soldier ancient ruins map archive", "describes shows recalls"),
    "fashion": ("model runway dress designer clothes shoes catwalk show", "walks poses models"),
    "howto": ("man tools wood drill table screw workshop repair", "builds drills fixes"),
    "tv": ("host guest show audience sofa comedian stage applause", "jokes laughs talks"),
    "ads": ("product bottle logo phone brand commercial shampoo smile", "shows holds presents"),
    "people": ("family friends party birthday cake dinner table wedding", "celebrates eats dances"),
}


def captions_for(topic: str, n: int, rng: np.random.Generator) -> list[str]:
    nouns, verbs = (s.split() for s in TOPICS[topic])
    out = []
    for _ in range(n):
        a, b = rng.choice(nouns, 2, replace=False)
        out.append(f"a {a} {rng.choice(verbs)} with the {b} in a {rng.choice(nouns)} video")
    return out


def write_synthetic_out(root: Path, n_clusters: int, n_videos: int, n_captions: int, dim: int = 512,
                        seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    ids, cids, dist, caps = [], [], [], []
    for c in range(n_clusters):
        topic = topics[c % len(topics)]
        for i in range(n_videos):
            ids.append(f"c{c:04d}v{i:04d}")
            cids.append(c)
            dist.append(float(rng.uniform(0.2, 0.6)))
            caps.append(captions_for(topic, n_captions, rng))
    (root / "clusters").mkdir(parents=True, exist_ok=True)
    n = len(ids)
    pq.write_table(pa.table({"video_id": ids, "path": [f"{v}.mp4" for v in ids], "status": ["ok"] * n,
                             "captions": pa.array(caps, pa.list_(pa.string()))}), root / "videos.parquet")
    pq.write_table(pa.table({"video_id": ids, "cluster_id": pa.array(cids, pa.int32()),
                             "distance": pa.array(dist, pa.float32())}), root / "clusters" / "assignments.parquet")
    centers = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    pq.write_table(pa.table({"cluster_id": pa.array(np.arange(n_clusters, dtype=np.int32)),
                             "center": pa.FixedSizeListArray.from_arrays(pa.array(centers.ravel()), dim),
                             "size": pa.array(np.full(n_clusters, n_videos, np.int64))}),
                   root / "clusters" / "centers.parquet")
    return str(root)


def random_bart_large(path: Path) -> str:
    """A BART-large-shaped model (facebook/bart-large-cnn's config) with random weights."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig, PreTrainedTokenizerFast

    words = " ".join(n + " " + v for n, v in TOPICS.values()).split() + "a with the in video".split()
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["<s>", "<pad>", "</s>", "<unk>"]))
    tok.post_processor = TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>", model_max_length=1024)
    tokenizer.add_tokens([f"w{i}" for i in range(50264 - len(tokenizer))])  # the real vocabulary size
    config = BartConfig(vocab_size=len(tokenizer), d_model=1024, encoder_layers=12, decoder_layers=12,
                        encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                        decoder_ffn_dim=4096, max_position_embeddings=1024, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=0)
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config)
    # facebook/bart-large-cnn's generation_config.json (min/max length are the stage's to set)
    model.generation_config = GenerationConfig(
        bos_token_id=0, decoder_start_token_id=2, eos_token_id=2, forced_bos_token_id=0, forced_eos_token_id=2,
        pad_token_id=1, num_beams=4, no_repeat_ngram_size=3, length_penalty=2.0, early_stopping=True,
        min_length=56, max_length=142)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def random_minilm(path: Path) -> str:
    """An all-MiniLM-L6-v2-shaped sentence model (6 layers, 384 wide, mean pooling, normalised) with
    random weights and a word-level tokenizer: KeyBERT's cost where the packaged model cannot be had."""
    import torch
    from sentence_transformers import SentenceTransformer, models as st_models
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = " ".join(n + " " + v for n, v in TOPICS.values()).split() + "a with the in video".split()
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                        sep_token="[SEP]", mask_token="[MASK]", model_max_length=256)
    tokenizer.add_tokens([f"w{i}" for i in range(30522 - len(tokenizer))])
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=384, num_hidden_layers=6,
                                num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512))
    hf = path / "hf"
    bert.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    st = SentenceTransformer(modules=[st_models.Transformer(str(hf), max_seq_length=256),
                                      st_models.Pooling(384, "mean"), st_models.Normalize()])
    st.save(str(path / "st"))
    return str(path / "st")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--videos", type=int, default=20, help="videos per cluster")
    ap.add_argument("--captions", type=int, default=20, help="captions per video")
    ap.add_argument("--summarizer", default="extractive", help="extractive | PATH | bart-large-random")
    ap.add_argument("--keybert-random", action="store_true",
                    help="KeyBERT on a MiniLM-L6-shaped random model (where the packaged one is missing)")
    ap.add_argument("--zero-shot", nargs=2, metavar=("MODEL", "PRETRAINED"), default=None)
    ap.add_argument("--dim", type=int, default=512, help="embedding size of the centres (the CLIP's for --zero-shot)")
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from vidclust.config import load_config
    from vidclust.descriptions.run import run_describe

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_describe_"))
    work.mkdir(parents=True, exist_ok=True)
    out = write_synthetic_out(work / "out", args.clusters, args.videos, args.captions, dim=args.dim)
    summarizer = args.summarizer
    if summarizer == "bart-large-random":
        t = time.perf_counter()
        summarizer = random_bart_large(work / "bart-large-random")
        print(f"built a random BART-large in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    overrides = [f"describe.summarizer={summarizer}", f"describe.kw_k_nearest={args.videos}"]
    if args.keybert_random:
        overrides.append(f"describe.keybert_model={random_minilm(work / 'minilm-random')}")
    if args.zero_shot:
        overrides += [f"embed.encoder.model={args.zero_shot[0]}", f"embed.encoder.pretrained={args.zero_shot[1]}",
                      "describe.zero_shot=always"]
    else:
        overrides.append("describe.zero_shot=never")
    cfg = load_config(None, overrides + args.set)
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
    info = run_describe(cfg, out)
    result = {
        "clusters": args.clusters, "videos_per_cluster": args.videos, "captions_per_video": args.captions,
        "summarizer": args.summarizer, "keybert": "minilm-random" if args.keybert_random else "packaged",
        "cpus": ray.cluster_resources().get("CPU"),
        "gpus": ray.cluster_resources().get("GPU", 0),
        **{k: v for k, v in info.items() if k.endswith("seconds") or k == "seconds_per_cluster"},
        "seconds_per_video_summarised": round(info.get("summarise_seconds", 0) / max(1, info["videos_summarised"]), 4),
    }
    print(json.dumps(result))
    ray.shutdown()


if __name__ == "__main__":
    main()
