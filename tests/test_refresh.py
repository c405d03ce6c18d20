"""Refresh on push, end to end against the local Hub server (tests/hub_server.py): the real
huggingface_hub client pushes and downloads, the app is served by WebhooksServer on a free port, and
the webhook is POSTed as the Hub sends it.

The generator is a real HFGenerator on a tiny Mistral (a local folder) with tiny LoRA adapters pushed
to the fake Hub; the index is tiny too (test_pipeline's word-bag embedder, three chunks).
"""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest
from hub_server import HubServer, use_hub
from huggingface_hub import WebhookPayload
from served import free_port
from test_pipeline import CHUNKS, SpyGenerator, WordEmbedder
from tiny_models import make_tiny_adapter, make_tiny_mistral, make_tiny_tokenizer

import app
from medrag.config import PipelineConfig
from medrag.errors import IndexLoadError
from medrag.extractive import ExtractiveGenerator
from medrag.generator import FallbackGenerator
from medrag.hf_generator import HFGenerator
from medrag.hub import push_adapter, push_index
from medrag.index import VectorIndex
from medrag.pipeline import RAGPipeline
from medrag.refresh import WEBHOOK_PATH, Refresher, serve
from medrag.ui import inert, mode_line, status_markdown

TOKEN, SECRET = "hf_FakeTokenForRefreshTests0123456789", "webhook-s3cret"
ADAPTER, INDEX = "medrag-org/medrag-adapter", "medrag-org/medrag-index"
Q = "Does asthma cause wheezing?"
FAKE = {"embedding_model": "fake-words", "embedding_dim": 6, "top_k": 2, "min_evidence": 0.3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    base = make_tiny_mistral(root / "base", make_tiny_tokenizer(root / "tokenizer"), train_steps=5)  # fast
    out = {"base": base, **{f"adapter{i}": make_tiny_adapter(base, root / f"adapter{i}", seed=i) for i in (0, 1)}}
    broken = shutil.copytree(out["adapter0"], root / "broken")  # LoRA on modules this model does not have
    config = json.loads((broken / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["no_such_proj"]}))
    return {**out, "broken": broken}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with HubServer(token=TOKEN) as server:
        use_hub(monkeypatch, server, tmp_path / "hf-home", token=TOKEN)
        yield server


def tiny_index(folder=None, chunks=CHUNKS, model_id="fake-words"):
    """A VectorIndex over `chunks`, saved to `folder` (its path returned) when given."""
    emb = WordEmbedder()
    index = VectorIndex.build(
        chunks, emb.embed([c.embed_text for c in chunks]), model_id=model_id, dim=6, chunker={}, corpus_sha256="x"
    )
    return index.save(folder) if folder else index


def payload(repo, repo_type="model", scope="repo.content", action="update", ref="refs/heads/main"):
    """What the Hub POSTs (huggingface_hub's WebhookPayload, version 3)."""
    api = f"https://huggingface.co/api/{repo_type}s/{repo}"
    return {
        "event": {"action": action, "scope": scope},
        "repo": {
            **{"type": repo_type, "name": repo, "id": "6560b0f0c0ffee0000000001", "private": False},
            **{"url": {"web": f"https://huggingface.co/{repo}", "api": api}, "owner": {"id": "6560b0f0c0ffee02"}},
        },
        "webhook": {"id": "6560b0f0c0ffee0000000003", "version": 3},
        "updatedRefs": [{"ref": ref, "oldSha": None, "newSha": None}],
    }


def downloads(hub) -> int:
    return sum("/resolve/" in r for r in hub.requests)


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_adapter_refresh_by_webhook_and_poll(hub, tiny):
    sha1 = push_adapter(tiny["adapter0"], ADAPTER)
    config = PipelineConfig(
        **FAKE, generator="hf", base_model=str(tiny["base"]), adapter=ADAPTER, load_in_4bit=False,
        max_new_tokens=6, temperature=0.0, webhook_secret=SECRET,
    )  # fmt: skip
    pipeline = app.warm_up(RAGPipeline(config, embedder=WordEmbedder(), index=tiny_index()))
    assert isinstance(pipeline.generator, app.GPUGenerator)
    assert pipeline.answer(Q).versions["adapter"] == f"{ADAPTER}@{sha1}"  # resolved through medrag.hub

    refresher = Refresher(pipeline)
    demo = app.build_demo(pipeline, refresher).queue()
    port = free_port()
    serve(demo, refresher, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    try:
        sha2 = push_adapter(tiny["adapter1"], ADAPTER)
        for headers in ({"X-Webhook-Secret": "wrong"}, {}, {"X-Webhook-Secret": SECRET + "x"}):
            assert httpx.post(url, json=payload(ADAPTER), headers=headers).status_code == 401
        ok = {"X-Webhook-Secret": SECRET}
        other = httpx.post(url, json=payload("someone/else"), headers=ok)
        assert other.status_code == 200 and other.json()["status"] == "ignored"
        assert httpx.post(url, content=b"not json", headers=ok).status_code == 400
        for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"event": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"):
            nested = httpx.post(url, content=deep, headers=ok)  # Python's parser gives up: 400, not 500
            assert nested.status_code == 400 and "nothing done" in nested.json()["error"]
        too_big = httpx.post(url, content=b" " * (2 << 20), headers=ok)
        assert too_big.status_code == 413 and "not a Hub webhook" in too_big.json()["error"]
        assert refresher._threads == [] and pipeline.answer(Q).versions["adapter"] == f"{ADAPTER}@{sha1}"

        accepted = httpx.post(url, json=payload(ADAPTER), headers=ok)
        assert accepted.status_code == 202 and accepted.json()["refresh"] == "adapter"
        refresher.wait(60)
        assert pipeline.answer(Q).versions["adapter"] == f"{ADAPTER}@{sha2}"
        assert f"{ADAPTER}@{sha2}" in status_markdown(pipeline, refresher)
        before = downloads(hub)
        assert refresher.check("adapter").status == "unchanged" and downloads(hub) == before  # same commit: no work
        with refresher._lock:  # a check still waiting its turn covers a second push too
            assert refresher.check_in_background("adapter") is not None
            assert refresher.check_in_background("adapter") is None
        refresher.wait(60)

        sha3 = push_adapter(tiny["broken"], ADAPTER)
        assert httpx.post(url, json=payload(ADAPTER), headers=ok).status_code == 202
        refresher.wait(60)
        assert pipeline.answer(Q).versions["adapter"] == f"{ADAPTER}@{sha2}"  # the old one is kept
        error = refresher.last_error
        assert error.kind == "adapter" and f"{ADAPTER}@{sha3}" in error.message and "no_such_proj" in error.message
        assert inert(str(error)) in status_markdown(pipeline, refresher) and " UTC" in str(error)
        before = downloads(hub)
        assert refresher.check("adapter").status == "failed" and downloads(hub) == before  # not retried

        sha4 = push_adapter(tiny["adapter0"], ADAPTER)  # the poll fallback picks it up
        poller = refresher.start_polling(0.1)
        assert poller is not None and refresher.start_polling(0.1) is poller  # one poll thread
        assert wait_for(lambda: refresher.loaded_commit("adapter") == sha4)
        refresher.stop(timeout=30)
        assert not poller.is_alive()
        assert refresher.last_error is None and pipeline.answer(Q).versions["adapter"] == f"{ADAPTER}@{sha4}"
        assert refresher.poll_interval == 0 and "no polling" in status_markdown(pipeline, refresher)
    finally:
        refresher.stop()
        demo.close()


def test_index_refresh_keeps_answers_in_flight_and_refuses_another_model(hub, tmp_path):
    i1 = push_index(tiny_index(tmp_path / "v1", CHUNKS[:2]), INDEX)
    config = PipelineConfig(**FAKE, index_repo=INDEX, decline_unknown_words=False)  # index 1 lacks "children"
    pipeline = RAGPipeline(config, embedder=WordEmbedder(), generator=SpyGenerator("Flu needs rest. [1]"))
    refresher = Refresher(pipeline)
    assert pipeline.answer(Q).versions["index"] == f"{INDEX}@{i1}" and refresher.loaded_commit("index") == i1

    i2 = push_index(tiny_index(tmp_path / "v2", CHUNKS), INDEX)
    in_flight = pipeline.stream("What helps children with the flu?")
    next(in_flight)  # retrieval is done: this answer runs on index 1
    result = refresher.check("index")
    assert (result.status, result.loaded) == ("updated", i2)
    old = list(in_flight)[-1]
    assert old.versions["index"] == f"{INDEX}@{i1}" and "c#0" not in [h.chunk.id for h in old.sources]
    new = pipeline.answer("What helps children with the flu?")
    assert new.versions["index"] == f"{INDEX}@{i2}" and new.sources[0].chunk.id == "c#0"
    assert pipeline.versions()["index_manifest"] == pipeline.index.manifest_hash

    i3 = push_index(tiny_index(tmp_path / "v3", CHUNKS, model_id="other-model"), INDEX)
    result = refresher.check("index")
    assert result.status == "failed" and pipeline.versions()["index"] == f"{INDEX}@{i2}"
    for part in (f"{INDEX}@{i3}", "other-model", "fake-words", "--push-to-hub", "MEDRAG_EMBEDDING_MODEL"):
        assert part in result.error and part in str(refresher.last_error)
    with pytest.raises(IndexLoadError, match=f"dataset repo {INDEX}@{i3} was built with other-model"):
        RAGPipeline(config.replace(index_revision=i3), embedder=WordEmbedder()).index  # noqa: B018  at start-up


def test_missing_adapter_at_start_up_still_serves(hub, tiny):
    config = PipelineConfig(
        **FAKE, generator="hf", base_model=str(tiny["base"]), adapter="medrag-org/missing", load_in_4bit=False
    )
    pipeline = RAGPipeline(config, embedder=WordEmbedder(), index=tiny_index())
    hf = pipeline.generator.load()  # hf asked for: the base model alone
    assert "adapter" not in hf.versions() and "no model repo 'medrag-org/missing'" in hf.adapter_error
    assert "base model answers without its adapter" in mode_line(hf) and pipeline.answer(Q).kind == "answer"

    auto = FallbackGenerator(HFGenerator(str(tiny["base"]), "medrag-org/missing"), ExtractiveGenerator(WordEmbedder()))
    assert auto.load().name == "extractive" and "no model repo 'medrag-org/missing'" in auto.fallback_reason
    assert mode_line(auto).startswith("extractive") and "medrag-org/missing" in mode_line(auto)


def test_no_secret_no_webhook(hub, caplog):
    pipeline = RAGPipeline(PipelineConfig(**FAKE, index_repo=INDEX), embedder=WordEmbedder(), index=object())
    refresher = Refresher(pipeline)
    demo = app.build_demo(pipeline, refresher).queue()
    port = free_port()
    assert (
        serve(demo, refresher, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True) is None
    )
    try:
        response = httpx.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", json=payload(INDEX, "dataset"))
        assert response.status_code in (404, 405) and refresher._threads == []
    finally:
        demo.close()
    assert "MEDRAG_WEBHOOK_SECRET is not set" in caplog.text and refresher.webhook_path is None


@pytest.mark.slow
def test_webhook_reaches_python_through_the_ssr_front_server(hub):
    """Spaces serve gradio with SSR: Node takes the public port and forwards only its own prefixes to Python."""
    pipeline = RAGPipeline(PipelineConfig(**FAKE, index_repo=INDEX, webhook_secret=SECRET), embedder=WordEmbedder())
    pipeline.swap(index=tiny_index())
    refresher = Refresher(pipeline)
    demo = app.build_demo(pipeline, refresher).queue()
    port = free_port()
    serve(
        demo, refresher, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=True
    )
    try:
        assert demo.node_port == port and demo.server_port != port  # Node in front, Python behind it
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        assert httpx.post(url, json=payload(INDEX, "dataset"), headers={"X-Webhook-Secret": "wrong"}).status_code == 401
        ignored = httpx.post(url, json=payload("someone/else", "dataset"), headers={"X-Webhook-Secret": SECRET})
        assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        demo.close()


def test_webhook_routing():
    config = PipelineConfig(**FAKE, adapter=ADAPTER, index_repo=INDEX, index_revision="0" * 40)
    refresher = Refresher(RAGPipeline(config))
    route = lambda **kw: refresher.route(WebhookPayload.model_validate(payload(**kw)))  # noqa: E731
    assert route(repo=ADAPTER) == ("adapter", "")
    assert route(repo=ADAPTER.upper()) == ("adapter", "")
    assert route(repo=ADAPTER, scope="repo.config")[0] is None
    assert "not main" in route(repo=ADAPTER, ref="refs/heads/dev")[1]
    assert route(repo=ADAPTER, repo_type="dataset")[0] is None  # a dataset of the same name
    assert "pinned" in route(repo=INDEX, repo_type="dataset")[1]
    assert refresher.handle_webhook({"event": {}})[0] == 400
