"""make_generator's choices, the auto-mode fallback, and the Generator interface."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from medrag.config import PipelineConfig
from medrag.errors import ConfigError, ModelLoadError
from medrag.extractive import ExtractiveGenerator
from medrag.generator import FallbackGenerator
from medrag.generator_factory import make_generator, resolve_generator_name
from medrag.hf_generator import HFGenerator
from medrag.openai_generator import OpenAIGenerator
from medrag.types import Chunk

SOURCES = [Chunk("d#0", "d", "Diabetes", "Diabetes means the blood sugar is too high.")]


class LengthEmbedder:
    """The vector of a text is its first three word lengths (the same for similar-shaped sentences)."""

    def embed(self, texts):
        return np.array([([len(w) for w in t.split()] + [0, 0, 0])[:3] for t in texts], dtype=np.float32)


@pytest.fixture
def cuda(monkeypatch, tmp_path):
    """A machine with the NVIDIA driver loaded, whose torch says CUDA is (or is not) available."""
    import torch

    import medrag.hardware

    driver = tmp_path / "nvidia-version"
    driver.write_text("NVRM version: stand-in\n")
    monkeypatch.setattr(medrag.hardware, "NVIDIA_DRIVER", driver)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def set_cuda(available: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)

    return set_cuda


def test_auto_choices(cuda):
    cuda(False)
    assert resolve_generator_name(PipelineConfig()) == "extractive"
    assert resolve_generator_name(PipelineConfig(openai_url="http://x")) == "openai"
    cuda(True)
    assert resolve_generator_name(PipelineConfig()) == "hf"
    assert resolve_generator_name(PipelineConfig(generator="Extractive")) == "extractive"
    with pytest.raises(ConfigError, match="MEDRAG_GENERATOR"):
        resolve_generator_name(PipelineConfig(generator="gpt"))


def test_make_generator_builds_each_backend_without_loading(cuda):
    cuda(False)
    e = LengthEmbedder()
    assert isinstance(make_generator(PipelineConfig(), e), ExtractiveGenerator)
    hf = make_generator(PipelineConfig(generator="hf", base_model="/no/such/model", adapter="me/adapter"), e)
    assert isinstance(hf, HFGenerator) and hf._model is None and hf.load_in_4bit  # config default: 4-bit
    assert hf.versions() == {"base_model": "/no/such/model", "quantization": "nf4", "adapter": "me/adapter@main"}
    o = make_generator(PipelineConfig(openai_url="http://127.0.0.1:9/v1", openai_api_key="k"), e)
    assert isinstance(o, OpenAIGenerator) and o.url == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match="embedder"):
        make_generator(PipelineConfig(generator="extractive"))
    with pytest.raises(ConfigError, match="MEDRAG_OPENAI_URL"):
        make_generator(PipelineConfig(generator="openai"))


def test_explicit_hf_that_cannot_load_raises(cuda):
    cuda(False)
    g = make_generator(
        PipelineConfig(generator="hf", base_model="/no/such/model", load_in_4bit=False), LengthEmbedder()
    )
    with pytest.raises(ModelLoadError, match="/no/such/model"):
        g.generate("What is diabetes?", SOURCES)


def test_auto_falls_back_to_extractive_and_says_why(cuda, caplog):
    cuda(True)
    g = make_generator(PipelineConfig(base_model="/no/such/model", load_in_4bit=False), LengthEmbedder())
    assert isinstance(g, FallbackGenerator) and g.fallback_reason is None
    with caplog.at_level(logging.WARNING, logger="medrag.generator"):
        text = g.generate("Is diabetes high blood sugar?", SOURCES)
    assert text == "Diabetes means the blood sugar is too high. [1]"
    assert g.name == "extractive" and g.versions() == {"generator": "extractive"}
    assert "/no/such/model" in g.fallback_reason and "/no/such/model" in caplog.text
    with pytest.raises(ModelLoadError, match="extractive"):
        g.load_adapter("me/adapter", "main")
