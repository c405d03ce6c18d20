from __future__ import annotations

import pytest

from medrag.sections import chunk_section, chunk_topic, promote, question_sections
from medrag.types import Chunk


@pytest.mark.parametrize(
    "question, sections",
    [
        ("How to diagnose Breast Cancer?", {"exams and tests"}),
        ("What are the symptoms of Angelman syndrome?", {"symptoms"}),
        ("Who is at risk for Babesiosis?", {"susceptibility"}),
        ("How many people are affected by Alport syndrome?", {"frequency"}),
        ("Is Alport syndrome inherited?", {"inheritance"}),
        ("What is (are) Alport syndrome?", {"information"}),
        ("What is the outlook for Laryngeal Cancer?", {"outlook"}),
        ("Can a vaccine prevent the flu?", {"prevention"}),
        ("Is coffee good for you?", set()),
    ],
)
def test_question_sections(question, sections):
    assert question_sections(question) == sections


def test_chunk_section_from_title_or_metadata():
    assert chunk_section(Chunk("a#0", "a", "Breast Cancer (exams and tests)", "t")) == "exams and tests"
    assert chunk_section(Chunk("a#0", "a", "Asthma", "t", metadata={"section": "Symptoms"})) == "symptoms"
    assert chunk_section(Chunk("a#0", "a", "Asthma", "t")) is None
    assert chunk_section(Chunk("a#0", "a", "PMID 1 (1999)", "t")) is None
    assert chunk_topic(Chunk("a#0", "a", "Breast Cancer (exams and tests)", "t")) == "breast cancer"


def test_promote_reorders_sections_within_a_topic_only():
    topics = ["cancer", "cancer", "cancer", "other"]
    sections = ["information", "exams and tests", "treatment", None]
    scores = {0: 0.9, 1: 0.5, 2: 0.4, 3: 0.95}
    out = promote(scores, {"exams and tests"}, topics, sections)
    assert sorted(out, key=lambda r: -out[r]) == [3, 1, 0, 2]  # row 1 lifted above row 0, not above "other"
    assert out[1] == pytest.approx(0.9) and out[1] > out[0] and out[3] == 0.95
    assert promote(scores, set(), topics, sections) == scores
