"""The streaming build: a build killed mid-way resumes to the very index an uninterrupted build writes.

The embedder is a fake whose vector is the lengths of the first words (house style: checkable by
hand); the kill is a real SIGKILL of a child process while it is between shards or inside one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medrag.config import PipelineConfig
from medrag.disk_index import DiskIndex
from medrag.documents import corpus_sha256, load_documents
from medrag.errors import MedRAGError
from medrag.shards import build_streaming

HERE = Path(__file__).resolve().parent
SENTENCES = [
    "Asthma makes the airways narrow and swollen.",
    "An inhaler brings quick relief during an attack.",
    "Insulin helps glucose move from the blood into cells.",
    "High blood pressure often has no symptoms at all.",
    "A migraine can come with nausea and sensitivity to light.",
    "Eczema leaves patches of skin dry, red and itchy.",
    "Measles spreads easily through coughs and sneezes.",
    "Iron deficiency is a common cause of anemia.",
]


class WordLengthEmbedder:
    """dim 8: the lengths of the first 8 words of a text, L2-normalised; one word piece per word."""

    model_id, dim, precision = "fake/word-lengths", 8, "fp32"

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def count_tokens_batch(self, texts):
        return [self.count_tokens(t) for t in texts]

    def embed(self, texts):
        time.sleep(self.delay)
        v = np.array([[len(w) for w in (t.split() + [""] * 8)[:8]] for t in texts], dtype=np.float32) + 1
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def write_corpus(path: Path, n: int = 48) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(1 + i % 5))
            f.write(json.dumps({"id": f"doc{i}", "title": f"Topic {i} (symptoms)", "text": text}) + "\n")
    return path


CONFIG = PipelineConfig(chunk_tokens=24, chunk_overlap=4)
CHILD = """
import sys
sys.path[:0] = [{root!r}, {here!r}]
from test_shards import CONFIG, WordLengthEmbedder
from medrag.shards import build_streaming
build_streaming([{docs!r}], {out!r}, CONFIG, embedder=WordLengthEmbedder(delay=0.4), shard_chunks=8)
"""


def comparable(path: Path) -> dict:
    m = json.loads((path / "manifest.json").read_text())
    m.pop("built_at")
    m["extra"].pop("build_seconds")
    return m


def test_killed_build_resumes_to_the_same_index(tmp_path):
    docs = write_corpus(tmp_path / "corpus.jsonl")
    whole = build_streaming([docs], tmp_path / "whole", CONFIG, embedder=WordLengthEmbedder(), shard_chunks=8)
    assert whole.shards >= 5 and whole.resumed_shards == 0

    out = tmp_path / "resumed"
    code = CHILD.format(root=str(HERE.parent), here=str(HERE), docs=str(docs), out=str(out))
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    state = tmp_path / ".resumed.build" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if state.is_file() and len(json.loads(state.read_text())["shards"]) >= 2:
            break
        time.sleep(0.05)
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not out.exists()
    done = len(json.loads(state.read_text())["shards"])

    resumed = build_streaming([docs], out, CONFIG, embedder=WordLengthEmbedder(), shard_chunks=8)
    assert resumed.resumed_shards == done >= 2
    assert comparable(out) == comparable(tmp_path / "whole")  # every file's sha256 included
    assert not state.parent.exists()  # the work folder is gone once the index is in place
    index = DiskIndex.load(out, verify=True)
    assert len(index) == whole.chunks and index.chunks[0].doc_id == "doc0"
    assert index.manifest["corpus_sha256"] == corpus_sha256(load_documents([docs]).documents)


def _interrupted(tmp_path: Path, shards: int) -> tuple[Path, Path]:
    """A work folder holding `shards` finished shards, as a kill leaves it (built in-process, then abandoned)."""
    tmp_path.mkdir(exist_ok=True)
    docs = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "ix"

    class Stop(Exception):
        pass

    class Dying(WordLengthEmbedder):
        calls = 0

        def embed(self, texts):
            Dying.calls += 1
            if Dying.calls > shards:
                raise Stop
            return super().embed(texts)

    with pytest.raises(Stop):
        build_streaming([docs], out, CONFIG, embedder=Dying(), shard_chunks=8)
    return docs, out


def test_corrupt_or_missing_shard_is_refused_and_rebuilt(tmp_path, caplog):
    docs, out = _interrupted(tmp_path, 3)
    shards = tmp_path / ".ix.build" / "shards"
    vectors = shards / "00001" / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-2] + b"\x00\x00")
    with caplog.at_level(logging.WARNING, logger="medrag.shards"):
        report = build_streaming([docs], out, CONFIG, embedder=WordLengthEmbedder(), shard_chunks=8)
    assert "00001 of the interrupted build is corrupt (vectors.npy: sha256 mismatch)" in caplog.text
    assert report.resumed_shards == 1
    whole = build_streaming([docs], tmp_path / "whole", CONFIG, embedder=WordLengthEmbedder(), shard_chunks=8)
    assert comparable(out) == comparable(tmp_path / "whole") and report.chunks == whole.chunks

    docs, out = _interrupted(tmp_path / "b", 2)
    (tmp_path / "b" / ".ix.build" / "shards" / "00000" / "chunks.jsonl").unlink()
    with caplog.at_level(logging.WARNING, logger="medrag.shards"):
        report = build_streaming([docs], out, CONFIG, embedder=WordLengthEmbedder(), shard_chunks=8)
    assert "00000 of the interrupted build is missing chunks.jsonl" in caplog.text
    assert report.resumed_shards == 0


def test_other_inputs_do_not_resume_someone_elses_build(tmp_path):
    docs, out = _interrupted(tmp_path, 1)
    with open(docs, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "late", "text": "A document added after the kill."}) + "\n")
    with pytest.raises(MedRAGError, match=r"started with other documents or settings: delete that folder"):
        build_streaming([docs], out, CONFIG, embedder=WordLengthEmbedder(), shard_chunks=8)


def test_progress_is_logged_with_an_eta(tmp_path, caplog):
    docs = write_corpus(tmp_path / "corpus.jsonl")
    with caplog.at_level(logging.INFO, logger="medrag.shards"):
        build_streaming([docs], tmp_path / "ix", CONFIG, embedder=WordLengthEmbedder(), shard_chunks=8, log_every=0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("build:")]
    assert len(lines) >= 5 and "100.0% of the input" in lines[-1]
    assert any("ETA" in line and "min" in line for line in lines)


def test_a_folder_of_someone_elses_files_is_refused_before_any_work(tmp_path):
    """The streaming build takes an output folder only when it is absent, empty or an index (issue 9):
    `--docs X --out X` must lose nothing."""
    from medrag.errors import IndexWriteError

    docs = tmp_path / "docs"
    docs.mkdir()
    write_corpus(docs / "corpus.jsonl")
    before = {p.name: p.read_bytes() for p in docs.iterdir()}
    with pytest.raises(IndexWriteError, match="holds no MedRAG index"):
        build_streaming([docs], docs, CONFIG, embedder=WordLengthEmbedder(), shard_chunks=8)
    assert {p.name: p.read_bytes() for p in docs.iterdir()} == before
    assert not (tmp_path / ".docs.build").exists()  # refused before a shard was written
