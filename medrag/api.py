"""The `/ask` endpoint's inputs: each problem named, with what to send instead.

`check_ask(question, top_k, mode)` returns an `AskInput` or raises InputError; app.py turns that
into the error a client sees. gr.api hands the endpoint its values as they arrive (a number for the
question, "abc" for top_k), so the checks are all here. One gap is gradio's own: a raw HTTP call
with fewer values than the endpoint takes (`{"data": ["What is asthma?"]}`) is answered
`{"error": null}` before any function runs. `CompleteAskCalls`, an ASGI middleware, fills the
missing trailing values with null on the way in (null means the default, or "missing" for the
question), and answers a keyword call naming an argument /ask does not take with 422 and a message.

Shortcut on purpose: the middleware knows the endpoint's three argument names itself rather than
reading them from gradio's API info.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from medrag.errors import InputError

ARGUMENTS = ("question", "top_k", "mode")
MODES = ("hybrid", "dense", "bm25")
TOP_K_MAX = 10  # sources shown with an answer; more would not be read
EXAMPLE = '["What are the symptoms of asthma?", 5, "hybrid"]'
MAX_BODY_BYTES = 64 * 1024  # a question is at most a few KB of JSON; larger bodies are passed on untouched
_PATH = re.compile(r"/gradio_api/(?:call|run|api)(/v2)?/ask/?")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class AskInput:
    question: str
    top_k: int
    mode: str


def check_question(question) -> str:
    """`question` when it is usable text; InputError naming what is wrong with it otherwise."""
    if question is None:
        raise InputError(f"The question is missing: call /ask with [question, top_k, mode], for example {EXAMPLE}")
    if not isinstance(question, str):
        shown = json.dumps(question, default=str)[:60]
        raise InputError(f"The question must be text, not {type(question).__name__} ({shown}): send it as a string")
    if bad := _SURROGATE.search(question):
        raise InputError(
            f"The question holds a lone surrogate (U+{ord(bad.group()):04X} at character {bad.start()}), which is not "
            "a character: send the question as valid UTF-8 (in JSON, a \\ud83d escape needs its low half after it)"
        )
    return question


def check_ask(question, top_k=5, mode="hybrid") -> AskInput:
    """The checked arguments of /ask; None for top_k or mode means its default."""
    question = check_question(question)
    top_k = 5 if top_k is None else top_k
    number = top_k.strip() if isinstance(top_k, str) else top_k
    if isinstance(number, str) and re.fullmatch(r"[+-]?\d+", number):
        number = int(number)
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= TOP_K_MAX:
        raise InputError(
            f"top_k must be a whole number from 1 to {TOP_K_MAX} (the sources to answer from), not "
            f"{json.dumps(top_k, default=str)[:40]}: for example {EXAMPLE}"
        )
    mode = "hybrid" if mode is None else mode
    if not isinstance(mode, str) or mode.strip().lower() not in MODES:
        raise InputError(
            f"mode must be one of {', '.join(MODES)}, not {json.dumps(mode, default=str)[:40]}: for example {EXAMPLE}"
        )
    return AskInput(question, number, mode.strip().lower())


class CompleteAskCalls:
    """ASGI middleware: /ask calls over raw HTTP that leave arguments out get them as null (see the module)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        match = _PATH.fullmatch(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more and len(body) <= MAX_BODY_BYTES:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body, more = body + message.get("body", b""), message.get("more_body", False)
        if not more:  # read whole: complete it (a longer body goes on as it came)
            fixed = complete(body, keywords=bool(match.group(1)))
            if isinstance(fixed, str):
                return await _json(send, 422, {"error": fixed})
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(fixed)).encode())]}
            body = fixed
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": more}

        await self.app(scope, replay, send)


def complete(body: bytes, keywords: bool) -> bytes | str:
    """The request body with missing /ask arguments set to null, or a message for an argument /ask does not take."""
    try:
        call = json.loads(body)
    except (ValueError, RecursionError):
        return body  # gradio answers a body that is not JSON itself
    if not isinstance(call, dict):
        return body
    if keywords:  # /call/v2/ask: {"question": ..., "top_k": ...}
        unknown = sorted(set(call) - {*ARGUMENTS, "oauth_token"})
        if unknown:
            return f"/ask takes {', '.join(ARGUMENTS)}, not {', '.join(unknown)}: for example {EXAMPLE}"
        call = {name: call.get(name) for name in ARGUMENTS} | {k: v for k, v in call.items() if k not in ARGUMENTS}
    elif isinstance(call.get("data"), list) and len(call["data"]) < len(ARGUMENTS):
        call["data"] = call["data"] + [None] * (len(ARGUMENTS) - len(call["data"]))
    else:
        return body
    return json.dumps(call).encode()


async def _json(send, status: int, content: dict) -> None:
    data = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
