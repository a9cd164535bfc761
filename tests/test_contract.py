"""The output contract: docs/output-contract.md is what `contract_markdown()` renders, and a real
embed -> cluster -> describe -> report run writes exactly the files and schemas it describes."""
from __future__ import annotations

import fnmatch
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vidclust.config import load_config
from vidclust.store.contract import CONTRACT, arrow_type_name, contract_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "output-contract.md"


def test_the_contract_document_is_up_to_date():
    assert DOC.read_text() == contract_markdown(), (
        "docs/output-contract.md is stale: python -c 'from vidclust.store.contract import contract_markdown; "
        "print(contract_markdown(), end=\"\")' > docs/output-contract.md")


def columns(schema) -> list[tuple[str, str]]:
    return [(f.name, arrow_type_name(f.type)) for f in schema]


@pytest.fixture(scope="module")
def real_out(tmp_path_factory, example_corpus, tiny_clip, ray_local) -> Path:
    from vidclust.clustering.run import run_cluster
    from vidclust.descriptions.run import run_describe
    from vidclust.embedding.run import run_embed
    from vidclust.reporting.run import run_report

    model_json, ckpt = tiny_clip
    cfg = load_config(None, [
        f"embed.encoder.model={model_json}", f"embed.encoder.pretrained={ckpt}", "embed.encoder.batch_size=16",
        "embed.sampling.max_frames=4", "cluster.k=3", "describe.summarizer=extractive",
        "describe.summary_num_actors=1", "describe.kw_k_nearest=4", "report.frames_per_cluster=2",
    ])
    out = tmp_path_factory.mktemp("contract") / "out"
    run_embed(cfg, str(example_corpus), str(out), show_progress=False)
    run_cluster(cfg, str(out))
    run_describe(cfg, str(out))
    run_report(cfg, str(out))
    return out


def test_a_real_run_writes_the_contracts_files_and_schemas(real_out):
    written = sorted(str(p.relative_to(real_out)) for p in real_out.rglob("*.parquet"))
    for rel in written:  # every Parquet file of OUT is in the contract ...
        assert any(fnmatch.fnmatch(rel, f.path) for f in CONTRACT), f"{rel} is not in the contract"
    for f in CONTRACT:  # ... and every file of the contract (but the stats command's) is written
        if f.stage == "stats":
            continue
        matches = [rel for rel in written if fnmatch.fnmatch(rel, f.path)] if f.schema else \
            [str(p.relative_to(real_out)) for p in real_out.glob(f.path)]
        assert matches, f"{f.path} was not written"
        for rel in matches if f.schema else []:
            assert columns(pq.read_schema(real_out / rel)) == columns(f.schema(1)), rel
    assert not list((real_out / "_vidclust" / "staging").iterdir())  # nothing left half-written


def test_the_stats_table_has_the_contracts_schema(example_corpus):
    from vidclust.store.sources import list_videos
    from vidclust.statistics.run import probe_table

    [stats] = [f for f in CONTRACT if f.stage == "stats"]
    probed = probe_table(list_videos(str(example_corpus)), use_ray=False)
    assert columns(probed.schema) == columns(stats.schema(1))


def test_no_stage_imports_another_stage():
    import ast

    halves = {"embedding", "clustering", "descriptions", "reporting", "statistics"}
    root = Path(__file__).resolve().parents[1] / "vidclust"
    for half in halves:
        tree = ast.parse((root / half / "run.py").read_text())
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vidclust.")}
        imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for a in node.names if a.name.startswith("vidclust.")}
        runs = {f"vidclust.{h}.run" for h in halves}
        assert not (imported & runs) - {f"vidclust.{half}.run"}, f"vidclust/{half}/run.py imports {sorted(imported & runs)}"
