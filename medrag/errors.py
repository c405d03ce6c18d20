"""Errors a user can act on. Each message says what went wrong and what to do next."""

from __future__ import annotations


class MedRAGError(Exception):
    """Base class: the message is meant to be shown to a person as it is."""


class ConfigError(MedRAGError):
    """A setting is missing or invalid."""


class DocumentError(MedRAGError):
    """A document could not be read (raised in --strict mode, reported otherwise)."""


class IndexLoadError(MedRAGError):
    """An index folder is missing, corrupt, or built for another model."""


class IndexWriteError(MedRAGError):
    """An index cannot be written there: the folder holds other files, or the disk refused."""


class ModelLoadError(MedRAGError):
    """A model, tokenizer or adapter could not be loaded."""


class HubError(MedRAGError):
    """A Hub repo, revision or file could not be reached or is not what we expect."""


class InputError(MedRAGError):
    """An argument cannot be used: a top_k, mode, temperature out of its range, a question that is not text."""


def missing_dependency(package: str, feature: str, pip_name: str | None = None) -> MedRAGError:
    """The error for an optional dependency that is not installed, with the exact pip line."""
    return MedRAGError(f"{feature} needs the '{package}' package: pip install {pip_name or package}")
