"""A small Hugging Face Hub-compatible HTTP server on 127.0.0.1, so tests drive the real client.

`HubServer` answers the endpoints `huggingface_hub` 2.4 calls for create_repo, create_branch,
repo_info, list_repo_tree, upload_folder / create_commit, snapshot_download / hf_hub_download,
whoami and restart_space (and what transformers' from_pretrained asks through them); `use_hub` points the client at it (HF_ENDPOINT, a fresh HF_HOME, a fake token,
offline mode off) for the length of a test.

Shortcuts on purpose: repos live in memory as a list of commits, each a full {path: bytes} map,
with branches pointing at commit shas (no tags, no pull requests, no pagination); every file is a
regular git blob (preupload answers uploadMode "regular", so the client never takes the LFS or
Xet path); repo ids must be "namespace/name"; a private repo needs the token, any wrong token
gets a 401.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

USER = "tester"  # whose token the server takes: whoami's name, and the namespace of repos created without one
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}  # how the Hub spells repo URLs
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}  # URL segment -> repo type
_TYPE = "(?P<t>models|datasets|spaces)"
_REPO = "(?P<repo>[^/]+/[^/]+)"


def git_blob_sha(data: bytes) -> str:
    """The oid git (and the Hub) gives a regular file: sha1 of a 'blob <size>' header plus the bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    private: bool = False
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision, revision)
        return next((c for c in self.commits if c.sha == sha), None)

    def commit(self, branch: str, message: str, files: dict[str, bytes]) -> Commit:
        parent = self.branches.get(branch, "")
        listing = sorted((path, git_blob_sha(data)) for path, data in files.items())
        sha = hashlib.sha1(json.dumps([parent, message, len(self.commits), listing]).encode()).hexdigest()
        self.commits.append(Commit(sha, message, dict(files)))
        self.branches[branch] = sha
        return self.commits[-1]


class HubServer:
    """Start with `with HubServer(token=...) as hub:`; `hub.url` is the endpoint, `hub.repos` the state."""

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}  # (repo_type, repo_id) -> Repo
        self.requests: list[str] = []  # "METHOD /path" for each request, to see what the client called
        self.restarted: list[str] = []  # Space ids passed to restart_space
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving (idempotent): later requests get 'connection refused'."""
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    routes = [
        ("POST", r"/api/repos/create", "create"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", rf"/api/{_TYPE}/{_REPO}/branch/(?P<branch>[^/]+)", "branch"),
        ("POST", rf"/api/spaces/{_REPO}/restart", "restart"),
        ("GET", rf"/api/{_TYPE}/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "info"),
        ("GET", rf"/api/{_TYPE}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
        ("POST", rf"/api/{_TYPE}/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", rf"/api/{_TYPE}/{_REPO}/commit/(?P<rev>[^/]+)", "commit"),
        ("GET", rf"/(?:(?P<t>datasets|spaces)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ]

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._dispatch(self.command)

    do_HEAD = do_POST = do_GET

    def _dispatch(self, method: str) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        hub.requests.append(f"{method} {url.path}")
        self.hub, self.query = hub, parse_qs(url.query)
        auth = self.headers.get("authorization")
        self.authed = hub.token is not None and auth == f"Bearer {hub.token}"
        if auth is not None and not self.authed:
            return self._error(401, None, "Invalid credentials in Authorization header")
        for verb, pattern, name in self.routes:
            match = re.fullmatch(pattern, url.path)
            if match and (verb == method or (verb, method) == ("GET", "HEAD")):
                if (verb == "POST" or name == "whoami") and not self.authed and name != "validate_yaml":
                    return self._error(401, None, "You must be authenticated to do this")
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                return getattr(self, name)(**args)
        self._error(404, None, f"no route for {method} {url.path}")

    # --- helpers ------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes | dict | list, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
        extra = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **(headers or {})}
        self._send(status, {"error": message}, extra)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _lookup(self, t: str | None, repo: str, rev: str | None = None) -> tuple[Repo, Commit] | None:
        found = self.hub.repos.get((_TYPES[t or "models"], repo))
        if found is None or (found.private and not self.authed):
            return self._error(404, "RepoNotFound", f"Repository {repo} not found")
        commit = found.resolve(rev or "main")
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return found, commit

    # --- endpoints ----------------------------------------------------------------------------
    def create(self) -> None:
        payload = json.loads(self._body())
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        url = f"{self.hub.url}/{PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            return self._send(409, {"error": "You already created this repo", "url": url})
        repo = self.hub.repos[(repo_type, repo_id)] = Repo(private=payload.get("visibility") == "private")
        repo.commit("main", "initial commit", {})
        self._send(200, {"url": url, "name": repo_id})

    def validate_yaml(self) -> None:
        self._send(200, {"errors": [], "warnings": []})

    def whoami(self) -> None:
        self._send(200, {"type": "user", "name": USER, "auth": {"accessToken": {"role": "write"}}})

    def branch(self, t: str, repo: str, branch: str) -> None:
        body = self._body()
        start = (json.loads(body) if body else {}).get("startingPoint") or "main"
        if not (found := self._lookup(t, repo, start)):
            return
        if branch in found[0].branches:
            return self._error(409, None, f"Reference {branch} already exists")
        found[0].branches[branch] = found[1].sha
        self._send(200, {})

    def restart(self, repo: str) -> None:
        self.hub.restarted.append(repo)
        self._send(200, {"stage": "RUNNING_BUILDING", "hardware": {"current": None, "requested": None}})

    def info(self, t: str, repo: str, rev: str | None = None) -> None:
        if found := self._lookup(t, repo, rev):
            r, commit = found
            siblings = [{"rfilename": path} for path in sorted(commit.files)]
            self._send(200, {"id": repo, "sha": commit.sha, "private": r.private, "siblings": siblings})

    def tree(self, t: str, repo: str, rev: str, path: str = "") -> None:
        if not (found := self._lookup(t, repo, rev)):
            return
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        entries: dict[str, dict] = {}
        for name, data in sorted(found[1].files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folder = prefix + "/".join(parts[:depth])
                entries[folder] = {"type": "directory", "path": folder, "oid": git_blob_sha(folder.encode())}
            if recursive or len(parts) == 1:
                entries[name] = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha(data)}
        if prefix and not entries:
            return self._error(404, "EntryNotFound", f"{path} does not exist at {rev}")
        self._send(200, list(entries.values()))

    def preupload(self, t: str, repo: str, rev: str) -> None:
        if found := self._lookup(t, repo, rev):
            remote, paths = found[1].files, [f["path"] for f in json.loads(self._body())["files"]]
            oids = {p: git_blob_sha(remote[p]) if p in remote else None for p in paths}  # unchanged files are skipped
            files = [{"path": p, "uploadMode": "regular", "shouldIgnore": False, "oid": oids[p]} for p in paths]
            self._send(200, {"files": files})

    def commit(self, t: str, repo: str, rev: str) -> None:
        if not (found := self._lookup(t, repo, rev)):
            return
        if rev not in found[0].branches:
            return self._error(400, None, f"{rev} is not a branch: commit to a branch")
        files, message = dict(found[1].files), "commit"
        for line in self._body().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                return self._error(400, None, f"{key} operations are not supported by the test server")
        new = found[0].commit(rev, message, files)
        url = f"{self.hub.url}/{PREFIX[_TYPES[t]]}{repo}/commit/{new.sha}"
        self._send(200, {"commitUrl": url, "commitOid": new.sha, "pullRequestUrl": None})

    def resolve(self, repo: str, rev: str, path: str, t: str | None = None) -> None:
        if not (found := self._lookup(t, repo, rev)):
            return
        commit = found[1]
        if path not in commit.files:
            return self._error(404, "EntryNotFound", f"{path} not found", {"X-Repo-Commit": commit.sha})
        data = commit.files[path]
        self._send(200, data, {"X-Repo-Commit": commit.sha, "ETag": f'"{git_blob_sha(data)}"'})


def use_hub(monkeypatch, server: HubServer, hf_home, token: str | None = None) -> None:
    """Point huggingface_hub at `server` with a fresh cache under `hf_home`, online, for one test.

    huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE into `constants` at import
    time, so the constants are patched as well as the environment; HF_TOKEN is read per call.
    """
    from huggingface_hub import constants

    hf_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the module, not the class

    cache = str(hf_home / "hub")
    for name, value in {"HF_ENDPOINT": server.url, "HF_HOME": str(hf_home), "HF_HUB_CACHE": cache}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    if token is not None:
        monkeypatch.setenv("HF_TOKEN", token)
    patches = {
        "ENDPOINT": server.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": server.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": cache,
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
    }
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setattr(hf_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", True)


def go_offline(monkeypatch) -> None:
    """HF_HUB_OFFLINE=1 again, as conftest has it: downloads must come from the cache."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
