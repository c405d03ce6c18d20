"""GPU check: QLoRA training and 4-bit serving speed of a 7B-shaped Mistral, with no network.

    python bench/gpu_check.py [--seq-len 2560] [--steps 3] [--accum 4] [--json out.json]   # ~5-8 min, one GPU
    python bench/gpu_check.py --tiny                                                         # the same path on a CPU

Nothing can be downloaded on the GPU machine, so the model is Mistral-7B-Instruct-v0.2's shape
(hidden 4096, 32 layers, 32 heads, 8 KV heads, MLP 14336, vocabulary 32000) built from its config
with random weights, saved once to a temporary folder and loaded the way training and the app
load it: NF4 4-bit with double quantisation. Random weights still go through the quantisation
and the 4-bit kernels: the text is meaningless, the speed and memory are not. The tokenizer is the
tiny test tokenizer (tests/tiny_models.py): only token ids matter here.

Measured, with medrag's own code paths:
- QLoRA (medrag.training: `load_base_model`, `_lora_model`, `training_arguments`, FineTuneConfig
  defaults but `--accum`): seconds per optimiser step after one warm-up step, tokens/s, and peak
  GPU memory, on sequences of `--seq-len` tokens (the notebook's max_seq_length); also
  `training.measure_speed`, the figure the notebook plans with.
- Serving (medrag.hf_generator.HFGenerator, 4-bit, with the adapter just trained attached): time
  to the first streamed text for a prompt with ~2,000 tokens of sources, greedy generation
  tokens/s, and the time to swap in a second adapter (`load_adapter`).

Prints one JSON object (and writes it to --json). `--tiny` runs a 2-layer model on the CPU (or the
GPU when there is one) in under a minute, to show the script works end to end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tiny_models import MEDICAL_TEXT, make_tiny_tokenizer  # noqa: E402

from medrag import training  # noqa: E402
from medrag.config import FineTuneConfig, PipelineConfig  # noqa: E402
from medrag.prompts import Passage  # noqa: E402

MISTRAL_7B = dict(  # mistralai/Mistral-7B-Instruct-v0.2's config.json
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=32000,
    max_position_embeddings=32768,
    rope_theta=1e6,
    sliding_window=None,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def build_base(folder: Path, shape: dict, tokenizer_dir: Path) -> float:
    """A random-weight Mistral of `shape` saved (bf16) with the tokenizer; returns the seconds it took."""
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = MistralConfig(**{"vocab_size": len(tok), **shape})
    config.bos_token_id, config.eos_token_id, config.pad_token_id = tok.bos_token_id, tok.eos_token_id, None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = MistralForCausalLM(config)  # initialised on the GPU: seconds, not minutes
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder, max_shard_size="5GB")
    tok.save_pretrained(folder)
    del model
    _free()
    return time.perf_counter() - t0


def qlora(base: Path, cfg: FineTuneConfig, seq_len: int, steps: int, adapters: list[Path]) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback

    t0 = time.perf_counter()
    model, tok = training.load_base_model(str(base), cfg.load_in_4bit, cfg.double_quant, cfg.compute_dtype)
    load_seconds = time.perf_counter() - t0
    model = training._lora_model(model, cfg)
    generator = torch.Generator().manual_seed(0)
    answer = 256  # labelled tokens at the end, as an answer after its prompt
    rows = []
    for _ in range(cfg.per_device_batch_size * cfg.gradient_accumulation_steps * (steps + 1) + 3):
        ids = torch.randint(4, len(tok), (seq_len,), generator=generator).tolist()
        labels = [training.IGNORE_INDEX] * (seq_len - answer) + ids[-answer:]
        rows.append({"input_ids": ids, "attention_mask": [1] * seq_len, "labels": labels})
    collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=training.IGNORE_INDEX)
    measured = training.measure_speed(model, rows, collator, cfg)

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            _sync()
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            _sync()
            times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as out:
        args = dataclasses.replace(training.training_arguments(cfg, out, steps + 1), save_strategy="no")
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        Trainer(model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[Timer()]).train()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    for i, folder in enumerate(adapters):  # two adapters for the swap: the trained one, then one perturbed
        if i:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "lora_B" in name:
                        p.add_(0.01)
        model.save_pretrained(folder)
    del model
    _free()
    timed = times[1:] or times  # the first step warms kernels and allocators up
    per_step = sum(timed) / len(timed)
    tokens_per_step = seq_len * cfg.per_device_batch_size * cfg.gradient_accumulation_steps
    return {
        "load_4bit_seconds": round(load_seconds, 1),
        "seq_len": seq_len,
        "micro_batch": cfg.per_device_batch_size,
        "accumulation": cfg.gradient_accumulation_steps,
        "steps_timed": len(timed),
        "seconds_per_step": round(per_step, 3),
        "tokens_per_second": round(tokens_per_step / per_step, 1),
        "measure_speed_tokens_per_second": round(measured, 1),
        "peak_memory_gib": round(peak, 2) if peak is not None else None,
        "compute_dtype": str(training.resolve_compute_dtype(cfg.compute_dtype)).removeprefix("torch."),
    }


def serving(base: Path, adapters: list[Path], new_tokens: int, load_in_4bit: bool) -> dict:
    from medrag.hf_generator import HFGenerator

    cfg = PipelineConfig()
    gen = HFGenerator(
        str(base),
        adapter=str(adapters[0]),
        load_in_4bit=load_in_4bit,
        context_tokens=cfg.context_tokens,
        max_input_tokens=cfg.max_input_tokens,
        max_new_tokens=new_tokens,
        temperature=0.0,
    )
    t0 = time.perf_counter()
    gen.load()
    load_seconds = time.perf_counter() - t0
    words = MEDICAL_TEXT.split()
    sources = [Passage(f"Source {i}", " ".join(words[(i * 90) % 200 :] + words)[:1800]) for i in range(5)]
    ids, _ = gen.encode("What are the signs of asthma?", sources)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    stream = gen.stream("What are the signs of asthma?", sources)
    next(stream)
    first = time.perf_counter() - t0
    for _ in stream:
        pass
    lm = gen._lm  # the transformers model with the adapter's LoRA layers: min_new_tokens fixes the length
    input_ids = torch.tensor([ids], device=lm.device)
    _sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        lm.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=gen._tokenizer.pad_token_id,
        )
    _sync()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    t0 = time.perf_counter()
    gen.load_adapter(str(adapters[1]))
    swap = time.perf_counter() - t0
    return {
        "load_seconds": round(load_seconds, 1),
        "prompt_tokens": len(ids),
        "time_to_first_token_seconds": round(first, 3),
        "new_tokens": new_tokens,
        "tokens_per_second": round(new_tokens / seconds, 1),
        "peak_memory_gib": round(peak, 2) if peak is not None else None,
        "adapter_swap_seconds": round(swap, 3),
        "versions": gen.versions(),
    }


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _free() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a 2-layer model: shows the script works, on a CPU too")
    p.add_argument("--seq-len", type=int, default=FineTuneConfig.max_seq_length, help="tokens per training sequence")
    p.add_argument("--steps", type=int, default=3, help="optimiser steps timed after one warm-up step")
    p.add_argument("--accum", type=int, default=4, help="micro-batches per optimiser step (the notebook uses 16)")
    p.add_argument("--new-tokens", type=int, default=128, help="tokens generated for the serving figures")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    started = time.perf_counter()
    if args.tiny:  # bitsandbytes' 4-bit CPU kernels are slow: the smallest run that goes through every step
        args.seq_len, args.steps, args.accum, args.new_tokens = 128, 1, 1, 8
    cfg = FineTuneConfig(gradient_accumulation_steps=args.accum)
    seq_len, new_tokens, steps = args.seq_len, args.new_tokens, args.steps
    result: dict = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "model": "tiny (2 layers, 64 wide)" if args.tiny else "Mistral-7B shape, random weights",
        "versions": training._versions(),
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        tmp = Path(tmp)
        tokenizer = make_tiny_tokenizer(tmp / "tokenizer")
        result["build_seconds"] = round(build_base(tmp / "base", TINY if args.tiny else MISTRAL_7B, tokenizer), 1)
        adapters = [tmp / "adapter-a", tmp / "adapter-b"]
        result["qlora"] = qlora(tmp / "base", cfg, seq_len, steps, adapters)
        result["serving"] = serving(tmp / "base", adapters, new_tokens, cfg.load_in_4bit)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
