"""Building an index: the output folder rules, one-line errors with exit code 2, and progress off a TTY."""

from __future__ import annotations

import io
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import index_builder
from medrag.build import build_index
from medrag.config import PipelineConfig
from medrag.errors import IndexWriteError
from medrag.index import VectorIndex
from medrag.progress import Progress

REPO = Path(__file__).resolve().parent.parent
DOCS = {
    "asthma.md": "# Asthma\n\nAsthma narrows the airways. It causes wheezing and coughing.\n",
    "gout.txt": "Gout\nGout is a painful arthritis caused by uric acid crystals in a joint.\n",
    "notes/flu.md": "# Flu\n\nInfluenza is a viral infection of the nose, throat and lungs.\n",
}


def corpus(folder: Path) -> Path:
    for name, text in DOCS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = index_builder.main(argv)
    return code, capsys.readouterr().err


def test_docs_and_out_the_same_folder_loses_nothing(tmp_path, capsys):
    docs = corpus(tmp_path / "docs")
    before = tree(docs)
    code, err = run_cli(["--docs", str(docs), "--out", str(docs)], capsys)
    assert code == 2
    assert err == (
        f"error: {docs} is not empty and holds no MedRAG index (no manifest.json): choose an absent or empty "
        "folder, or an index folder to replace; nothing was changed\n"
    )
    assert tree(docs) == before


def test_an_out_folder_with_other_files_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    docs, out = corpus(tmp_path / "docs"), tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8 not really")
    monkeypatch.setattr("medrag.build.load_documents", lambda *a, **k: pytest.fail("work started"))
    code, err = run_cli(["--docs", str(docs), "--out", str(out)], capsys)
    assert code == 2 and err.startswith(f"error: {out} is not empty and holds no MedRAG index")
    assert [p.name for p in out.iterdir()] == ["holiday.jpg"]


def test_an_out_folder_inside_the_documents_is_refused(tmp_path, capsys):
    docs = corpus(tmp_path / "docs")
    code, err = run_cli(["--docs", str(docs), "--out", str(docs / "index")], capsys)
    assert code == 2
    assert err.startswith(f"error: The index folder {docs / 'index'} is inside the documents folder {docs}")
    assert not (docs / "index").exists()


def test_a_build_replaces_an_index_and_prints_progress_lines_off_a_tty(tmp_path, embedder, cache_dir, capsys):
    config = PipelineConfig(cache_dir=str(cache_dir))
    docs, out = corpus(tmp_path / "docs"), tmp_path / "ix"
    build_index([docs], out, config, embedder=embedder)
    report = build_index([docs / "notes"], out, config, embedder=embedder, progress=True)  # replaces it
    assert report.documents == 1 and len(VectorIndex.load(out)) == report.chunks
    err = capsys.readouterr().err  # capsys is no terminal: lines, no bar
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0] == lines[-3] and re.fullmatch(r"Loading: 1/1 files \(100%\), [\d,.]+ files/s", lines[0])
    assert re.fullmatch(r"Chunking: 1/1 documents \(100%\), [\d,.]+ documents/s", lines[1])
    assert re.fullmatch(rf"Embedding: {report.chunks}/{report.chunks} chunks \(100%\), [\d,.]+ chunks/s", lines[2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "ix"]


def test_progress_lines_every_twentieth_with_rate_and_time_left():
    out = io.StringIO()
    bar = Progress(45, "Embedding", "chunks", stream=out)
    for _ in range(45):
        bar.update()
    lines = out.getvalue().splitlines()
    assert [int(re.match(r"Embedding: (\d+)/45 chunks", line).group(1)) for line in lines] == [1, *range(3, 46, 3)]
    assert all(re.search(r"\(\d+%\), [\d,.]+ chunks/s, \d+ (s|min \d+ s) left$", line) for line in lines[:-1])
    assert lines[-1].startswith("Embedding: 45/45 chunks (100%), ") and "left" not in lines[-1]


def test_progress_is_a_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    bar = Progress(10, "Loading", "files", stream=out)
    for _ in range(10):
        bar.update()
    bar.close()
    assert "\r" in out.getvalue() and "10/10" in out.getvalue() and "\n" not in out.getvalue().rstrip("\n")
    quiet = io.StringIO()
    Progress(10, "Loading", "files", stream=quiet, enabled=False).update(10)
    assert quiet.getvalue() == ""


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))  # index.faiss is 4.6 kB here


@pytest.mark.slow
def test_a_write_the_os_refuses_is_one_line_exit_2_and_keeps_the_old_index(tmp_path, embedder, cache_dir):
    """A real OS error (EFBIG under RLIMIT_FSIZE, which even root gets) in the CLI, as a user runs it."""
    docs, out = corpus(tmp_path / "docs"), tmp_path / "ix"
    config = PipelineConfig(cache_dir=str(cache_dir))
    build_index([docs / "notes"], out, config, embedder=embedder)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    env = {**os.environ, "MEDRAG_CACHE_DIR": str(cache_dir)}
    run = subprocess.run(
        [sys.executable, str(REPO / "index_builder.py"), "--docs", str(docs), "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, preexec_fn=_limit_file_size, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    last = run.stderr.splitlines()[-1]
    assert re.fullmatch(
        rf"error: Could not write the index to {re.escape(str(out))}: File too large \(.*\): the file is larger "
        r"than this system allows: choose a folder on another disk; any index already there is unchanged",
        last,
    )
    assert re.search(r"^Embedding: \d+/\d+ chunks \(100%\)", run.stderr, re.M)  # progress lines: stderr is a pipe
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "ix"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes whatever the mode")
def test_a_read_only_out_is_one_line_exit_2(tmp_path, capsys):
    docs = corpus(tmp_path / "docs")
    (tmp_path / "ro").mkdir(mode=0o555)
    try:
        code, err = run_cli(["--docs", str(docs), "--out", str(tmp_path / "ro" / "ix")], capsys)
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert code == 2 and err.count("\n") == 1 and "choose a folder you can write to" in err


def test_build_index_refuses_before_loading(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(IndexWriteError, match="holds no MedRAG index"):
        build_index([tmp_path / "nothing-here"], out, PipelineConfig())
    assert (out / "keep.txt").read_text() == "mine"
