"""The generator interface, the factory that picks a backend, and the auto-mode fallback.

Backends live beside this file: `hf_generator.HFGenerator` (a causal LM, optionally 4-bit, with a
swappable LoRA adapter), `extractive.ExtractiveGenerator` (copies cited source sentences; runs
anywhere) and `openai_generator.OpenAIGenerator` (any OpenAI-compatible endpoint). All stream
text deltas; `generate` is their concatenation. Nothing heavy loads until the first `stream()`
or an explicit `load()`.

Shortcut on purpose: "auto" picks hf only when CUDA is available; a CPU user who wants a small
local model sets `generator="hf"` explicitly (a 7B model on a laptop CPU is too slow for a demo).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from medrag.config import PipelineConfig
from medrag.errors import ConfigError, ModelLoadError
from medrag.types import Chunk

log = logging.getLogger(__name__)

GENERATORS = ("auto", "hf", "extractive", "openai")


@runtime_checkable
class Generator(Protocol):
    name: str  # "hf" | "extractive" | "openai"

    def stream(
        self,
        question: str,
        sources: Sequence[Chunk],
        history: Sequence[dict] | None = None,
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        info: dict | None = None,
    ) -> Iterator[str]:
        """Yield the answer as text deltas; sources are numbered [1]..[n] in the order given.

        `info`, when given, receives this call's own "warnings" (list of str) and "versions"
        (the adapter the call was pinned to): per-call values, safe with concurrent streams.
        """
        ...

    def generate(self, question: str, sources: Sequence[Chunk], history: Sequence[dict] | None = None, **kw) -> str:
        """The whole answer: the concatenated deltas of `stream`."""
        return "".join(self.stream(question, sources, history, **kw))

    def versions(self) -> dict[str, str]:
        """What produced the answer, for the record: model ids and revisions."""
        ...


class FallbackGenerator(Generator):
    """Tries `primary` on first use; if it cannot load (ModelLoadError) uses `fallback` and says why.

    `fallback_reason` holds the load error's message so the UI can show it; None while the
    primary is in use.
    """

    def __init__(self, primary: Generator, fallback: Generator):
        self.primary, self.fallback = primary, fallback
        self.fallback_reason: str | None = None
        self._active: Generator | None = None

    @property
    def active(self) -> Generator:
        return self.load()

    @property
    def name(self) -> str:
        return self.active.name

    @property
    def last_warnings(self) -> list[str]:
        return list(getattr(self._active, "last_warnings", []))

    def load(self) -> Generator:
        if self._active is None:
            try:
                if hasattr(self.primary, "load"):
                    self.primary.load()
                self._active = self.primary
            except ModelLoadError as e:
                self.fallback_reason = str(e)
                log.warning("The %s generator could not load, using %s: %s", self.primary.name, self.fallback.name, e)
                self._active = self.fallback
        return self._active

    def stream(self, question, sources, history=None, **kw) -> Iterator[str]:
        return self.active.stream(question, sources, history, **kw)

    def versions(self) -> dict[str, str]:
        return self.active.versions()

    def load_adapter(self, adapter: str, revision: str = "main", **kw) -> str:
        if self.active is not self.primary or not hasattr(self.primary, "load_adapter"):
            raise ModelLoadError(
                f"No adapter can be loaded: the {self.name} generator is in use ({self.fallback_reason})"
            )
        return self.primary.load_adapter(adapter, revision, **kw)


def resolve_generator_name(config: PipelineConfig) -> str:
    """The backend "auto" means here: openai if an endpoint is set, hf on a GPU, else extractive."""
    choice = config.generator.strip().lower()
    if choice not in GENERATORS:
        raise ConfigError(
            f"MEDRAG_GENERATOR={config.generator!r} is not one of {', '.join(GENERATORS)}: fix or unset it"
        )
    if choice != "auto":
        return choice
    if config.openai_url:
        return "openai"
    from medrag.hardware import cuda_available

    return "hf" if cuda_available() else "extractive"


def make_generator(config: PipelineConfig, embedder=None) -> Generator:
    """Build the configured backend without loading any model; "auto" falls back to extractive if hf fails."""
    choice = config.generator.strip().lower()
    name = resolve_generator_name(config)
    if name == "openai":
        if not config.openai_url:
            raise ConfigError(
                "The openai generator needs an endpoint: set MEDRAG_OPENAI_URL (for example http://localhost:8080)"
            )
        from medrag.openai_generator import OpenAIGenerator

        return OpenAIGenerator(config.openai_url, model=config.openai_model, api_key=config.openai_api_key)
    if name == "hf":
        from medrag.hf_generator import HFGenerator

        hf = HFGenerator.from_config(config)
        if choice == "auto" and embedder is not None:  # a model or adapter that cannot load: extractive answers
            return FallbackGenerator(hf, _extractive(embedder))
        hf.strict_adapter = False  # hf asked for: an adapter that cannot load leaves the base model answering
        return hf
    return _extractive(embedder)


def _extractive(embedder) -> Generator:
    if embedder is None:
        raise ConfigError("The extractive generator needs the embedder: pass make_generator(config, embedder=...)")
    from medrag.extractive import ExtractiveGenerator

    return ExtractiveGenerator(embedder)
