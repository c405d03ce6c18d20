"""`Request`: how one question is to be answered (sources, retrieval mode, sampling, history), checked once.

The app, the API, the evaluation and tests hand a `Request` to `RAGPipeline.stream/answer`. A field
left None takes the configured default (`PipelineConfig`); a value given out of its range is an
InputError naming the field, the value and the range, raised when the Request is made. A bad
configured default is a ConfigError naming the MEDRAG_ variable, raised by `with_defaults`.
Shortcut on purpose: history messages are checked for shape only (mappings); their text is not.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from medrag.config import PipelineConfig
from medrag.errors import ConfigError, InputError

MODES = ("hybrid", "dense", "bm25")  # hybrid first: the default, and the order the app offers them
TOP_K = (1, 20)  # sources per answer: the app offers 1-10; past 20 the generator's 2,048 context tokens drop them
TEMPERATURE = (0.0, 2.0)  # what OpenAI-compatible servers accept; 0 is greedy decoding
MAX_NEW_TOKENS = (1, 4096)  # a thorough answer is under 1,000; Mistral's window holds 4,096 beside a full prompt


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


CHECKS = {  # field -> (test, what is allowed)
    "top_k": (lambda v: _is_int(v) and TOP_K[0] <= v <= TOP_K[1], f"an integer from {TOP_K[0]} to {TOP_K[1]}"),
    "mode": (lambda v: isinstance(v, str) and v in MODES, f"one of {', '.join(MODES)}"),
    "temperature": (
        lambda v: _is_number(v) and TEMPERATURE[0] <= v <= TEMPERATURE[1],
        f"a number from {TEMPERATURE[0]} to {TEMPERATURE[1]}",
    ),
    "max_new_tokens": (
        lambda v: _is_int(v) and MAX_NEW_TOKENS[0] <= v <= MAX_NEW_TOKENS[1],
        f"an integer from {MAX_NEW_TOKENS[0]} to {MAX_NEW_TOKENS[1]}",
    ),
}


@dataclass(frozen=True)
class Request:
    top_k: int | None = None  # None: PipelineConfig.top_k
    mode: str | None = None  # None: PipelineConfig.retrieval_mode
    temperature: float | None = None  # None: the generator's own (PipelineConfig.temperature)
    max_new_tokens: int | None = None  # None: the generator's own (PipelineConfig.max_new_tokens)
    history: Sequence[Mapping] = ()  # earlier {"role", "content"} messages, oldest first

    def __post_init__(self):
        for name, (ok, allowed) in CHECKS.items():
            value = getattr(self, name)
            if value is not None and not ok(value):
                raise InputError(f"{name}={value!r:.60} is not allowed: {name} must be {allowed}")
        history = self.history
        if history is None:
            history = ()
        if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
            raise InputError(f"history must be a list of {{'role', 'content'}} messages, not {type(history).__name__}")
        bad = next((m for m in history if not isinstance(m, Mapping)), None)
        if bad is not None:
            raise InputError(f"history must hold {{'role', 'content'}} messages, not {type(bad).__name__}: {bad!r:.40}")
        object.__setattr__(self, "history", tuple(history))

    def with_defaults(self, config: PipelineConfig) -> Request:
        """This request with top_k and mode filled from `config`; a bad configured value is a ConfigError."""
        filled = {"top_k": self.top_k, "mode": self.mode}
        if filled["top_k"] is None:
            filled["top_k"] = config.top_k
        if filled["mode"] is None:
            filled["mode"] = config.retrieval_mode
        for name in ("top_k", "mode"):
            ok, allowed = CHECKS[name]
            if not ok(filled[name]):
                setting = "MEDRAG_RETRIEVAL_MODE" if name == "mode" else "MEDRAG_TOP_K"
                value = filled[name]
                raise ConfigError(f"{setting}={value!r:.60} is not allowed: it must be {allowed}; fix or unset it")
        return replace(self, **filled)

    def generation(self) -> dict:
        """The generator settings this request overrides (temperature, max_new_tokens), as keyword arguments."""
        return {k: v for k in ("temperature", "max_new_tokens") if (v := getattr(self, k)) is not None}
