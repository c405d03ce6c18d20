"""QLoRA fine-tuning of the generator: data, tokenisation with answer-only loss, training, push.

The prompt of every training example is `medrag.prompts.build_prompt` on the example's question
and numbered passages, the very function the generator calls at inference, so the adapter learns
on exactly what it later sees; the completion is the answer plus EOS, and only its tokens carry
labels. Shortcuts taken on purpose:

- transformers' `Trainer` with our own tokenisation rather than TRL's `SFTTrainer`: truncation
  must drop low-ranked sources (never the answer, never the gold passage), which needs the
  passages, not a flat string; and the prompt must be tokenised as the generator tokenises it.
- An example that is still too long once the non-gold sources are gone is dropped and counted
  in `metrics.json` (`dropped_too_long`), never trained on with a cut answer.
- No evaluation during training and no checkpoints: runs are short (one epoch); the adapter is
  evaluated afterwards with `medrag.adapter_eval.evaluate_adapter` (re-exported here).
- The output folder is written to a temporary folder beside it and renamed into place.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrag.adapter_eval import evaluate_adapter
from medrag.config import FineTuneConfig
from medrag.documents import jsonl_lines
from medrag.errors import ConfigError, DocumentError, ModelLoadError, missing_dependency
from medrag.prompts import Passage, build_prompt, fit_sources, format_sources, parse_numbered_context

__all__ = [
    "SFTExample",
    "TrainResult",
    "evaluate_adapter",
    "format_example",
    "load_base_model",
    "load_sft_examples",
    "push",
    "tokenize_example",
    "train",
]

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips: prompt and padding tokens


@dataclass(frozen=True)
class SFTExample:
    question: str
    context: str  # "[1] Title\ntext\n\n[2] Title\ntext", the sources in rank order
    answer: str
    gold_passage: int | None = None  # 1-based number of the passage holding the answer, when known
    id: str = ""
    source: str = ""  # the collection it came from ("MedQuAD/GARD", "PubMedQA"): counted in metrics.json


@dataclass
class TrainResult:
    output_dir: str
    metrics: dict[str, Any]
    loss_history: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss) as logged


# --- data --------------------------------------------------------------------------------------


def load_sft_examples(path: str | Path, limit: int | None = None) -> list[SFTExample]:
    """Read a jsonl of `question, context, answer` (optional `gold_passage`, `id`); the first `limit` lines."""
    hint = "pass --train-file (a jsonl of question, context, answer)"
    out = [_parse_line(line, f"{path}:{n}") for n, line in jsonl_lines(path, "training file", hint, limit)]
    if not out:
        raise DocumentError(
            f"{path} holds no examples: expected one JSON object per line with question, context, answer"
        )
    return out


def _parse_line(line: str, where: str) -> SFTExample:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise DocumentError(f"{where}: not valid JSON ({e.msg}): each line must be one JSON object") from None
    if not isinstance(d, dict):
        raise DocumentError(f"{where}: expected a JSON object with question, context, answer")
    for key in ("question", "context", "answer"):
        if not isinstance(d.get(key), str) or not d[key].strip():
            raise DocumentError(f"{where}: '{key}' is missing or empty: each example needs question, context, answer")
    n_passages = len(parse_numbered_context(d["context"]))
    if not n_passages:
        raise DocumentError(
            f"{where}: 'context' has no numbered passages: write them as '[1] Title\\ntext\\n\\n[2] ...'"
        )
    gold = d.get("gold_passage")
    if gold is not None and (not isinstance(gold, int) or not 1 <= gold <= n_passages):
        raise DocumentError(f"{where}: 'gold_passage' must be a passage number from 1 to {n_passages}, not {gold!r}")
    return SFTExample(d["question"], d["context"], d["answer"], gold, str(d.get("id", "")), str(d.get("source", "")))


def format_example(tokenizer: Any, ex: SFTExample, sources: list[Passage] | None = None) -> tuple[str, str]:
    """(prompt, completion): the inference prompt for the example's question and sources; answer + EOS."""
    if sources is None:
        sources = parse_numbered_context(ex.context)
    prompt = build_prompt(tokenizer, ex.question, sources)
    return prompt, ex.answer.strip() + tokenizer.eos_token


def _encode(tokenizer: Any, text: str) -> list[int]:
    # the chat template already wrote <s>: add_special_tokens=False, as the generator tokenises prompts
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tokenize_example(tokenizer: Any, ex: SFTExample, max_seq_length: int) -> tuple[dict[str, list[int]] | None, str]:
    """Token ids and labels (-100 on the prompt), and how the example fared: full, trimmed or too_long.

    An example over `max_seq_length` loses its lowest-ranked sources first (as `fit_sources` drops
    them at inference); it is kept only if the gold passage survives whole, else it is too_long.
    """
    sources = parse_numbered_context(ex.context)
    prompt, completion = format_example(tokenizer, ex, sources)
    answer_ids = _encode(tokenizer, completion)
    if answer_ids[-1:] != [tokenizer.eos_token_id]:
        answer_ids.append(tokenizer.eos_token_id)
    room = max_seq_length - len(answer_ids)
    prompt_ids = _encode(tokenizer, prompt)
    status = "full"
    if len(prompt_ids) > room:
        status = "too_long"
        if ex.gold_passage is not None:
            count = lambda t: len(_encode(tokenizer, t))  # noqa: E731  (the count build_prompt uses)
            budget = count(format_sources(sources))
            gold = sources[ex.gold_passage - 1]
            for _ in range(len(sources)):  # each pass drops at least one more source or gives up
                budget -= len(prompt_ids) - room
                kept = fit_sources(sources, count, budget)
                if gold not in kept:
                    break
                prompt_ids = _encode(tokenizer, format_example(tokenizer, ex, kept)[0])
                if len(prompt_ids) <= room:
                    status = "trimmed"
                    break
    if status == "too_long":
        return None, status
    ids = prompt_ids + answer_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}, status


def build_dataset(tokenizer: Any, examples: list[SFTExample], max_seq_length: int) -> tuple[list[dict], dict[str, int]]:
    """Tokenised rows and counts: examples, sources_trimmed, dropped_too_long, tokens, answer_tokens, sources."""
    rows, counts = [], {"examples": 0, "sources_trimmed": 0, "dropped_too_long": 0, "tokens": 0, "answer_tokens": 0}
    sources: Counter[str] = Counter()
    for ex in examples:
        row, status = tokenize_example(tokenizer, ex, max_seq_length)
        if row is None:
            counts["dropped_too_long"] += 1
            continue
        rows.append(row)
        counts["examples"] += 1
        counts["sources_trimmed"] += status == "trimmed"
        counts["tokens"] += len(row["input_ids"])
        counts["answer_tokens"] += sum(label != IGNORE_INDEX for label in row["labels"])
        sources[ex.source or "unknown"] += 1
    return rows, {**counts, "sources": dict(sorted(sources.items()))}


# --- model -------------------------------------------------------------------------------------


def resolve_compute_dtype(name: str = "auto"):
    """auto: bf16 on GPUs that support it, fp16 on other GPUs (a T4), float32 on the CPU."""
    import torch

    if name == "auto":
        if not torch.cuda.is_available():
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    named = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(name, name)
    dtype = getattr(torch, named, None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"compute_dtype={name!r} is not a dtype: use auto, bf16, fp16 or fp32")
    return dtype


def load_base_model(base_model: str, load_in_4bit: bool = True, double_quant: bool = True, compute_dtype: str = "auto"):
    """(model, tokenizer): NF4 4-bit (with double quantisation) or full weights in the compute dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = resolve_compute_dtype(compute_dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if load_in_4bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise missing_dependency("bitsandbytes", "4-bit (QLoRA) loading") from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",  # the QLoRA paper's data type for normally distributed weights
            bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
    kwargs["device_map"] = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = AutoModelForCausalLM.from_pretrained(base_model, **kwargs)
    except Exception as e:  # missing, gated, offline or corrupt: the same advice
        raise ModelLoadError(
            f"Could not load base model {base_model!r} ({e}): give a local folder or a Hub id, "
            "and for a gated model accept its licence and log in (huggingface_hub.login())"
        ) from e
    if tokenizer.pad_token is None:  # Mistral has none; padded positions are masked anyway
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return model, tokenizer


def _lora_model(model, cfg: FineTuneConfig):
    try:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    except ImportError:
        raise missing_dependency("peft", "LoRA training") from None
    checkpointing = {"use_reentrant": False}  # the non-reentrant form needs no input-grad hooks
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing, gradient_checkpointing_kwargs=checkpointing
        )
    elif cfg.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing)  # transformers 5 name
    model.config.use_cache = False  # the KV cache is useless in training and clashes with checkpointing
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


# --- training ----------------------------------------------------------------------------------


def select_examples(cfg: FineTuneConfig) -> list[SFTExample]:
    """All examples, or a seeded sample of `max_train_examples` (the file is grouped by source)."""
    examples = load_sft_examples(cfg.train_file)
    if cfg.max_train_examples is not None and cfg.max_train_examples < len(examples):
        examples = random.Random(cfg.seed).sample(examples, cfg.max_train_examples)
    return examples


def train(cfg: FineTuneConfig) -> TrainResult:
    """Fine-tune a LoRA adapter on `cfg.train_file`; save adapter, tokenizer, config and metrics."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    t0 = time.perf_counter()
    if not 0 <= cfg.warmup_ratio < 1:
        raise ConfigError(f"warmup_ratio={cfg.warmup_ratio} must be a fraction of the steps, from 0 up to 1")
    examples = select_examples(cfg)
    set_seed(cfg.seed)  # before the model: the LoRA A matrices are initialised at random
    model, tokenizer = load_base_model(cfg.base_model, cfg.load_in_4bit, cfg.double_quant, cfg.compute_dtype)
    rows, counts = build_dataset(tokenizer, examples, cfg.max_seq_length)
    if not rows:
        raise ConfigError(
            f"All {len(examples)} examples are longer than max_seq_length={cfg.max_seq_length} "
            "even without their non-gold sources: raise --max-seq-length"
        )
    model = _lora_model(model, cfg)
    dtype = resolve_compute_dtype(cfg.compute_dtype)
    out = Path(cfg.output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    trainer = None
    try:
        args = TrainingArguments(
            output_dir=str(work / "trainer"),
            per_device_train_batch_size=cfg.per_device_batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type=cfg.lr_scheduler,
            warmup_steps=cfg.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the steps
            num_train_epochs=cfg.num_epochs,
            max_steps=cfg.max_steps,
            logging_steps=cfg.logging_steps,
            logging_first_step=True,  # the loss before any update: the curve's starting point
            save_strategy="no",  # short runs; the adapter is saved once, at the end
            report_to="none",
            seed=cfg.seed,
            bf16=dtype == torch.bfloat16,
            fp16=dtype == torch.float16,
            optim="adamw_torch",  # LoRA's few parameters need no paged or 8-bit optimiser
            remove_unused_columns=False,
            include_num_input_tokens_seen="non_padding",
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        collator = DataCollatorForSeq2Seq(
            tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=8
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator)
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
        history = [(int(e["step"]), float(e["loss"])) for e in trainer.state.log_history if "loss" in e]
        metrics = {
            **counts,
            "train_loss_first": history[0][1] if history else None,
            "train_loss_last": history[-1][1] if history else None,
            "train_loss_mean": float(output.training_loss),
            "steps": int(trainer.state.global_step),
            "epochs": float(trainer.state.epoch or 0.0),
            "tokens_seen": int(trainer.state.num_input_tokens_seen),
            "effective_batch_size": cfg.per_device_batch_size * cfg.gradient_accumulation_steps,
            "train_seconds": round(seconds, 2),
            "total_seconds": round(time.perf_counter() - t0, 2),
            "load_in_4bit": bool(cfg.load_in_4bit),
            "compute_dtype": str(dtype).removeprefix("torch."),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "versions": _versions(),
        }
        final = work / "adapter"
        model.save_pretrained(final, save_embedding_layers=False)  # the vocabulary never changes: LoRA weights only
        tokenizer.save_pretrained(final)
        _write_json(final / "finetune_config.json", dataclasses.asdict(cfg))
        _write_json(final / "metrics.json", {**metrics, "loss_history": history})
        _replace_dir(final, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        trainer = model = None  # noqa: F841  (free the GPU for the evaluation that usually follows on a T4)
        if torch.cuda.is_available():
            gc.collect()
            torch.cuda.empty_cache()
    return TrainResult(output_dir=str(out), metrics=metrics, loss_history=history)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import medrag

    out = {"medrag": medrag.__version__}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place; an older one at `dst` is removed only once the new one is there."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        dst.rename(old)
    src.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- hub ---------------------------------------------------------------------------------------


def push(cfg: FineTuneConfig, result: TrainResult, eval_results: dict | None = None, repo_id: str | None = None) -> str:
    """Upload the adapter folder with a model card built from its metrics (and evaluation); returns the commit sha."""
    from medrag import hub

    repo_id = repo_id or cfg.hub_repo
    if not repo_id:
        raise ConfigError("No Hub repo to push to: set hub_repo (--push-to-hub USER/NAME)")
    info = card_info(cfg, result, eval_results, repo_id)
    return hub.push_adapter(result.output_dir, repo_id, card=hub.adapter_card(info))


def card_info(cfg: FineTuneConfig, result: TrainResult, eval_results: dict | None, repo_id: str) -> dict[str, Any]:
    """The model card's values (`medrag.cards.adapter_card` keys), all from the config, metrics and evaluation."""
    m = result.metrics
    info: dict[str, Any] = {
        **dataclasses.asdict(cfg),
        "repo_id": repo_id,
        "compute_dtype": m.get("compute_dtype", cfg.compute_dtype),  # what "auto" resolved to
        "train_examples": m.get("examples"),
        "train_sources": m.get("sources"),  # names the corpora, so the card carries their attribution
        "train_runtime": m.get("train_seconds"),
        "train_loss": m.get("train_loss_mean"),
    }
    if eval_results:
        info["eval"] = {"base": eval_results["base"], "adapter": eval_results["adapter"]}
    return info
