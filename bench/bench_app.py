"""Load test of the app: cold start, then many gradio_client visitors at once (extractive, CPU).

1. Cold start: `python app.py` in a fresh process, timed from process start to HTTP 200 on `/`,
   with the sample index already on disk and (with --cold-build) with no index, so it is built.
2. Load: the app started in-process on a free port; `--users` clients, each its own session,
   ask `--questions` questions each through the Chat tab's event, all at once. Every answer must
   come back, and its sources must be exactly those a direct `pipeline.answer` gives for the same
   question and the same session history: a visitor seeing another visitor's sources fails it.

Usage: .venv/bin/python bench/bench_app.py [--users 20] [--questions 5] [--cold-build]
Prints p50/p95 latency per question and the cold-start seconds; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = [
    "What are the symptoms of asthma?",
    "How can I lower my blood pressure?",
    "When should a child with a fever see a doctor?",
    "How is strep throat diagnosed?",
    "What can help me sleep better at night?",
    "How do I treat a sprained ankle at home?",
    "What are the signs of a urinary tract infection?",
    "How can I prevent sunburn?",
    "What are common triggers of migraine headaches?",
    "How is type 2 diabetes managed?",
]
CHUNK_ID = re.compile(r"<code>([^<]+)</code>")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_200(url: str, deadline: float, proc: subprocess.Popen | None = None) -> bool:
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def cold_start(index_dir: str | None = None, cache_dir: str | None = None, timeout: float = 180) -> float:
    """Seconds from `python app.py` starting to HTTP 200 on `/`.

    index_dir: serve the index there (MEDRAG_INDEX_DIR); cache_dir: an empty cache (the ONNX export is redone).
    """
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "MEDRAG_GENERATOR": "extractive"}
    if index_dir:
        env["MEDRAG_INDEX_DIR"] = index_dir
    if cache_dir:
        env["MEDRAG_CACHE_DIR"] = cache_dir
    t0 = time.time()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        if not wait_http_200(f"http://127.0.0.1:{port}/", t0 + timeout, proc):
            raise SystemExit(f"app.py did not serve within {timeout}s:\n{proc.stderr.read().decode()[-3000:]}")
        return time.time() - t0
    finally:
        proc.terminate()
        proc.wait(30)


def cold_build(index_dir: str, cache_dir: str | None = None) -> float:
    """Seconds for `index_builder.py` to index the sample corpus into `index_dir`, then `cold_start` on it
    (the app builds only the default data/index unasked, never a folder MEDRAG_INDEX_DIR names)."""
    env = {**os.environ, **({"MEDRAG_CACHE_DIR": cache_dir} if cache_dir else {})}
    t0 = time.time()
    cmd = [sys.executable, str(ROOT / "index_builder.py"), "--out", index_dir]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - t0 + cold_start(index_dir, cache_dir)


def start_app():
    import app
    from medrag.config import PipelineConfig

    t0 = time.perf_counter()
    pipeline = app.load_pipeline(PipelineConfig.from_env(generator="extractive"))
    demo = app.build_demo(pipeline)
    port = free_port()
    demo.queue(default_concurrency_limit=app.MAX_CONCURRENCY, max_size=app.QUEUE_SIZE).launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_kwargs()
    )
    url = f"http://127.0.0.1:{port}/"
    wait_http_200(url, time.time() + 60)
    return pipeline, demo, url, time.perf_counter() - t0


def visitor(url: str, questions: list[str], barrier: threading.Barrier, out: list) -> None:
    """One session: ask `questions` in turn; record (question, previous question, latency, chunk ids, ok)."""
    from gradio_client import Client

    c = Client(url, verbose=False)
    barrier.wait()
    previous = None
    for q in questions:
        t0 = time.perf_counter()
        try:
            messages, sources, *_ = c.predict(q, [], 5, "hybrid", 0.2, 512, api_name="/chat")
            ok = len(messages) == 2 and _text(messages[0]) == q and bool(_text(messages[1]).strip())
            out.append((q, previous, time.perf_counter() - t0, CHUNK_ID.findall(sources), ok))
        except Exception as e:  # a failed request is a result, not a crash of the bench
            out.append((q, previous, time.perf_counter() - t0, [], False))
            print(f"  request failed: {q!r}: {e}", file=sys.stderr)
        previous = q


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--questions", type=int, default=5)
    ap.add_argument("--cold-build", action="store_true", help="also time a start that builds the sample index")
    args = ap.parse_args()

    print("cold start (python app.py -> HTTP 200 on /), sample index on disk:")
    cold_start()  # builds data/index once if it is missing, so the timed runs below find it
    warm_disk = [cold_start() for _ in range(3)]
    print(f"  {' '.join(f'{s:.1f}s' for s in warm_disk)}  (median {statistics.median(warm_disk):.1f}s)")
    if args.cold_build:
        with tempfile.TemporaryDirectory() as tmp:
            print(
                f"  with no index (index_builder.py on the sample, then start): {cold_build(str(Path(tmp) / 'i1')):.1f}s"
            )
            fresh = cold_build(str(Path(tmp) / "i2"), str(Path(tmp) / "cache"))
            print(f"  with no index and an empty cache (ONNX export of the encoder redone too): {fresh:.1f}s")

    pipeline, demo, url, start_s = start_app()
    print(f"in-process start (pipeline + launch): {start_s:.1f}s")
    single: list = []
    visitor(url, QUESTIONS, threading.Barrier(1), single)
    one = [r[2] for r in single]
    print(f"one visitor, {len(one)} questions in turn: p50 {percentile(one, 50):.2f}s  max {max(one):.2f}s")
    plans = [[QUESTIONS[(u + i) % len(QUESTIONS)] for i in range(args.questions)] for u in range(args.users)]
    results: list = []
    barrier = threading.Barrier(args.users)
    threads = [threading.Thread(target=visitor, args=(url, plan, barrier, results)) for plan in plans]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - t0
    demo.close()

    answered, checked = len(results), results + single
    expected = {}
    for q, prev, *_ in checked:
        if (q, prev) not in expected:
            history = [{"role": "user", "content": prev}] if prev else None
            expected[q, prev] = [h.chunk.id for h in pipeline.answer(q, history).sources]
    failed = [r for r in checked if not r[4]]
    leaked = [r for r in checked if r[4] and r[3] != expected[r[0], r[1]]]
    latencies = [r[2] for r in results]
    total = args.users * args.questions
    print(
        f"load: {args.users} users x {args.questions} questions at once = {total}, {answered} answered in {wall:.1f}s"
    )
    print(f"  latency per question: p50 {percentile(latencies, 50):.2f}s  p95 {percentile(latencies, 95):.2f}s")
    print(f"  max {max(latencies):.2f}s  throughput {answered / wall:.1f} questions/s")
    print(f"  failed: {len(failed)}   sources not matching the session's own question and history: {len(leaked)}")
    for q, prev, _, got, _ in leaked[:5]:
        print(f"    {q!r} (after {prev!r}): got {got[:3]}, expected {expected[q, prev][:3]}")
    return 0 if answered == total and not failed and not leaked else 1


if __name__ == "__main__":
    raise SystemExit(main())
