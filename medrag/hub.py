"""Download and upload of the index (a Hub dataset repo) and the LoRA adapter (a Hub model repo).

Two short paths, as in bm25s's hub layer: `snapshot_download` into the Hugging Face cache, then
the caller loads the folder; or stage the folder with its card, then `upload_folder`. A local
folder passes through `resolve_folder` untouched, so whatever takes a repo id also takes a
folder. With HF_HUB_OFFLINE=1 a repo already in the cache still resolves (from the cache's refs).
The training side has its own pair: the training data (a dataset repo holding `train.jsonl`) and
the Trainer checkpoints of a run (folder `last/` on the adapter repo's `checkpoints` branch, so
`main` only ever holds finished adapters). Every huggingface_hub error becomes a `HubError` naming the repo and what to do next. The token
(HF_TOKEN or the cached login, which huggingface_hub reads itself) is never logged and is
scrubbed from every message. Also here: the revision check behind the poll fallback,
restarting a Space, and the webhook secret check.

Shortcuts on purpose: the upload stages a hard-linked (else copied) folder in a temporary
directory rather than building commit operations by hand; a local folder's commit is None.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, constants, get_token, snapshot_download
from huggingface_hub import errors as hf

from medrag.cards import adapter_card, index_card
from medrag.errors import HubError

__all__ = [
    "ResolvedFolder", "resolve_folder", "download_index", "download_adapter", "push_index", "push_adapter",
    "index_card", "adapter_card", "latest_commit", "restart_space", "verify_webhook_secret",
    "download_dataset", "push_dataset", "push_checkpoint", "download_checkpoint", "whoami",
]  # fmt: skip

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"  # every index folder has one (medrag.index)
ADAPTER_CONFIG = "adapter_config.json"  # what peft writes beside the adapter weights
ADAPTER_FILES = [ADAPTER_CONFIG, "adapter_model.safetensors", "adapter_model.bin", "README.md"]  # no checkpoints
TRAIN_FILE = "train.jsonl"  # every training data folder has one (medrag.sft_data)
CHECKPOINT_BRANCH, CHECKPOINT_FOLDER = "checkpoints", "last"  # the Space watches main: checkpoints stay off it
_NOT_UPLOADED = ["training_args.bin"]  # a pickle of the Trainer's arguments; resuming does not read it
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_KIND = {"dataset": "dataset", "model": "model", "space": "Space"}
_URL = {"dataset": "datasets/", "model": "", "space": "spaces/"}
_SETTING = {"dataset": "MEDRAG_INDEX_REPO", "model": "MEDRAG_ADAPTER"}  # where a local folder can be named


@dataclass(frozen=True)
class ResolvedFolder:
    path: Path  # a folder of plain files, ready to load
    repo: str | None  # the Hub repo it came from; None for a local folder
    revision: str  # what was asked for: a branch, tag or commit sha
    commit: str | None  # the commit sha that revision resolved to; None for a local folder


def resolve_folder(
    repo_or_path: str, *, repo_type: str, revision: str = "main", allow_patterns: list[str] | None = None
) -> ResolvedFolder:
    """A local folder as it is, else a snapshot of the Hub repo at `revision` in the HF cache."""
    local = Path(repo_or_path).expanduser()
    if local.is_dir():
        return ResolvedFolder(local, None, revision, None)
    with _hub_errors(repo_or_path, revision, repo_type, cached=True):
        path = Path(
            snapshot_download(repo_or_path, repo_type=repo_type, revision=revision, allow_patterns=allow_patterns)
        )
    commit = path.name if _COMMIT_SHA.fullmatch(path.name) else latest_commit(repo_or_path, repo_type, revision)
    log.info("%s %s@%s resolved to commit %s", _KIND[repo_type], repo_or_path, revision, commit)
    return ResolvedFolder(path, repo_or_path, revision, commit)


def download_index(repo: str, revision: str = "main") -> ResolvedFolder:
    found = resolve_folder(repo, repo_type="dataset", revision=revision)
    _require(found, MANIFEST, f"push an index with 'python index_builder.py --push-to-hub {repo}'")
    return found


def download_adapter(repo: str, revision: str = "main") -> ResolvedFolder:
    found = resolve_folder(repo, repo_type="model", revision=revision, allow_patterns=ADAPTER_FILES)
    _require(found, ADAPTER_CONFIG, f"push an adapter with medrag.hub.push_adapter(folder, '{repo}')")
    return found


def download_dataset(repo: str, revision: str = "main") -> ResolvedFolder:
    """A training data folder: local as it is, else the Hub dataset repo's snapshot."""
    found = resolve_folder(repo, repo_type="dataset", revision=revision)
    _require(found, TRAIN_FILE, f"build and push one with 'python -m medrag.sft_data ... --push-to-hub {repo}'")
    return found


def push_dataset(
    folder: str | Path, repo_id: str, *, card: str, private: bool = False, token: str | None = None
) -> str:
    """Upload a training data folder and its dataset card as one commit; returns the commit sha."""
    _read_json(Path(folder) / "manifest.json", "build it with 'python -m medrag.sft_data' first")
    return _push(Path(folder), repo_id, "dataset", card, private, token, "Upload MedRAG training data")


def push_checkpoint(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload a Trainer checkpoint folder as `last/` of the repo's checkpoints branch; returns the commit sha."""
    api = HfApi(token=token)
    with _hub_errors(repo_id, CHECKPOINT_BRANCH, "model", token):
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.create_branch(repo_id, branch=CHECKPOINT_BRANCH, exist_ok=True)
        sha = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            path_in_repo=CHECKPOINT_FOLDER,
            revision=CHECKPOINT_BRANCH,
            ignore_patterns=_NOT_UPLOADED,
            delete_patterns=["*"],  # under path_in_repo: files of the previous checkpoint that this one lacks
            commit_message=f"Checkpoint {Path(folder).name}",
        ).oid
    log.info("pushed checkpoint %s to %s@%s (%s)", folder, repo_id, CHECKPOINT_BRANCH, sha)
    return sha


def download_checkpoint(repo_id: str, token: str | None = None) -> Path | None:
    """The last checkpoint pushed to `repo_id`, downloaded; None when the repo or its checkpoints branch is missing."""
    try:
        with _hub_errors(repo_id, CHECKPOINT_BRANCH, "model", token):
            path = snapshot_download(
                repo_id, revision=CHECKPOINT_BRANCH, allow_patterns=[f"{CHECKPOINT_FOLDER}/*"], token=token
            )
    except HubError as e:
        if isinstance(e.__cause__, hf.RepositoryNotFoundError | hf.RevisionNotFoundError):
            return None  # no such repo or branch yet: nothing to resume
        raise
    folder = Path(path) / CHECKPOINT_FOLDER
    return folder if (folder / "trainer_state.json").is_file() else None


def whoami(token: str | None = None) -> str:
    """The user name the token (HF_TOKEN or the cached login) belongs to."""
    with _hub_errors("whoami", "main", "model", token):
        return HfApi(token=token).whoami()["name"]


def push_index(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    card: str | None = None,
    commit_message: str = "Upload MedRAG index",
) -> str:
    """Upload an index folder and its dataset card as one commit; returns the commit sha."""
    manifest = _read_json(Path(folder) / MANIFEST, f"run 'python index_builder.py --out {folder}' first")
    return _push(Path(folder), repo_id, "dataset", card or index_card(manifest), private, token, commit_message)


def push_adapter(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    card: str | None = None,
    commit_message: str = "Upload MedRAG LoRA adapter",
) -> str:
    """Upload an adapter folder and its model card as one commit; returns the commit sha."""
    config = _read_json(Path(folder) / ADAPTER_CONFIG, "train one with medrag.training first")
    if card is None:
        keys = {"base_model_name_or_path": "base_model", "r": "lora_r", "lora_alpha": "lora_alpha"}
        keys |= {"lora_dropout": "lora_dropout", "target_modules": "target_modules"}
        card = adapter_card({ours: config.get(theirs) for theirs, ours in keys.items()})
    return _push(Path(folder), repo_id, "model", card, private, token, commit_message)


def latest_commit(repo: str, repo_type: str, revision: str = "main") -> str:
    """The commit sha `revision` points at on the Hub now (the poll fallback compares these)."""
    with _hub_errors(repo, revision, repo_type):
        return HfApi().repo_info(repo, repo_type=repo_type, revision=revision).sha


def restart_space(space_id: str, token: str | None = None) -> None:
    """Restart a Space so it loads the newest adapter or index (the training notebook's last cell)."""
    with _hub_errors(space_id, "main", "space", token):
        HfApi(token=token).restart_space(space_id)


def verify_webhook_secret(received: str | None, expected: str | None) -> bool:
    """True only when both are set and equal, compared in constant time."""
    if not received or not expected:
        return False
    return hmac.compare_digest(received.encode(), expected.encode())


def _push(folder: Path, repo_id: str, repo_type: str, card: str, private: bool, token: str | None, message: str):
    api = HfApi(token=token)
    with _hub_errors(repo_id, "main", repo_type, token), tempfile.TemporaryDirectory(prefix="medrag-push-") as tmp:
        staged = Path(tmp) / folder.name
        shutil.copytree(folder, staged, copy_function=_link_or_copy)
        (staged / "README.md").unlink(missing_ok=True)  # a hard link: writing through it would edit the source
        (staged / "README.md").write_text(card, encoding="utf-8")
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        sha = api.upload_folder(folder_path=staged, repo_id=repo_id, repo_type=repo_type, commit_message=message).oid
    log.info("pushed %s to %s %s at commit %s", folder, _KIND[repo_type], repo_id, sha)
    return sha


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def _read_json(path: Path, todo: str) -> dict:
    if not path.is_file():
        raise HubError(f"no {path.name} in {path.parent}: {todo}")
    return json.loads(path.read_text(encoding="utf-8"))


def _require(found: ResolvedFolder, filename: str, todo: str) -> None:
    if not (found.path / filename).is_file():
        where = f"repo {found.repo}@{found.revision}" if found.repo else f"folder {found.path}"
        raise HubError(f"{where} has no {filename}: {todo}")


@contextlib.contextmanager
def _hub_errors(
    repo: str, revision: str, repo_type: str, token: str | None = None, cached: bool = False
) -> Iterator[None]:
    """Turn huggingface_hub's errors into a HubError that names the repo and what to do.

    `cached`: the call falls back to the HF cache (downloads), so "not in the cache" is worth saying.
    """
    try:
        yield
    except Exception as e:
        message = _explain(e, repo, revision, repo_type, cached)
        if message is None:
            raise
        raise HubError(_scrub(message, token)) from e


def _explain(e: Exception, repo: str, revision: str, repo_type: str, cached: bool) -> str | None:
    kind, url = _KIND[repo_type], f"{constants.ENDPOINT}/{_URL[repo_type]}{repo}"
    local = f", or set {_SETTING[repo_type]} to a local folder" if repo_type in _SETTING else ""
    if isinstance(e, hf.GatedRepoError):
        return f"{kind} repo '{repo}' is gated: accept its conditions at {url}, then set HF_TOKEN"
    if isinstance(e, hf.RepositoryNotFoundError):
        return (
            f"no {kind} repo '{repo}' on the Hub{' (nor a local folder by that name)' if local else ''}: check the name; "
            f"if it is private, set HF_TOKEN or run 'hf auth login'{local}"
        )
    if isinstance(e, hf.RevisionNotFoundError):
        return f"{kind} repo '{repo}' has no revision '{revision}': use a branch, tag or commit sha from {url}/commits"
    if isinstance(e, hf.HFValidationError):
        return f"'{repo}' is neither a local folder nor a Hub repo id: give an existing folder or 'namespace/name'"
    if isinstance(e, hf.HfHubHTTPError):
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403):
            return (
                f"the Hub refused the credentials for {kind} repo '{repo}': "
                "set a valid HF_TOKEN (with write access to push) or run 'hf auth login'"
            )
        return f"the Hub answered HTTP {status} for {kind} repo '{repo}'@{revision}: try again later"
    if isinstance(e, hf.IncompleteSnapshotError):
        return (
            f"the cached copy of {kind} repo '{repo}'@{revision} is incomplete and the Hub cannot be reached: "
            f"connect to the internet once to finish the download{local}"
        )
    if isinstance(e, hf.LocalEntryNotFoundError | hf.OfflineModeIsEnabled | httpx2.TransportError):
        why = "HF_HUB_OFFLINE=1 is set" if constants.is_offline_mode() else "the Hub cannot be reached"
        if not cached:
            return f"{why}: cannot reach {kind} repo '{repo}'@{revision}; try again when online"
        return (
            f"{why} for {kind} repo '{repo}'@{revision} and it is not in the local cache either: "
            f"connect to the internet once{local}"
        )
    return None


def _scrub(message: str, token: str | None) -> str:
    for secret in {token, os.environ.get("HF_TOKEN"), get_token()} - {None, ""}:
        message = message.replace(secret, "***")
    return message
