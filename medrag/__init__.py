"""MedRAG: retrieval-augmented medical question answering with cited, grounded answers."""

from __future__ import annotations

__version__ = "0.1.0"
