"""medrag.hub against a local Hub-compatible server (tests/hub_server.py): the real
huggingface_hub client uploads, downloads, pins revisions and falls back to its cache.

The index and adapter folders are small fakes written here (a manifest.json and a couple of
files; an adapter_config.json and a tiny safetensors file), not built by medrag.index or peft.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml
from hub_server import HubServer, go_offline, use_hub
from huggingface_hub import HfApi
from safetensors.torch import save_file

from medrag.errors import HubError
from medrag.hub import (
    adapter_card,
    download_adapter,
    download_index,
    index_card,
    latest_commit,
    push_adapter,
    push_index,
    resolve_folder,
    restart_space,
    verify_webhook_secret,
)

TOKEN = "hf_FakeTokenForTests0123456789abcdef"  # what the server accepts; must never show up in output
INDEX_REPO, ADAPTER_REPO = "medrag-org/medrag-index", "medrag-org/medrag-adapter"
MANIFEST = {
    "version": 1,
    "corpus": "MedQuAD + PubMedQA sample",
    "num_documents": 12,
    "num_chunks": 1234,
    "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
    "dim": 384,
    "index_type": "flat",
    "chunker": {"max_tokens": 256, "overlap": 32},
    "corpus_sha256": "ab" * 32,
    "created_at": "2025-01-02T03:04:05Z",
}
TRAIN_INFO = {
    "base_model": "mistralai/Mistral-7B-Instruct-v0.2",
    **{"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
    **{"load_in_4bit": True, "double_quant": True, "compute_dtype": "bfloat16", "learning_rate": 0.0002},
    **{"per_device_batch_size": 2, "gradient_accumulation_steps": 8, "train_examples": 4399},
    "eval": {"base": {"citation_f1": 0.41, "eval_loss": 1.9}, "adapter": {"citation_f1": 0.63, "eval_loss": 1.2}},
}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with HubServer(token=TOKEN) as server:
        use_hub(monkeypatch, server, tmp_path / "hf-home", token=TOKEN)
        yield server


def write_index(folder, **manifest_changes):
    (folder / "vectors").mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({**MANIFEST, **manifest_changes}))
    (folder / "chunks.jsonl").write_text('{"id": "d1#0", "text": "Aspirin thins the blood."}\n')
    (folder / "vectors" / "embeddings.npy").write_bytes(bytes(range(256)) * 8)
    return folder


@pytest.fixture
def index_folder(tmp_path):
    return write_index(tmp_path / "index")


@pytest.fixture
def adapter_folder(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    config = {"base_model_name_or_path": TRAIN_INFO["base_model"], "peft_type": "LORA", "r": 16, "lora_alpha": 32}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    save_file(
        {"lora_A.weight": torch.arange(64, dtype=torch.float32).reshape(4, 16)}, folder / "adapter_model.safetensors"
    )
    (folder / "README.md").write_text("peft's template card\n")  # peft writes one; the upload replaces it
    return folder


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_index_round_trip_with_card(hub, index_folder):
    sha = push_index(index_folder, INDEX_REPO, card=index_card(MANIFEST, {"medquad": {"hit@5": 0.86}}))
    found = download_index(INDEX_REPO)
    assert (found.repo, found.revision, found.commit) == (INDEX_REPO, "main", sha)
    downloaded = files_of(found.path)
    assert {k: v for k, v in downloaded.items() if k != "README.md"} == files_of(index_folder)
    card = downloaded["README.md"].decode()
    for value in ["1,234", "384", "ab" * 32, "all-MiniLM-L6-v2", "max_tokens | 256", "hit@5", "0.86", "CC BY 4.0"]:
        assert value in card
    assert not (index_folder / "README.md").exists()  # the source folder is left as it was


def test_adapter_round_trip_default_card(hub, adapter_folder):
    source = files_of(adapter_folder)
    sha = push_adapter(adapter_folder, ADAPTER_REPO)
    found = download_adapter(ADAPTER_REPO)
    assert found.commit == sha == latest_commit(ADAPTER_REPO, "model")
    downloaded = files_of(found.path)
    assert downloaded["adapter_model.safetensors"] == source["adapter_model.safetensors"]
    assert downloaded["adapter_config.json"] == source["adapter_config.json"]
    card = downloaded["README.md"].decode()
    assert "base_model: mistralai/Mistral-7B-Instruct-v0.2" in card and "| 16 | 32 |" in card
    assert files_of(adapter_folder) == source  # peft's README in the source is untouched (no write through a link)


def test_adapter_download_skips_checkpoints(hub, adapter_folder):
    (adapter_folder / "checkpoint-10").mkdir()
    (adapter_folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"\0" * 1024)  # training leftovers
    push_adapter(adapter_folder, ADAPTER_REPO)
    found = download_adapter(ADAPTER_REPO)
    assert sorted(files_of(found.path)) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]


def test_revision_pinning(hub, tmp_path):
    first = push_index(write_index(tmp_path / "v1", num_chunks=1), INDEX_REPO)
    second = push_index(write_index(tmp_path / "v2", num_chunks=2), INDEX_REPO)
    assert first != second and latest_commit(INDEX_REPO, "dataset") == second
    pinned, latest = download_index(INDEX_REPO, first), download_index(INDEX_REPO)
    assert (pinned.commit, latest.commit) == (first, second)
    assert json.loads((pinned.path / "manifest.json").read_text())["num_chunks"] == 1
    assert json.loads((latest.path / "manifest.json").read_text())["num_chunks"] == 2


def test_cache_serves_when_the_hub_is_gone(hub, index_folder, monkeypatch):
    push_index(index_folder, INDEX_REPO)
    online = download_index(INDEX_REPO)
    hub.stop()
    unreachable = download_index(INDEX_REPO)  # HF_HUB_OFFLINE=0, connection refused
    with pytest.raises(HubError, match=r"the Hub cannot be reached .*not in the local cache either"):
        download_index("medrag-org/never-downloaded")
    go_offline(monkeypatch)
    offline = download_index(INDEX_REPO)
    assert online.commit == unreachable.commit == offline.commit and offline.path == online.path
    assert files_of(offline.path)["chunks.jsonl"] == (index_folder / "chunks.jsonl").read_bytes()
    assert download_index(INDEX_REPO, online.commit).path == online.path  # a pinned sha needs no refs
    with pytest.raises(HubError, match=r"HF_HUB_OFFLINE=1 .*not in the local cache either.*MEDRAG_INDEX_REPO"):
        download_index("medrag-org/never-downloaded")
    with pytest.raises(HubError, match=rf"HF_HUB_OFFLINE=1 is set: cannot reach dataset repo '{INDEX_REPO}'@main"):
        latest_commit(INDEX_REPO, "dataset")


def test_missing_repo_revision_and_adapter_config(hub, index_folder):
    with pytest.raises(HubError, match=r"no dataset repo 'medrag-org/nope'.*MEDRAG_INDEX_REPO"):
        download_index("medrag-org/nope")
    push_index(index_folder, INDEX_REPO)
    with pytest.raises(HubError, match=rf"'{INDEX_REPO}' has no revision 'v9'"):
        download_index(INDEX_REPO, "v9")
    with pytest.raises(HubError, match=rf"'{INDEX_REPO}' has no revision '{'0' * 40}'"):
        download_index(INDEX_REPO, "0" * 40)
    HfApi().create_repo("medrag-org/not-an-adapter")
    HfApi().upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="medrag-org/not-an-adapter")
    with pytest.raises(HubError, match=r"not-an-adapter@main has no adapter_config.json: push an adapter"):
        download_adapter("medrag-org/not-an-adapter")
    with pytest.raises(HubError, match="no adapter_config.json in"):
        push_adapter(index_folder, ADAPTER_REPO)


def test_token_never_shown(hub, index_folder, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    push_index(index_folder, INDEX_REPO, private=True)
    download_index(INDEX_REPO)
    with pytest.raises(HubError, match="refused the credentials.*HF_TOKEN") as wrong:
        push_index(index_folder, INDEX_REPO, token="hf_WrongTokenShouldNotLeak42")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match=f"no dataset repo '{INDEX_REPO}'.*HF_TOKEN") as anonymous:
        latest_commit(INDEX_REPO, "dataset")  # private: invisible without the token
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err, str(wrong.value), str(anonymous.value)):
        assert TOKEN not in text and "hf_WrongTokenShouldNotLeak42" not in text
    assert "GET /api/datasets/" + INDEX_REPO in hub.requests


def test_restart_space(hub):
    restart_space("medrag-org/medrag-demo")
    assert hub.restarted == ["medrag-org/medrag-demo"]


def test_local_folder_passes_through(index_folder):
    found = resolve_folder(str(index_folder), repo_type="dataset")
    assert (found.path, found.repo, found.commit) == (index_folder, None, None)
    assert download_index(str(index_folder)).path == index_folder
    with pytest.raises(HubError, match="has no adapter_config.json"):
        download_adapter(str(index_folder))


@pytest.mark.parametrize(
    ("received", "expected", "ok"),
    [
        ("s3cret", "s3cret", True),
        ("s3cret", "other", False),
        (None, "s3cret", False),
        ("", "", False),
        ("x", None, False),
    ],
)
def test_verify_webhook_secret(received, expected, ok):
    assert verify_webhook_secret(received, expected) is ok


def test_index_card_front_matter_and_attribution():
    card = index_card(MANIFEST, {"hit@5": 0.8612}, attribution="Written by the MedRAG authors.")
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == ["cc-by-4.0", "mit"] and meta["tags"] == ["medical", "rag", "faiss"]
    assert "| hit@5 | 0.8612 |" in card and "Written by the MedRAG authors." in card and "not medical advice" in card


def test_adapter_card_values_and_verdict():
    card = adapter_card(TRAIN_INFO)
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "peft" and meta["tags"] == ["lora", "qlora", "medical"]
    for value in ["| 16 | 32 | 0.05 | q_proj, v_proj |", "NF4", "bfloat16", "0.0002", "4,399", "| 16 |"]:
        assert value in card
    assert "| citation_f1 | 0.41 | 0.63 | +0.22 |" in card and "improves all 2 metrics" in card
    worse = {**TRAIN_INFO, "eval": {"base": {"citation_f1": 0.6}, "adapter": {"citation_f1": 0.5}}}
    assert "does not help" in adapter_card(worse)
