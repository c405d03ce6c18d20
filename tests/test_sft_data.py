"""medrag.sft_data: RAFT-style examples from an index and questions with gold documents, offline.

The corpus is tests/tiny_models' 14 leaflets, indexed with the real embedding model; tokens are
counted with the tiny tokenizer, standing in for the base model's.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tiny_models import TINY_CORPUS, make_tiny_tokenizer, tiny_questions, write_tiny_corpus

from medrag.citations import answer_sentences
from medrag.config import PipelineConfig
from medrag.prompts import CANNOT_ANSWER_PHRASE, SOURCE_TEMPLATE
from medrag.sft_data import (
    Exclusions,
    Settings,
    SourceQuestion,
    build_examples,
    load_exclusions,
    load_source_questions,
    normalise_question,
    token_counter,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory, embedder):
    from medrag.build import build_index
    from medrag.index import VectorIndex
    from medrag.retriever import Retriever

    root = tmp_path_factory.mktemp("sft")
    corpus = write_tiny_corpus(root / "corpus.jsonl")
    cfg = PipelineConfig(cache_dir=str(root / "cache"))
    build_index([corpus], root / "index", cfg, embedder=embedder)
    index = VectorIndex.load(root / "index")
    questions = root / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in tiny_questions()), encoding="utf-8")
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(make_tiny_tokenizer(root / "tok"))
    return {
        "root": root,
        "corpus": corpus,
        "index": index,
        "retriever": Retriever(index, embedder, cfg),
        "embedder": embedder,
        "questions": load_source_questions(questions),
        "count": token_counter(tokenizer),
    }


def build(world, settings=None, exclusions=None, questions=None):
    return build_examples(
        world["questions"] if questions is None else questions,
        world["retriever"],
        world["embedder"],
        world["count"],
        settings or Settings(),
        exclusions,
    )


def test_every_target_sentence_cites_a_gold_passage_and_a_share_declines(world):
    rows, counts = build(world, Settings(decline_share=0.3))
    assert counts["examples"] == len(rows) == 42 - sum(counts["dropped"].values())
    cited = [r for r in rows if r["kind"] == "cited"]
    declined = [r for r in rows if r["kind"] == "declined"]
    assert counts["kinds"] == {"cited": len(cited), "declined": len(declined)}
    assert 0.15 <= len(declined) / len(rows) <= 0.45, counts  # 0.3 of 42, drawn per question
    for r in cited:
        sentences = answer_sentences(r["answer"])
        assert sentences
        for sentence, numbers in sentences:
            assert sentence.endswith("]") and numbers, r["answer"]  # "[n]" closes every sentence
            for n in numbers:  # ... and names a gold passage, whose text holds the sentence
                source = r["sources"][n - 1]
                assert source["doc_id"] in r["gold_doc_ids"]
                assert sentence.rsplit(" [", 1)[0] in source["text"]
        assert r["sources"][r["gold_passage"] - 1]["doc_id"] in r["gold_doc_ids"]
    for r in declined:
        assert r["answer"] == CANNOT_ANSWER_PHRASE and r["gold_passage"] is None
        topics = {TINY_CORPUS[g][0] for g in r["gold_doc_ids"]}
        assert not [s for s in r["sources"] if s["doc_id"] in r["gold_doc_ids"] or s["title"] in topics]
        assert len(r["sources"]) == Settings().top_k  # the next hits fill the context


def test_declines_are_drawn_per_question_reproducibly(world):
    first, _ = build(world, Settings(decline_share=0.3, seed=1))
    again, _ = build(world, Settings(decline_share=0.3, seed=1))
    other, _ = build(world, Settings(decline_share=0.3, seed=2))
    kinds = lambda rows: [(r["id"], r["kind"]) for r in rows]  # noqa: E731
    assert kinds(first) == kinds(again) and kinds(first) != kinds(other)
    none, counts = build(world, Settings(decline_share=0.0))
    assert counts["kinds"] == {"cited": len(none)}


def test_sources_are_in_retrieval_order_with_the_gold_among_them(world):
    rows, _ = build(world, Settings(decline_share=0.0))
    for r in rows:
        hits = world["retriever"].search(r["question"], k=Settings().depth)
        ranks = [next(h.rank for h in hits if h.chunk.id == s["chunk_id"]) for s in r["sources"]]
        assert ranks == sorted(ranks) and len(ranks) == Settings().top_k
    # a gold ranked below top_k takes the last place: with top_k=1 the gold is always the one source
    rows, counts = build(world, Settings(decline_share=0.0, top_k=1))
    assert rows and all(r["sources"][0]["doc_id"] in r["gold_doc_ids"] for r in rows)


def test_sources_fit_the_token_budget_and_keep_the_gold(world):
    count = world["count"]
    budget = 90  # tiny-tokenizer tokens: room for two or three leaflets
    rows, counts = build(world, Settings(decline_share=0.0, context_tokens=budget))
    assert rows
    for r in rows:
        used = sum(
            count(SOURCE_TEMPLATE.format(number=i, title=s["title"], text=s["text"])) + 2
            for i, s in enumerate(r["sources"], 1)
        )
        assert used <= budget and len(r["sources"]) < Settings().top_k
        assert any(s["doc_id"] in r["gold_doc_ids"] for s in r["sources"])


def test_nothing_from_an_evaluation_file_is_kept(world, tmp_path):
    evaluation = tmp_path / "eval_dev.jsonl"
    lines = [
        {"id": "e1", "question": "what is ASTHMA ", "gold_doc_ids": ["doc:other"], "source": "MedQuAD/x"},
        {"id": "e2", "question": "How long do eczema flares last?", "gold_doc_ids": ["doc:eczema"]},
    ]
    evaluation.write_text("".join(json.dumps(x) + "\n" for x in lines))
    pubmedqa = tmp_path / "eval_pubmedqa_dev.jsonl"  # PubMedQA lines name their abstract by id
    pubmedqa.write_text(json.dumps({"id": "doc:fever", "question": "Q?", "contexts": ["x"], "final_decision": "yes"}))
    exclusions = load_exclusions([evaluation, pubmedqa])
    assert exclusions.doc_ids == {"doc:other", "doc:eczema", "doc:fever"}
    assert [f["path"] for f in exclusions.files] == ["eval_dev.jsonl", "eval_pubmedqa_dev.jsonl"]

    rows, counts = build(world, Settings(decline_share=0.3), exclusions)
    assert counts["dropped"]["in_eval_question"] == 1  # "What is asthma?", case and punctuation aside
    assert counts["dropped"]["in_eval_gold_doc"] == 6  # three questions each about eczema and fever
    for r in rows:
        assert normalise_question(r["question"]) not in exclusions.questions
        assert not exclusions.doc_ids.intersection(r["gold_doc_ids"])
    kept = {r["question"] for r in rows}
    assert "What should I know about asthma?" in kept or counts["dropped"].get("gold_not_retrieved")


def test_repeated_and_goldless_questions_are_dropped(world):
    q = world["questions"][0]
    twice = [q, SourceQuestion("x", q.question.upper() + " ", q.gold_doc_ids), SourceQuestion("y", "Why?", ())]
    rows, counts = build(world, Settings(decline_share=0.0), questions=twice)
    assert len(rows) == 1 and counts["dropped"] == {"duplicate": 1, "no_gold_doc_ids": 1}


def test_pubmedqa_conclusion_is_cited_to_its_abstract_with_the_decision_first(world):
    q = SourceQuestion(
        "p1",
        "Does influenza spread through coughs?",
        ("doc:influenza",),
        "PubMedQA",
        answer="Yes. Influenza spreads through coughs and sneezes. A yearly vaccine lowers the risk.",
        final_decision="yes",
    )
    (row,), counts = build(world, Settings(decline_share=0.0), Exclusions(), [q])
    n = row["gold_passage"]
    expected = f"Yes: Influenza spreads through coughs and sneezes. [{n}] A yearly vaccine lowers the risk. [{n}]"
    assert row["answer"] == expected and counts["by_source"] == {"PubMedQA": {"cited": 1}}


def test_cli_writes_the_folder_with_its_card_and_pushes_it(world, tmp_path, monkeypatch, capsys):
    from hub_server import HubServer, use_hub

    from medrag.sft_data import main
    from medrag.training import load_sft_examples

    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in tiny_questions()[:10]))
    evaluation = tmp_path / "eval_dev.jsonl"
    evaluation.write_text(json.dumps({"id": "e", "question": "What is diabetes?", "gold_doc_ids": []}) + "\n")
    tok = make_tiny_tokenizer(tmp_path / "tok")
    out = tmp_path / "sft"
    with HubServer(token="hf_test") as server:
        use_hub(monkeypatch, server, tmp_path / "hf", token="hf_test")
        argv = ["--index", str(world["root"] / "index"), "--questions", str(questions), "--exclude", str(evaluation)]
        argv += ["--include-eval", str(evaluation), "--tokenizer", str(tok), "--out", str(out)]
        argv += ["--decline-share", "0.2", "--push-to-hub", "tester/medrag-sft"]
        assert main(argv) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["dropped"] == {"in_eval_question": 1} and len(summary["pushed"]) == 40
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["examples"] == summary["examples"] == sum(manifest["kinds"].values())
        assert manifest["settings"]["decline_share"] == 0.2 and manifest["eval_files"] == ["eval/eval_dev.jsonl"]
        card = (out / "README.md").read_text()
        assert card.startswith("---\n") and "| dropped: in_eval_question | 1 |" in card
        assert "eval_dev.jsonl" in card and CANNOT_ANSWER_PHRASE in card
        files = server.repos[("dataset", "tester/medrag-sft")].resolve("main").files
        assert {"train.jsonl", "manifest.json", "README.md", "eval/eval_dev.jsonl"} <= set(files)
        # the training side reads it back from the Hub by repo id
        examples = load_sft_examples("tester/medrag-sft")
    assert len(examples) == manifest["examples"]
    assert {e.kind for e in examples} <= {"cited", "declined"} and examples[0].sources


def test_a_tokenizer_model_file_is_read_without_sentencepiece(tmp_path):
    """The offline stand-in path: a SentencePiece BPE model file becomes a fast tokenizer."""
    pytest.importorskip("google.protobuf")
    from transformers.utils import sentencepiece_model_pb2_new as pb

    from medrag.sft_data import load_count_tokenizer

    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    for piece, kind in [("<unk>", 2), ("<s>", 3), ("</s>", 3), ("▁", 1), ("a", 1), ("b", 1), ("▁a", 1), ("▁ab", 1)]:
        proto.pieces.add(piece=piece, score=0.0, type=kind)
    path = tmp_path / "tokenizer.model"
    path.write_bytes(proto.SerializeToString())
    tok = load_count_tokenizer(str(path))
    assert tok.convert_ids_to_tokens(tok.encode("ab a", add_special_tokens=False)) == ["▁ab", "▁a"]


@given(st.text(max_size=80))
def test_normalising_a_question_is_idempotent_and_ignores_case_and_punctuation(text):
    once = normalise_question(text)
    assert normalise_question(once) == once
    assert normalise_question(text.upper() + " ?!") == normalise_question(text.lower())
