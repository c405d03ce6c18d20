"""medrag.training, medrag.train and medrag.adapter_eval on the tiny Mistral, on the CPU, offline.

One LoRA run (full-precision base, ~24 steps on 16 examples) is shared by the tests that need a
trained adapter; the 4-bit (bitsandbytes NF4 on the CPU) path runs 2 steps of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny_models import MEDICAL_TEXT, make_tiny_mistral, make_tiny_tokenizer

from medrag import training
from medrag.adapter_eval import (
    evaluate_grounding,
    format_eval_table,
    load_pubmedqa,
    parse_decision,
    score_decisions,
)
from medrag.config import FineTuneConfig
from medrag.errors import ConfigError, DocumentError
from medrag.prompts import Passage, build_prompt, parse_numbered_context
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
def trained(tiny, sft_file):
    cfg = FineTuneConfig(
        base_model=tiny["base"],
        train_file=str(sft_file),
        output_dir=str(tiny["root"] / "out" / "adapter"),
        load_in_4bit=False,
        gradient_checkpointing=False,
        # lm_head too, in this test only: the tiny base's output layer is barely trained, so adapters
        # on the other layers alone cannot make any token likely (its logits stay near uniform)
        target_modules=[*FineTuneConfig().target_modules, "lm_head"],
        max_steps=24,
        per_device_batch_size=4,
        gradient_accumulation_steps=1,
        learning_rate=1e-2,
        logging_steps=4,
        max_seq_length=512,
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
    sources = parse_numbered_context(ex.context)
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
    context = "\n\n".join(f"[{i}] {t}\n{x}" for i, (t, x) in enumerate(passages, 1))
    return SFTExample("What is asthma?", context, "Asthma is a common lung condition [1].", gold)


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
    expected = build_prompt(tok, ex.question, parse_numbered_context(ex.context)[:2])
    assert row["input_ids"][: -len(answer_ids)] == tok(expected, add_special_tokens=False).input_ids

    # the gold passage is the one that would go: the example is dropped, not trained without its source
    assert tokenize_example(tok, _long_example(gold=3), max_seq_length=limit) == (None, "too_long")
    # an answer longer than the whole budget: dropped
    assert tokenize_example(tok, ex, max_seq_length=8) == (None, "too_long")


def test_build_dataset_counts_drops(tiny):
    tok = tiny["tokenizer"]
    rows, counts = training.build_dataset(tok, [_long_example(1), _long_example(3)], max_seq_length=300)
    assert counts["examples"] + counts["dropped_too_long"] == 2
    assert counts["tokens"] == sum(len(r["input_ids"]) for r in rows)


# --- training ------------------------------------------------------------------------------------


def test_tiny_run_loss_falls_and_folder_is_complete(trained):
    cfg, result = trained
    first, last = result.loss_history[0][1], result.loss_history[-1][1]
    assert result.loss_history[0][0] == 1 and result.loss_history[-1][0] == 24
    assert last < 0.8 * first, result.loss_history
    out = Path(result.output_dir)
    assert out == Path(cfg.output_dir)
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    assert {"finetune_config.json", "metrics.json"} <= names
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    saved_cfg = json.loads((out / "finetune_config.json").read_text())
    assert FineTuneConfig(**saved_cfg) == cfg
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 24 and metrics["examples"] == 16 and metrics["dropped_too_long"] == 0
    assert metrics["train_loss_first"] == first and metrics["train_loss_last"] == last
    assert metrics["tokens"] > metrics["answer_tokens"] > 0 and metrics["tokens_seen"] >= metrics["tokens"]
    assert metrics["train_seconds"] > 0 and metrics["sources"] == {"PubMedQA": 1, "unknown": 15}
    assert metrics["versions"]["peft"] and metrics["load_in_4bit"] is False
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["r"] == cfg.lora_r and sorted(adapter_cfg["target_modules"]) == sorted(cfg.target_modules)


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


def test_evaluate_adapter_side_by_side(tiny, trained):
    _, result = trained
    pqa = write_pubmedqa_file(tiny["root"] / "pqa.jsonl")
    ev = training.evaluate_adapter(tiny["base"], result.output_dir, pqa, limit=3, load_in_4bit=False, max_new_tokens=4)
    assert ev["pubmedqa"]["n"] == 3 and len(ev["predictions"]) == 3
    for name in ("base", "adapter"):
        assert set(ev[name]) == {"pubmedqa_accuracy", "pubmedqa_parse_errors"}
        assert ev[name]["pubmedqa_accuracy"] == ev["pubmedqa"][name]["accuracy"]
    assert ev["helps"] == (ev["adapter"]["pubmedqa_accuracy"] > ev["base"]["pubmedqa_accuracy"])
    assert [p["base"] for p in ev["predictions"]] != [p["adapter"] for p in ev["predictions"]]  # the adapter acts
    table = format_eval_table(ev)
    assert "| pubmedqa_accuracy |" in table and "Adapter helps:" in table


def test_grounding_hook_scores_each_pipeline(tmp_path):
    from medrag.types import Answer, Chunk, Citation, Hit

    questions = tmp_path / "dev.jsonl"
    rows = [
        {"id": "m1", "question": "What is asthma?", "gold_doc_ids": ["d1"], "source": "MedQuAD/NHLBI"},
        {"id": "m2", "question": "What is gout?", "gold_doc_ids": ["d2"], "source": "MedQuAD/GARD"},
        {"id": "l1", "question": "Other?", "gold_doc_ids": ["d3"], "source": "LiveQA-Med-2017"},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Fake:
        def __init__(self, declines: bool):
            self.declines = declines

        def answer(self, question, mode="hybrid"):
            hit = Hit(Chunk("d1#0", "d1", "Asthma", "Asthma is a lung condition."), 1.0, 1)
            if self.declines and "gout" in question:
                return Answer(question, "cannot", kind="declined", declined=True)
            cite = Citation(1, "Asthma is a lung condition [1].", 0.9, True)
            return Answer(question, "Asthma is a lung condition [1].", [hit], [cite], support_rate=1.0)

    out = evaluate_grounding({"base": Fake(True), "adapter": Fake(False)}, questions)
    assert out["base"]["n"] == 2 and out["base"]["abstention_rate"] == 0.5
    assert out["adapter"]["abstention_rate"] == 0.0
    assert out["adapter"]["citation_precision"] == 0.5  # d1 is gold for m1 only


# --- push and CLI --------------------------------------------------------------------------------


def test_push_builds_the_card_from_metrics_and_evaluation(trained, monkeypatch):
    from medrag import hub

    cfg, result = trained
    calls = {}

    def fake_push(folder, repo_id, *, card=None, **kw):
        calls.update(folder=folder, repo_id=repo_id, card=card)
        return "0" * 40

    monkeypatch.setattr(hub, "push_adapter", fake_push)
    evaluation = {"base": {"pubmedqa_accuracy": 0.41}, "adapter": {"pubmedqa_accuracy": 0.57}}
    assert training.push(cfg, result, evaluation, repo_id="me/adapter") == "0" * 40
    card = calls["card"]
    assert calls["folder"] == result.output_dir and calls["repo_id"] == "me/adapter"
    assert f"| train_examples | {result.metrics['examples']} |" in card
    assert "0.41" in card and "0.57" in card and "PubMedQA" in card
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
    argv += ["--no-load-in-4bit", "--no-gradient-checkpointing", "--max-train-examples", "2", "--eval-file", str(pqa)]
    assert train_main(argv) == 0
    printed = capsys.readouterr().out  # the Trainer's log lines, then the summary
    summary = json.loads(printed[printed.rindex('{\n  "output_dir"') :])
    assert summary["output_dir"] == str(out) and summary["steps"] == 1 and summary["examples"] == 2
    assert set(summary["evaluation"]) == {"base", "adapter", "helps"}
    assert json.loads((out / "evaluation.json").read_text())["pubmedqa"]["n"] == 2
    assert json.loads((out / "finetune_config.json").read_text())["max_train_examples"] == 2
