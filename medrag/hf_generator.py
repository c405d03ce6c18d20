"""HFGenerator: a local causal LM (optionally NF4 4-bit) with a swappable LoRA adapter, streamed.

The prompt is `medrag.prompts.build_prompt` (the chat template the adapter was trained on).
Generation runs `model.generate` on a thread feeding a `TextIteratorStreamer`; an exception in
that thread reaches the consumer, and a consumer that stops early stops the generation.

Adapter swaps (`load_adapter`, for "refresh on push") load the new adapter beside the old one and
only then switch. A stream runs on the adapter that was active when it started: streams share a
gate that a swap takes alone, so a swap waits until running streams end, and streams that start
while a swap waits queue behind it. Shortcut on purpose: peft's `generate(adapter_names=[...])`
would allow true overlap, but its forward hooks are module-global, so two overlapping generations
with different adapters both run on the later one's (checked with peft 0.21.2); a swap is rare and
takes seconds, so waiting is the simpler correct choice. Downloads happen before the gate is taken.
A Hub adapter is fetched through medrag.hub, so versions() names the commit it resolved to
("user/repo@<sha>"). With `strict_adapter=False` an adapter that cannot be loaded at start-up
leaves the base model answering alone, and `adapter_error` says why (the app shows it).

Forks (ZeroGPU runs each GPU call in a worker forked from the app's process, see medrag.gpu): a
fork waits while a swap or a load changes a model (`_NO_FORK`, taken by os.register_at_fork), so a
worker never holds half an adapter; in the worker every lock and the gate start afresh, since the
threads that held them in the parent do not exist there. `adapter_ref()` names the active adapter
and its folder; `use_adapter(label, folder)` makes a worker's copy catch up after a swap.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from medrag.config import PipelineConfig
from medrag.errors import ConfigError, MedRAGError, ModelLoadError, missing_dependency
from medrag.generator import Generator
from medrag.prompts import build_prompt, fit_sources
from medrag.types import Chunk

log = logging.getLogger(__name__)

_NO_FORK = threading.Lock()  # held while a model changes: a fork in between would copy half a swap
_LIVE: weakref.WeakSet[HFGenerator] = weakref.WeakSet()  # whose locks a forked child renews


def _after_fork_in_child() -> None:
    global _NO_FORK
    _NO_FORK = threading.Lock()  # its holder was the forking thread's before-hook, which is gone here
    for generator in list(_LIVE):
        generator._renew_locks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _NO_FORK.acquire(),
        after_in_parent=lambda: _NO_FORK.release(),
        after_in_child=_after_fork_in_child,
    )


class HFGenerator(Generator):
    name = "hf"

    def __init__(
        self,
        base_model: str,
        adapter: str | None = None,
        adapter_revision: str = "main",
        load_in_4bit: bool = False,
        max_input_tokens: int = 3584,
        context_tokens: int = 2048,
        max_new_tokens: int = 512,
        temperature: float = 0.2,
        top_p: float = 0.9,
        device: str | None = None,
        stream_timeout: float = 300.0,  # seconds without a new token before the consumer gives up
        strict_adapter: bool = True,  # False: an adapter that fails in load() leaves the base model alone
    ):
        if not 0 < context_tokens < max_input_tokens:
            raise ConfigError(
                f"context_tokens={context_tokens} must be above 0 and below max_input_tokens={max_input_tokens}"
            )
        self.base_model, self.load_in_4bit, self.device = base_model, load_in_4bit, device
        self.max_input_tokens, self.context_tokens = max_input_tokens, context_tokens
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.stream_timeout, self.strict_adapter = stream_timeout, strict_adapter
        self.adapter, self.adapter_revision = adapter, adapter_revision  # what load() attaches
        self.adapter_error: str | None = None  # why the configured adapter is not in use (strict_adapter=False)
        self.active_adapter: str | None = None  # the peft adapter name now in use
        self._adapters: dict[str, str] = {}  # peft adapter name -> "repo@revision"
        self._folders: dict[str, str] = {}  # peft adapter name -> the folder its files were loaded from
        self._count = 0
        self._tokenizer = self._model = self._lm = None  # _lm: the transformers model, LoRA layers injected in place
        self._renew_locks()
        _LIVE.add(self)
        self.last_warnings: list[str] = []  # of the last stream started: the UI shows them
        self.last_versions: dict[str, str] = {}  # of the last stream started: the adapter it pinned

    def _renew_locks(self) -> None:
        self._load_lock = threading.Lock()
        self._gate = _SwapGate()

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> HFGenerator:
        return cls(
            cfg.base_model,
            cfg.adapter,
            cfg.adapter_revision,
            cfg.load_in_4bit,
            cfg.max_input_tokens,
            cfg.context_tokens,
            cfg.max_new_tokens,
            cfg.temperature,
            cfg.top_p,
        )

    # --- loading -------------------------------------------------------------------------------
    def load(self) -> HFGenerator:
        with self._load_lock, _NO_FORK:
            if self._model is None:
                self._tokenizer = self._load_tokenizer()
                model = self._lm = self._load_model()
                if self.adapter:
                    try:
                        folder, commit = _resolve_adapter(self.adapter, self.adapter_revision)
                        model = self._attach(model, folder, f"{self.adapter}@{commit}")
                    except ModelLoadError as e:
                        if self.strict_adapter:
                            raise
                        self.adapter_error = str(e)
                        log.error("%s; answering with the base model alone", e)
                self._model = model
        return self

    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        if _looks_local(self.base_model) and not Path(self.base_model).expanduser().is_dir():
            raise ModelLoadError(
                f"No model folder at {self.base_model}: set MEDRAG_BASE_MODEL to a model folder or a Hub id"
            )
        try:
            tok = AutoTokenizer.from_pretrained(self.base_model, trust_remote_code=False)
        except Exception as e:
            raise ModelLoadError(
                f"Could not load the tokenizer of {self.base_model}: {_reason(e)}. Set MEDRAG_BASE_MODEL to a local "
                "model folder or a Hub id you can reach (gated models need HF_TOKEN)"
            ) from e
        if not tok.chat_template:
            raise ModelLoadError(f"{self.base_model} has no chat template: use an instruct model")
        return tok

    def _load_model(self):
        import torch
        from transformers import AutoModelForCausalLM

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float32 if device == "cpu" else _gpu_dtype()  # CPU kernels are for fp32
        kwargs = {"dtype": dtype, "trust_remote_code": False}
        if device != "cpu":
            kwargs["device_map"] = {"": device}  # one device; on CPU no map, so peft adds no offload hooks
        if self.load_in_4bit:
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                raise missing_dependency("bitsandbytes", "4-bit loading (MEDRAG_LOAD_IN_4BIT=1)") from None
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",  # the QLoRA data type the adapter was trained against
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype,
            )
        try:
            model = AutoModelForCausalLM.from_pretrained(self.base_model, **kwargs)
        except Exception as e:
            raise ModelLoadError(
                f"Could not load the model {self.base_model}: {_reason(e)}. Check MEDRAG_BASE_MODEL, the free GPU memory "
                "(MEDRAG_LOAD_IN_4BIT=1 needs about a quarter), or use MEDRAG_GENERATOR=extractive"
            ) from e
        return model.eval()

    def _attach(self, model, folder: Path, label: str):
        """Load the adapter in `folder` beside any current one, switch to it, and return the (peft) model.

        On failure nothing changes: a half-loaded adapter is removed and the old one stays active.
        """
        from peft import PeftConfig, PeftModel, PeftModelForCausalLM

        self._count += 1
        name = f"adapter{self._count}"  # peft names become module keys: no dots or slashes
        wrapped = isinstance(model, PeftModel)
        peft_model = model
        try:
            if not wrapped:
                config = PeftConfig.from_pretrained(str(folder))
                config.inference_mode = True
                peft_model = PeftModelForCausalLM(model, config, adapter_name=name)
            result = peft_model.load_adapter(str(folder), adapter_name=name)
            bad = list(result.missing_keys) + [k for k in result.unexpected_keys if "lora" in k]
            if bad:
                raise ValueError(f"the adapter does not fit this base model ({len(bad)} weights, e.g. {bad[0]})")
            peft_model.set_adapter(name, inference_mode=True)
        except Exception as e:
            if not wrapped and peft_model is not model:
                peft_model.unload()  # takes the LoRA layers out again
            elif wrapped and name in peft_model.peft_config:
                peft_model.delete_adapter(name)
                if self.active_adapter:
                    peft_model.set_adapter(self.active_adapter, inference_mode=True)
            raise ModelLoadError(
                f"Could not load the adapter {label}: {_reason(e)}. Check that it was trained for {self.base_model} "
                "and holds adapter_config.json and adapter_model.safetensors"
            ) from e
        old, self.active_adapter = self.active_adapter, name
        self._adapters[name], self._folders[name] = label, str(folder)
        if old:  # no stream runs now (the gate is held, or nothing ran yet): free the old weights
            peft_model.delete_adapter(old)
            self._adapters.pop(old, None)
            self._folders.pop(old, None)
        peft_model.eval()
        return peft_model

    def load_adapter(self, adapter: str, revision: str = "main", *, folder: str | Path | None = None) -> str:
        """Load `adapter` at `revision` beside the current one, then make it active; returns "adapter@revision".

        `folder`: the adapter's files, already downloaded (say by medrag.hub at the resolved sha);
        without it a local folder is used as is and a Hub id is downloaded here. Waits for running
        streams to end before touching the model (see the module docstring). A failure raises
        ModelLoadError and leaves the current adapter active.
        """
        self.load()
        if folder is None:  # network stays outside the gate
            folder, revision = _resolve_adapter(adapter, revision)
        label = f"{adapter}@{revision}"
        with self._gate.exclusive(), self._load_lock, _NO_FORK:
            self._model = self._attach(self._model, Path(folder), label)
            self.adapter, self.adapter_revision, self.adapter_error = adapter, revision, None
        log.info("Adapter %s is now active (%s)", label, self.active_adapter)
        return label

    def adapter_ref(self) -> dict[str, str] | None:
        """{"label": "repo@revision", "folder": ...} of the active adapter (None: the base model alone)."""
        with self._load_lock:
            name = self.active_adapter
            return {"label": self._adapters[name], "folder": self._folders[name]} if name else None

    def use_adapter(self, label: str, folder: str) -> None:
        """Make the adapter `label` ("repo@revision", its files in `folder`) the active one unless it is already:
        a ZeroGPU worker forked before a swap catches up with the app's process here."""
        self.load()
        with self._load_lock:
            if self.active_adapter and self._adapters[self.active_adapter] == label:
                return
        repo, _, revision = label.rpartition("@")
        self.load_adapter(repo, revision, folder=folder)

    def versions(self) -> dict[str, str]:
        out = {"base_model": self.base_model}
        if self.load_in_4bit:
            out["quantization"] = "nf4"
        if self.active_adapter:
            out["adapter"] = self._adapters[self.active_adapter]
        elif self.adapter and self._model is None:
            out["adapter"] = f"{self.adapter}@{self.adapter_revision}"
        return out

    # --- generation ----------------------------------------------------------------------------
    def encode(self, question: str, sources: Sequence[Chunk], history: Sequence[dict] | None = None):
        """The prompt's token ids (a list) within max_input_tokens, and the warnings about what was cut."""
        tok, warnings, history, dropped = self._tokenizer, [], list(history or []), 0
        kept = fit_sources(sources, lambda t: len(tok.encode(t, add_special_tokens=False)), self.context_tokens)
        if len(kept) < len(sources):
            warnings.append(f"Only {len(kept)} of {len(sources)} sources fit in the model's context.")
        while True:
            prompt = build_prompt(tok, question, kept, history, self.context_tokens)
            ids = tok(prompt, add_special_tokens=False).input_ids  # the chat template writes <s> itself
            if len(ids) <= self.max_input_tokens or not history:
                break
            history, dropped = _drop_oldest_turn(history), dropped + 1
        if dropped:
            warnings.append(
                f"{dropped} earlier turn(s) of the conversation were left out to fit the model's input limit."
            )
        if len(ids) > self.max_input_tokens:
            ids = ids[-self.max_input_tokens :]
            warnings.append(f"The input was too long: only its last {self.max_input_tokens} tokens were used.")
        return ids, warnings

    def stream(
        self, question, sources, history=None, *, max_new_tokens=None, temperature=None, info=None
    ) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        self.load()
        ids, self.last_warnings = self.encode(question, sources, history)
        if info is not None:
            info["warnings"] = list(self.last_warnings)
        temperature = self.temperature if temperature is None else temperature
        kwargs = {"max_new_tokens": max_new_tokens or self.max_new_tokens, "do_sample": temperature > 0}
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=self.top_p)
        tok = self._tokenizer
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=self.stream_timeout)
        cancel, failure = threading.Event(), []

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        def run():
            try:
                with torch.inference_mode():
                    # the transformers model itself: the active LoRA layers sit inside it, and it skips
                    # peft's generate wrapper, which swaps attributes on shared objects
                    lm.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([Cancelled()]),
                        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                        **kwargs,
                    )
            except BaseException as e:  # handed to the consumer, which re-raises it
                failure.append(e)
                streamer.end()
            finally:
                self._gate.leave()

        self._gate.enter()  # pins the active adapter until this generation ends
        lm, self.last_versions = self._lm, self.versions()
        if info is not None:
            info["versions"] = dict(self.last_versions)
        try:
            input_ids = torch.tensor([ids], device=lm.device)
            thread = threading.Thread(target=run, name="medrag-generate", daemon=True)
            thread.start()
        except BaseException:
            self._gate.leave()
            raise
        try:
            for delta in streamer:
                if delta:
                    yield delta
        except queue.Empty:
            raise MedRAGError(f"The model produced no text for {self.stream_timeout:.0f} s: try again") from None
        finally:
            cancel.set()  # a consumer that stops early (a closed chat) stops the generation too
            thread.join(self.stream_timeout)  # one more step at most; no thread outlives its stream
        if failure:
            raise MedRAGError(f"Generation failed: {failure[0]}") from failure[0]


class _SwapGate:
    """Many streams at once, or one adapter swap alone; a waiting swap keeps new streams out."""

    def __init__(self):
        self._cond = threading.Condition()
        self._streams = 0
        self._swapping = False

    def enter(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._swapping)
            self._streams += 1

    def leave(self) -> None:
        with self._cond:
            self._streams -= 1
            self._cond.notify_all()

    @contextmanager
    def exclusive(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._swapping)
            self._swapping = True
            self._cond.wait_for(lambda: self._streams == 0)
        try:
            yield
        finally:
            with self._cond:
                self._swapping = False
                self._cond.notify_all()

    @property
    def waiting(self) -> bool:
        """A swap holds the gate or waits for it (tests use this to order events)."""
        with self._cond:
            return self._swapping


def _resolve_adapter(adapter: str, revision: str) -> tuple[Path, str]:
    """The adapter's folder and the revision to report: a local folder as is (revision unchanged), else the
    Hub repo's adapter files downloaded by medrag.hub, reported at the commit sha `revision` resolved to."""
    if Path(adapter).expanduser().is_dir():
        return Path(adapter).expanduser(), revision
    if _looks_local(adapter):
        raise ModelLoadError(
            f"No adapter folder at {adapter}: check MEDRAG_ADAPTER, or unset it to use the base model alone"
        )
    from medrag.hub import download_adapter

    try:
        found = download_adapter(adapter, revision)
    except MedRAGError as e:  # HubError: says what to do about the repo
        raise ModelLoadError(
            f"Could not get the adapter {adapter}@{revision}: {_reason(e)}; or unset MEDRAG_ADAPTER to use the base "
            "model alone"
        ) from e
    return found.path, found.commit or revision


def _looks_local(name: str) -> bool:
    """A path rather than a Hub id: Hub ids are "name" or "owner/name", never absolute or relative paths."""
    return name.startswith(("/", "./", "../", "~", "\\")) or (len(name) > 1 and name[1] == ":")


def _reason(e: Exception) -> str:
    return str(e).strip().rstrip(".") or type(e).__name__


def _drop_oldest_turn(history: list[dict]) -> list[dict]:
    """Without its first user message and everything up to the next user message."""
    rest = history[1:]
    while rest and rest[0].get("role") != "user":
        rest = rest[1:]
    return rest


def _gpu_dtype():
    import torch

    try:
        # a T4 (the README's suggested_hardware) "supports" bf16 only through slow emulation: fp16 there
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    except Exception:  # no usable answer (an emulated device): fp16 runs on every GPU
        return torch.float16
