"""medrag.training, medrag.train and medrag.adapter_eval on the tiny Mistral, on the CPU, offline.

One LoRA run (full-precision base, 30 steps on the examples `medrag.sft_data` builds from the tiny
leaflets) is shared by the tests that need a trained adapter; it must teach the cited format. The
4-bit (bitsandbytes NF4 on the CPU) path runs 2 steps of its own; the resume test runs 4 steps
twice against the local Hub server.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tiny_models import MEDICAL_TEXT, make_tiny_mistral, make_tiny_tokenizer, tiny_questions, write_tiny_corpus

from medrag import training
from medrag.adapter_eval import (
    cited_format,
    cited_format_share,
    evaluate_adapter,
    format_eval_table,
    helps,
    load_pubmedqa,
    parse_decision,
    score_decisions,
)
from medrag.config import FineTuneConfig, PipelineConfig
from medrag.errors import ConfigError, DocumentError
from medrag.prompts import CANNOT_ANSWER_PHRASE, Passage, build_prompt, parse_numbered_context
from medrag.train import build_parser, config_from_args
from medrag.train import main as train_main
from medrag.training import IGNORE_INDEX, SFTExample, format_example, load_sft_examples, tokenize_example

TOPICS = [line.split(" ", 1)[0].strip(".,") for line in MEDICAL_TEXT.splitlines() if not line.startswith("Question")]
FACTS = [line for line in MEDICAL_TEXT.splitlines() if not line.startswith("Question")]


def write_sft_file(path: Path, n: int = 16) -> Path:
    """`n` examples in the tiny tokenizer's vocabulary: three sources each, the gold one at rank 1, 2 or 3."""
    rows = []
    for i in range(n):
        gold = i % 3 + 1
        picks = [(i + k) % len(FACTS) for k in (1, 2)]
        passages = [(TOPICS[j], FACTS[j]) for j in picks]
        passages.insert(gold - 1, (TOPICS[i % len(FACTS)], FACTS[i % len(FACTS)]))
        context = "\n\n".join(f"[{k}] {title}\n{text}" for k, (title, text) in enumerate(passages, 1))
        answer = f"From the sources: {FACTS[i % len(FACTS)]} [{gold}]"  # a fixed opening: a style to learn
        question = f"What is {TOPICS[i % len(FACTS)].lower()}?"
        rows.append({"id": f"t{i}", "question": question, "context": context, "answer": answer, "gold_passage": gold})
    rows[-1]["source"] = "PubMedQA"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_pubmedqa_file(path: Path, n: int = 3) -> Path:
    decisions = ["yes", "no", "maybe"]
    rows = [
        {
            "id": f"pqa:{100 + i}",
            "question": f"Does {TOPICS[i].lower()} raise the risk of stroke?",
            "contexts": [FACTS[i], FACTS[i + 1]],
            "labels": ["BACKGROUND", "RESULTS"],
            "final_decision": decisions[i % 3],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tok = make_tiny_tokenizer(root / "tokenizer")
    base = make_tiny_mistral(root / "base", tok)
    from transformers import AutoTokenizer

    return {"root": root, "base": str(base), "tokenizer": AutoTokenizer.from_pretrained(base)}


@pytest.fixture(scope="module")
def sft_file(tiny):
    return write_sft_file(tiny["root"] / "train.jsonl")


@pytest.fixture(scope="module")
def leaflets(tiny, embedder):
    """The tiny leaflets indexed, and training data built from them by medrag.sft_data (a folder)."""
    from medrag.build import build_index
    from medrag.index import VectorIndex
    from medrag.retriever import Retriever
    from medrag.sft_data import Settings, build_examples, load_source_questions, token_counter, write_folder

    root = tiny["root"]
    cfg = PipelineConfig(cache_dir=str(root / "cache"))
    build_index([write_tiny_corpus(root / "corpus.jsonl")], root / "index", cfg, embedder=embedder)
    index = VectorIndex.load(root / "index")
    questions = root / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in tiny_questions()))
    rows, counts = build_examples(
        load_source_questions(questions),
        Retriever(index, embedder, cfg),
        embedder,
        token_counter(tiny["tokenizer"]),
        Settings(decline_share=0.0),  # a 64-wide model cannot tell when to decline; it learns the format
    )
    folder = write_folder(root / "sft", rows, {"counts": counts}, "card")
    return {"index": index, "folder": folder, "counts": counts, "config": cfg}


@pytest.fixture(scope="module")
def trained(tiny, leaflets):
    cfg = FineTuneConfig(
        base_model=tiny["base"],
        train_file=str(leaflets["folder"]),
        output_dir=str(tiny["root"] / "out" / "adapter"),
        load_in_4bit=False,
        gradient_checkpointing=False,
        # lm_head too, in this test only: the tiny base's output layer is barely trained, so adapters
        # on the other layers alone cannot make any token likely (its logits stay near uniform)
        target_modules=[*FineTuneConfig().target_modules, "lm_head"],
        max_steps=30,
        per_device_batch_size=4,
        gradient_accumulation_steps=1,
        learning_rate=1e-2,
        logging_steps=5,
        max_seq_length=1024,
    )
    return cfg, training.train(cfg)


# --- data ----------------------------------------------------------------------------------------


def test_load_sft_examples_reads_fields_and_limit(sft_file):
    examples = load_sft_examples(sft_file)
    assert len(examples) == 16
    assert examples[0].gold_passage == 1 and examples[1].gold_passage == 2 and examples[0].id == "t0"
    assert examples[-1].source == "PubMedQA"
    assert len(load_sft_examples(sft_file, limit=5)) == 5


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"question": "q", "context": "[1] T\\nx"}', "'answer' is missing"),
        ('{"question": "q", "context": "no numbers here", "answer": "a"}', "no numbered passages"),
        ('{"question": "q", "context": "[1] T\\nx", "answer": "a", "gold_passage": 2}', "'gold_passage'"),
        ('["a list"]', "expected a JSON object"),
    ],
)
def test_bad_train_line_names_its_line(tmp_path, line, message):
    good = json.dumps({"question": "q", "context": "[1] T\nx", "answer": "a"})
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n{line}\n")
    with pytest.raises(DocumentError, match=message) as err:
        load_sft_examples(path)
    assert f"{path}:2:" in str(err.value)


def test_missing_or_empty_train_file(tmp_path):
    with pytest.raises(DocumentError, match="No training file"):
        load_sft_examples(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DocumentError, match="no examples"):
        load_sft_examples(tmp_path / "empty.jsonl")


# --- prompt and labels ---------------------------------------------------------------------------


def test_training_prompt_is_the_inference_prompt(tiny, sft_file):
    tok = tiny["tokenizer"]
    ex = load_sft_examples(sft_file)[1]
    sources = list(ex.sources)
    assert sources == parse_numbered_context(json.loads(sft_file.read_text().splitlines()[1])["context"])
    prompt, completion = format_example(tok, ex)
    assert prompt == build_prompt(tok, ex.question, sources)
    assert completion == ex.answer + tok.eos_token

    from medrag.hf_generator import HFGenerator

    gen = HFGenerator(base_model=tiny["base"]).load()
    ids, warnings = gen.encode(ex.question, sources)
    row, status = tokenize_example(tok, ex, max_seq_length=2048)
    assert status == "full" and not warnings
    assert row["input_ids"][: len(ids)] == ids  # the generator's prompt tokens, exactly
    assert ids == tok(prompt, add_special_tokens=False).input_ids


def test_labels_cover_the_answer_only(tiny, sft_file):
    tok = tiny["tokenizer"]
    ex = load_sft_examples(sft_file)[2]
    row, _ = tokenize_example(tok, ex, max_seq_length=2048)
    n_prompt = len(tok(format_example(tok, ex)[0], add_special_tokens=False).input_ids)
    labels = row["labels"]
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert all(label != IGNORE_INDEX for label in labels[n_prompt:])
    assert labels[n_prompt:] == row["input_ids"][n_prompt:]
    assert labels[-1] == tok.eos_token_id
    assert tok.decode(labels[n_prompt:], skip_special_tokens=True).strip() == ex.answer


def _long_example(gold: int) -> SFTExample:
    passages = [("Asthma", FACTS[10] * 3), ("Diabetes", FACTS[0] * 3), ("Influenza", FACTS[13] * 3)]
    return SFTExample(
        "What is asthma?", tuple(Passage(t, x) for t, x in passages), "Asthma is a lung condition [1].", gold
    )


def test_truncation_drops_low_ranked_sources_never_the_answer(tiny):
    tok = tiny["tokenizer"]
    ex = _long_example(gold=1)
    full, status = tokenize_example(tok, ex, max_seq_length=4096)
    assert status == "full"
    limit = len(full["input_ids"]) - 10  # too long by a little: the third source must go
    row, status = tokenize_example(tok, ex, max_seq_length=limit)
    assert status == "trimmed" and len(row["input_ids"]) <= limit
    answer_ids = [t for t in row["labels"] if t != IGNORE_INDEX]
    assert answer_ids == [t for t in full["labels"] if t != IGNORE_INDEX]  # the answer is whole
    prompt = tok.decode(row["input_ids"][: len(row["input_ids"]) - len(answer_ids)])
    assert "[1] Asthma" in prompt and "[2] Diabetes" in prompt and "[3] Influenza" not in prompt
    expected = build_prompt(tok, ex.question, list(ex.sources)[:2])
    assert row["input_ids"][: -len(answer_ids)] == tok(expected, add_special_tokens=False).input_ids

    # the gold passage is the one that would go: the example is dropped, not trained without its source
    assert tokenize_example(tok, _long_example(gold=3), max_seq_length=limit) == (None, "too_long")
    # so is one whose answer cites the passage that would go
    cites_third = dataclasses.replace(ex, answer="Asthma is a lung condition [3].", gold_passage=None)
    assert tokenize_example(tok, cites_third, max_seq_length=limit) == (None, "too_long")
    # a decline cites nothing: it may lose any source
    declined = dataclasses.replace(ex, answer=CANNOT_ANSWER_PHRASE, gold_passage=None, kind="declined")
    assert tokenize_example(tok, declined, max_seq_length=limit)[1] == "trimmed"
    # an answer longer than the whole budget: dropped
    assert tokenize_example(tok, ex, max_seq_length=8) == (None, "too_long")


def test_build_dataset_counts_drops(tiny):
    tok = tiny["tokenizer"]
    rows, counts = training.build_dataset(tok, [_long_example(1), _long_example(3)], max_seq_length=300)
    assert counts["examples"] + counts["dropped_too_long"] == 2
    assert counts["tokens"] == sum(len(r["input_ids"]) for r in rows)


# --- training ------------------------------------------------------------------------------------


def test_tiny_run_loss_falls_and_folder_is_complete(trained, leaflets):
    cfg, result = trained
    first, last = result.loss_history[0][1], result.loss_history[-1][1]
    assert result.loss_history[0][0] == 1 and result.loss_history[-1][0] == 30
    assert last < 0.8 * first, result.loss_history
    out = Path(result.output_dir)
    assert out == Path(cfg.output_dir)
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    assert {"finetune_config.json", "metrics.json"} <= names
    assert not [p for p in out.parent.iterdir() if p.name != "adapter"]  # no temporary or checkpoint folders left
    saved_cfg = json.loads((out / "finetune_config.json").read_text())
    assert FineTuneConfig(**saved_cfg) == cfg
    metrics = json.loads((out / "metrics.json").read_text())
    counts = leaflets["counts"]
    assert metrics["steps"] == metrics["planned_steps"] == 30 and metrics["dropped_too_long"] == 0
    assert metrics["examples"] == counts["examples"] and metrics["kinds"] == counts["kinds"]
    assert metrics["train_loss_first"] == first and metrics["train_loss_last"] == last
    assert metrics["tokens"] > metrics["answer_tokens"] > 0 and metrics["tokens_seen"] >= metrics["tokens"]
    assert metrics["train_seconds"] > 0 and metrics["sources"] == {"Leaflets/tiny": counts["examples"]}
    assert metrics["measured_tokens_per_second"] > 0 and metrics["resumed_from_step"] == 0
    assert metrics["versions"]["peft"] and metrics["load_in_4bit"] is False
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == cfg.lora_r and sorted(adapter_cfg["target_modules"]) == sorted(cfg.target_modules)


def held_out(leaflets, embedder, template: str = "Can you explain {t}?") -> list[tuple[str, list]]:
    """Questions the adapter never saw, with the sources the app would retrieve for them."""
    from medrag.retriever import Retriever

    retriever = Retriever(leaflets["index"], embedder, leaflets["config"])
    return [(q["question"], [h.chunk for h in retriever.search(q["question"])]) for q in tiny_questions([template])]


@pytest.mark.slow
def test_the_adapter_learns_the_cited_format(tiny, trained, leaflets, embedder):
    """Share of generated claim sentences that end in a valid [n]: base model against base + adapter."""
    from medrag.hf_generator import HFGenerator

    _, result = trained
    questions = held_out(leaflets, embedder)
    shares = {}
    for name, adapter in (("base", None), ("adapter", result.output_dir)):
        gen = HFGenerator(base_model=tiny["base"], adapter=adapter, max_new_tokens=48, temperature=0.0)
        answers = [(gen.generate(q, sources), len(sources)) for q, sources in questions]
        shares[name] = cited_format_share(answers)
    print(f"cited-format share on {len(questions)} held-out questions: {shares}")  # the figure the report quotes
    assert (shares["base"] or 0.0) <= 0.2 and shares["adapter"] >= 0.8, shares


def test_cited_format_counts_claims_that_end_in_a_valid_marker():
    assert cited_format("Asthma is a lung condition. [1] An inhaler can relieve symptoms [2].", 2) == (2, 2)
    assert cited_format("Asthma is a lung condition [3]. Wheezing is common.", 2) == (0, 2)  # [3] of 2; none
    assert cited_format("Asthma [1] is a common lung condition.", 2) == (0, 1)  # the marker does not end it
    assert cited_format(CANNOT_ANSWER_PHRASE, 2) == (0, 0)  # a decline makes no claim
    assert cited_format_share([("A b c [1].", 1), ("D e f.", 1), ("No.", 1)]) == 0.5
    assert cited_format_share([(CANNOT_ANSWER_PHRASE, 3)]) is None


@given(st.text(max_size=200), st.integers(min_value=0, max_value=6))
def test_cited_format_never_counts_more_cited_than_claims(text, n_sources):
    cited, claims = cited_format(text, n_sources)
    assert 0 <= cited <= claims


def test_compute_dtype_is_fp16_where_bf16_is_only_emulated(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    t4 = lambda including_emulation=True: including_emulation  # noqa: E731  (a T4: True only through emulation)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", t4)
    assert training.resolve_compute_dtype("auto") == torch.float16
    from medrag.hf_generator import _gpu_dtype

    assert _gpu_dtype() == torch.float16  # the app's generator (and the evaluation) on a T4 too
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100
    assert training.resolve_compute_dtype("auto") == torch.bfloat16
    assert training.resolve_compute_dtype("fp16") == torch.float16
    with pytest.raises(ConfigError, match="compute_dtype"):
        training.resolve_compute_dtype("bf17")


def test_the_plan_fits_the_time_budget():
    counts = {"examples": 1000, "tokens": 1000 * 2000}  # 2,000 tokens an example
    cfg = FineTuneConfig(max_train_minutes=40, per_device_batch_size=1, gradient_accumulation_steps=16)
    plan = training.plan_run(cfg, counts, tokens_per_second=400.0, measured_on="a T4")
    assert plan.epoch_steps == 63 and plan.tokens_per_step == 32_000
    assert plan.steps == 30  # 40 min x 400 tokens/s = 960,000 tokens = 30 steps of 32,000
    assert plan.minutes == pytest.approx(40.0)
    assert "30 steps" in plan.describe() and "400 tokens/s (a T4)" in plan.describe() and "~40 min" in plan.describe()
    fast = training.plan_run(cfg, counts, tokens_per_second=40_000.0, measured_on="an H200")
    assert fast.steps == fast.epoch_steps == 63  # never more than an epoch
    fixed = training.plan_run(dataclasses.replace(cfg, max_steps=5), counts, 400.0, "a T4")
    assert fixed.steps == 5


def test_defaults_make_a_t4_run_of_about_an_hour():
    cfg = FineTuneConfig()
    assert cfg.max_steps == -1 and cfg.max_train_minutes <= 45 and cfg.save_steps <= 20
    assert cfg.compute_dtype == "auto" and cfg.load_in_4bit and cfg.gradient_checkpointing
    assert cfg.max_seq_length >= PipelineConfig().context_tokens + 256  # the app's prompt and an answer fit


def test_saved_adapter_loads_through_the_app_generator(tiny, trained):
    from medrag.hf_generator import HFGenerator

    _, result = trained
    gen = HFGenerator(base_model=tiny["base"], adapter=result.output_dir, max_new_tokens=8, temperature=0.0)
    text = gen.generate("What is asthma?", [Passage("Asthma", FACTS[10])])
    assert isinstance(text, str) and text.strip()
    assert gen.versions()["adapter"].startswith(result.output_dir)


def test_qlora_4bit_path_runs_on_cpu(tiny, sft_file):
    pytest.importorskip("bitsandbytes")
    cfg = FineTuneConfig(
        base_model=tiny["base"],
        train_file=str(sft_file),
        output_dir=str(tiny["root"] / "out4" / "adapter"),
        load_in_4bit=True,
        gradient_checkpointing=True,  # the T4 path: prepare_model_for_kbit_training with checkpointing
        max_steps=2,
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        logging_steps=1,
        max_seq_length=512,
        max_train_examples=4,
    )
    result = training.train(cfg)
    assert result.metrics["steps"] == 2 and result.metrics["load_in_4bit"] is True
    assert result.metrics["examples"] == 4
    assert len(result.loss_history) == 2
    assert (Path(result.output_dir) / "adapter_model.safetensors").is_file()


def test_rerun_replaces_the_output_folder(tiny, sft_file, tmp_path):
    cfg = FineTuneConfig(
        base_model=tiny["base"],
        train_file=str(sft_file),
        output_dir=str(tmp_path / "adapter"),
        load_in_4bit=False,
        gradient_checkpointing=True,  # the full-precision path with checkpointing
        max_steps=1,
        per_device_batch_size=2,
        max_train_examples=2,
    )
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "stale.txt").write_text("old run")
    result = training.train(cfg)
    assert not (Path(result.output_dir) / "stale.txt").exists()
    assert (Path(result.output_dir) / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


# --- evaluation ----------------------------------------------------------------------------------


def test_parse_decision_and_scores():
    assert parse_decision("Yes. The study shows") == "yes"
    assert parse_decision("The answer is maybe, since") == "maybe"
    assert parse_decision("Nothing here; knowledge") is None
    items = [SimpleNamespace(decision=d) for d in ("yes", "no", "maybe")]
    s = score_decisions(items, ["yes", "No.", "unclear"])
    assert s["correct"] == 2 and s["parse_failures"] == 1 and s["accuracy"] == pytest.approx(2 / 3)
    assert s["predicted"] == {"yes": 1, "no": 1, "none": 1}


def test_load_pubmedqa_builds_one_labelled_source(tmp_path):
    items = load_pubmedqa(write_pubmedqa_file(tmp_path / "pqa.jsonl"), limit=2)
    assert len(items) == 2 and items[0].decision == "yes"
    assert items[0].sources == [Passage("PMID 100", f"Background: {FACTS[0]}\nResults: {FACTS[1]}")]
    (tmp_path / "bad.jsonl").write_text('{"question": "q", "contexts": ["x"], "final_decision": "perhaps"}\n')
    with pytest.raises(DocumentError, match=r"bad.jsonl:1: final_decision"):
        load_pubmedqa(tmp_path / "bad.jsonl")


@pytest.mark.slow
def test_evaluate_adapter_through_the_pipeline(tiny, trained, leaflets, embedder, tmp_path):
    _, result = trained
    held = tmp_path / "held_out.jsonl"
    held.write_text("".join(json.dumps(q) + "\n" for q in tiny_questions(["Can you explain {t}?"])[:4]))
    unanswerable = tmp_path / "unanswerable.jsonl"
    lines = [{"id": "u1", "question": "How long should I boil pasta?", "gold_doc_ids": [], "source": "Unanswerable/x"}]
    lines += [{"id": "r1", "question": "I can't breathe", "gold_doc_ids": [], "red_flag": True, "source": "RedFlags/e"}]
    unanswerable.write_text("".join(json.dumps(x) + "\n" for x in lines))
    ev = evaluate_adapter(
        tiny["base"],
        result.output_dir,
        config=leaflets["config"],
        embedder=embedder,
        index=leaflets["index"],
        questions_files=[held, unanswerable],
        pubmedqa_file=write_pubmedqa_file(tmp_path / "pqa.jsonl"),
        load_in_4bit=False,
        max_new_tokens=32,
    )
    assert ev["settings"]["questions"] == 5 and ev["settings"]["pubmedqa"] == 3  # the red flag is skipped
    for name in ("base", "adapter"):
        assert set(ev[name]) >= {"pubmedqa_accuracy", "false_abstention", "unanswerable_declined"}
        assert ev[name]["unanswerable_declined"] == 1.0  # pasta: the evidence gate declines for both
    assert "cited_format" in ev["adapter"] and ev["adapter"]["cited_format"] >= 0.8
    base, adapter = ev["details"]["base"], ev["details"]["adapter"]
    same = [a["sources"] for a in base["grounding"]["answers"]] == [
        a["sources"] for a in adapter["grounding"]["answers"]
    ]
    assert same  # both systems answered from the same retrieved sources
    assert adapter["versions"]["adapter"].startswith(result.output_dir) and "adapter" not in base["versions"]
    assert ev["helps"] == helps(ev["base"], ev["adapter"])
    table = format_eval_table(ev)
    assert "| cited_format |" in table and "Adapter helps:" in table


def test_helps_needs_a_gain_and_no_loss_beyond_noise():
    base = {"citation_precision": 0.80, "false_abstention": 0.10, "pubmedqa_accuracy": 0.50}
    assert helps(base, {**base, "citation_precision": 0.90})
    assert not helps(base, {**base, "citation_precision": 0.90, "false_abstention": 0.20})  # lower is better
    assert not helps(base, {**base, "citation_precision": 0.81})  # within the tolerance: no gain
    assert helps(base, {**base, "false_abstention": 0.0})


# --- push and CLI --------------------------------------------------------------------------------


def test_push_builds_the_card_from_metrics_and_evaluation(trained, monkeypatch):
    from medrag import hub

    cfg, result = trained
    calls = {}

    def fake_push(folder, repo_id, *, card=None, **kw):
        calls.update(folder=folder, repo_id=repo_id, card=card)
        return "0" * 40

    monkeypatch.setattr(hub, "push_adapter", fake_push)
    evaluation = {
        "base": {"pubmedqa_accuracy": 0.41, "cited_format": 0.12},
        "adapter": {"pubmedqa_accuracy": 0.57, "cited_format": 0.93},
        "helps": True,
    }
    assert training.push(cfg, result, evaluation, repo_id="me/adapter") == "0" * 40
    card = calls["card"]
    assert calls["folder"] == result.output_dir and calls["repo_id"] == "me/adapter"
    assert f"| train_examples | {result.metrics['examples']} |" in card
    assert "0.41" in card and "0.57" in card and "| cited_format | 0.12 | 0.93 |" in card and "it helps" in card
    with pytest.raises(ConfigError, match="push-to-hub"):
        training.push(cfg, result)


def test_cli_flags_map_onto_the_config():
    args = build_parser(FineTuneConfig()).parse_args(
        ["--lora-r", "8", "--no-load-in-4bit", "--target-modules", "q_proj,v_proj", "--push-to-hub", "me/x"]
    )
    cfg = config_from_args(args, environ={"MEDRAG_TRAIN_MAX_STEPS": "5"})
    assert cfg.lora_r == 8 and cfg.load_in_4bit is False and cfg.target_modules == ["q_proj", "v_proj"]
    assert cfg.hub_repo == "me/x" and cfg.max_steps == 5
    bad = build_parser(FineTuneConfig()).parse_args(["--lora-r", "many"])
    with pytest.raises(ConfigError, match="--lora-r 'many'"):
        config_from_args(bad, environ={})


def test_cli_bad_train_file_exits_with_a_message(tmp_path, capsys):
    assert train_main(["--train-file", str(tmp_path / "missing.jsonl"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "No training file" in capsys.readouterr().err


def test_cli_trains_evaluates_and_reports(tiny, sft_file, tmp_path, capsys):
    out = tmp_path / "cli-adapter"
    pqa = write_pubmedqa_file(tmp_path / "pqa.jsonl", n=2)
    argv = ["--base-model", tiny["base"], "--train-file", str(sft_file), "--output-dir", str(out), "--max-steps", "1"]
    argv += ["--no-load-in-4bit", "--no-gradient-checkpointing", "--max-train-examples", "2"]
    argv += ["--eval-pubmedqa", str(pqa)]
    assert train_main(argv) == 0
    printed = capsys.readouterr().out  # the plan, the Trainer's log lines, then the summary
    assert "Plan: 1 steps" in printed and "tokens/s (measured on cpu" in printed
    summary = json.loads(printed[printed.rindex('{\n  "output_dir"') :])
    assert summary["output_dir"] == str(out) and summary["steps"] == 1 and summary["examples"] == 2
    assert set(summary["evaluation"]) == {"base", "adapter", "helps"}
    assert json.loads((out / "evaluation.json").read_text())["details"]["base"]["pubmedqa"]["n"] == 2
    assert json.loads((out / "finetune_config.json").read_text())["max_train_examples"] == 2


# --- checkpoints and resume ----------------------------------------------------------------------


class Disconnect(Exception):
    """What a Colab runtime that goes away looks like to the training loop."""


def test_a_disconnected_run_resumes_from_the_checkpoint_on_the_hub(tiny, sft_file, tmp_path, monkeypatch):
    from hub_server import HubServer, use_hub
    from transformers import TrainerCallback

    cfg = FineTuneConfig(
        base_model=tiny["base"],
        train_file=str(sft_file),
        output_dir=str(tmp_path / "run1" / "adapter"),
        load_in_4bit=False,
        gradient_checkpointing=False,
        max_steps=4,
        save_steps=2,
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        logging_steps=1,
        max_seq_length=512,
        hub_repo="tester/medrag-adapter",
    )

    class Drop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise Disconnect

    callbacks = training._run_callbacks
    with HubServer(token="hf_test") as server:
        use_hub(monkeypatch, server, tmp_path / "hf", token="hf_test")
        monkeypatch.setattr(training, "_run_callbacks", lambda *a: [*callbacks(*a), Drop()])
        with pytest.raises(Disconnect):
            training.train(cfg)
        repo = server.repos[("model", "tester/medrag-adapter")]
        pushed = repo.resolve("checkpoints").files
        assert json.loads(pushed["last/trainer_state.json"])["global_step"] == 2
        assert {"last/adapter_model.safetensors", "last/optimizer.pt", f"last/{training.RUN_FILE}"} <= set(pushed)
        assert "last/training_args.bin" not in pushed  # a pickle: not uploaded, not needed
        assert repo.resolve("main").files == {}  # the Space watches main: no checkpoint lands there

        # a new runtime: nothing local survives; the same settings pick up the pushed checkpoint
        monkeypatch.setattr(training, "_run_callbacks", callbacks)
        fresh = dataclasses.replace(cfg, output_dir=str(tmp_path / "run2" / "adapter"))
        result = training.train(fresh)
        assert result.metrics["resumed_from_step"] == 2 and result.metrics["steps"] == 4
        assert [step for step, _ in result.loss_history] == [1, 2, 3, 4]  # the history carries over
        assert json.loads(repo.resolve("checkpoints").files["last/trainer_state.json"])["global_step"] == 4

        # other settings must not resume from it
        with pytest.raises(ConfigError, match="other settings \\(learning_rate\\)"):
            training.train(dataclasses.replace(fresh, learning_rate=1e-3))
        result = training.train(dataclasses.replace(fresh, learning_rate=1e-3, resume=False))
        assert result.metrics["resumed_from_step"] == 0
