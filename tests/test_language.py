"""Does a question read as English? Other languages and scripts get the fixed message; English with
drug names, typos and jargon never does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medrag.language import reads_as_english, script_share

ROOT = Path(__file__).resolve().parents[1]
EVAL_DEV = next(
    (p / "shared" / "data" / "eval_dev.jsonl" for p in ROOT.parents[:2] if (p / "shared" / "data").is_dir()),
    ROOT.parent / "shared" / "data" / "eval_dev.jsonl",
)

OTHER_LANGUAGES = [
    "¿Qué es la diabetes?",  # Spanish
    "mi hijo no respira",
    "mi mamá tiene dolor de pecho, help",  # mostly Spanish, one English word
    "fiebre alta",
    "Mon fils a de la fièvre et une éruption sur les jambes",  # French
    "j'ai mal à la poitrine depuis une heure",
    "Mein Kind hat hohes Fieber und ist sehr schläfrig",  # German
    "Ich brauche Hilfe",
    "Hilfe!",
    "meu filho não está respirando",  # Portuguese
    "mio figlio ha la febbre alta da due giorni",  # Italian
    "mijn zoon heeft koorts en hoofdpijn",  # Dutch
    "anak saya sakit perut",  # Indonesian
    "Tôi bị đau ngực dữ dội",  # Vietnamese (Latin letters with marks)
    "Мой ребенок не дышит",  # Russian
    "Η καρδιά μου πονάει",  # Greek
    "我的孩子发烧了",  # Chinese
    "胸が痛い",  # Japanese
    "가슴이 아파요",  # Korean
    "ابني لا يتنفس",  # Arabic
    "मेरे बच्चे को बुखार है",  # Hindi
    "הילד שלי לא נושם",  # Hebrew
]

ENGLISH = [
    "What is de Quervain tenosynovitis?",
    "cri du chat syndrome",
    "café au lait spots",
    "hay fever",
    "von willebrand disease",
    "grand mal seizure",
    "MI symptoms",
    "Sjögren's syndrome",
    "Guillain-Barré syndrome treatment",
    "Ménière's disease",
    "la crosse encephalitis",
    "Y chromosome infertility",
    "van der Woude syndrome",
    "metformin",
    "diabetes?",
    "can i take ibuprofn with amoxicilin",
    "Does Ocella cause DVT",
    "my abuela has chest pain",
    "What is 糖尿病?",
    "???",
    "12345",
    "",
    "im 34 weeks and the baby hasnt moved since yesterday",
    "pls help my dad cant breath",
]


@pytest.mark.parametrize("text", OTHER_LANGUAGES)
def test_other_languages_and_scripts_are_not_english(text):
    assert not reads_as_english(text)


@pytest.mark.parametrize("text", ENGLISH)
def test_english_with_names_typos_and_jargon_is_english(text):
    assert reads_as_english(text)


def test_script_share_counts_latin_letters():
    assert script_share("abc") == 1.0 and script_share("123 ?") == 1.0
    assert script_share("ab 胸が") == 0.5


@pytest.mark.parametrize("name", ["red_flags.jsonl", "unanswerable.jsonl"])
def test_the_project_evaluation_sets_read_as_english(name):
    with (ROOT / "data" / "eval" / name).open(encoding="utf-8") as f:
        questions = [json.loads(line)["question"] for line in f if line.strip()]
    assert [q for q in questions if not reads_as_english(q)] == []


@pytest.mark.skipif(not EVAL_DEV.exists(), reason=f"{EVAL_DEV} not present")
def test_the_shared_evaluation_questions_read_as_english():
    with EVAL_DEV.open(encoding="utf-8") as f:
        questions = [json.loads(line)["question"] for line in f if line.strip()]
    assert len(questions) > 1000
    assert [q for q in questions if not reads_as_english(q)] == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=3000))
def test_never_raises_on_any_text(text):
    assert reads_as_english(text) in (True, False)
