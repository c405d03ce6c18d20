"""medrag.api: the /ask argument checks and the middleware that completes short raw calls."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrag.api import AskInput, CompleteAskCalls, check_ask, complete
from medrag.errors import InputError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)  # what a JSON body can hold (plus the lone surrogates st.text() makes)


@given(JSON, JSON, JSON)
def test_any_json_arguments_give_checked_input_or_a_named_problem(question, top_k, mode):
    try:
        checked = check_ask(question, top_k, mode)
    except InputError as e:
        assert "for example" in str(e) or "send" in str(e)  # what went wrong, and what to send instead
    else:
        assert (
            isinstance(checked, AskInput) and 1 <= checked.top_k <= 10 and checked.mode in ("hybrid", "dense", "bm25")
        )


@pytest.mark.parametrize(
    "args, expected",
    [
        (("What is asthma?", None, None), AskInput("What is asthma?", 5, "hybrid")),
        (("What is asthma?", " 7 ", " BM25 "), AskInput("What is asthma?", 7, "bm25")),
        (("What is asthma?", 3.0, "dense"), AskInput("What is asthma?", 3, "dense")),
    ],
)
def test_defaults_and_forgiving_spellings(args, expected):
    assert check_ask(*args) == expected


@pytest.mark.parametrize("top_k", [True, 2.5, "2.5", 0, 11, "abc", [3], {"k": 3}])
def test_top_k_that_is_no_whole_number_from_1_to_10_is_named(top_k):
    with pytest.raises(InputError, match="top_k must be a whole number from 1 to 10"):
        check_ask("What is asthma?", top_k, "hybrid")


def test_complete_fills_missing_arguments_and_names_unknown_ones():
    assert json.loads(complete(b'{"data": ["q"]}', keywords=False)) == {"data": ["q", None, None]}
    assert complete(b'{"data": ["q", 5, "bm25"]}', keywords=False) == b'{"data": ["q", 5, "bm25"]}'
    assert complete(b"not json", keywords=False) == b"not json"
    assert json.loads(complete(b'{"top_k": 3}', keywords=True)) == {"question": None, "top_k": 3, "mode": None}
    assert complete(b'{"question": "q", "k": 3}', keywords=True) == (
        '/ask takes question, top_k, mode, not k: for example ["What are the symptoms of asthma?", 5, "hybrid"]'
    )
    assert complete(b"[" * 100_000 + b"]" * 100_000, keywords=False).startswith(b"[[[")  # left to gradio


def test_middleware_touches_only_ask_calls():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["path"], (await receive())["body"], dict(scope["headers"]).get(b"content-length")))

    async def call(path: str, body: bytes):
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])
        scope = {"type": "http", "method": "POST", "path": path, "headers": [(b"content-length", b"%d" % len(body))]}
        await CompleteAskCalls(app)(scope, lambda: asyncio.sleep(0, next(messages)), lambda m: asyncio.sleep(0))

    asyncio.run(call("/gradio_api/call/ask", b'{"data": []}'))
    asyncio.run(call("/gradio_api/call/chat", b'{"data": []}'))
    filled = b'{"data": [null, null, null]}'
    assert seen == [
        ("/gradio_api/call/ask", filled, str(len(filled)).encode()),
        ("/gradio_api/call/chat", b'{"data": []}', b"12"),
    ]
