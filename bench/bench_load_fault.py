"""Load and faults at once: many visitors for minutes while the index is swapped by webhook and bad webhooks arrive.

The app runs in-process (extractive generator, CPU) with its index in a Hub dataset repo on the local
Hub-compatible server (tests/hub_server.py) and the refresh webhook on. Two index versions alternate:
v1 the whole sample corpus, v2 the sample corpus without a few pages, so a swap changes what some
questions retrieve. During the run:
  - `--users` gradio_client sessions each ask their own questions through the Chat tab's event in a
    loop until `--seconds` pass;
  - every `--swap-every` s the other version is pushed and the webhook POSTed with the right secret;
  - every 2 s a bad webhook arrives (wrong secret, JSON nested 100k deep, 2 MB body, not JSON, a repo
    the app does not serve), each of which must get its 401/400/413/200 and change nothing.
Checks: every request answered (nothing lost); each answer's sources are exactly those its own
question (and its session's previous question) retrieves from v1 or from v2 (never another
session's); every webhook got the expected status; the swaps happened. Prints p50/p95 latency.

    python bench/bench_load_fault.py --users 50 --seconds 120
Exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_app import CHUNK_ID, _text, free_port, percentile  # noqa: E402
from hub_server import HubServer, use_hub  # noqa: E402

TOKEN, SECRET = "hf_BenchToken0123456789abcdefghij", "bench-webhook-secret"
INDEX = "medrag-org/medrag-index"
DROPPED = ["asthma", "migraine", "gout", "insomnia", "sunburn-skin-cancer-prevention"]  # absent from v2


def questions(sample: Path) -> list[str]:
    """Two questions per sample page, in the words a visitor would use."""
    out = []
    for page in sorted(sample.glob("*.md")):
        topic = page.stem.replace("-", " ")
        out += [f"What are the symptoms of {topic}?", f"How is {topic} treated or prevented?"]
    return out


def build(docs: Path, folder: Path, config):
    from medrag.build import ensure_index

    ensure_index([str(docs)], folder, config)
    return folder


def payload(repo: str, repo_type: str = "dataset") -> dict:
    return {
        "event": {"action": "update", "scope": "repo.content"},
        "repo": {"type": repo_type, "name": repo, "id": "6560b0f0c0ffee0000000001", "private": False,
                 "url": {"web": f"https://huggingface.co/{repo}", "api": f"https://huggingface.co/api/{repo}"},
                 "owner": {"id": "6560b0f0c0ffee02"}},
        "webhook": {"id": "6560b0f0c0ffee0000000003", "version": 3},
        "updatedRefs": [{"ref": "refs/heads/main", "oldSha": None, "newSha": None}],
    }  # fmt: skip


class Patch:
    """What tests/hub_server.use_hub needs of pytest's monkeypatch, for good: this process ends with the bench."""

    def setenv(self, name: str, value: str) -> None:
        os.environ[name] = value

    def setattr(self, target, name: str, value) -> None:
        setattr(target, name, value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--swap-every", type=float, default=15)
    args = ap.parse_args()

    import httpx
    from gradio_client import Client

    import app
    from medrag.config import PipelineConfig
    from medrag.hub import push_index
    from medrag.index import VectorIndex
    from medrag.pipeline import RAGPipeline
    from medrag.refresh import WEBHOOK_PATH, Refresher, serve

    tmp = Path(tempfile.mkdtemp(prefix="medrag-load-"))
    hub = HubServer(token=TOKEN).__enter__()
    use_hub(Patch(), hub, tmp / "hf", token=TOKEN)  # huggingface_hub in this process talks to the local Hub
    base = PipelineConfig(
        generator="extractive", cache_dir=os.environ.get("MEDRAG_CACHE_DIR", PipelineConfig().cache_dir)
    )
    sample = Path(base.sample_docs)
    v2_docs = tmp / "v2-docs"
    shutil.copytree(sample, v2_docs)
    for name in DROPPED:
        (v2_docs / f"{name}.md").unlink()
    t0 = time.perf_counter()
    folders = {"v1": build(sample, tmp / "v1", base), "v2": build(v2_docs, tmp / "v2", base)}
    print(f"built both index versions in {time.perf_counter() - t0:.0f} s")
    push_index(folders["v1"], INDEX)

    pipeline = app.load_pipeline(base.replace(index_repo=INDEX, webhook_secret=SECRET))
    refresher = Refresher(pipeline)
    demo = app.build_demo(pipeline, refresher).queue(
        default_concurrency_limit=app.MAX_CONCURRENCY, max_size=app.QUEUE_SIZE
    )
    port = free_port()
    serve(
        demo,
        refresher,
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **app.launch_kwargs(),
    )
    url, hook = f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}{WEBHOOK_PATH}"

    asked = questions(sample)
    deadline = time.monotonic() + args.seconds
    results: list[tuple] = []  # (user, question, previous question, seconds, chunk ids, ok)
    hooks: list[tuple[str, int, int]] = []  # (what, expected status, got)
    swaps: list[str] = []

    def visitor(user: int) -> None:
        own = [asked[(2 * user) % len(asked)], asked[(2 * user + 1) % len(asked)]]
        client, previous, i = None, None, 0
        for attempt in range(3):  # 50 page loads at once on two busy cores: /config can time out; a visitor retries
            try:
                client = Client(url, verbose=False)
                break
            except Exception as e:
                print(f"  user {user}: connecting failed ({type(e).__name__}), attempt {attempt + 1}", file=sys.stderr)
                time.sleep(2)
        if client is None:
            results.append((user, own[0], None, 0.0, None, False))  # a visitor who never got in is lost too
            return
        while time.monotonic() < deadline:
            q, i = own[i % 2], i + 1
            start = time.perf_counter()
            try:
                messages, sources, *_ = client.predict(q, [], 5, "hybrid", 0.2, 512, api_name="/chat")
                ok = _text(messages[0]) == app.inert(q) and bool(_text(messages[-1]).strip())
                results.append((user, q, previous, time.perf_counter() - start, CHUNK_ID.findall(sources), ok))
            except Exception as e:  # a lost request is a result
                results.append((user, q, previous, time.perf_counter() - start, None, False))
                print(f"  user {user}: {q!r} failed: {type(e).__name__}: {e}", file=sys.stderr)
            previous = q

    def post(what: str, expected: int, **kw) -> None:
        try:
            got = httpx.post(hook, timeout=60, **kw).status_code
        except httpx.HTTPError:
            got = -1
        hooks.append((what, expected, got))

    def faults_and_swaps() -> None:
        ok = {"X-Webhook-Secret": SECRET}
        version, next_swap = "v1", time.monotonic() + args.swap_every
        while time.monotonic() < deadline:
            post("wrong secret", 401, json=payload(INDEX), headers={"X-Webhook-Secret": "nope"})
            post("nested 100k deep", 400, content=b"[" * 100_000 + b"]" * 100_000, headers=ok)
            post("2 MB body", 413, content=b" " * (2 << 20), headers=ok)
            post("not JSON", 400, content=b"<html>", headers=ok)
            post("another repo", 200, json=payload("someone/else"), headers=ok)
            if time.monotonic() >= next_swap:
                version = "v2" if version == "v1" else "v1"
                push_index(folders[version], INDEX)
                post(f"swap to {version}", 202, json=payload(INDEX), headers=ok)
                swaps.append(version)
                next_swap += args.swap_every
            time.sleep(2)

    threads = [threading.Thread(target=visitor, args=(u,)) for u in range(args.users)]
    threads.append(threading.Thread(target=faults_and_swaps))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 600)
    wall = time.perf_counter() - t0
    refresher.wait(120)
    seen_commits = {r.loaded for r in [refresher.last_results.get("index")] if r}
    demo.close()

    # what each (question, previous question) retrieves from each version, asked directly
    direct = {v: RAGPipeline(base, embedder=pipeline.embedder, index=VectorIndex.load(f)) for v, f in folders.items()}
    expected: dict[tuple, list[list[str]]] = {}
    for _, q, prev, *_ in results:
        if (q, prev) not in expected:
            history = [{"role": "user", "content": prev}] if prev else None
            expected[q, prev] = [[h.chunk.id for h in p.answer(q, history).sources] for p in direct.values()]
    lost = [r for r in results if r[4] is None or not r[5]]
    leaked = [r for r in results if r[4] is not None and r[4] not in expected[r[1], r[2]]]
    bad_hooks = [h for h in hooks if h[1] != h[2]]
    latencies = [r[3] for r in results if r[4] is not None]
    updated = refresher.last_results.get("index")
    print(
        f"{args.users} users for {args.seconds:.0f} s (wall {wall:.0f} s): {len(results)} requests, {len(latencies)} answered"
    )
    print(
        f"  latency per answer: p50 {percentile(latencies, 50):.2f} s  p95 {percentile(latencies, 95):.2f} s  max {max(latencies):.2f} s"
    )
    print(f"  lost or wrong: {len(lost)}   sources not those of the session's own question (v1 or v2): {len(leaked)}")
    print(
        f"  index swaps pushed: {len(swaps)} ({' '.join(swaps)}); last check: {updated.status if updated else '-'} {seen_commits}"
    )
    print(f"  webhooks: {len(hooks)}, unexpected status: {len(bad_hooks)} {bad_hooks[:5]}")
    hub.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if results and not lost and not leaked and not bad_hooks and swaps else 1


if __name__ == "__main__":
    raise SystemExit(main())
