"""Input checks and red-flag detection: the step before retrieval.

`check_input` refuses input that is not a usable question (empty, too long, control characters)
with a message the user can act on. `detect_red_flag` spots a person describing an emergency
happening now, so the pipeline answers with a fixed urgent message (medrag.prompts.URGENT_MESSAGES,
one per kind of help: `crisis`, `poison`, `emergency`) and generates nothing.

Two detectors, combined so that a miss needs both to miss:
- rules (medrag.red_flag_rules): regexes over lowercased text with contractions spelled out ("can't" -> "can not"), for
  the unmistakable. Most pair a speaker or patient ("i", "he", "my son") with an emergency in the
  present tense, so "my baby is having a seizure" fires and "what is a febrile seizure?" does not.
  A few phrases are urgent on their own ("not breathing", "kill myself", "overdosed").
- a classifier on the question's embedding (medrag.red_flag_model), for everything people write
  that no rule foresaw ("nobody would miss me if I was gone", "grandma suddenly can't speak
  properly"). It runs when an embedder of the model it was trained on is given and the question
  reads as English (medrag.language); otherwise only the rules run.

Shortcuts taken on purpose:
- A subject-anchored rule is skipped right after "if"/"when" ("what should I do if my child has a
  seizure?" is a question about first aid); a standalone phrase is never skipped.
- Both lean towards firing: a false alarm costs a reader one click, a miss could cost far more.
- A "word" longer than 50 characters (base64, a hash, a long URL) is dropped before the rules run:
  no English word is that long, and it keeps every rule linear in the length of the text.
"""

from __future__ import annotations

import logging
import unicodedata

import numpy as np

from medrag.errors import MedRAGError
from medrag.language import reads_as_english
from medrag.red_flag_rules import CATEGORIES, HELP_CATEGORY, RULES, RedFlag, match_rules, normalise  # noqa: F401

log = logging.getLogger(__name__)


def clean_question(question: str) -> str:
    """Strip the question and collapse every run of whitespace to one space."""
    return " ".join(question.split())


def check_input(question: str, max_chars: int) -> str | None:
    """None when the question can be used, else a message saying what to do."""
    text = question.replace("\r\n", "\n").strip()  # a Windows line break is still a line break
    if not text:
        return "Please type a question."
    bad = next((c for c in text if c not in "\n\t" and unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        return (
            f"Your question contains a control character (U+{ord(bad):04X}) that cannot be used. "
            "Please retype it or paste it as plain text."
        )
    if len(text) > max_chars:
        return (
            f"Your question is {len(text)} characters; the limit is {max_chars}. "
            "Please shorten it to the question itself."
        )
    return None


def detect_red_flag(question: str, embedder=None, vector: np.ndarray | None = None) -> RedFlag | None:
    """The first rule that finds an emergency happening now, else the classifier's verdict, else None.

    The classifier runs only with an `embedder` of the model it was trained on (or that embedder's
    `vector` of the question) and on a question that reads as English; without one, rules only.
    """
    text = normalise(question)
    flag = match_rules(text)
    if flag is not None or embedder is None:
        return flag
    model = _model()
    if model is None or not model.fits(embedder) or not reads_as_english(question):
        return None
    if vector is None:
        vector = embedder.embed_query(question) if hasattr(embedder, "embed_query") else embedder.embed([question])[0]
    found = model.predict(question, vector)
    if not found.flagged:
        return None
    return RedFlag(HELP_CATEGORY[found.help], "", found.help, "model", round(found.score, 3))


_MODEL: list = []  # [RedFlagModel | None] once loaded


def _model():
    """The stored red-flag model, loaded once; None (rules only, logged) when it cannot be read."""
    if not _MODEL:
        from medrag.red_flag_model import RedFlagModel

        try:
            _MODEL.append(RedFlagModel.load())
        except MedRAGError as e:
            log.error("red-flag detection runs on rules only: %s", e)
            _MODEL.append(None)
    return _MODEL[0]
