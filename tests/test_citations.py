from __future__ import annotations

import re

import numpy as np

from medrag.citations import answer_sentences, check_citations, strip_invalid_markers, word_overlap
from medrag.types import Chunk, Hit


def hits(*texts: str) -> list[Hit]:
    return [Hit(Chunk(id=f"d{i}#0", doc_id=f"d{i}", title=f"T{i}", text=t), score=1.0) for i, t in enumerate(texts, 1)]


SOURCES = hits(
    "Asthma narrows the airways. Wheezing and coughing are common symptoms.",
    "Influenza is caused by a virus. Vaccination each year lowers the risk.",
)


def test_invalid_markers_removed_and_counted():
    text, removed = strip_invalid_markers("Wheezing is common [1][7]. Flu is viral [2, 9] .", 2)
    assert removed == 2
    assert text == "Wheezing is common [1]. Flu is viral [2]."


def test_markers_opening_a_sentence_belong_to_the_previous_one():
    got = answer_sentences("Wheezing is common. [1] Flu is viral [2].")
    assert got == [("Wheezing is common. [1]", [1]), ("Flu is viral [2].", [2])]


def test_word_overlap_ignores_stopwords():
    assert word_overlap("the airways are narrow", "Asthma narrows the airways") == 0.5
    assert word_overlap("of the", "anything") == 0.0


def test_verbatim_sentences_are_supported_with_their_span():
    text = "Wheezing and coughing are common symptoms. [1] Vaccination each year lowers the risk. [2]"
    report = check_citations(text, SOURCES)
    assert report.removed == 0 and report.unsupported == [] and report.support_rate == 1.0
    assert [(c.number, c.supported, c.support) for c in report.citations] == [(1, True, 1.0), (2, True, 1.0)]
    a, b = report.citations[0].span
    assert SOURCES[0].chunk.text[a:b] == "Wheezing and coughing are common symptoms."


def test_wrong_source_and_uncited_claims_are_flagged():
    text = "Vaccination each year lowers the risk [1]. Penguins live in Antarctica and eat fish."
    report = check_citations(text, SOURCES)
    assert report.checked == 2
    assert report.unsupported == [
        "Vaccination each year lowers the risk [1].",
        "Penguins live in Antarctica and eat fish.",
    ]
    assert report.citations[0].supported is False
    assert report.support_rate == 0.0


class OneHotEmbedder:
    """A fake whose vector marks which of a few words a text contains: cosine is checkable by hand."""

    words = ("airways", "narrow", "virus", "flu")

    def embed(self, texts):
        bags = [set(re.findall(r"[a-z]+", t.lower())) for t in texts]
        v = np.array([[float(w in bag) for w in self.words] for bag in bags], dtype=np.float32)
        n = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(n == 0, 1, n)


def test_embedding_similarity_can_support_a_paraphrase():
    # word overlap of "The flu virus spreads [2]." with "Influenza is caused by a virus." is 1/3 (virus);
    # the fake embedder gives cosine([0,0,1,1], [0,0,1,0]) = 0.707 >= 0.6
    report = check_citations("The flu virus spreads [2].", SOURCES, embedder=OneHotEmbedder())
    assert report.citations[0].supported and round(report.citations[0].support, 3) == 0.707
    assert check_citations("The flu virus spreads [2].", SOURCES).unsupported == ["The flu virus spreads [2]."]


def test_cannot_answer_phrase_is_not_a_claim():
    report = check_citations("I cannot answer this question from the available sources.", SOURCES)
    assert report.checked == 0 and report.support_rate is None


def test_a_topic_introduction_is_not_part_of_the_claim_and_the_span_is_the_quote():
    source = hits("It starts in childhood. It is inherited in an autosomal dominant pattern.")
    text = "For Example-related disorder, type 2: It is inherited in an autosomal dominant pattern. [1]"
    report = check_citations(text, source)
    assert report.unsupported == [] and report.citations[0].support == 1.0
    a, b = report.citations[0].span
    assert source[0].chunk.text[a:b] == "It is inherited in an autosomal dominant pattern."
    # without the rule the introduction's words would count against the quote: 5 of 9 content words are not in it
    assert word_overlap(text.split(" [")[0], source[0].chunk.text[a:b]) < 0.6


def test_the_sentence_on_what_the_sources_lack_is_not_checked():
    text = "The sources describe T1 and T2 but do not say how long it lasts. Asthma narrows the airways. [1]"
    report = check_citations(text, SOURCES)
    assert report.checked == 1 and report.unsupported == [] and [c.number for c in report.citations] == [1]
