"""GPU or not, decided without importing torch where the answer is plain (it costs ~3 s of cold start)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import medrag.hardware
from medrag.hardware import cuda_available


def _in_fresh_process(code: str, **env: str) -> str:
    import os

    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.skipif(medrag.hardware.NVIDIA_DRIVER.exists(), reason="this machine has an NVIDIA driver")
def test_without_a_driver_the_answer_is_no_and_torch_is_never_imported():
    code = """
        import sys
        from medrag.config import PipelineConfig
        from medrag.generator_factory import resolve_generator_name
        print(resolve_generator_name(PipelineConfig()), "torch" in sys.modules)
    """
    assert _in_fresh_process(code, SPACES_ZERO_GPU="") == "extractive False"


def test_zerogpu_counts_as_a_gpu_though_the_main_process_has_none(monkeypatch, tmp_path):
    monkeypatch.setattr(medrag.hardware, "NVIDIA_DRIVER", tmp_path / "absent")
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert cuda_available()
    monkeypatch.setenv("SPACES_ZERO_GPU", "")
    assert not cuda_available()


def test_with_a_driver_torch_decides(monkeypatch, tmp_path):
    import torch

    driver = tmp_path / "version"
    driver.write_text("NVRM\n")
    monkeypatch.setattr(medrag.hardware, "NVIDIA_DRIVER", driver)
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    for answer in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda answer=answer: answer)
        assert cuda_available() is answer
