"""HFGenerator end to end on CPU with a tiny Mistral: loading, prompt, streaming, trimming, adapter swaps."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from tiny_models import build_all

from medrag.errors import MedRAGError, ModelLoadError
from medrag.hf_generator import HFGenerator
from medrag.prompts import build_prompt
from medrag.types import Chunk

Q = "What is diabetes?"
SOURCES = [
    Chunk("d#0", "d", "Diabetes", "Diabetes is a condition in which the level of sugar in the blood is too high."),
    Chunk("a#0", "a", "Asthma", "Asthma is a common lung condition that causes breathing difficulties."),
]
HISTORY = [
    {"role": "user", "content": "What causes asthma attacks?"},
    {"role": "assistant", "content": "Triggers include dust, smoke and cold air [1]."},
    {"role": "user", "content": "And how is influenza spread?"},
    {"role": "assistant", "content": "It spreads through coughs and sneezes [2]."},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return {k: str(v) for k, v in build_all(tmp_path_factory.mktemp("tiny")).items()}


def make(tiny, adapter=None, **kw) -> HFGenerator:
    kw = {"max_new_tokens": 12, "temperature": 0.0, "stream_timeout": 30.0, **kw}
    return HFGenerator(tiny["base"], tiny.get(adapter) if adapter else None, **kw)


def reference(tiny, adapter=None, **kw) -> str:
    """What plain transformers (+ peft) generate greedily from the same prompt."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny["base"])
    model = AutoModelForCausalLM.from_pretrained(tiny["base"], **kw)
    if adapter:
        model = PeftModel.from_pretrained(model, tiny[adapter])
    ids = tok(build_prompt(tok, Q, SOURCES, None, 2048), add_special_tokens=False, return_tensors="pt").input_ids
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def block_forward(g: HFGenerator, at: int):
    """Make the model's forward pause at call `at` until `go` is set; `reached` says it is paused."""
    lm, calls, reached, go = g._lm, [0], threading.Event(), threading.Event()
    original = lm.forward

    def forward(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            reached.set()
            assert go.wait(30)
        return original(*args, **kwargs)

    lm.forward = forward  # an instance attribute shadows the method nn.Module calls
    return calls, reached, go


def collect(it, out: list):
    t = threading.Thread(target=lambda: out.append("".join(it)))
    t.start()
    return t


def test_construction_is_lazy(tiny):
    g = make(tiny, "adapter0")
    assert g._model is None and g._tokenizer is None
    assert g.versions() == {"base_model": tiny["base"], "adapter": f"{tiny['adapter0']}@main"}
    assert g._model is None
    g.load()
    assert g._model is not None


def test_base_model_streams_deltas_that_match_plain_transformers(tiny):
    g = make(tiny)
    info = {}
    deltas = list(g.stream(Q, SOURCES, info=info))
    assert len(deltas) >= 3 and all(deltas)
    text = "".join(deltas)
    assert text == reference(tiny)
    assert info == {"versions": {"base_model": tiny["base"]}, "warnings": []}  # this call's own values


def test_prompt_is_build_prompt_output(tiny):
    g = make(tiny).load()
    seen = []
    original = g._lm.generate
    g._lm.generate = lambda **kw: seen.append(kw["input_ids"][0].tolist()) or original(**kw)
    info = {}
    list(g.stream(Q, SOURCES, HISTORY, info=info))
    prompt = build_prompt(g._tokenizer, Q, SOURCES, HISTORY, g.context_tokens)
    assert seen == [g._tokenizer(prompt, add_special_tokens=False).input_ids]
    assert g._tokenizer.decode(seen[0]) == prompt  # exactly one <s>, written by the chat template
    assert info["warnings"] == []


def test_adapter_loads_through_the_same_path_and_changes_the_output(tiny):
    g = make(tiny, "adapter0")
    text = g.generate(Q, SOURCES)
    assert text == reference(tiny, "adapter0") != reference(tiny)
    assert g.versions()["adapter"] == f"{tiny['adapter0']}@main"


def test_4bit_nf4_with_adapter(tiny):
    import bitsandbytes as bnb
    from peft.tuners.lora import LoraLayer

    g = make(tiny, "adapter0", load_in_4bit=True)
    text = g.generate(Q, SOURCES)
    quantised = [m for m in g._lm.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised and all(m.weight.quant_type == "nf4" for m in quantised)
    assert any(isinstance(m, LoraLayer) for m in g._lm.modules())
    assert text.strip()  # the 4-bit model with its adapter says something
    assert text != make(tiny, load_in_4bit=True).generate(Q, SOURCES)  # the adapter acts on the 4-bit model
    assert g.versions()["quantization"] == "nf4"


def test_sampling_and_per_call_overrides(tiny):
    g = make(tiny, temperature=0.8)
    assert isinstance(g.generate(Q, SOURCES, max_new_tokens=3), str)
    assert g.generate(Q, SOURCES, temperature=0) == reference(tiny)


def test_trimming_drops_history_then_keeps_the_last_tokens(tiny):
    g = make(tiny).load()
    tok = g._tokenizer
    full = tok(build_prompt(tok, Q, SOURCES, HISTORY, 2048), add_special_tokens=False).input_ids
    bare = tok(build_prompt(tok, Q, SOURCES, None, 2048), add_special_tokens=False).input_ids

    g.max_input_tokens = len(bare)  # fits once both earlier turns are gone
    ids, warnings = g.encode(Q, SOURCES, HISTORY)
    assert ids == bare and len(warnings) == 1 and "2 earlier turn(s)" in warnings[0]

    g.max_input_tokens = len(bare) - 10  # still too long without history: keep the end
    g.context_tokens = 1000
    ids, warnings = g.encode(Q, SOURCES, HISTORY)
    assert ids == bare[-g.max_input_tokens :]
    assert "only its last" in warnings[-1] and len(full) > len(bare)

    g.max_input_tokens, g.context_tokens = 2000, 30  # room for the first source only
    ids, warnings = g.encode(Q, SOURCES)
    assert warnings == ["Only 1 of 2 sources fit in the model's context."]
    assert ids == tok(build_prompt(tok, Q, SOURCES[:1]), add_special_tokens=False).input_ids

    g.max_input_tokens, g.context_tokens = len(bare) - 10, 1000
    info = {}
    list(g.stream(Q, SOURCES, info=info))
    assert any("only its last" in w for w in info["warnings"])


def test_error_in_generation_thread_reaches_the_consumer(tiny):
    g = make(tiny).load()

    def broken(*args, **kwargs):
        raise RuntimeError("boom in forward")

    g._lm.forward = broken
    start = time.monotonic()
    with pytest.raises(MedRAGError, match="boom in forward"):
        g.generate(Q, SOURCES)
    assert time.monotonic() - start < 10  # re-raised at once, not after the streamer's timeout
    assert g._gate._streams == 0


def test_closing_the_stream_stops_generation(tiny):
    g = make(tiny, max_new_tokens=100).load()
    calls, reached, go = block_forward(g, at=8)
    it = g.stream(Q, SOURCES)
    assert next(it)
    assert reached.wait(30)  # generation runs ahead of the consumer
    go.set()
    it.close()  # the consumer leaves (a closed chat tab); close() waits for the generation thread
    assert calls[0] < 100 and g._gate._streams == 0


def test_swap_adapter_changes_versions_and_output(tiny):
    g = make(tiny, "adapter0")
    before = g.generate(Q, SOURCES)
    assert g.load_adapter(tiny["adapter1"], "v2") == f"{tiny['adapter1']}@v2" == g.versions()["adapter"]
    assert list(g._model.peft_config) == [g.active_adapter]  # the old one was freed
    after = g.generate(Q, SOURCES)
    assert after == reference(tiny, "adapter1") != before


def test_swap_onto_a_base_model_without_adapter_from_a_downloaded_folder(tiny):
    g = make(tiny)
    assert g.generate(Q, SOURCES) == reference(tiny)
    g.load_adapter("me/medrag-lora", "0123abc", folder=tiny["adapter0"])  # as medrag.hub would call it
    assert g.generate(Q, SOURCES) == reference(tiny, "adapter0")
    assert g.versions()["adapter"] == "me/medrag-lora@0123abc"


def _broken_adapters(tiny, root):
    """Adapter folders that must be refused: unreadable config, no weights, wrong shapes, wrong module names."""
    from safetensors.torch import load_file, save_file

    weights = load_file(f"{tiny['adapter0']}/adapter_model.safetensors")
    config = open(f"{tiny['adapter0']}/adapter_config.json").read()
    variants = {
        "garbage_config": weights,
        "no_weights": None,
        "wrong_shape": {k: v[:, :-1].contiguous() if "lora_A" in k else v for k, v in weights.items()},
        "wrong_names": {k.replace("q_proj", "x_proj"): v for k, v in weights.items()},
    }
    for case, tensors in variants.items():
        d = root / case
        d.mkdir()
        (d / "adapter_config.json").write_text("{not json" if case == "garbage_config" else config)
        if tensors is not None:
            save_file(tensors, str(d / "adapter_model.safetensors"))
        yield case, d


@pytest.mark.parametrize("start", ["adapter0", None])
def test_broken_adapter_leaves_the_old_one_active(tiny, tmp_path, start):
    g = make(tiny, start)
    before, versions = g.generate(Q, SOURCES), g.versions()
    for case, folder in [
        *_broken_adapters(tiny, tmp_path),
        ("missing", tmp_path / "nope"),
        ("hub", "no-such-user/no-such-adapter"),
    ]:
        with pytest.raises(ModelLoadError, match="adapter"):
            g.load_adapter(str(folder), "main")
        assert g.versions() == versions, case
        assert g.generate(Q, SOURCES) == before, case
        if start:
            assert list(g._model.peft_config) == [g.active_adapter], case


def test_a_stream_started_before_a_swap_finishes_on_the_old_adapter(tiny):
    g = make(tiny, "adapter0")
    old, new = g.generate(Q, SOURCES), reference(tiny, "adapter1")
    assert old != new
    calls, reached, go = block_forward(g, at=4)  # prefill plus a few tokens: started, with more to do
    first: list[str] = []
    info1, info2 = {}, {}
    t1 = collect(g.stream(Q, SOURCES, info=info1), first)
    assert reached.wait(30)  # the first stream is mid-generation, on adapter0

    swap = threading.Thread(target=g.load_adapter, args=(tiny["adapter1"], "v2"))
    swap.start()
    deadline = time.monotonic() + 30
    while not g._gate.waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    assert g._gate.waiting and swap.is_alive()  # the swap waits for the running stream
    assert g.versions()["adapter"] == f"{tiny['adapter0']}@main"

    second: list[str] = []
    t2 = collect(g.stream(Q, SOURCES, info=info2), second)  # starts while the swap waits: queues behind it
    go.set()
    for t in (t1, swap, t2):
        t.join(30)
        assert not t.is_alive()
    assert first == [old]
    assert second == [new]
    assert g.versions()["adapter"] == f"{tiny['adapter1']}@v2"
    assert (info1["versions"]["adapter"], info2["versions"]["adapter"]) == (  # each stream's own adapter
        f"{tiny['adapter0']}@main",
        f"{tiny['adapter1']}@v2",
    )
