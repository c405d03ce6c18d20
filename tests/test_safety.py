"""Input checks and red-flag rules: the labelled set, the near-misses, and the dev questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medrag.safety import RULES, RedFlag, check_input, clean_question, detect_red_flag

ROOT = Path(__file__).resolve().parents[1]
RED_FLAGS = ROOT / "data" / "eval" / "red_flags.jsonl"
EVAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval_dev.jsonl"


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:  # not splitlines(): it also splits at U+2028 inside a string
        return [json.loads(line) for line in f if line.strip()]


# --- check_input / clean_question ---------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   ", "\n\t  \n"])
def test_empty_or_whitespace_is_refused(question):
    assert check_input(question, 1000) == "Please type a question."


def test_too_long_says_both_numbers():
    message = check_input("a" * 1001, 1000)
    assert message == "Your question is 1001 characters; the limit is 1000. Please shorten it to the question itself."


def test_limit_is_inclusive_and_surrounding_space_does_not_count():
    assert check_input("a" * 1000, 1000) is None
    assert check_input("  " + "a" * 1000 + "\n", 1000) is None


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\r"])
def test_control_characters_are_refused(bad):
    message = check_input(f"What is{bad} asthma?", 1000)
    assert message is not None and "control character" in message and f"U+{ord(bad):04X}" in message


def test_nul_is_refused_even_in_a_short_question():
    assert "U+0000" in check_input("hi\x00", 1000)


@pytest.mark.parametrize(
    "question",
    ["What is asthma?", "What is asthma?\nAnd how is it treated?", "Symptoms:\tcough, wheeze", "Line one\r\nline two"],
)
def test_normal_questions_newlines_and_tabs_pass(question):
    assert check_input(question, 1000) is None


def test_unicode_text_passes():
    assert check_input("¿Qué es la diabetes? 糖尿病とは — café", 1000) is None


def test_clean_question_strips_and_collapses():
    assert clean_question("  What   is\n\tasthma?  ") == "What is asthma?"
    assert clean_question("") == ""


# --- detect_red_flag ------------------------------------------------------------------------------


def test_labelled_set_is_well_formed():
    rows = _jsonl(RED_FLAGS)
    assert len({r["id"] for r in rows}) == len(rows) >= 80
    for r in rows:
        assert r["red_flag"] is (r["category"] is not None), r["id"]
        assert r["category"] is None or r["category"] in RULES, r["id"]
    true_categories = {r["category"] for r in rows if r["red_flag"]}
    assert true_categories == set(RULES), "every category needs labelled emergencies"


@pytest.mark.parametrize("row", _jsonl(RED_FLAGS), ids=lambda r: r["id"])
def test_labelled_question(row):
    flag = detect_red_flag(row["question"])
    if row["red_flag"]:
        assert flag is not None, row["question"]
        assert flag.category == row["category"], (row["question"], flag)
    else:
        assert flag is None, (row["question"], flag)


NEAR_MISSES = [
    "What causes chest pain in runners?",
    "What are the symptoms of a stroke?",
    "How is anaphylaxis treated?",
    "What is the risk of suicide in people with depression?",
    "Can an overdose of acetaminophen damage the liver?",
    "What are the warning signs of a heart attack?",
    "Is shortness of breath a symptom of asthma?",
    "How do I stop a nosebleed?",
    "What is a febrile seizure?",
]


@pytest.mark.parametrize("question", NEAR_MISSES)
def test_near_misses_do_not_fire(question):
    assert detect_red_flag(question) is None


def test_case_punctuation_and_contractions_do_not_matter():
    for q in ["MY BABY IS NOT BREATHING!!!", "my baby isn’t breathing", "my baby isnt breathing"]:
        assert detect_red_flag(q) == RedFlag("unresponsive", "not breathing")


def test_a_hypothetical_about_first_aid_does_not_fire_but_the_same_event_now_does():
    assert detect_red_flag("What should I do if my child has a seizure?") is None
    assert detect_red_flag("my child is having a seizure, what should I do?").category == "seizure"


def test_matched_names_the_words_that_fired():
    assert detect_red_flag("I think my husband is having a stroke").matched == "is having a stroke"


@pytest.mark.skipif(not EVAL_DEV.exists(), reason=f"{EVAL_DEV} not present")
def test_no_red_flag_on_informational_dev_questions():
    rows = _jsonl(EVAL_DEV)
    fired = [(r["id"], r["question"], flag) for r in rows if (flag := detect_red_flag(r["question"]))]
    assert len(rows) > 1000
    assert fired == []
