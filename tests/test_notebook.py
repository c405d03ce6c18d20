"""train_colab.ipynb: its shape (cleared, one `parameters` cell, the badge) and a run top to bottom.

The run replaces the parameters cell papermill-style (tiny Mistral, a tiny dataset, 2 steps, no
push, no Space) and executes every cell with nbclient in a kernel on this interpreter, on the CPU,
with MEDRAG_NOTEBOOK_CI=1 so the install and login cells skip themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from test_training import write_pubmedqa_file, write_sft_file
from tiny_models import make_tiny_mistral, make_tiny_tokenizer

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "train_colab.ipynb"


def parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "clear the outputs before committing"
    assert "colab.research.google.com/github/OWNER/medrag/blob/main/train_colab.ipynb" in nb.cells[0].source
    assert nb.cells[parameters_cell(nb)].cell_type == "code"
    source = "\n".join(c.source for c in code)
    for call in ("training.train(", "training.evaluate_adapter(", "training.push(", "hub.restart_space("):
        assert call in source
    assert "MEDRAG_NOTEBOOK_CI" in code[0].source and "requirements-dev.txt" in code[0].source


def test_notebook_runs_end_to_end_on_the_tiny_model(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    base = make_tiny_mistral(tmp_path / "base", make_tiny_tokenizer(tmp_path / "tokenizer"))
    train_file = write_sft_file(tmp_path / "train.jsonl", n=6)
    eval_file = write_pubmedqa_file(tmp_path / "pqa.jsonl", n=2)
    out = tmp_path / "outputs" / "adapter"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells[parameters_cell(nb)].source = "\n".join(
        [
            f"base_model = {str(base)!r}",
            f"train_file = {str(train_file)!r}",
            f"eval_file = {str(eval_file)!r}",
            "eval_limit = 2",
            f"output_dir = {str(out)!r}",
            "max_steps = 2",
            "max_train_examples = None",
            "load_in_4bit = False",
            "per_device_batch_size = 2",
            "gradient_accumulation_steps = 1",
            "gradient_checkpointing = False",
            "max_seq_length = 512",
            "logging_steps = 1",
            "hub_repo = None",
            "space_id = None",
        ]
    )
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))  # which interpreter ran it
    monkeypatch.setenv("MEDRAG_NOTEBOOK_CI", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    client = NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
    try:
        client.execute()
    except Exception as e:  # show the failing cell's traceback, not only nbclient's summary
        pytest.fail(f"notebook failed: {e}")

    def text(cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")

    by_id = {c.get("id"): c for c in nb.cells}
    assert text(nb.cells[-1]).strip() == sys.executable  # this venv's interpreter, not another python
    assert '"steps": 2' in text(by_id["train"])
    assert "| pubmedqa_accuracy |" in text(by_id["evaluate"])
    assert "not pushed" in text(by_id["push"]) and "not restarted" in text(by_id["refresh"])
    assert {"adapter_model.safetensors", "metrics.json", "finetune_config.json", "evaluation.json"} <= {
        p.name for p in out.iterdir()
    }
