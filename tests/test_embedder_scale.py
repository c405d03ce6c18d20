"""Encoder options for large builds: the int8 quantised ONNX encoder, and the GPU batch budget.

No GPU here: the CUDA path is exercised on CPU through the same code (a runner whose batch_tokens
is a GPU-sized budget, an out-of-memory error that halves it); a GPU run must still compare its
vectors with these (see bench/README.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from medrag import embedder as emb
from medrag.config import PipelineConfig
from medrag.embedder import TextEmbedder, gpu_batch_tokens
from medrag.errors import ConfigError

TEXTS = [
    "What are the early signs of type 2 diabetes?",
    "Asthma narrows the airways; an inhaler relieves an attack within minutes.",
    "sunburn",
    "Iron deficiency anaemia: tiredness, pale skin and shortness of breath.",
] * 3


def test_int8_encoder_stays_close_to_fp32(embedder, cache_dir):
    int8 = TextEmbedder(cache_dir=cache_dir, precision="int8")
    a, b = embedder.embed(TEXTS), int8.embed(TEXTS)
    assert int8._load().onnx_path.name == "model.int8.onnx"
    cos = (a * b).sum(1)
    assert cos.min() > 0.98, cos  # retrieval metrics decide whether it is used: bench/README.md
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    q = int8.embed_query(TEXTS[0])
    assert float(q @ b[0]) > 0.99  # activation scales are per batch: a text's int8 vector depends a little on its batch
    assert (
        TextEmbedder.from_config(PipelineConfig(embedding_precision="int8", cache_dir=str(cache_dir))).precision
        == "int8"
    )


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="fp32, int8: fix MEDRAG_EMBEDDING_PRECISION"):
        TextEmbedder(precision="fp8")


def test_gpu_budget_from_free_memory():
    assert gpu_batch_tokens(16 * 2**30) == 65_536  # a quarter of 16 GiB at 64 KiB per token
    assert gpu_batch_tokens(0) == emb.MAX_BATCH_TOKENS


class FlakyRunner:
    """A runner with a GPU-sized budget whose first big batch runs out of memory, as CUDA would."""

    name, dim, max_len = "torch", 3, 256

    def __init__(self):
        self.batch_tokens, self.batches, self.released = 65_536, [], 0

    def token_ids(self, texts):
        return [np.arange(len(t.split())) for t in texts]

    def encode(self, ids, texts):
        tokens = sum(max(len(x), 1) for x in ids)
        if not self.released and len(ids) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batches.append(len(ids))
        v = np.array([[len(t), t.count(" ") + 1, tokens] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def release(self):
        self.released += 1


def test_out_of_memory_halves_the_budget_and_keeps_every_vector(cache_dir):
    e = TextEmbedder(cache_dir=cache_dir, backend="torch")
    e._runner = runner = FlakyRunner()
    e.dim = 3
    texts = [" ".join(["word"] * (i % 7 + 1)) for i in range(200)]
    out = e.embed(texts)
    assert (runner.released, runner.batch_tokens) == (1, 32_768)  # halved once, then it fit
    assert runner.batches == [200]  # rows sized by the token budget, not by batch_size (64)
    expected = np.array([[len(t), t.count(" ") + 1] for t in texts], dtype=np.float32)
    np.testing.assert_allclose(out[:, :2] / np.linalg.norm(out[:, :2], axis=1, keepdims=True),
                               expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-5)  # fmt: skip


def test_torch_runner_device_is_chosen_once(cache_dir):
    e = TextEmbedder(cache_dir=cache_dir, backend="torch", device="cpu")
    v = e.embed(TEXTS[:2])
    assert e._load().device == "cpu" and not hasattr(e._load(), "batch_tokens")  # CPU: the fixed token cap
    assert v.shape == (2, 384)
