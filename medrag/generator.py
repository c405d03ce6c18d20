"""The generator interface and the auto-mode fallback (medrag.generator_factory picks a backend).

Backends live beside this file: `hf_generator.HFGenerator` (a causal LM, optionally 4-bit, with a
swappable LoRA adapter), `extractive.ExtractiveGenerator` (copies cited source sentences; runs
anywhere) and `openai_generator.OpenAIGenerator` (any OpenAI-compatible endpoint). All stream
text deltas; `generate` is their concatenation. Nothing heavy loads until the first `stream()`
or an explicit `load()`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from medrag.errors import ModelLoadError
from medrag.types import Chunk

log = logging.getLogger(__name__)


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
