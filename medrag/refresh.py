"""Refresh on push: when the adapter's or the index's Hub repo gets a new commit, swap it in, live.

`Refresher(pipeline, config).check("adapter" | "index")` asks the Hub which commit the configured
revision points at now (`medrag.hub.latest_commit`). When it differs from the one in use (read from
`pipeline.versions()`, "repo@<sha>"), it downloads exactly that commit and swaps it in: an adapter
through the generator's `load_adapter(repo, sha, folder=...)` (loaded beside the old one, switched
only on success; streams already running finish on the old one, the generator's gate sees to it), an
index by loading the new `VectorIndex` fully (manifest checked) and then `pipeline.swap(index=...)`
(answers in flight keep the retriever they pinned). A failure keeps the old one and is kept in
`last_error` with its time. Checks run one at a time (a lock); a check that finds the commit in use
does nothing. Two triggers: a poll thread (`start_polling`, every `config.poll_interval` s) and the
Hub webhook, a route `serve` adds to the Gradio app at `WEBHOOK_PATH`.

Why `/gradio_api/webhooks/medrag`: Spaces serve Gradio with server-side rendering, where a Node
server takes the public port and forwards to Python only its own list of path prefixes
(`/gradio_api`, `/config`, ...: gradio's templates/node/build/proxy_routes.js); any other POST,
such as huggingface_hub's `WebhooksServer` path `/webhooks/<name>`, gets 405 from Node. A route
under `/gradio_api` reaches Python with SSR on or off, so SSR (faster first paint) stays on.
The route goes in through `launch(app_kwargs={"routes": [...]})`, so it exists before the server
answers its first request.

The webhook secret: the endpoint checks `X-Webhook-Secret` (`medrag.hub.verify_webhook_secret`,
hmac.compare_digest) before reading the body: 401 and nothing done. A body over 1 MB gets 413, one
that is not JSON or is nested too deep to parse gets 400; nothing is done for either. Without a
secret the route is not added at all.

Shortcuts on purpose: a commit that failed to load is not tried again until the next push (a Hub
error that may be passing, such as a timeout, is retried at the next check); only the latest error is
kept. ZeroGPU: `@spaces.GPU` calls run in worker processes forked from the main one, which keep a
copy of the model; each call names the adapter in use here and a worker that holds an older one
loads it first (medrag.gpu), so an adapter swap reaches every answer after it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from medrag.config import PipelineConfig
from medrag.errors import HubError, MedRAGError, ModelLoadError
from medrag.hub import download_adapter, latest_commit, verify_webhook_secret

log = logging.getLogger(__name__)

KINDS = {"adapter": ("model", "adapter", "adapter_revision"), "index": ("dataset", "index_repo", "index_revision")}
WEBHOOK_PATH = "/gradio_api/webhooks/medrag"  # under /gradio_api: SSR's Node front server forwards it (see above)
MAX_WEBHOOK_BYTES = 1 << 20  # a Hub webhook payload is a few KB
_SHA = re.compile(r"[0-9a-f]{40}")


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class RefreshResult:
    kind: str  # "adapter" | "index"
    status: str  # "off" (no Hub repo configured), "unchanged", "updated", "failed"
    repo: str | None = None
    loaded: str | None = None  # the commit in use after the check
    latest: str | None = None  # the commit the revision points at on the Hub (None: the Hub could not be asked)
    error: str | None = None
    at: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class RefreshError:
    kind: str
    message: str
    at: datetime = field(default_factory=_now)

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} UTC, {self.kind}: {self.message}"


class Refresher:
    def __init__(self, pipeline, config: PipelineConfig | None = None):
        self.pipeline, self.config = pipeline, config or pipeline.config
        self.last_error: RefreshError | None = None  # the latest failure; cleared by a good check of that kind
        self.last_results: dict[str, RefreshResult] = {}
        self.webhook_path: str | None = None  # set by serve() when the webhook is on
        self.poll_interval: float = 0  # seconds, while the poll thread runs
        self._lock = threading.RLock()  # one check at a time
        self._queued: set[str] = set()  # kinds with a background check waiting for the lock
        self._pending = threading.Lock()  # guards _queued
        self._failed: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}  # commits that did not load: error
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._threads: list[threading.Thread] = []  # background checks started by the webhook

    def target(self, kind: str) -> tuple[str, str] | None:
        """(repo, revision) watched for `kind`, or None when it is not set or is a local folder."""
        _, repo_field, revision_field = KINDS[kind]
        repo = getattr(self.config, repo_field)
        if not repo or Path(repo).expanduser().is_dir():
            return None
        return repo, getattr(self.config, revision_field)

    def loaded_commit(self, kind: str) -> str | None:
        """The commit of `kind` in use now, from what the pipeline reports ("repo@<sha>")."""
        target = self.target(kind)
        repo, _, commit = self.pipeline.versions().get(kind, "").rpartition("@")
        return commit if target and repo == target[0] else None

    # --- checking -----------------------------------------------------------------------------
    def check(self, kind: str) -> RefreshResult:
        """Swap in the latest commit of `kind` if it is not the one in use; never raises for Hub or load errors."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        target = self.target(kind)
        if target is None:
            return RefreshResult(kind, "off")
        with self._lock:
            result = self._check(kind, *target)
            self.last_results[kind] = result
            if result.status == "failed" and (self.last_error is None or self.last_error.message != result.error):
                self.last_error = RefreshError(kind, result.error or "?", result.at)
            elif result.status in ("unchanged", "updated") and self.last_error and self.last_error.kind == kind:
                self.last_error = None
        return result

    def _check(self, kind: str, repo: str, revision: str) -> RefreshResult:
        loaded = self.loaded_commit(kind)
        try:
            latest = latest_commit(repo, KINDS[kind][0], revision)
        except HubError as e:
            log.warning("could not check %s %s@%s: %s", kind, repo, revision, e)
            return RefreshResult(kind, "failed", repo, loaded, None, f"could not ask the Hub: {e}")
        if latest == loaded:
            return RefreshResult(kind, "unchanged", repo, loaded, latest)
        if latest in self._failed[kind]:  # already tried: wait for the next push
            return RefreshResult(kind, "failed", repo, loaded, latest, self._failed[kind][latest])
        log.info("%s %s@%s is at commit %s (in use: %s): loading it", kind, repo, revision, latest, loaded)
        try:
            if kind == "adapter":
                self._swap_adapter(repo, latest)
            else:
                self._swap_index(repo, latest)
        except HubError as e:  # the Hub or the network: worth another try at the next check
            error = str(e)
        except MedRAGError as e:  # this commit cannot be loaded: not tried again
            error = self._failed[kind][latest] = str(e)
        except Exception as e:
            log.exception("loading %s %s@%s failed", kind, repo, latest)
            error = self._failed[kind][latest] = f"{type(e).__name__}: {e}"
        else:
            log.info("%s %s@%s is now in use", kind, repo, latest)
            return RefreshResult(kind, "updated", repo, latest, latest)
        log.error("%s %s@%s could not be swapped in, keeping %s: %s", kind, repo, latest, loaded, error)
        return RefreshResult(kind, "failed", repo, loaded, latest, error)

    def _swap_adapter(self, repo: str, commit: str) -> None:
        generator = self.pipeline.generator
        if not hasattr(generator, "load_adapter"):
            raise ModelLoadError(f"the {generator.name} generator takes no adapter: set MEDRAG_GENERATOR=hf")
        found = download_adapter(repo, commit)
        generator.load_adapter(repo, commit, folder=found.path)

    def _swap_index(self, repo: str, commit: str) -> None:
        from medrag.pipeline import load_hub_index

        index, source = load_hub_index(repo, commit, self.config)
        self.pipeline.swap(index=index, index_source=source)
        self.pipeline.retriever  # noqa: B018  build the new retriever now, not on the next question

    def check_in_background(self, kind: str) -> threading.Thread | None:
        """check(kind) on a thread; None when one is already waiting its turn (it will see this push too)."""
        with self._pending:
            if kind in self._queued:
                return None
            self._queued.add(kind)

        def run() -> None:
            with self._lock:
                with self._pending:
                    self._queued.discard(kind)
                self.check(kind)

        thread = threading.Thread(target=run, name=f"medrag-refresh-{kind}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def wait(self, timeout: float | None = None) -> None:
        """Until the background checks started so far end (tests use this)."""
        for thread in list(self._threads):
            thread.join(timeout)

    # --- the poll fallback ----------------------------------------------------------------------
    def start_polling(self, interval: float | None = None) -> threading.Thread | None:
        """Check both kinds every `interval` s (default `config.poll_interval`; 0: off) on a daemon thread."""
        interval = self.config.poll_interval if interval is None else interval
        if interval <= 0 or not any(self.target(kind) for kind in KINDS):
            return None
        if self._poller is None or not self._poller.is_alive():
            self._stop.clear()
            self.poll_interval = interval
            self._poller = threading.Thread(target=self._poll, args=(interval,), name="medrag-poll", daemon=True)
            self._poller.start()
            log.info("checking the Hub for new commits every %s s", interval)
        return self._poller

    def stop(self, timeout: float | None = None) -> None:
        """Stop the poll thread (a check under way ends first, within `timeout` s)."""
        self._stop.set()
        self.poll_interval = 0
        if self._poller is not None:
            self._poller.join(timeout)

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            for kind in KINDS:
                try:
                    self.check(kind)
                except Exception:  # the poll thread must outlive any surprise
                    log.exception("the %s check failed", kind)

    # --- the webhook ----------------------------------------------------------------------------
    def route(self, payload) -> tuple[str | None, str]:
        """The kind a Hub webhook payload (`WebhookPayload`) asks to refresh, or None and why it is ignored."""
        event, repo = payload.event, payload.repo
        if (event.scope, event.action) != ("repo.content", "update"):
            return None, f"event {event.scope}/{event.action} is not a push"
        for kind, (repo_type, *_) in KINDS.items():
            target = self.target(kind)
            if not target or repo.type != repo_type or repo.name.lower() != target[0].lower():
                continue
            refs = {r.ref for r in payload.updatedRefs or []}
            if _SHA.fullmatch(target[1]):
                return None, f"{kind} is pinned to commit {target[1]}"
            if refs and not refs & {f"refs/heads/{target[1]}", f"refs/tags/{target[1]}"}:
                return None, f"the push to {repo.name} updated {', '.join(sorted(refs))}, not {target[1]}"
            return kind, ""
        return None, f"{repo.type} repo {repo.name} is not one this app serves"

    def handle_webhook(self, body) -> tuple[int, dict]:
        """(HTTP status, JSON body) for a webhook call whose secret was already checked."""
        from huggingface_hub import WebhookPayload
        from pydantic import ValidationError

        try:
            payload = WebhookPayload.model_validate(body)
        except (ValidationError, RecursionError):
            return 400, {"error": "not a Hub webhook payload: see https://huggingface.co/docs/hub/webhooks"}
        kind, reason = self.route(payload)
        if kind is None:
            log.info("webhook ignored: %s", reason)
            return 200, {"status": "ignored", "reason": reason}
        repo, revision = self.target(kind)
        self.check_in_background(kind)
        message = f"checking {repo}@{revision} in the background; a new commit is swapped in once it loads"
        return 202, {"status": "accepted", "refresh": kind, "repo": repo, "revision": revision, "message": message}


def webhook_endpoint(refresher: Refresher, secret: str):
    """The route's handler: secret first (constant time, 401), then the size, the JSON and the payload."""

    async def medrag(request: Request):
        if not verify_webhook_secret(request.headers.get("x-webhook-secret"), secret):
            log.warning("refused a webhook call: missing or wrong X-Webhook-Secret")
            return JSONResponse({"error": "missing or wrong X-Webhook-Secret"}, status_code=401)
        too_big = JSONResponse({"error": f"the body is over {MAX_WEBHOOK_BYTES} bytes: not a Hub webhook"}, 413)
        if int(request.headers.get("content-length") or 0) > MAX_WEBHOOK_BYTES:
            return too_big
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > MAX_WEBHOOK_BYTES:
                return too_big
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python parses
            return JSONResponse({"error": "the body is not JSON a Hub webhook sends: nothing done"}, status_code=400)
        status, answer = refresher.handle_webhook(payload)
        return JSONResponse(answer, status_code=status)

    return medrag


def serve(demo, refresher: Refresher, **launch_kwargs) -> str | None:
    """Launch `demo` (already queued), with the refresh webhook route when `config.webhook_secret` is set.

    Returns the webhook's path, or None without a secret; blocks unless `prevent_thread_lock=True`.
    """
    secret = refresher.config.webhook_secret
    if not secret:
        log.warning(
            "MEDRAG_WEBHOOK_SECRET is not set: no refresh webhook is served (polling: %s)", _poll_note(refresher)
        )
        demo.launch(**launch_kwargs)
        return None
    app_kwargs = dict(launch_kwargs.pop("app_kwargs", None) or {})
    app_kwargs["routes"] = [
        *app_kwargs.get("routes", []),
        Route(WEBHOOK_PATH, webhook_endpoint(refresher, secret), methods=["POST"]),
    ]
    refresher.webhook_path = WEBHOOK_PATH
    log.info("refresh webhook on: POST %s with the header X-Webhook-Secret", WEBHOOK_PATH)
    demo.launch(app_kwargs=app_kwargs, **launch_kwargs)
    return WEBHOOK_PATH


def _poll_note(refresher: Refresher) -> str:
    return f"every {refresher.poll_interval:g} s" if refresher.poll_interval else "off (MEDRAG_POLL_INTERVAL=0)"
