"""OpenAIGenerator against a tiny SSE server on 127.0.0.1, and its error messages (never the key)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from medrag.errors import MedRAGError, ModelLoadError
from medrag.openai_generator import OpenAIGenerator
from medrag.prompts import build_messages
from medrag.types import Chunk

KEY = "sk-test-SECRET-4242"
SOURCES = [Chunk("d#0", "d", "Diabetes", "Diabetes means the blood sugar is too high.")]
HISTORY = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def sse(*events) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def chunk(text):
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


GOOD = sse(
    {"choices": [{"delta": {"role": "assistant"}}]},
    chunk("Diabetes "),
    chunk("is high blood "),
    chunk("sugar [1]."),
    "[DONE]",
)


@pytest.fixture
def server():
    """Serves `state["status"]` and `state["body"]`; records each request in `state["requests"]`."""
    state = {"status": 200, "body": GOOD, "requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append({"path": self.path, "headers": dict(self.headers), "json": body})
            self.send_response(state["status"])
            self.send_header("Content-Type", "text/event-stream" if state["status"] == 200 else "application/json")
            self.end_headers()
            for part in state["body"].split(b"\n\n"):  # several writes: a real stream
                self.wfile.write(part + b"\n\n")
                self.wfile.flush()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_streams_three_chunks(server):
    g = OpenAIGenerator(server["url"] + "/v1/", model="tgi", api_key=KEY)
    deltas = list(g.stream("What is diabetes?", SOURCES, HISTORY, max_new_tokens=64, temperature=0))
    assert deltas == ["Diabetes ", "is high blood ", "sugar [1]."]
    request = server["requests"][0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    sent = request["json"]
    assert sent["stream"] is True and sent["model"] == "tgi" and sent["max_tokens"] == 64 and sent["temperature"] == 0
    assert sent["messages"] == build_messages("What is diabetes?", SOURCES, HISTORY)
    assert g.versions() == {"generator": "openai", "model": "tgi", "endpoint": server["url"]}
    assert KEY not in repr(g)


def test_no_key_sends_no_authorization(server):
    assert OpenAIGenerator(server["url"]).generate("q", SOURCES) == "Diabetes is high blood sugar [1]."
    assert "Authorization" not in server["requests"][0]["headers"]


def test_http_500_is_a_clear_error_without_the_key(server):
    server["status"], server["body"] = 500, json.dumps({"error": f"bad token {KEY}"}).encode()
    with pytest.raises(MedRAGError) as info:
        OpenAIGenerator(server["url"], api_key=KEY).generate("q", SOURCES)
    message = str(info.value)
    assert "HTTP 500" in message and server["url"] in message and "MEDRAG_OPENAI_URL" in message
    assert KEY not in message and "***" in message


def test_malformed_stream_and_stream_errors(server):
    server["body"] = sse(chunk("ok "), "{not json")
    with pytest.raises(MedRAGError, match="malformed stream"):
        OpenAIGenerator(server["url"]).generate("q", SOURCES)
    server["body"] = sse(chunk("ok "), {"error": {"message": "model overloaded"}})
    with pytest.raises(MedRAGError, match="model overloaded"):
        OpenAIGenerator(server["url"]).generate("q", SOURCES)


def test_connection_refused():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://user:pw@127.0.0.1:{port}"
    with pytest.raises(ModelLoadError) as info:
        OpenAIGenerator(url, api_key=KEY, timeout=5).generate("q", SOURCES)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "Is the server running?" in message
    assert KEY not in message and "pw" not in message
