"""The model call as ZeroGPU runs it: arguments pickled into a forked worker, and only its yields come back.

app.py decorates `gpu_stream` with `@spaces.GPU(duration=gpu_duration)`; off ZeroGPU the decorator
does nothing and the same code runs in the app's own process. On ZeroGPU each call runs in a worker
process forked from the app's (and kept for later calls), so:

- the model is never an argument: `gpu_stream` finds its generator by `key` in `_GENERATORS`, which
  the worker holds a copy of;
- the adapter to answer with is an argument (`adapter`: label and folder of the one active in the
  app's process, see HFGenerator.adapter_ref): a worker forked before a swap loads it once from the
  files already on disk (HFGenerator.use_adapter) instead of answering with its old copy;
- what the call must report comes back as values it yields: text deltas (str), then one `GPUReport`
  (the versions it answered with and its warnings), or a `GPUFailure` with a MedRAGError's message
  (ZeroGPU would reduce an exception to its class name). `GPUGenerator.stream` turns them back into
  deltas, the caller's `info` dict and a MedRAGError; `info` itself never crosses the fork;
- locks: HFGenerator makes forks wait out a swap and renews its locks in the child;
- a stream closed early (the visitor pressed Stop) closes the GPU call: `spaces` then sets the worker's
  stop event, the worker closes `gpu_stream` at its next token (HFGenerator's stopping criterion ends
  `generate`), and the worker is free for the next call.

`gpu_duration` sizes each call's GPU slot from its max_new_tokens: ZeroGPU charges the visitor's
daily quota by the duration requested, not the time used. Shortcut on purpose: the figures are
estimates for a 4-bit 7B model, not measured here (no GPU was at hand); a call that runs past its
slot is stopped by ZeroGPU, so they lean long.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

from medrag.errors import MedRAGError

GPU_SETUP_S = 8  # before the first token: ~3.5k prompt tokens of prefill, and an adapter a stale worker loads
GPU_TOKENS_PER_S = 10  # decoding a 4-bit NF4 7B at batch 1; the low end, so an answer is not cut off
GPU_MAX_S = 120  # ZeroGPU refuses longer slots for most visitors
DEFAULT_NEW_TOKENS = 512  # PipelineConfig.max_new_tokens, when the generator does not say

_GENERATORS: dict[int, object] = {}  # generators the GPU function may call, by id: models are never pickled


@dataclass(frozen=True)
class GPUReport:
    versions: dict[str, str] = field(default_factory=dict)  # what answered: base model, adapter repo@commit
    warnings: list[str] = field(default_factory=list)  # what was cut to fit the model's input


@dataclass(frozen=True)
class GPUFailure:
    message: str  # a MedRAGError's message: says what went wrong and what to do


def _active(generator):
    return getattr(generator, "active", generator)  # a FallbackGenerator answers through its active one


def adapter_ref(generator) -> dict[str, str] | None:
    """The adapter `generator` answers with in this process ({"label", "folder"}), or None."""
    ref = getattr(_active(generator), "adapter_ref", None)
    return ref() if ref else None


def gpu_stream(key: int, adapter: dict | None, question: str, chunks: list, history: list, options: dict) -> Iterator:
    """Text deltas, then a GPUReport; or a GPUFailure. Runs in a ZeroGPU worker: everything in and out is pickled."""
    generator, info = _GENERATORS[key], {}
    try:
        if adapter is not None and hasattr(_active(generator), "use_adapter"):
            _active(generator).use_adapter(adapter["label"], adapter["folder"])
        yield from generator.stream(question, chunks, history, info=info, **options)
    except MedRAGError as e:
        yield GPUFailure(str(e))
        return
    yield GPUReport(dict(info.get("versions") or {}), list(info.get("warnings") or []))


def gpu_duration(key: int, adapter: dict | None, question: str, chunks: list, history: list, options: dict) -> int:
    """Seconds of GPU to ask ZeroGPU for: setup plus max_new_tokens at the decoding speed, capped."""
    tokens = options.get("max_new_tokens") or getattr(_GENERATORS.get(key), "max_new_tokens", DEFAULT_NEW_TOKENS)
    return min(GPU_MAX_S, math.ceil(GPU_SETUP_S + int(tokens) / GPU_TOKENS_PER_S))


class GPUGenerator:
    """The pipeline's view of a generator whose `stream` runs through `gpu_function` (app.py: the @spaces.GPU one)."""

    def __init__(self, inner, gpu_function: Callable[..., Iterator] = gpu_stream):
        self.inner, self.name, self._gpu = inner, inner.name, gpu_function
        self._key = id(inner)
        _GENERATORS[self._key] = inner

    def stream(self, question: str, chunks, history=None, *, info: dict | None = None, **options) -> Iterator[str]:
        args = (self._key, adapter_ref(self.inner), question, list(chunks), list(history or []), dict(options))
        with closing(self._gpu(*args)) as items:  # closed early (Stop): ZeroGPU stops the worker's generator too
            for item in items:
                if isinstance(item, GPUFailure):
                    raise MedRAGError(item.message)
                if isinstance(item, GPUReport):
                    if info is not None:
                        info.update(versions=dict(item.versions), warnings=list(item.warnings))
                    continue
                yield item

    def generate(self, question: str, chunks, history=None, **kw) -> str:
        return "".join(self.stream(question, chunks, history, **kw))

    def versions(self) -> dict[str, str]:
        return self.inner.versions()

    def __getattr__(self, name: str):  # load_adapter, fallback_reason, ...: the Hub refresh reaches the inner one
        if name == "inner" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)
