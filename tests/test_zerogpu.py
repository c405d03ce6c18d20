"""The GPU call under a ZeroGPU stand-in (tests/zerogpu.py): forked worker, pickled arguments, only yields back.

A real HFGenerator on a tiny Mistral with two tiny LoRA adapters (local folders). What must hold on
ZeroGPU: the answer's versions and warnings arrive (they cross the fork in what the GPU function
yields); after an adapter swap in the app's process, a worker forked before it answers with the new
adapter and says so; a fork made while a swap holds its locks waits for it instead of inheriting
them locked; a MedRAGError keeps its message; the requested duration follows max_new_tokens.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time

import pytest
from test_pipeline import CHUNKS, WordEmbedder
from test_refresh import FAKE, tiny_index
from tiny_models import build_all
from zerogpu import ZeroGPU

from medrag import gpu
from medrag.config import PipelineConfig
from medrag.errors import MedRAGError
from medrag.gpu import GPUGenerator, gpu_duration, gpu_stream
from medrag.hf_generator import HFGenerator
from medrag.pipeline import RAGPipeline
from medrag.request import Request

Q = "Does asthma cause wheezing?"
TRIMMED = "Only 1 of 2 sources fit in the model's context."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return {k: str(v) for k, v in build_all(tmp_path_factory.mktemp("tiny")).items()}


@pytest.fixture
def zero():
    stand_in = ZeroGPU()
    yield stand_in
    stand_in.close()


def hf(tiny, adapter="adapter0") -> HFGenerator:
    # context for one source only, so every answer carries a warning
    g = HFGenerator(tiny["base"], tiny[adapter], max_new_tokens=6, temperature=0.0, context_tokens=40)
    return g.load()


def label(tiny, adapter: str) -> str:
    return f"{tiny[adapter]}@main"


def test_versions_and_warnings_cross_the_fork_and_follow_a_swap(tiny, zero):
    g = hf(tiny)
    wrapped = GPUGenerator(g, zero.GPU(duration=gpu_duration)(gpu_stream))
    pipeline = RAGPipeline(PipelineConfig(**FAKE), embedder=WordEmbedder(), index=tiny_index(), generator=wrapped)

    first = pipeline.answer(Q, Request(max_new_tokens=6))
    assert first.kind == "answer" and first.versions["adapter"] == label(tiny, "adapter0")
    assert first.warnings == [TRIMMED]  # computed in the worker, reported through its yields

    g.load_adapter(tiny["adapter1"])  # the swap, in this process; the worker forked above holds adapter0
    info: dict = {}
    text = "".join(wrapped.stream(Q, CHUNKS[:2], max_new_tokens=6, info=info))
    assert info == {"versions": {"base_model": tiny["base"], "adapter": label(tiny, "adapter1")}, "warnings": [TRIMMED]}
    assert text == "".join(g.stream(Q, CHUNKS[:2], max_new_tokens=6))  # what adapter1 says, here in this process
    assert text != "".join(hf(tiny, "adapter0").stream(Q, CHUNKS[:2], max_new_tokens=6))  # and not adapter0
    assert pipeline.answer(Q, Request(max_new_tokens=6)).versions["adapter"] == label(tiny, "adapter1")
    assert zero.forks == 1  # one worker served every call, as ZeroGPU keeps it
    assert zero.durations == [math.ceil(gpu.GPU_SETUP_S + 6 / gpu.GPU_TOKENS_PER_S)] * 3


def test_a_fork_during_a_swap_waits_for_it(tiny, zero):
    g = hf(tiny)
    on_gpu = zero.GPU(duration=gpu_duration)(gpu_stream)
    key = id(GPUGenerator(g, on_gpu).inner)
    attach, inside, release = g._attach, threading.Event(), threading.Event()

    def slow_attach(*args, **kwargs):  # the swap holds the gate, the load lock and the fork guard here
        inside.set()
        release.wait(30)
        return attach(*args, **kwargs)

    g._attach = slow_attach
    swap = threading.Thread(target=g.load_adapter, args=(tiny["adapter1"],))
    swap.start()
    assert inside.wait(30)
    out: dict = {}
    call = threading.Thread(target=lambda: out.update(items=list(on_gpu(key, None, Q, CHUNKS[:2], [], {}))))
    call.start()  # forks the worker now, mid-swap
    call.join(1.0)
    assert call.is_alive()  # the fork waits for the swap ...
    release.set()
    swap.join(30)
    call.join(60)
    assert not call.is_alive() and out["items"], "the worker hung on a lock it inherited"
    report = out["items"][-1]  # ... so the worker holds the new adapter, whole, and fresh locks
    assert isinstance(report, gpu.GPUReport) and report.versions["adapter"] == label(tiny, "adapter1")


class Failing:
    name = "hf"

    def stream(self, question, sources, history=None, info=None, **kw):
        yield "Partial"
        raise MedRAGError("The model produced no text for 300 s: try again")

    def versions(self):
        return {"base_model": "failing"}


def test_an_error_in_the_worker_keeps_its_message(zero):
    wrapped = GPUGenerator(Failing(), zero.GPU(duration=gpu_duration)(gpu_stream))
    with pytest.raises(MedRAGError, match="no text for 300 s: try again"):
        list(wrapped.stream(Q, CHUNKS[:1]))


@pytest.mark.parametrize("tokens, seconds", [(32, 12), (512, 60), (1024, 111), (4096, gpu.GPU_MAX_S), (None, 60)])
def test_duration_follows_max_new_tokens(tokens, seconds):
    options = {"max_new_tokens": tokens} if tokens else {}
    assert gpu_duration(0, None, Q, [], [], options) == seconds


def test_a_t4_gets_fp16_not_emulated_bf16(monkeypatch):
    """A T4 (the README's suggested_hardware) answers True to is_bf16_supported() through slow emulation."""
    import torch

    from medrag.hf_generator import _gpu_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert _gpu_dtype() is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A10G, an L4
    assert _gpu_dtype() is torch.bfloat16


class Counting:
    """A model stand-in that streams `max_new_tokens` words and counts them in memory the worker shares."""

    name = "hf"

    def __init__(self):
        self.made = multiprocessing.get_context("fork").Value("i", 0)

    def stream(self, question, sources, history=None, info=None, max_new_tokens=40, **kw):
        for i in range(max_new_tokens):
            time.sleep(0.005)  # paced like a model, so that a stopped worker visibly stops short
            with self.made.get_lock():
                self.made.value += 1
            yield f"w{i} "

    def versions(self):
        return {"base_model": "counting"}


def test_stop_closes_the_gpu_call_and_frees_the_worker(zero):
    """A visitor's Stop closes the pipeline's stream: the worker stops producing, and serves the next call."""
    model = Counting()
    wrapped = GPUGenerator(model, zero.GPU(duration=gpu_duration)(gpu_stream))
    pipeline = RAGPipeline(PipelineConfig(**FAKE), embedder=WordEmbedder(), index=tiny_index(), generator=wrapped)
    answers = pipeline.stream(Q, Request(max_new_tokens=1000))
    first = next(answers)
    while len(first.text.split()) < 3:
        first = next(answers)
    answers.close()  # what gradio does to the chat event's generator when Stop cancels it
    made = model.made.value
    assert made < 500, f"the worker made {made} of 1000 tokens after Stop"
    assert "".join(wrapped.stream(Q, CHUNKS[:1], max_new_tokens=2)) == "w0 w1 "  # the worker is free, and clean
    assert zero.forks == 1
