"""Build and start the app as a Hugging Face Space does, on this machine (tests/test_space.py, bench/).

- `front_matter()`: the README's YAML block, which the Space reads its configuration from.
- `space_venv()`: what the Space builder makes for a gradio Space: a fresh virtualenv of the front
  matter's `python_version` (pyenv's interpreter of that minor version), then `pip install -r
  requirements.txt`, then its own `pip install gradio[oauth]==<sdk_version> "uvicorn>=0.14.0" spaces`.
  Cached by the hash of those inputs under MEDRAG_SPACE_CACHE (default ~/.cache/medrag/space-venv),
  built in a temporary folder and renamed into place, one build at a time (a file lock).
- `start()`: `python app.py` from a copy of the repo's tracked files, as the Space runs it: SSR on,
  GRADIO_SERVER_NAME=0.0.0.0, SPACE_ID / SPACE_HOST / SYSTEM set, a fresh HOME (a restarted Space
  keeps nothing but its image). Requests go to 127.0.0.1 only.

Run it by hand: `python scripts/space_like.py` builds the venv and prints its path.
Shortcuts on purpose: the interpreter is the nearest pyenv patch release of the front matter's
minor version (3.12.1 for "3.12.12"); the builder's own step is copied from its build logs, not
from its (private) Dockerfile; the apt step (packages.txt) is absent because the project has none.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("MEDRAG_SPACE_CACHE", Path.home() / ".cache" / "medrag" / "space-venv"))
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


def front_matter(readme: Path = ROOT / "README.md") -> dict:
    text = readme.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    if not match:
        raise ValueError(f"{readme} has no YAML front matter: a Space reads its configuration from it")
    return yaml.safe_load(match.group(1))


def builder_step(sdk_version: str) -> list[str]:
    """What the Space builder installs after requirements.txt (its build log: 'RUN pip install ...')."""
    return [f"gradio[oauth]=={sdk_version}", "uvicorn>=0.14.0", "spaces"]


def interpreter(python_version: str) -> Path | None:
    """pyenv's python of the same major.minor as `python_version` (the newest patch it has), or None."""
    minor = ".".join(str(python_version).split(".")[:2])
    found = sorted(
        (p for p in PYENV_VERSIONS.glob(f"{minor}.*") if re.fullmatch(rf"{re.escape(minor)}\.\d+", p.name)),
        key=lambda p: int(p.name.rsplit(".", 1)[1]),
    )
    return found[-1] / "bin" / "python" if found else None


def venv_key(python: Path, requirements: Path, sdk_version: str) -> str:
    parts = [python.parent.parent.name, requirements.read_bytes().decode(), *builder_step(sdk_version)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # another test run building the same venv: wait for it
        yield


def space_venv(meta: dict | None = None, requirements: Path = ROOT / "requirements.txt", log=print) -> Path:
    """The cached virtualenv a Space would run this repo in; built on first use (minutes: torch is in it)."""
    meta = meta or front_matter()
    python = interpreter(meta["python_version"])
    if python is None:
        raise FileNotFoundError(f"no pyenv Python {meta['python_version']} under {PYENV_VERSIONS}")
    target = CACHE / f"py{python.parent.parent.name}-{venv_key(python, requirements, str(meta['sdk_version']))}"
    with _locked(CACHE / ".lock"):
        if (target / "ready").is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix="building-", dir=CACHE))
        try:
            t0 = time.perf_counter()
            log(f"building the Space's virtualenv with {python} in {target} (once per requirements.txt)")
            env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            subprocess.run([str(python), "-m", "venv", str(tmp)], check=True)
            pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, "-r", str(requirements)], check=True, env=env)
            subprocess.run([*pip, *builder_step(str(meta["sdk_version"]))], check=True, env=env)
            freeze = subprocess.run(
                [str(tmp / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True
            )
            (tmp / "freeze.txt").write_text(freeze.stdout)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
            (target / "ready").write_text(f"{time.perf_counter() - t0:.0f} s\n")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def repo_copy(dest: Path) -> Path:
    """The repo's tracked files (and untracked, not ignored ones) copied to `dest`: what a push sends a Space."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, (f.decode() for f in files)):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def space_env(home: Path, port: int, space_id: str = "medrag-org/medrag", **extra: str) -> dict[str, str]:
    """The environment a Space gives `python app.py` (the variables that matter here), with a fresh HOME."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    return {
        **keep,
        "HOME": str(home),
        "SYSTEM": "spaces",
        "SPACE_ID": space_id,
        "SPACE_HOST": space_id.replace("/", "-") + ".hf.space",
        "GRADIO_SERVER_NAME": "0.0.0.0",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SSR_MODE": "true",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def start(venv: Path, app_dir: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`python app.py` in `app_dir` with `env`, its output to `log_path`, in its own process group."""
    out = open(log_path, "w")  # noqa: SIM115  the process writes to it for as long as it runs
    return subprocess.Popen(
        [str(venv / "bin" / "python"), "app.py"], cwd=app_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 300.0) -> float:
    """Seconds until `url` answers 200 (the Space's health check), or RuntimeError if the app exits first."""
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """End the app and the Node server it started (its process group)."""
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


if __name__ == "__main__":
    print(space_venv(log=lambda m: print(m, file=sys.stderr)))
