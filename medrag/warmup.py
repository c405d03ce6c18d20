"""Warm-up policy: what is loaded before the first visitor, so no visitor waits for a cold start.

The embedder, the index (the sample one built if missing), one search (the first ONNX run and BM25
query are the slow ones) and the generator's weights. An HF generator is wrapped so that only its
`stream` runs through `gpu_function` (app.py passes its `@spaces.GPU` one; see medrag.gpu).
Shortcut on purpose: duck-typed (`search`, `load`), so tests can hand in small stand-ins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from medrag.gpu import GPUGenerator, gpu_stream

log = logging.getLogger("medrag.warmup")


def warm_up(pipeline, gpu_function: Callable = gpu_stream):
    """Load everything `pipeline` needs now; returns it (its HF generator wrapped once for the GPU)."""
    t0 = time.perf_counter()
    retriever = pipeline.retriever  # loads the embedder and the index
    if hasattr(retriever, "search"):
        retriever.search("warm up", k=1, mode="hybrid")  # the first ONNX run and BM25 query are the slow ones
    generator = pipeline.generator
    if hasattr(generator, "load"):
        generator.load()  # the model weights now, not on the first question (a fallback picks extractive here)
    if generator.name == "hf" and not isinstance(generator, GPUGenerator):
        pipeline.swap(generator=GPUGenerator(generator, gpu_function))
    log.info("pipeline ready in %.1fs (generator: %s)", time.perf_counter() - t0, generator.name)
    return pipeline
