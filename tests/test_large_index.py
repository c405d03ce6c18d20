"""The large-corpus paths end to end, the way a user runs them: index_builder.py picks ivfpq by size, the
pipeline and `python -m medrag.evaluate` open it (and a Milvus collection) through configuration, and
answer what the flat index answers. The real all-MiniLM-L6-v2 embeds a few sample documents."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import index_builder
import medrag.indexes
from medrag.config import PipelineConfig
from medrag.evaluate import main as evaluate_main
from medrag.index_source import open_configured
from medrag.indexes import choose_index_type, open_index
from medrag.pipeline import RAGPipeline

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
QUESTIONS = ["What are the symptoms of asthma?", "How is high blood pressure treated?", "What causes sunburn?"]


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    for p in sorted(SAMPLE.glob("*"))[:8]:
        shutil.copy(p, folder / p.name)
    return folder


def _build(docs, out, *args) -> dict:
    assert index_builder.main(["--docs", str(docs), "--out", str(out), *args]) == 0
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.slow
def test_builder_picks_the_type_from_the_corpus_size(docs, tmp_path, monkeypatch):
    assert choose_index_type([docs]) == "flat"
    assert _build(docs, tmp_path / "small")["index_type"] == "flat"
    monkeypatch.setattr(medrag.indexes, "LARGE_CORPUS_CHUNKS", 1)
    assert choose_index_type([docs]) == "ivfpq"
    assert _build(docs, tmp_path / "large")["index_type"] == "ivfpq"


@pytest.mark.slow
def test_pipeline_and_evaluation_through_ivfpq_and_milvus(docs, tmp_path, embedder, capsys):
    flat_dir, large_dir = tmp_path / "flat", tmp_path / "large"
    _build(docs, flat_dir, "--index-type", "flat")
    _build(docs, large_dir, "--index-type", "ivfpq")
    configs = {
        "flat": PipelineConfig(index_dir=str(flat_dir), generator="extractive"),
        "ivfpq": PipelineConfig(index_dir=str(large_dir), generator="extractive"),
    }
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401

        uri = str(tmp_path / "milvus.db")
        assert (
            index_builder.main(["--out", str(flat_dir), "--no-build", "--engine", "milvus", "--milvus-uri", uri]) == 0
        )
        configs["milvus"] = configs["flat"].replace(index_engine="milvus", milvus_uri=uri)
    except ImportError:
        pass  # the retriever tests report the skip with the pip line
    answers = {}
    for name, cfg in configs.items():
        opened = open_configured(cfg)
        index, source = opened.index, opened.status.source
        assert (source or "").startswith("milvus") == (name == "milvus")
        pipeline = RAGPipeline(cfg, embedder=embedder, index=index)
        answers[name] = [[h.chunk.id for h in pipeline.answer(q).sources] for q in QUESTIONS]
    assert answers["ivfpq"] == answers["flat"]  # a few hundred rows: every list is probed, the re-rank is exact
    if "milvus" in answers:
        assert answers["milvus"] == answers["flat"]

    questions = tmp_path / "q.jsonl"
    doc_ids = sorted({c.doc_id for c in open_index(flat_dir, configs["flat"]).chunks})
    with open(questions, "w") as f:
        for i, q in enumerate(QUESTIONS):
            f.write(
                json.dumps({"id": i, "question": q, "gold_doc_ids": doc_ids[i : i + 2], "source": "MedQuAD"}) + "\n"
            )
    tables = {}
    for name, index_dir in (("flat", flat_dir), ("ivfpq", large_dir)):
        out = tmp_path / f"{name}.json"
        args = ["--corpus", str(docs), "--questions", str(questions), "--index", str(index_dir), "--json", str(out)]
        assert evaluate_main(args) == 0
        tables[name] = json.loads(out.read_text())
    assert tables["ivfpq"] == tables["flat"]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("index_type", "error"), [("flat", "no words to search"), ("ivfpq", "ivfpq needs at least 2 chunks")]
)
def test_a_corpus_without_words_or_too_small_is_refused_and_nothing_is_left(tmp_path, capsys, index_type, error):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "x.txt").write_text("a . a\n", encoding="utf-8")  # one chunk; no word BM25 could index, title too
    assert index_builder.main(["--docs", str(docs), "--out", str(tmp_path / "index"), "--index-type", index_type]) == 2
    assert error in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["docs"]  # no index, no work folder


def test_milvus_without_its_package_names_the_pip_line(monkeypatch):
    import sys

    from medrag.errors import MedRAGError
    from medrag.milvus_index import client

    monkeypatch.setitem(sys.modules, "pymilvus", None)  # as if it were not installed
    with pytest.raises(MedRAGError, match=r"pip install pymilvus==3\.0\.2 milvus-lite==3\.2\.2"):
        client("data/milvus.db")
    with pytest.raises(MedRAGError, match="pip install pymilvus"):
        open_index("unused", PipelineConfig(index_engine="milvus"))
