"""Issue 20, item 6: a folder per half, in one mechanical step (tried on a copy of the tree on
2026-12-01; run it from a checkout's root once the other seams are done, then rewrite
vidclust/__init__.py without the module-class hack, point tests/test_imports.py at the folders
and run the suite). Moves each module with git mv and rewrites the imports by regex."""
import re
import subprocess
import sys
from pathlib import Path

MOVES = {  # old module -> new module (dotted, under vidclust)
    "runtime": "runtime",  # becomes a package: vidclust/runtime/__init__.py
    "layout": "store.layout", "contract": "store.contract", "writer_lock": "store.writer_lock",
    "runinfo": "store.runinfo", "sources": "store.sources", "shards": "store.shards",
    "storage": "store.storage", "devices": "models.devices", "video_clusterer": "clustering.video_clusterer",
    "encoder": "models.encoder", "model_hub": "models.model_hub", "summarise": "models.summarise",
    "zero_shot": "models.zero_shot",
    "decode": "embedding.decode", "frame_store": "embedding.frame_store", "embed": "embedding.run",
    "aggregate": "clustering.aggregate", "clusterer": "clustering.clusterer",
    "near_duplicates": "clustering.near_duplicates", "principal_axes": "clustering.principal_axes",
    "cluster": "clustering.run",
    "keywords": "descriptions.keywords", "describe": "descriptions.run",
    "report": "reporting.run", "explorer": "reporting.explorer", "palette": "reporting.palette",
    "plots": "reporting.plots", "projection": "reporting.projection",
    "stats": "statistics.run", "video_stats": "statistics.video_stats",
    "report_inputs": "reporting.inputs", "page": "reporting.page", "frame_strips": "reporting.frame_strips",
    "nvdec": "embedding.nvdec", "gpu_meter": "models.gpu_meter",
    "pooling": "clustering.pooling", "scores": "clustering.scores", "k_sweep": "clustering.k_sweep",
}
PACKAGES = {
    "runtime": "Ray: the only package that imports it. Where the job runs (start or join a cluster) and the\n"
               "few verbs the stages need (apply a Stage to a dataset, collect, stream, the user's error\n"
               "behind a Ray error). Imports no half (embedding, clustering, descriptions, reporting,\n"
               "statistics).",
    "store": "SOURCE in, OUT out: listing the videos of a SOURCE, the layout of OUT, the output contract\n"
             "(schemas, metadata, atomic writes, committed output sets), the writer lock and run.json.\n"
             "Imports no half and never Ray.",
    "models": "The models, in torch and never Ray: CLIP's image encoder (FrameEncoder), the summariser, the\n"
              "zero-shot labeller, weights found offline first, devices and precision. Imports no half.",
    "embedding": "The embed stage: decode and sample frames, encode them, write frames/ and commit which\n"
                 "videos are done (run.py: run_embed).",
    "clustering": "The cluster stage: aggregate frames per video, cluster (VideoClusterer), near-duplicates,\n"
                  "scores, assign new videos to saved centres (run.py: run_cluster, run_assign_new).",
    "descriptions": "The describe stage: key phrases, summaries or zero-shot labels per cluster (run.py:\n"
                    "run_describe).",
    "reporting": "The report stage: the page, its map, plots and frame strips (run.py: run_report).",
    "statistics": "The stats command: durations, frame rates, sizes and codecs of a SOURCE (run.py: run_stats).",
}


def git(*args):
    subprocess.run(["git", *args], check=True)


def main():
    root = Path("vidclust")
    for pkg, doc in PACKAGES.items():
        (root / pkg).mkdir(exist_ok=True)
    for old, new in MOVES.items():
        target = root / (new.replace(".", "/") + ".py") if old != "runtime" else root / "runtime" / "__init__.py"
        git("mv", str(root / f"{old}.py"), str(target))
    for pkg, doc in PACKAGES.items():
        init = root / pkg / "__init__.py"
        if not init.exists():
            init.write_text(f'"""{doc}"""\n')
            git("add", str(init))
    files = [Path(p) for p in subprocess.run(["git", "ls-files"], capture_output=True, text=True,
                                             check=True).stdout.split()]
    files = [p for p in files if p.suffix in (".py", ".md", ".sh", ".toml", ".yaml", ".yml", ".txt", ".js")
             and not str(p).startswith("bench/results/") and p.exists()]
    for p in files:
        text = p.read_text()
        new_text = rewrite(text)
        if new_text != text:
            p.write_text(new_text)


def rewrite(text: str) -> str:
    for old, new in sorted(MOVES.items(), key=lambda kv: -len(kv[0])):
        if old == new:
            continue
        text = re.sub(rf"\bfrom vidclust\.{old} import\b", f"from vidclust.{new} import", text)
        text = re.sub(rf"\bimport vidclust\.{old}\b(?![.\w])", f"import vidclust.{new}", text)
        text = re.sub(rf"\bvidclust\.{old}\.(?=[A-Za-z_])", f"vidclust.{new}.", text)
        text = re.sub(rf"([\"'`])vidclust\.{old}\1", rf"\1vidclust.{new}\1", text)
        text = re.sub(rf"\bvidclust/{old}\.py\b", f"vidclust/{new.replace('.', '/')}.py", text)
    text = re.sub(r"\bvidclust/runtime\.py\b", "vidclust/runtime/__init__.py", text)
    return text


if __name__ == "__main__":
    sys.exit(main())
