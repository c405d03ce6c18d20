"""Cold start of the Space-like run: process start to the first HTTP 200 through the public (Node) port.

Each run is a Space restart: a fresh HOME (so no ~/.cache: no ONNX export of the encoder, no HF
cache), the repo's files copied afresh (so no data/index), `python app.py` from the virtualenv the
Space builder would make (scripts/space_like.py, built once), SSR on. Two index sources:
  sample  the built-in sample corpus, indexed at start-up (the default Space, no variables set)
  hub     MEDRAG_INDEX_REPO on the local Hub-compatible server (tests/hub_server.py), downloaded at start
The generator is the CPU one (extractive): on ZeroGPU the 7B model's download and load come on top.

    python bench/bench_space_start.py --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

import space_like  # noqa: E402
from hub_server import HubServer, use_hub  # noqa: E402

TOKEN = "hf_BenchToken0123456789abcdefghij"
INDEX_REPO = "medrag-org/medrag-index"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_index(folder: Path) -> Path:
    from medrag.build import ensure_index
    from medrag.config import PipelineConfig

    config = PipelineConfig(index_dir=str(folder))
    ensure_index([config.sample_docs], folder, config)
    return folder


def cpu_seconds(pid: int) -> float:
    """CPU time the app's process tree has used so far (itself, its finished children, live ones such as Node):
    on a shared machine a steadier figure than wall time, which other work stretches."""
    import psutil

    root = psutil.Process(pid)
    t = root.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return round(total, 1)


def one_run(venv: Path, work: Path, **extra: str) -> tuple[float, dict[str, float]]:
    """Seconds to ready, and the steps the app logged (pipeline ready, index build, export) when it says."""
    port = free_port()
    (work / "home").mkdir(parents=True)
    app_dir = space_like.repo_copy(work / "app")
    env = space_like.space_env(work / "home", port, MEDRAG_GENERATOR="extractive", **extra)
    process = space_like.start(venv, app_dir, env, work / "app.log")
    try:
        ready = space_like.wait_ready(f"http://127.0.0.1:{port}/", process)
        steps = {"cpu s": cpu_seconds(process.pid)}
    finally:
        space_like.stop(process)
    log = (work / "app.log").read_text()
    if m := re.search(r"pipeline ready in ([\d.]+)s", log):
        steps["pipeline"] = float(m.group(1))
    if m := re.search(r"seconds: .*total ([\d.]+)", log):
        steps["index build"] = float(m.group(1))
    return ready, steps


class Patch:
    """What tests/hub_server.use_hub needs of pytest's monkeypatch, for good: this process ends with the bench."""

    def setenv(self, name: str, value: str) -> None:
        os.environ[name] = value

    def setattr(self, target, name: str, value) -> None:
        setattr(target, name, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    venv = space_like.space_venv(log=lambda m: print(m, file=sys.stderr))
    results: dict[str, list[tuple[float, dict]]] = {"sample": [], "hub": []}
    with tempfile.TemporaryDirectory(prefix="medrag-start-") as tmp, HubServer(token=TOKEN) as hub:
        use_hub(Patch(), hub, Path(tmp) / "hf-bench", token=TOKEN)  # this process pushes to the local Hub
        from medrag.hub import push_index

        push_index(sample_index(Path(tmp) / "sample-index"), INDEX_REPO)
        for i in range(args.runs):
            for source, extra in (
                ("sample", {}),
                (
                    "hub",
                    {"MEDRAG_INDEX_REPO": INDEX_REPO, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0"},
                ),
            ):
                ready, steps = one_run(venv, Path(tmp) / f"{source}-{i}", **extra)
                results[source].append((ready, steps))
                print(f"{source:6s} run {i + 1}: ready in {ready:5.1f} s  {steps}", flush=True)
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores)")
    print("index source | runs | ready p50 s | min | max | CPU s to ready p50")
    for source, runs in results.items():
        times, cpu = [r for r, _ in runs], [s["cpu s"] for _, s in runs]
        print(
            f"{source} | {len(times)} | {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} | "
            f"{statistics.median(cpu):.1f}"
        )


if __name__ == "__main__":
    main()
