"""train_colab.ipynb as Colab runs it: its shape, its install set, and a run top to bottom.

The run is Colab-like: an empty folder holding only the notebook; the install cell clones the
repository from a local `file://` git repo (a commit of this working tree) and really runs pip on
requirements-train.txt (everything is installed already, so pip only checks); the training data,
the index and the base model (the tiny Mistral) come from the local Hub-compatible server through
HF_ENDPOINT; the parameters cell is replaced papermill-style; every cell runs in order with
nbclient in a kernel on this interpreter, on the CPU.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tokenize
from pathlib import Path

import nbformat
import pytest
from test_training import write_pubmedqa_file
from tiny_models import make_tiny_mistral, make_tiny_tokenizer, tiny_questions, write_tiny_corpus

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "train_colab.ipynb"
NOT_FOR_COLAB = ("torch", "ipykernel", "playwright", "ruff", "pytest", "nbclient", "nbformat", "jupyter")


def parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


def code_without_comments(source: str) -> str:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return " ".join(t.string for t in tokens if t.type != tokenize.COMMENT)


def pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {name.lower(): version for name, version in (x.split("==") for x in lines if "==" in x)}


def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "clear the outputs before committing"
    assert nb.cells[parameters_cell(nb)].cell_type == "code" and parameters_cell(nb) == 1  # first: nothing runs before
    source = "\n".join(c.source for c in code)
    for call in ("training.train(", "evaluate_adapter(", "training.push(", "hub.restart_space(", "download_dataset("):
        assert call in source
    assert "Open notebook > GitHub" in nb.cells[0].source  # how to open it, instead of a badge with a placeholder


def test_no_running_cell_holds_a_placeholder_or_reads_local_data():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        code = code_without_comments(cell.source)
        assert "OWNER" not in code and not re.search(r"<[a-z -]+>", code), cell.source
        assert "data/sft_train.jsonl" not in code and "data/eval_pubmedqa_dev.jsonl" not in code  # not shipped
    params = {c.get("id"): c.source for c in nb.cells}["parameters"]
    assert re.search(r"^data_repo = None", params, re.M)  # the data comes from a Hub dataset repo


def test_install_keeps_colab_torch_and_kernel():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    install = {c.get("id"): c.source for c in nb.cells}["install"]
    assert "requirements-train.txt" in install and "requirements-dev.txt" not in install
    assert "requirements.txt" not in install.replace("requirements-train.txt", "")
    train = pins(REPO / "requirements-train.txt")
    text = (REPO / "requirements-train.txt").read_text()
    assert "-r " not in text and "--requirement" not in text  # nothing pulled in from the other files
    assert not [name for name in train if name in NOT_FOR_COLAB], train
    runtime = pins(REPO / "requirements.txt")
    assert {name: runtime.get(name) for name in train} == train  # the versions the project is tested with
    for needed in ("transformers", "peft", "bitsandbytes", "accelerate", "huggingface_hub", "faiss-cpu"):
        assert needed in train


def _commit_of_working_tree(dest: Path) -> str:
    """A git repo at `dest` holding this working tree (tracked and new files, not ignored ones) as one commit."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*git, *args], cwd=dest, check=True)
    return dest.as_uri()


def _publish(server, tmp: Path, embedder) -> None:
    """What the user has on the Hub before opening the notebook: base model, training data, index."""
    from huggingface_hub import HfApi

    from medrag import hub
    from medrag.build import build_index
    from medrag.config import PipelineConfig
    from medrag.index import VectorIndex
    from medrag.retriever import Retriever
    from medrag.sft_data import Settings, build_examples, load_source_questions, token_counter, write_folder

    api = HfApi()
    base = make_tiny_mistral(tmp / "base", make_tiny_tokenizer(tmp / "tokenizer"))
    api.create_repo("tester/tiny-mistral")
    api.upload_folder(folder_path=base, repo_id="tester/tiny-mistral")

    cfg = PipelineConfig(cache_dir=str(tmp / "cache"))
    build_index([write_tiny_corpus(tmp / "corpus.jsonl")], tmp / "index", cfg, embedder=embedder)
    hub.push_index(tmp / "index", "tester/medrag-index")
    index = VectorIndex.load(tmp / "index")

    def jsonl(path: Path, rows: list[dict]) -> Path:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    questions = load_source_questions(jsonl(tmp / "q.jsonl", tiny_questions()))
    eval_dev = jsonl(tmp / "eval_dev.jsonl", tiny_questions(["Can you explain {t}?"]))
    pubmedqa = write_pubmedqa_file(tmp / "eval_pubmedqa_dev.jsonl")
    from transformers import AutoTokenizer

    count = token_counter(AutoTokenizer.from_pretrained(base))
    rows, counts = build_examples(questions, Retriever(index, embedder, cfg), embedder, count, Settings())
    folder = write_folder(tmp / "sft", rows, {"counts": counts}, "card", include=[eval_dev, pubmedqa])
    (folder / "manifest.json").write_text(json.dumps(counts))
    hub.push_dataset(folder, "tester/medrag-sft", card="# tiny training data\n")


@pytest.mark.slow
def test_notebook_runs_in_an_empty_folder_like_colab(tmp_path, monkeypatch, embedder, cache_dir):
    from hub_server import USER, HubServer, use_hub
    from nbclient import NotebookClient

    colab = tmp_path / "content"  # Colab's working folder: the notebook and nothing else
    colab.mkdir()
    shutil.copy(NOTEBOOK, colab / NOTEBOOK.name)
    source = tmp_path / "origin"
    source.mkdir()
    url = _commit_of_working_tree(source)

    nb = nbformat.read(colab / NOTEBOOK.name, as_version=4)
    overrides = {
        "load_in_4bit": False,  # bitsandbytes' CPU kernels are slow; the 4-bit path has its own test
        "gradient_checkpointing": False,
        "max_steps": 4,
        "per_device_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "logging_steps": 1,
        "max_seq_length": 1024,
    }
    nb.cells[parameters_cell(nb)].source = "\n".join(
        [
            f"repo_url = {url!r}",
            "space_id = data_repo = index_repo = adapter_repo = None  # the defaults under the user's account",
            "base_model = 'tester/tiny-mistral'",
            "max_train_minutes = 5",
            "save_steps = 2",
            "eval_limit = 3",
            "push = restart = True",
            f"train_overrides = {overrides!r}",
        ]
    )
    nb.cells.append(nbformat.v4.new_code_cell("import medrag\nprint(medrag.__file__)"))  # which code ran
    with HubServer(token="hf_test") as server:
        use_hub(monkeypatch, server, tmp_path / "hf", token="hf_test")
        _publish(server, tmp_path, embedder)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "kernel-hf"))  # the runtime's cache starts empty
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "kernel-hf" / "hub"))
        monkeypatch.setenv("MEDRAG_CACHE_DIR", str(cache_dir))  # the encoder's ONNX export, made once per session
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(colab)}})
        try:
            client.execute()
        except Exception as e:  # show the failing cell's traceback, not only nbclient's summary
            pytest.fail(f"notebook failed: {e}")

        def text(cell_id: str) -> str:
            cell = next(c for c in nb.cells if c.get("id") == cell_id)
            return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

        assert f"logged in as {USER}" in text("login") and f"adapter {USER}/medrag-adapter" in text("login")
        assert "examples from tester/medrag-sft" in text("config")
        trained = text("train")
        assert "Plan: 4 steps" in trained and "tokens/s (measured on cpu" in trained
        assert "checkpoint at step 2 pushed to tester/medrag-adapter@checkpoints" in trained
        assert '"steps": 4' in trained
        assert "| cited_format |" in text("evaluate") and "Adapter helps:" in text("evaluate")
        assert "pushed to" in text("push") and f"restarted {server.url}/spaces/tester/medrag" in text("refresh")
        clone = colab / "medrag-src"
        assert nb.cells[-1].outputs[0]["text"].strip() == str(clone / "medrag" / "__init__.py")
        assert sorted(p.name for p in colab.iterdir()) == ["medrag-src", NOTEBOOK.name]

        repo = server.repos[("model", "tester/medrag-adapter")]
        main = repo.resolve("main").files
        assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(main)
        card = main["README.md"].decode()
        assert "## Evaluation" in card and "cited_format" in card and "tester/medrag-sft" in card
        assert json.loads(repo.resolve("checkpoints").files["last/trainer_state.json"])["global_step"] == 4
        assert server.restarted == ["tester/medrag"]
