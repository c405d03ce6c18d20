"""OpenAIGenerator: streams from any OpenAI-compatible chat endpoint (TGI, vLLM, Inference Endpoints).

One POST to `{url}/v1/chat/completions` with `stream: true`; the server-sent `data:` lines are
parsed by hand with httpx (no openai package). Messages come from `medrag.prompts.build_messages`,
the same prompt the local model sees. The api key travels only as a bearer token: it is never
logged and is scrubbed from every error message.

Shortcut on purpose: no token counting here (the endpoint's tokenizer is unknown), so an input
over the server's limit comes back as its HTTP 4xx message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx

from medrag.errors import MedRAGError, ModelLoadError
from medrag.generator import Generator
from medrag.prompts import build_messages


class OpenAIGenerator(Generator):
    name = "openai"

    def __init__(
        self,
        url: str,
        model: str = "tgi",  # TGI serves one model and accepts any name
        api_key: str | None = None,
        timeout: float = 60.0,  # seconds to connect, and between streamed chunks
        max_new_tokens: int = 512,
        temperature: float = 0.2,
        top_p: float = 0.9,
    ):
        base = url.rstrip("/")
        self.url = base[: -len("/v1")] if base.endswith("/v1") else base  # accept both forms
        self.model, self.timeout = model, timeout
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self._api_key = api_key

    def __repr__(self) -> str:  # no api key in logs or tracebacks
        return f"OpenAIGenerator(url={self.safe_url!r}, model={self.model!r})"

    @property
    def safe_url(self) -> str:
        """The endpoint without any user:password part, for messages."""
        try:
            return str(httpx.URL(self.url).copy_with(username=None, password=None))
        except Exception:
            return "(the configured MEDRAG_OPENAI_URL)"

    def stream(
        self, question, sources, history=None, *, max_new_tokens=None, temperature=None, info=None
    ) -> Iterator[str]:
        temperature = self.temperature if temperature is None else temperature
        payload = {
            "model": self.model,
            "messages": build_messages(question, sources, history),
            "stream": True,
            "max_tokens": max_new_tokens or self.max_new_tokens,
            "temperature": temperature,
            "top_p": self.top_p,
        }
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        endpoint = f"{self.url}/v1/chat/completions"
        try:
            with httpx.Client(timeout=httpx.Timeout(self.timeout)) as client:
                with client.stream("POST", endpoint, json=payload, headers=headers) as response:
                    if response.status_code >= 400:
                        body = response.read().decode("utf-8", "replace")[:300]
                        raise MedRAGError(
                            f"The model endpoint {self.safe_url} answered HTTP {response.status_code}: {body}. "
                            "Check MEDRAG_OPENAI_URL, MEDRAG_OPENAI_MODEL and MEDRAG_OPENAI_API_KEY, and the server's log"
                        )
                    yield from _deltas(response.iter_lines(), self.safe_url)
        except MedRAGError as e:
            raise type(e)(self._scrub(str(e))) from None
        except httpx.TimeoutException as e:
            raise ModelLoadError(
                f"The model endpoint {self.safe_url} did not answer within {self.timeout:.0f} s ({type(e).__name__}): "
                "is it overloaded or still starting?"
            ) from None
        except httpx.HTTPError as e:
            raise ModelLoadError(
                f"Could not reach the model endpoint {self.safe_url}: {self._scrub(str(e)) or type(e).__name__}. "
                "Is the server running? Check MEDRAG_OPENAI_URL"
            ) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def versions(self) -> dict[str, str]:
        return {"generator": "openai", "model": self.model, "endpoint": self.safe_url}


def _deltas(lines: Iterator[str], url: str) -> Iterator[str]:
    """The `choices[0].delta.content` pieces of a server-sent event stream, until `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments (":"), "event:" and "id:" lines
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
            if event.get("error"):
                raise MedRAGError(f"The model endpoint {url} reported an error: {event['error']}")
            choices = event.get("choices") or []
            content = (choices[0].get("delta") or {}).get("content") if choices else None
        except (json.JSONDecodeError, AttributeError, TypeError) as e:
            raise MedRAGError(
                f"The model endpoint {url} sent a malformed stream ({e}): is it OpenAI-compatible?"
            ) from None
        if content:
            yield content
