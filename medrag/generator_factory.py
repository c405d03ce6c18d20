"""`make_generator`: the configured generator backend, built without loading any model.

"auto" means openai when an endpoint is set, hf on a GPU, else extractive; an hf model chosen by
"auto" that cannot load falls back to extractive (`medrag.generator.FallbackGenerator`). This file
is apart from the interface (medrag.generator) so the backends, which import the interface, and
the factory, which imports the backends, form no circle.

Shortcut on purpose: "auto" picks hf only when CUDA is available; a CPU user who wants a small
local model sets `generator="hf"` explicitly (a 7B model on a laptop CPU is too slow for a demo).
"""

from __future__ import annotations

from medrag.config import PipelineConfig
from medrag.errors import ConfigError
from medrag.generator import FallbackGenerator, Generator

GENERATORS = ("auto", "hf", "extractive", "openai")


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
