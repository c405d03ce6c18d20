"""bench/gpu_check.py --tiny: the GPU check's whole path (random-weight Mistral, 4-bit QLoRA steps,
4-bit serving with an adapter, adapter swap) on this CPU, so the script is known to run before a
GPU is ever lent to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_with_tiny(tmp_path):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--tiny", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    qlora, serving = figures["qlora"], figures["serving"]
    assert qlora["steps_timed"] == 1 and qlora["tokens_per_second"] > 0 and qlora["measure_speed_tokens_per_second"] > 0
    assert serving["time_to_first_token_seconds"] > 0 and serving["tokens_per_second"] > 0
    assert serving["versions"]["quantization"] == "nf4" and serving["versions"]["adapter"].endswith("adapter-b@main")
    assert serving["adapter_swap_seconds"] > 0
