"""Cards for the Hub repos: `index_card` (dataset card of an index folder) and `adapter_card`
(model card of a LoRA adapter), both README.md text with YAML front matter.

`sft_card` is the dataset card of the training data `python -m medrag.sft_data` builds.

Every number on a card comes from the values passed in (the index manifest, the training info,
the evaluation results); a value that is missing is left out, never guessed. The front matter is
written by huggingface_hub's card-data classes, so the Hub parses it.

Shortcuts on purpose: licences and attribution of the corpora this project knows (MedQuAD,
PubMedQA) are recognised by name anywhere in the values given; any other corpus needs
`attribution=` (and a `license` key) from the caller.
"""

from __future__ import annotations

import json
import re
from typing import Any

from huggingface_hub import DatasetCardData, ModelCardData

from medrag.prompts import CANNOT_ANSWER_PHRASE

KNOWN_SOURCES = {  # name found in the manifest or training info -> (licence id, attribution line)
    "medquad": (
        "cc-by-4.0",
        '**MedQuAD** (CC BY 4.0): Ben Abacha A. & Demner-Fushman D., "A Question-Entailment Approach to '
        'Question Answering", *BMC Bioinformatics* 20:511 (2019). Answer texts from NIH websites, whitespace '
        "and bullets normalised.",
    ),
    "pubmedqa": (
        "mit",
        '**PubMedQA** (MIT, (c) 2019 pubmedqa): Jin Q. et al., "PubMedQA: A Dataset for Biomedical Research '
        'Question Answering", EMNLP 2019. The abstracts are PubMed text.',
    ),
}
FAISS_TYPES = {"flat": "IndexFlatIP, exact search", "hnsw": "IndexHNSWFlat", "ivf": "IndexIVFFlat"}
NOT_ADVICE = (
    "This is a research and demonstration artefact, **not medical advice**. Answers built on it can be "
    "incomplete or wrong; a clinician should be consulted about any health question, and urgent symptoms "
    "need emergency care."
)
_LOWER_IS_BETTER = re.compile(
    r"loss|perplexity|ppl|error|latency|seconds|unsupported|false_abstention|^abstention|failure", re.I
)


def index_card(manifest: dict, metrics: dict | None = None, attribution: str | None = None) -> str:
    """The dataset card of an index folder, from its manifest.json (and retrieval metrics, when given)."""
    licences, attributions = _known_sources(manifest)
    name = _get(manifest, "name", "pretty_name") or "MedRAG retrieval index"
    meta = DatasetCardData(
        license=manifest.get("license") or (licences[0] if len(licences) == 1 else licences) or "other",
        pretty_name=name,
        tags=["medical", "rag", "faiss"],
        task_categories=["question-answering"],
    )
    index_type = _get(manifest, "index_type")
    rows = {
        "corpus": _get(manifest, "corpus", "corpus_name", "sources"),
        "documents": _get(manifest, "num_documents", "documents", "num_docs", "n_documents"),
        "chunks": _get(manifest, "num_chunks", "chunks", "n_chunks", "count"),
        "corpus sha256": _code(_get(manifest, "corpus_sha256")),
        "embedding model": _code(_get(manifest, "embedding_model", "model")),
        "embedding dim": _get(manifest, "dim", "embedding_dim"),
        "index type": index_type and f"{index_type} (FAISS {FAISS_TYPES.get(index_type, index_type)})",
        "built at": _get(manifest, "created_at", "built_at", "build_time"),
        "build seconds": _get(manifest, "build_seconds", "seconds.total"),
        "format version": _get(manifest, "version", "format_version"),
    }
    chunker = manifest.get("chunker") or {}
    parts = [
        f"---\n{meta.to_yaml()}\n---",
        f"# {name}",
        "A prebuilt retrieval index for MedRAG: chunks of medical documents, their embeddings and a BM25 "
        "index, as a folder of plain files with a `manifest.json`. Set `MEDRAG_INDEX_REPO` to this repo's id "
        "(and `MEDRAG_INDEX_REVISION` to a commit sha to pin it) and the MedRAG app downloads it on start.",
        "## Contents\n\n" + _table(["", "value"], [[k, _fmt(v)] for k, v in rows.items() if v not in (None, "")]),
    ]
    if chunker:
        parts.append("## Chunking\n\n" + _table(["setting", "value"], [[k, _fmt(v)] for k, v in chunker.items()]))
    if metrics:
        parts.append("## Retrieval metrics\n\n" + _metrics_table(metrics))
    lines = [attribution] if attribution else attributions
    parts.append(
        "## Licences and attribution\n\nThe chunk texts are excerpts of the source documents; their licences "
        "apply to this dataset.\n\n" + ("\n".join(f"- {a}" for a in lines) or "- (no attribution was given)")
    )
    parts.append("## Limitations\n\n" + NOT_ADVICE)
    return "\n\n".join(parts) + "\n"


def adapter_card(info: dict) -> str:
    """The model card of a LoRA adapter, from the training settings and results in `info`.

    Keys follow `FineTuneConfig` (base_model, lora_r, lora_alpha, lora_dropout, target_modules,
    load_in_4bit, double_quant, compute_dtype, learning_rate, ...) plus `train_examples`,
    `repo_id`, `train_sources`, `quant_type`, `license`, `attribution`, `train_runtime`, `train_loss`
    and `eval` = {"base": {metric: value}, "adapter": {...}}.
    """
    base = info.get("base_model") or "unknown"
    meta = ModelCardData(
        base_model=base,
        library_name="peft",
        license=info.get("license", "apache-2.0"),  # MedRAG's default base model and its data allow it
        tags=["lora", "qlora", "medical"],
        pipeline_tag="text-generation",
    )
    lora = [["r", "alpha", "dropout", "target modules"]]
    lora.append([_fmt(info.get(k)) for k in ("lora_r", "lora_alpha", "lora_dropout", "target_modules")])
    quant = {
        "4-bit base weights": info.get("load_in_4bit"),
        "quantisation type": info.get("quant_type") or ("NF4" if info.get("load_in_4bit") else None),
        "double quantisation": info.get("double_quant"),
        "compute dtype": info.get("compute_dtype"),
    }
    hyper_keys = [
        "learning_rate", "lr_scheduler", "warmup_ratio", "num_epochs", "max_steps", "per_device_batch_size",
        "gradient_accumulation_steps", "max_seq_length", "gradient_checkpointing", "seed", "train_runtime",
        "train_loss",
    ]  # fmt: skip
    hyper = [[k, _fmt(info[k])] for k in hyper_keys if info.get(k) is not None]
    if info.get("per_device_batch_size") and info.get("gradient_accumulation_steps"):
        hyper.append(
            ["effective batch size", _fmt(info["per_device_batch_size"] * info["gradient_accumulation_steps"])]
        )
    data = {k: info.get(k) for k in ("train_file", "train_sources", "train_examples", "max_train_examples")}
    _, attributions = _known_sources(info)
    parts = [
        f"---\n{meta.to_yaml()}\n---",
        f"# MedRAG QLoRA adapter for {base}",
        "A LoRA adapter that teaches the base model MedRAG's answer style: answer from the numbered sources "
        "only, cite them as [n], and say so when they do not answer the question. Load it with "
        f'`PeftModel.from_pretrained(base_model, "{info.get("repo_id") or "REPO_ID"}")`, or set `MEDRAG_ADAPTER` '
        "to this repo's id.",
        f"## Base model\n\n`{base}`",
        "## LoRA\n\n" + _table(lora[0], lora[1:]),
        "## Quantisation (QLoRA)\n\n"
        + _table(["", "value"], [[k, _fmt(v)] for k, v in quant.items() if v is not None]),
        "## Training data\n\n"
        + _table(["", "value"], [[k, _fmt(v)] for k, v in data.items() if v is not None])
        + "\n".join(["\n", *(f"- {a}" for a in ([info["attribution"]] if info.get("attribution") else attributions))]),
    ]
    if hyper:
        parts.append("## Hyper-parameters\n\n" + _table(["setting", "value"], hyper))
    evaluation = info.get("eval") or info.get("evaluation")
    if evaluation and evaluation.get("base") and evaluation.get("adapter"):
        parts.append(
            "## Evaluation\n\nBase model and base + adapter answering through the MedRAG pipeline on the same "
            "retrieved sources (`medrag.adapter_eval`).\n\n"
            + _comparison(evaluation["base"], evaluation["adapter"], evaluation.get("helps"))
        )
    parts.append(
        "## Intended use and limitations\n\nFor research and demonstration of grounded, cited answers in the "
        "MedRAG app, on English consumer and research medical questions, always with retrieved sources. " + NOT_ADVICE
    )
    return "\n\n".join(parts) + "\n"


def sft_card(manifest: dict) -> str:
    """The dataset card of a training data folder, from its manifest.json (counts, settings, exclusions)."""
    licences, attributions = _known_sources(manifest.get("sources", []))
    meta = DatasetCardData(
        license=(licences[0] if len(licences) == 1 else licences) or "other",
        pretty_name="MedRAG grounded-answer training data",
        tags=["medical", "rag", "raft", "citations"],
        task_categories=["question-answering", "text-generation"],
        language=["en"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "train.jsonl"}]}],
    )
    kinds, dropped, s = manifest.get("kinds", {}), manifest.get("dropped", {}), manifest.get("settings", {})
    counts = [["examples", _fmt(manifest.get("examples"))], *[[f"{k}", _fmt(v)] for k, v in kinds.items()]]
    counts += [[f"{g}: {k}", _fmt(v)] for g, c in manifest.get("by_source", {}).items() for k, v in c.items()]
    counts += [["questions read", _fmt(manifest.get("questions"))]]
    counts += [[f"dropped: {k}", _fmt(v)] for k, v in dropped.items()]
    excluded = [[e["path"], _fmt(e.get("questions")), _fmt(e.get("gold_docs")), _code(e.get("sha256", "")[:12])]
                for e in manifest.get("excluded", [])]  # fmt: skip
    parts = [
        f"---\n{meta.to_yaml()}\n---",
        "# MedRAG grounded-answer training data",
        "Supervised examples that teach a generator MedRAG's answer behaviour (RAFT-style): a question, the "
        f"{s.get('top_k', '?')} sources MedRAG's own hybrid retriever returns for it (the gold passage among hard "
        "distractors, in retrieval order, within "
        f"{_fmt(s.get('context_tokens'))} tokens of the base model's tokenizer), and the answer the app should "
        "give: the gold-passage sentences that answer the question, each followed by the [n] of its source, or, "
        f"for a share of {s.get('decline_share', '?')} of the questions whose gold documents were taken out of "
        f"the sources, exactly: {CANNOT_ANSWER_PHRASE} Built by `python -m medrag.sft_data`; read by "
        "`medrag.training` and the `train_colab.ipynb` notebook.",
        "## Counts\n\n" + _table(["", "count"], counts),
        "## Fields\n\n`id`, `question`, `sources` (a list of `title`, `text`, `doc_id`, `chunk_id`, numbered "
        "[1].. in the prompt), `answer` (the target), `kind` (`cited` or `declined`), `gold_passage` (the number "
        "of the first gold source, none for a decline), `gold_doc_ids`, `source` (the collection).",
    ]
    if excluded:
        parts.append(
            "## Kept apart from evaluation\n\nNo example's question or gold document appears in these evaluation "
            "files:\n\n" + _table(["file", "questions", "gold documents", "sha256"], excluded)
        )
    if manifest.get("eval_files"):
        parts.append(
            "## Evaluation files\n\nCopied under `eval/` for the notebook's evaluation (not training): "
            + ", ".join(f"`{f}`" for f in manifest["eval_files"])
        )
    parts.append(
        "## Sources, licences and attribution\n\n"
        + ("\n".join(f"- {a}" for a in attributions) or "- (no known source was named: add its attribution)")
    )
    parts.append("## Limitations\n\nTargets are extractive quotes of the sources. " + NOT_ADVICE)
    return "\n\n".join(parts) + "\n"


def _comparison(base: dict, adapter: dict, helps: bool | None = None) -> str:
    """Base vs adapter table plus a verdict: `helps` when the evaluation gave one, else counted from the table
    (lower is better for losses, latencies and false abstention)."""
    rows, better = [], 0
    metrics = [m for m in base if m in adapter and isinstance(base[m], int | float)]
    for m in metrics:
        delta = adapter[m] - base[m]
        improved = delta < 0 if _LOWER_IS_BETTER.search(m) else delta > 0
        better += improved
        rows.append([m, _fmt(base[m]), _fmt(adapter[m]), f"{delta:+.4g}"])
    if helps is not None:
        verdict = (
            f"The adapter improves {better} of {len(metrics)} metrics and loses on none beyond noise: it helps."
            if helps
            else f"The adapter improves {better} of {len(metrics)} metrics; it does not help on every count, so "
            "the evaluation's verdict is: it does not help."
        )
    elif better == len(metrics):
        measured = "the one metric measured" if len(metrics) == 1 else f"all {len(metrics)} metrics"
        verdict = f"The adapter improves {measured} over the base model: it helps."
    elif better == 0:
        verdict = "The adapter improves none of the metrics: it does not help; serve the base model alone."
    else:
        verdict = f"The adapter improves {better} of {len(metrics)} metrics: it helps on some, not all."
    return _table(["metric", "base", "adapter", "change"], rows) + "\n\n" + verdict


def _metrics_table(metrics: dict) -> str:
    """{split: {metric: value}} as a split-by-metric table, or a flat {metric: value} as two columns."""
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    if not nested:
        return _table(["metric", "value"], [[k, _fmt(v)] for k, v in metrics.items()])
    columns = list(dict.fromkeys(m for v in nested.values() for m in v))
    return _table(["set", *columns], [[k, *(_fmt(v.get(c)) for c in columns)] for k, v in nested.items()])


def _known_sources(values: dict) -> tuple[list[str], list[str]]:
    text = json.dumps(values, default=str).lower()
    found = [KNOWN_SOURCES[name] for name in KNOWN_SOURCES if name in text]
    return [lic for lic, _ in found], [line for _, line in found]


def _get(d: dict, *keys: str) -> Any:
    """The first present value among `keys`; "a.b" looks inside d["a"]."""
    for key in keys:
        value: Any = d
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _code(value: Any) -> str | None:
    return f"`{value}`" if value else None


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
