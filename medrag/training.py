"""QLoRA fine-tuning of the generator: data, tokenisation with answer-only loss, a time-boxed run
with checkpoints that survive a disconnect, and the push.

The prompt of every training example is `medrag.prompts.build_prompt` on the example's question
and numbered sources, the very function the generator calls at inference, so the adapter learns
on exactly what it later sees; the completion is the target answer (cited sentences, or the
cannot-answer phrase: see `medrag.sft_data`) plus EOS, and only its tokens carry labels.

A run is planned before it starts: a few micro-batches are timed on this GPU, and with
`max_steps=-1` the run takes the steps that fit `max_train_minutes` (at most one epoch); the
estimate is printed first. The Trainer saves a checkpoint every `save_steps` and each one is
pushed to the Hub (`medrag.hub.push_checkpoint`, a branch of the adapter repo); a re-run with the
same settings resumes from the last checkpoint, local or on the Hub.

Shortcuts taken on purpose:
- transformers' `Trainer` with our own tokenisation rather than TRL's `SFTTrainer`: truncation
  must drop low-ranked sources (never the answer, never a passage the answer cites), which needs
  the passages, not a flat string; and the prompt must be tokenised as the generator tokenises it.
- An example that is still too long once the uncited sources are gone is dropped and counted in
  `metrics.json` (`dropped_too_long`), never trained on with a cut answer.
- The speed is measured on 2 micro-batches after one warm-up: a rough figure, printed as such;
  the time budget is enforced by a callback as well, so a wrong estimate only shortens the run.
- No evaluation during training: the adapter is evaluated afterwards (`medrag.adapter_eval`).
- The output folder is written to a temporary folder beside it and renamed into place.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrag.citations import cited_numbers
from medrag.config import FineTuneConfig
from medrag.documents import jsonl_lines
from medrag.errors import ConfigError, DocumentError, ModelLoadError, missing_dependency
from medrag.prompts import (
    CANNOT_ANSWER_PHRASE,
    Passage,
    build_prompt,
    fit_sources,
    format_sources,
    parse_numbered_context,
)

__all__ = [
    "Plan",
    "SFTExample",
    "TrainResult",
    "format_example",
    "load_base_model",
    "load_sft_examples",
    "push",
    "resolve_compute_dtype",
    "tokenize_example",
    "train",
]

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips: prompt and padding tokens
RUN_FILE = "medrag_run.json"  # in each checkpoint: the settings and plan of the run it belongs to
# settings a resumed run must share with its checkpoint (the rest, like output_dir or hub_repo, may change)
RUN_KEYS = (
    "base_model", "train_file", "train_revision", "lora_r", "lora_alpha", "lora_dropout", "target_modules",
    "load_in_4bit", "double_quant", "learning_rate", "lr_scheduler", "warmup_ratio", "max_seq_length",
    "per_device_batch_size", "gradient_accumulation_steps", "seed", "max_train_examples",
)  # fmt: skip
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class SFTExample:
    question: str
    sources: tuple[Passage, ...]  # in rank order, numbered [1].. in the prompt
    answer: str  # the target: cited sentences, or CANNOT_ANSWER_PHRASE
    gold_passage: int | None = None  # 1-based number of a passage holding the answer, when known
    id: str = ""
    source: str = ""  # the collection it came from ("MedQuAD/GARD", "PubMedQA"): counted in metrics.json
    kind: str = "cited"  # cited | declined


@dataclass
class Plan:
    """How long the run should take, decided before it starts."""

    steps: int  # optimiser steps to run
    epoch_steps: int  # steps of one pass over the examples
    tokens_per_step: float  # mean tokens of an example x effective batch
    tokens_per_second: float | None  # measured on this machine (None: not measured)
    measured_on: str  # the device and how the figure was taken
    resumed_from: int = 0  # the checkpoint's step, 0 for a fresh run

    @property
    def minutes(self) -> float | None:
        if not self.tokens_per_second:
            return None
        return (self.steps - self.resumed_from) * self.tokens_per_step / self.tokens_per_second / 60

    def describe(self) -> str:
        speed = (
            f"{self.tokens_per_second:,.0f} tokens/s ({self.measured_on})"
            if self.tokens_per_second
            else "speed not measured"
        )
        eta = f" ~{self.minutes:.0f} min" if self.minutes is not None else ""
        start = f"resuming at step {self.resumed_from}, " if self.resumed_from else ""
        return (
            f"Plan: {start}{self.steps} steps of ~{self.tokens_per_step:,.0f} tokens (one epoch: {self.epoch_steps}) "
            f"at {speed}:{eta} of training"
        )


@dataclass
class TrainResult:
    output_dir: str
    metrics: dict[str, Any]
    loss_history: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss) as logged


# --- data --------------------------------------------------------------------------------------


def resolve_train_file(path: str | Path, revision: str = "main") -> Path:
    """The jsonl to read: a file as it is, `train.jsonl` in a folder, or in a Hub dataset repo's snapshot."""
    local = Path(path).expanduser()
    if local.is_dir():
        return local / "train.jsonl"
    if local.exists() or not _REPO_ID.match(str(path)) or str(path).endswith(".jsonl"):
        return local
    from medrag import hub
    from medrag.errors import HubError

    try:
        return hub.download_dataset(str(path), revision).path / hub.TRAIN_FILE
    except HubError as e:  # "outputs/sft-data" not built yet reads like a repo id too
        raise DocumentError(
            f"No training data at {path}: no such local file or folder, and as a Hub dataset repo: {e}. "
            "Build it with 'python -m medrag.sft_data --out FOLDER' (add --push-to-hub USER/NAME to share it)"
        ) from e


def load_sft_examples(path: str | Path, limit: int | None = None, revision: str = "main") -> list[SFTExample]:
    """Read examples (`question`, `sources` or a numbered `context`, `answer`; optional `gold_passage`, `id`,
    `source`, `kind`) from a jsonl, a folder holding train.jsonl, or a Hub dataset repo; the first `limit`."""
    file = resolve_train_file(path, revision)
    hint = "pass --train-file (a jsonl, a folder from 'python -m medrag.sft_data', or a Hub dataset repo)"
    out = [_parse_line(line, f"{file}:{n}") for n, line in jsonl_lines(file, "training file", hint, limit)]
    if not out:
        raise DocumentError(
            f"{file} holds no examples: expected one JSON object per line with question, sources, answer"
        )
    return out


def _parse_line(line: str, where: str) -> SFTExample:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise DocumentError(f"{where}: not valid JSON ({e.msg}): each line must be one JSON object") from None
    if not isinstance(d, dict):
        raise DocumentError(f"{where}: expected a JSON object with question, sources, answer")
    for key in ("question", "answer"):
        if not isinstance(d.get(key), str) or not d[key].strip():
            raise DocumentError(f"{where}: '{key}' is missing or empty: each example needs question, sources, answer")
    sources = _sources(d, where)
    gold = d.get("gold_passage")
    if gold is not None and (not isinstance(gold, int) or not 1 <= gold <= len(sources)):
        raise DocumentError(f"{where}: 'gold_passage' must be a passage number from 1 to {len(sources)}, not {gold!r}")
    declined = d["answer"].strip() == CANNOT_ANSWER_PHRASE
    kind = str(d.get("kind") or ("declined" if declined else "cited"))
    return SFTExample(
        d["question"], tuple(sources), d["answer"], gold, str(d.get("id", "")), str(d.get("source", "")), kind
    )


def _sources(d: dict, where: str) -> list[Passage]:
    if isinstance(d.get("sources"), list):
        try:
            return [Passage(str(s["title"]), str(s["text"])) for s in d["sources"]]
        except (KeyError, TypeError):
            raise DocumentError(f"{where}: each of 'sources' must be an object with title and text") from None
    if isinstance(d.get("context"), str):
        sources = parse_numbered_context(d["context"])
        if sources:
            return sources
        raise DocumentError(
            f"{where}: 'context' has no numbered passages: write them as '[1] Title\\ntext\\n\\n[2] ...'"
        )
    raise DocumentError(f"{where}: 'sources' is missing: give sources (a list of title, text) or a numbered context")


def format_example(tokenizer: Any, ex: SFTExample, sources: list[Passage] | None = None) -> tuple[str, str]:
    """(prompt, completion): the inference prompt for the example's question and sources; answer + EOS."""
    prompt = build_prompt(tokenizer, ex.question, list(ex.sources) if sources is None else sources)
    return prompt, ex.answer.strip() + tokenizer.eos_token


def _encode(tokenizer: Any, text: str) -> list[int]:
    # the chat template already wrote <s>: add_special_tokens=False, as the generator tokenises prompts
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tokenize_example(tokenizer: Any, ex: SFTExample, max_seq_length: int) -> tuple[dict[str, list[int]] | None, str]:
    """Token ids and labels (-100 on the prompt), and how the example fared: full, trimmed or too_long.

    An example over `max_seq_length` loses its lowest-ranked sources first (as `fit_sources` drops
    them at inference); it is kept only if every passage the answer cites (and the gold passage)
    survives whole, else it is too_long. A declined example may lose any source.
    """
    sources = list(ex.sources)
    needed = max([*cited_numbers(ex.answer), ex.gold_passage or 0])
    prompt, completion = format_example(tokenizer, ex, sources)
    answer_ids = _encode(tokenizer, completion)
    if answer_ids[-1:] != [tokenizer.eos_token_id]:
        answer_ids.append(tokenizer.eos_token_id)
    room = max_seq_length - len(answer_ids)
    prompt_ids = _encode(tokenizer, prompt)
    status = "full"
    if len(prompt_ids) > room:
        status = "too_long"
        count = lambda t: len(_encode(tokenizer, t))  # noqa: E731  (the count build_prompt uses)
        budget = count(format_sources(sources))
        for _ in range(len(sources)):  # each pass drops at least one more source or gives up
            budget -= len(prompt_ids) - room
            kept = fit_sources(sources, count, budget)
            if len(kept) < needed or any(k is not s for k, s in zip(kept, sources, strict=False)):
                break  # a cited passage would go, or be cut
            prompt_ids = _encode(tokenizer, format_example(tokenizer, ex, kept)[0])
            if len(prompt_ids) <= room:
                status = "trimmed"
                break
    if status == "too_long":
        return None, status
    ids = prompt_ids + answer_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}, status


def build_dataset(tokenizer: Any, examples: list[SFTExample], max_seq_length: int) -> tuple[list[dict], dict[str, Any]]:
    """Tokenised rows and counts: examples, sources_trimmed, dropped_too_long, tokens, answer_tokens, kinds, sources."""
    rows, counts = [], {"examples": 0, "sources_trimmed": 0, "dropped_too_long": 0, "tokens": 0, "answer_tokens": 0}
    sources: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
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
        kinds[ex.kind] += 1
    return rows, {**counts, "kinds": dict(sorted(kinds.items())), "sources": dict(sorted(sources.items()))}


# --- model -------------------------------------------------------------------------------------


def resolve_compute_dtype(name: str = "auto"):
    """auto: bf16 on GPUs with native bf16 (Ampere and later), fp16 on the others (a T4), float32 on the CPU.

    `is_bf16_supported()` alone says True on a T4, which only emulates bf16 (slowly): ask without emulation.
    """
    import torch

    if name == "auto":
        if not torch.cuda.is_available():
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
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


# --- planning ----------------------------------------------------------------------------------


def select_examples(cfg: FineTuneConfig) -> list[SFTExample]:
    """All examples in a seeded order (the file is grouped by source), or the first `max_train_examples` of it."""
    examples = load_sft_examples(cfg.train_file, revision=cfg.train_revision)
    random.Random(cfg.seed).shuffle(examples)
    return examples[: cfg.max_train_examples] if cfg.max_train_examples is not None else examples


def measure_speed(model, rows: list[dict], collator, cfg: FineTuneConfig, micro_batches: int = 2) -> float:
    """Tokens per second of forward + backward on this device: `micro_batches` timed after one warm-up.

    The gradients are thrown away, so the model is as before. An optimiser step on LoRA's few
    parameters costs little beside the forward and backward passes, so it is left out.
    """
    import torch

    dtype = resolve_compute_dtype(cfg.compute_dtype)
    device = next(p.device for p in model.parameters())
    b = cfg.per_device_batch_size
    batches = [rows[i * b : (i + 1) * b] for i in range(micro_batches + 1)]
    tokens, seconds = 0, 0.0
    model.train()
    for k, batch in enumerate(b for b in batches if b):
        inputs = {key: value.to(device) for key, value in collator(batch).items()}
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(**inputs).loss
        loss.backward()
        _sync(device)
        if k:  # the first micro-batch warms kernels and allocators up
            seconds += time.perf_counter() - t0
            tokens += int(inputs["attention_mask"].sum())
    model.zero_grad(set_to_none=True)
    return tokens / seconds if seconds else 0.0


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plan_run(cfg: FineTuneConfig, counts: dict[str, Any], tokens_per_second: float | None, measured_on: str) -> Plan:
    """The steps to run: `max_steps` when set, else one epoch cut to what `max_train_minutes` allows."""
    per_step = cfg.per_device_batch_size * cfg.gradient_accumulation_steps
    epoch_steps = max(1, math.ceil(counts["examples"] * cfg.num_epochs / per_step))
    tokens_per_step = counts["tokens"] / max(1, counts["examples"]) * per_step
    steps = cfg.max_steps if cfg.max_steps > 0 else epoch_steps
    if cfg.max_steps <= 0 and tokens_per_second:
        affordable = int(cfg.max_train_minutes * 60 * tokens_per_second / tokens_per_step)
        steps = max(1, min(epoch_steps, affordable))
    return Plan(steps, epoch_steps, tokens_per_step, tokens_per_second, measured_on)


def training_arguments(cfg: FineTuneConfig, output_dir: str | Path, max_steps: int):
    """The Trainer's arguments for `cfg` (also what bench/gpu_check.py times)."""
    import torch
    from transformers import TrainingArguments

    dtype = resolve_compute_dtype(cfg.compute_dtype)
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the steps
        max_steps=max_steps,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,  # the loss before any update: the curve's starting point
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,  # only the last checkpoint is needed to resume
        report_to="none",
        seed=cfg.seed,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        optim="adamw_torch",  # LoRA's few parameters need no paged or 8-bit optimiser
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        dataloader_pin_memory=torch.cuda.is_available(),
    )


# --- checkpoints -------------------------------------------------------------------------------


def checkpoint_dir(cfg: FineTuneConfig) -> Path:
    """Where the Trainer keeps checkpoints: beside the output folder, so a re-run in the same session finds them."""
    out = Path(cfg.output_dir)
    return out.with_name(out.name + "-checkpoints")


def checkpoint_repo(cfg: FineTuneConfig) -> str | None:
    return cfg.checkpoint_repo or cfg.hub_repo


def find_checkpoint(cfg: FineTuneConfig) -> Path | None:
    """The last checkpoint of this run: in `checkpoint_dir`, else the one pushed to the Hub (downloaded there)."""
    if not cfg.resume:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    local = checkpoint_dir(cfg)
    found = get_last_checkpoint(str(local)) if local.is_dir() else None
    if found is None and checkpoint_repo(cfg):
        from medrag import hub

        pushed = hub.download_checkpoint(checkpoint_repo(cfg))
        if pushed is not None:
            step = json.loads((pushed / "trainer_state.json").read_text())["global_step"]
            found = str(local / f"checkpoint-{step}")
            shutil.rmtree(found, ignore_errors=True)
            shutil.copytree(pushed, found)
    if found is None:
        return None
    run = json.loads((Path(found) / RUN_FILE).read_text()) if (Path(found) / RUN_FILE).is_file() else {}
    mine = {k: v for k, v in dataclasses.asdict(cfg).items() if k in RUN_KEYS}
    theirs = {k: run.get("config", {}).get(k) for k in RUN_KEYS}
    if mine != theirs:
        changed = ", ".join(k for k in RUN_KEYS if mine[k] != theirs[k])
        raise ConfigError(
            f"The checkpoint at {found} belongs to a run with other settings ({changed}): "
            "set resume=False (--no-resume) to start afresh, or restore those settings"
        )
    return Path(found)


def _run_callbacks(cfg: FineTuneConfig, plan: Plan, started: float):
    """Trainer callbacks: the run's settings into each checkpoint (then pushed), and the time budget."""
    from transformers import TrainerCallback

    class Checkpoints(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            run = {"config": dataclasses.asdict(cfg), "plan": dataclasses.asdict(plan)}
            (folder / RUN_FILE).write_text(json.dumps(run, indent=2, default=str) + "\n", encoding="utf-8")
            if checkpoint_repo(cfg):
                from medrag import hub

                sha = hub.push_checkpoint(folder, checkpoint_repo(cfg))
                print(
                    f"checkpoint at step {state.global_step} pushed to {checkpoint_repo(cfg)}@checkpoints ({sha[:8]})"
                )

    class TimeBudget(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if time.perf_counter() - started > cfg.max_train_minutes * 60:
                control.should_training_stop = control.should_save = True  # saved, so a re-run carries on

    return [Checkpoints(), TimeBudget()]


# --- training ----------------------------------------------------------------------------------


def train(cfg: FineTuneConfig) -> TrainResult:
    """Fine-tune a LoRA adapter on `cfg.train_file`; save adapter, tokenizer, config and metrics.

    Prints the plan (steps, measured speed, estimated minutes) before the first step.
    """
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, set_seed

    t0 = time.perf_counter()
    if not 0 <= cfg.warmup_ratio < 1:
        raise ConfigError(f"warmup_ratio={cfg.warmup_ratio} must be a fraction of the steps, from 0 up to 1")
    if cfg.save_steps < 1:
        raise ConfigError(f"save_steps={cfg.save_steps} must be 1 or more: a checkpoint every that many steps")
    examples = select_examples(cfg)
    resume_from = find_checkpoint(cfg)
    set_seed(cfg.seed)  # before the model: the LoRA A matrices are initialised at random
    model, tokenizer = load_base_model(cfg.base_model, cfg.load_in_4bit, cfg.double_quant, cfg.compute_dtype)
    rows, counts = build_dataset(tokenizer, examples, cfg.max_seq_length)
    if not rows:
        raise ConfigError(
            f"All {len(examples)} examples are longer than max_seq_length={cfg.max_seq_length} "
            "even without their uncited sources: raise --max-seq-length"
        )
    model = _lora_model(model, cfg)
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=8)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if resume_from is not None:
        saved = json.loads((resume_from / RUN_FILE).read_text())["plan"]
        state = json.loads((resume_from / "trainer_state.json").read_text())
        plan = Plan(**{**saved, "resumed_from": int(state["global_step"])})
    else:
        speed = measure_speed(model, rows, collator, cfg)
        plan = plan_run(cfg, counts, speed, f"measured on {device}: 2 micro-batches of this data")
    print(plan.describe(), flush=True)
    out = Path(cfg.output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    trainer = None
    try:
        started = time.perf_counter()
        trainer = Trainer(
            model=model,
            args=training_arguments(cfg, checkpoint_dir(cfg), plan.steps),
            train_dataset=rows,
            data_collator=collator,
            callbacks=_run_callbacks(cfg, plan, started),
        )
        output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        seconds = time.perf_counter() - started
        history = [(int(e["step"]), float(e["loss"])) for e in trainer.state.log_history if "loss" in e]
        tokens_seen = int(trainer.state.num_input_tokens_seen)
        metrics = {
            **counts,
            "train_loss_first": history[0][1] if history else None,
            "train_loss_last": history[-1][1] if history else None,
            "train_loss_mean": float(output.training_loss),
            "steps": int(trainer.state.global_step),
            "planned_steps": plan.steps,
            "resumed_from_step": plan.resumed_from,
            "stopped_by_time_budget": int(trainer.state.global_step) < plan.steps,
            "estimated_minutes": round(plan.minutes, 1) if plan.minutes is not None else None,
            "measured_tokens_per_second": plan.tokens_per_second,
            "epochs": float(trainer.state.epoch or 0.0),
            "tokens_seen": tokens_seen,
            "train_tokens_per_second": round(tokens_seen / seconds, 1) if seconds else None,
            "effective_batch_size": cfg.per_device_batch_size * cfg.gradient_accumulation_steps,
            "train_seconds": round(seconds, 2),
            "total_seconds": round(time.perf_counter() - t0, 2),
            "load_in_4bit": bool(cfg.load_in_4bit),
            "compute_dtype": str(resolve_compute_dtype(cfg.compute_dtype)).removeprefix("torch."),
            "device": device,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "versions": _versions(),
        }
        final = work / "adapter"
        model.save_pretrained(final, save_embedding_layers=False)  # the vocabulary never changes: LoRA weights only
        tokenizer.save_pretrained(final)
        _write_json(final / "finetune_config.json", dataclasses.asdict(cfg))
        _write_json(final / "metrics.json", {**metrics, "loss_history": history})
        _replace_dir(final, out)
        if not metrics["stopped_by_time_budget"]:
            shutil.rmtree(checkpoint_dir(cfg), ignore_errors=True)  # done: a later run starts afresh locally
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
        info["eval"] = {k: eval_results.get(k) for k in ("base", "adapter", "helps")}
    return info
