"""The BERT encoder of a sentence-transformers folder as an onnxruntime graph, written from its weights.

`bert_onnx(folder, weights)` reads `config.json` and the safetensors weights and returns the graph
that tracing transformers' `BertModel` and running onnxruntime's BERT fusions gave before
(`EmbedLayerNormalization`, then per layer `Attention` with packed QKV weights, `MatMul` +
`SkipLayerNormalization`, `MatMul` + `BiasGelu`, `MatMul` + `SkipLayerNormalization`), with
`last_hidden_state` as output. Writing it takes about a second and needs neither torch nor
transformers, where tracing and fusing took ~15 CPU seconds in a child process: the price of
every cold start of a Space, whose disk keeps nothing between starts (issue 10, point 7).
tests/test_embedder.py checks its vectors against sentence-transformers'.

Shortcuts taken on purpose:
- BERT only (`model_type: bert`, absolute positions, exact erf GELU); anything else raises
  `NotImplementedError` and the embedder falls back to tracing the model.
- onnxruntime's contrib operators (domain `com.microsoft`), so the graph runs in onnxruntime only,
  which is the only runtime the embedder uses. Attention masks padding with the operator's own
  filter value (-10000) where transformers adds float32's minimum: both give zero weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MS = "com.microsoft"  # onnxruntime's contrib operators


def bert_onnx(folder: Path, weights: Path):
    """The `onnx.ModelProto` of the BERT encoder described by `folder/config.json`, weights from `weights`."""
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        raise NotImplementedError("only absolute-position BERT encoders are written by hand")
    if config.get("hidden_act", "gelu") != "gelu":
        raise NotImplementedError(f"hidden_act {config.get('hidden_act')!r}: only the exact (erf) GELU is written")
    w = {k.removeprefix("bert."): v for k, v in load_file(str(weights)).items()}
    eps, heads = float(config["layer_norm_eps"]), int(config["num_attention_heads"])
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], domain=domain, **attrs))
        return outputs[0]

    def weight_t(name: str) -> str:  # torch's Linear computes x @ W.T
        return const(f"{name}.weight_t", w[f"{name}.weight"].T)

    def bias(name: str) -> str:
        return const(f"{name}.bias", w[f"{name}.bias"])

    def skip_norm(x: str, skip: str, dense: str, norm: str, out: str) -> str:
        """LayerNorm(x + dense bias + skip), the residual block's end."""
        gamma, beta = const(f"{norm}.weight", w[f"{norm}.weight"]), bias(norm)
        return node("SkipLayerNormalization", [x, skip, gamma, beta, bias(dense)], [out], MS, epsilon=eps)

    ids = {n: node("Cast", [n], [f"{n}_int32"], to=TensorProto.INT32) for n in ("input_ids", "token_type_ids")}
    mask = node("Cast", ["attention_mask"], ["attention_mask_int32"], to=TensorProto.INT32)
    e = "embeddings"
    embedding_inputs = [
        ids["input_ids"], ids["token_type_ids"], const("word_embeddings", w[f"{e}.word_embeddings.weight"]),
        const("position_embeddings", w[f"{e}.position_embeddings.weight"]),
        const("token_type_embeddings", w[f"{e}.token_type_embeddings.weight"]),
        const(f"{e}.LayerNorm.weight", w[f"{e}.LayerNorm.weight"]), bias(f"{e}.LayerNorm"), mask,
    ]  # fmt: skip
    x = node("EmbedLayerNormalization", embedding_inputs, ["embedded", "mask_index"], MS, epsilon=eps)
    layers = int(config["num_hidden_layers"])
    for i in range(layers):
        p = f"encoder.layer.{i}"
        qkv = [f"{p}.attention.self.{n}" for n in ("query", "key", "value")]
        packed = const(f"{p}.qkv_weight", np.concatenate([w[f"{n}.weight"].T for n in qkv], axis=1))
        packed_bias = const(f"{p}.qkv_bias", np.concatenate([w[f"{n}.bias"] for n in qkv]))
        context = node("Attention", [x, packed, packed_bias, "mask_index"], [f"l{i}.context"], MS, num_heads=heads)
        attended = node("MatMul", [context, weight_t(f"{p}.attention.output.dense")], [f"l{i}.attended"])
        x = skip_norm(attended, x, f"{p}.attention.output.dense", f"{p}.attention.output.LayerNorm", f"l{i}.x1")
        inner = node("MatMul", [x, weight_t(f"{p}.intermediate.dense")], [f"l{i}.inner"])
        gelu = node("BiasGelu", [inner, bias(f"{p}.intermediate.dense")], [f"l{i}.gelu"], MS)
        out = node("MatMul", [gelu, weight_t(f"{p}.output.dense")], [f"l{i}.out"])
        last = "last_hidden_state" if i == layers - 1 else f"l{i}.x"
        x = skip_norm(out, x, f"{p}.output.dense", f"{p}.output.LayerNorm", last)

    dims = ["batch", "sequence"]
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in names]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*dims, config["hidden_size"]])
    graph = helper.make_graph(nodes, "bert_encoder", inputs, [output], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="medrag")
    model.ir_version = 8  # opset 17's IR version, as the traced export had
    return model
