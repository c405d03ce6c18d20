"""The Space as it really runs: its configuration, its build, and the app started the way a Space starts it.

1. The README front matter, checked against the keys and values the Spaces configuration reference
   documents (huggingface.co/docs/hub/spaces-config-reference) and ZeroGPU's supported Pythons.
2. requirements.txt against what the Space builder installs after it (gradio[oauth] at sdk_version,
   uvicorn, spaces): no pin of ours may contradict theirs or what they require.
3. A Space-like run (scripts/space_like.py): requirements.txt installed into a fresh virtualenv of
   the front matter's Python, as the builder does (cached by its hash; the first build downloads
   torch and takes minutes), then `python app.py` with SSR on, GRADIO_SERVER_NAME=0.0.0.0 and the
   Space's variables, a tiny Mistral as the hf generator and its adapter on the local Hub server.
   Everything goes through the public port, the one Node serves: the page in chromium, a `?q=`
   link, `/ask`, and the refresh webhook (401 for a wrong secret, a swap for the right one).
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from hub_server import HubServer, use_hub
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from served import CHROMIUM, chromium, free_port
from test_refresh import ADAPTER, SECRET, TOKEN, payload
from tiny_models import make_tiny_adapter, make_tiny_mistral, make_tiny_tokenizer

from medrag.config import BASE_MODEL_ID, EMBEDDING_MODEL_ID, REPO_ROOT
from medrag.hub import push_adapter
from medrag.refresh import WEBHOOK_PATH

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import space_like  # noqa: E402

# the Spaces configuration reference, as of its 2026-08 revision
DOCUMENTED_KEYS = {
    "title", "emoji", "colorFrom", "colorTo", "sdk", "python_version", "sdk_version", "suggested_hardware",
    "suggested_storage", "app_file", "app_build_command", "app_port", "base_path", "fullWidth", "header",
    "short_description", "models", "datasets", "tags", "thumbnail", "pinned", "hf_oauth", "hf_oauth_scopes",
    "hf_oauth_expiration_minutes", "hf_oauth_authorized_org", "disable_embedding", "startup_duration_timeout",
    "custom_headers", "preload_from_hub", "license",
}  # fmt: skip
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
HARDWARE = {
    "cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8",
    "a10g-small", "a10g-large", "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8",
}  # fmt: skip
ZEROGPU_PYTHONS = {"3.10.13", "3.12.12"}  # huggingface.co/docs/hub/spaces-zerogpu, "Supported versions"
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
META = space_like.front_matter()


def pins(path: Path = REPO_ROOT / "requirements.txt") -> dict[str, str]:
    """{normalised name: pinned version} of a requirements file's `name==version` lines."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            out[req.name.lower().replace("_", "-")] = str(req.specifier).removeprefix("==")
    return out


# --- 1. the front matter ----------------------------------------------------------------------
def test_front_matter_uses_documented_keys_and_values():
    assert set(META) <= DOCUMENTED_KEYS, set(META) - DOCUMENTED_KEYS
    assert META["sdk"] == "gradio" and (REPO_ROOT / META["app_file"]).is_file()
    assert META["colorFrom"] in COLOURS and META["colorTo"] in COLOURS
    assert META["suggested_hardware"] in HARDWARE
    assert len(META["short_description"]) <= 60  # the Hub refuses a longer one
    assert isinstance(META["python_version"], str) and re.fullmatch(r"3\.\d+(\.\d+)?", META["python_version"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(META["sdk_version"]))
    assert all(isinstance(t, str) for t in META.get("tags", []))


def test_python_version_runs_the_pins_on_zerogpu_and_agrees_with_pyproject():
    version = META["python_version"]
    assert version in ZEROGPU_PYTHONS  # ZeroGPU builds no other Python
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert version in SpecifierSet(requires.split("#")[0].strip())
    for package in ("transformers", "numpy"):  # both need 3.11+; the default 3.10 would fail the build
        python_spec = metadata.metadata(package)["Requires-Python"]
        assert version in SpecifierSet(python_spec), (package, python_spec)


def test_front_matter_names_the_models_and_datasets_the_space_uses():
    models, datasets = META["models"], META["datasets"]
    assert BASE_MODEL_ID in models and EMBEDDING_MODEL_ID in models  # the Hub links them from the Space page
    adapters = [m for m in models if m not in (BASE_MODEL_ID, EMBEDDING_MODEL_ID)]
    assert len(adapters) == 1 and REPO_ID.fullmatch(adapters[0]) and len(datasets) == 1
    assert REPO_ID.fullmatch(datasets[0])
    deploy = (REPO_ROOT / "README.md").read_text().split("## Deploy your own Space")[1]
    assert adapters[0] in deploy and datasets[0] in deploy  # the deploy steps say how to name your own


# --- 2. requirements.txt against the base image -----------------------------------------------
def test_requirements_do_not_fight_what_the_space_builder_installs():
    ours = pins()
    assert "spaces" not in ours  # the builder installs it; a pin of our own can conflict with it
    assert ours.get("gradio", META["sdk_version"]) == str(META["sdk_version"])
    if metadata.version("gradio") != str(META["sdk_version"]):
        pytest.skip(f"gradio {metadata.version('gradio')} is installed, the front matter says {META['sdk_version']}")
    for package in ("gradio", "spaces"):  # what they require must accept every version we pin
        for line in metadata.requires(package) or []:
            req = Requirement(line)
            name = req.name.lower().replace("_", "-")
            if name in ours and (req.marker is None or req.marker.evaluate({"extra": "oauth"})):
                assert ours[name] in req.specifier, f"{package} needs {req}, requirements.txt pins {ours[name]}"
    assert "huggingface-hub" in ours  # pinned, and accepted by both (checked above)


def test_the_local_demo_still_gets_spaces():
    assert "spaces" in pins(REPO_ROOT / "requirements-dev.txt")
    assert "spaces==" in (REPO_ROOT / "scripts" / "setup.sh").read_text()


# --- 3. the Space-like run --------------------------------------------------------------------
@pytest.fixture(scope="module")
def space_venv():
    if space_like.interpreter(META["python_version"]) is None:
        pytest.skip(f"no pyenv Python {META['python_version']} on this machine")
    return space_like.space_venv(META, log=lambda m: print(m, file=sys.stderr))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    base = make_tiny_mistral(root / "base", make_tiny_tokenizer(root / "tokenizer"), train_steps=5)
    return {"base": base, **{f"adapter{i}": make_tiny_adapter(base, root / f"adapter{i}", seed=i) for i in (0, 1)}}


def ask(url: str, question: str) -> dict:
    from gradio_client import Client

    return Client(url, verbose=False).predict(question, 3, "hybrid", api_name="/ask")


@pytest.mark.slow
@pytest.mark.browser
def test_space_like_run_through_the_public_port(space_venv, tiny, tmp_path, monkeypatch):
    if not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None:
        pytest.skip("Debian chromium and playwright are needed for the page")

    with HubServer(token=TOKEN) as hub:
        use_hub(monkeypatch, hub, tmp_path / "hf-test")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        sha1 = push_adapter(tiny["adapter0"], ADAPTER)
        port = free_port()
        env = space_like.space_env(
            tmp_path / "home", port,
            MEDRAG_GENERATOR="hf", MEDRAG_BASE_MODEL=str(tiny["base"]), MEDRAG_LOAD_IN_4BIT="0",
            MEDRAG_MAX_NEW_TOKENS="8", MEDRAG_ADAPTER=ADAPTER, MEDRAG_WEBHOOK_SECRET=SECRET,
            HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0",
        )  # fmt: skip
        (tmp_path / "home").mkdir()
        app_dir = space_like.repo_copy(tmp_path / "app")
        process = space_like.start(space_venv, app_dir, env, tmp_path / "app.log")
        url = f"http://127.0.0.1:{port}/"
        try:
            ready = space_like.wait_ready(url, process)
            print(f"Space-like run ready in {ready:.1f} s (tiny hf generator, sample index built at start)")
            deadline = time.monotonic() + 60  # gradio says so just after Node answers
            while "Node proxy" not in (log := (tmp_path / "app.log").read_text()) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "with SSR" in log and "Node proxy" in log, log[-2000:]  # Node holds the public port

            first = ask(url, "What are the symptoms of asthma?")
            assert first["generator"] == "hf" and first["versions"]["adapter"] == f"{ADAPTER}@{sha1}"
            assert first["sources"][0]["doc_id"] == "asthma"

            hook = url.rstrip("/") + WEBHOOK_PATH
            assert httpx.post(hook, json=payload(ADAPTER), headers={"X-Webhook-Secret": "wrong"}).status_code == 401
            sha2 = push_adapter(tiny["adapter1"], ADAPTER)
            assert httpx.post(hook, json=payload(ADAPTER), headers={"X-Webhook-Secret": SECRET}).status_code == 202
            deadline = time.monotonic() + 120
            while (seen := ask(url, "What are the symptoms of asthma?")["versions"]["adapter"]) != f"{ADAPTER}@{sha2}":
                assert time.monotonic() < deadline, f"still {seen} after the push"
                time.sleep(1)

            with chromium() as browser:
                page = browser.new_page()
                page.goto(url + "?q=How%20can%20I%20lower%20my%20blood%20pressure%3F")
                user = page.locator('#chatbot [data-testid="user"]').first
                user.wait_for(timeout=120_000)  # generous: CI shares two cores with everything else
                assert "How can I lower my blood pressure?" in user.inner_text()
                page.locator("#chatbot .thinking").wait_for(state="detached", timeout=120_000)
                page.get_by_role("tab", name="Sources").click()
                page.locator("#sources li#source-1", has_text="blood pressure").wait_for(timeout=60_000)
                share = page.locator("#share-link textarea, #share-link input").first
                assert share.input_value().startswith("https://huggingface.co/spaces/medrag-org/medrag?q=How")
        finally:
            space_like.stop(process)
