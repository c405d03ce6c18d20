"""ExtractiveGenerator with a bag-of-keywords embedder whose cosines can be worked out by hand."""

from __future__ import annotations

import re

import numpy as np

from medrag.extractive import ExtractiveGenerator
from medrag.prompts import CANNOT_ANSWER_PHRASE
from medrag.types import Chunk, Hit

VOCAB = ["diabetes", "insulin", "sugar", "thirst", "asthma", "inhaler", "lung"]


class KeywordEmbedder:
    """The vector of a text counts each VOCAB word in it (not normalised: the generator must do that)."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        words = [re.findall(r"[a-z]+", t.lower()) for t in texts]
        return np.array([[w.count(v) for v in VOCAB] for w in words], dtype=np.float32)


def chunk(n: int, text: str) -> Chunk:
    return Chunk(f"doc{n}#0", f"doc{n}", f"Title {n}", text)


SOURCES = [
    chunk(
        1,
        "Diabetes means the blood sugar is too high. "  # (diabetes, sugar): cos 0.5 with the question
        "Insulin moves sugar out of the blood. "  # (insulin, sugar): 0.5
        "Diabetes and insulin are closely linked conditions. "  # (diabetes, insulin): 1.0
        "People with diabetes often feel strong thirst.",  # (diabetes, thirst): 0.5
    ),
    chunk(2, "Asthma affects the lung and airways. An inhaler helps people with asthma."),  # 0.0
    # (diabetes, insulin, sugar): 2/sqrt(6) = 0.816, and 0.816 to s1.3, so no duplicate; then a 2-word fragment
    chunk(3, "Type 1 diabetes needs daily insulin injections to control blood sugar. Diabetes insulin!"),
]
Q = "How are diabetes and insulin related?"  # (diabetes, insulin)


def test_answer_by_hand():
    g = ExtractiveGenerator(KeywordEmbedder(), focus=False)
    # by score: s1.3 (1.0), s3.1 (0.816), s1.1 (0.5); s1.2 and s1.4 (0.5) find source 1 full; then 0.0 < 0.3
    assert g.generate(Q, SOURCES) == (
        "Diabetes means the blood sugar is too high. [1] "
        "Diabetes and insulin are closely linked conditions. [1] "
        "Type 1 diabetes needs daily insulin injections to control blood sugar. [3]"
    )


def test_cites_only_shown_sources_with_verbatim_sentences():
    g = ExtractiveGenerator(KeywordEmbedder(), max_sentences=10, focus=False)
    text = g.generate(Q, SOURCES)
    pairs = re.findall(r"(.+?) \[(\d+)\](?: |$)", text)
    assert pairs and " ".join(f"{s} [{n}]" for s, n in pairs) == text
    for sentence, n in pairs:
        assert 1 <= int(n) <= len(SOURCES)
        assert sentence in SOURCES[int(n) - 1].text
    counts = [n for _, n in pairs]
    assert counts.count("1") == 2 and "2" not in counts  # at most 2 per source; the asthma source is unrelated


def test_deltas_concatenate_and_embed_is_called_once():
    embedder = KeywordEmbedder()
    g = ExtractiveGenerator(embedder, focus=False)
    deltas = list(g.stream(Q, SOURCES))
    assert len(deltas) == 3 and deltas[0] == "Diabetes means the blood sugar is too high. [1]"
    assert len(embedder.calls) == 1 and embedder.calls[0][0] == Q  # question and sentences together


def test_cannot_answer_when_nothing_is_similar():
    g = ExtractiveGenerator(KeywordEmbedder(), focus=False)
    assert g.generate("What helps with a sprained ankle?", SOURCES) == CANNOT_ANSWER_PHRASE
    assert g.generate(Q, []) == CANNOT_ANSWER_PHRASE
    assert list(g.stream(Q, SOURCES[1:2])) == [CANNOT_ANSWER_PHRASE]


def test_threshold_duplicates_and_fragments():
    duplicate = chunk(4, "Diabetes and insulin are closely linked conditions.")
    g = ExtractiveGenerator(KeywordEmbedder(), min_similarity=0.8, focus=False)
    text = g.generate(Q, [SOURCES[0], duplicate, SOURCES[2]])
    assert text == (  # [2] repeats [1] word for word (cosine 1.0 > 0.95); the 0.5 sentences are under 0.8
        "Diabetes and insulin are closely linked conditions. [1] "
        "Type 1 diabetes needs daily insulin injections to control blood sugar. [3]"
    )
    assert "Diabetes insulin!" not in text  # a perfect match, but a fragment under 4 words


def test_order_follows_source_rank_then_position():
    g = ExtractiveGenerator(KeywordEmbedder(), focus=False)
    text = g.generate(Q, [SOURCES[2], SOURCES[0]])
    assert text.index("[1]") < text.index("[2]")
    assert text.index("Diabetes means") < text.index("Diabetes and insulin")


def test_hits_are_accepted_and_versions():
    g = ExtractiveGenerator(KeywordEmbedder(), focus=False)
    hits = [Hit(c, 1.0) for c in SOURCES]
    assert g.generate(Q, hits) == g.generate(Q, SOURCES)
    assert g.versions() == {"generator": "extractive"} and g.name == "extractive"


def test_focus_answers_from_the_top_source_when_it_has_enough():
    embedder = KeywordEmbedder()
    g = ExtractiveGenerator(embedder, max_sentences=3)
    # source 1 alone: s1.3 (1.0) then s1.1, s1.2 (0.5, first by position among equals); all cite [1]
    assert g.generate(Q, SOURCES) == (
        "Diabetes means the blood sugar is too high. [1] "
        "Insulin moves sugar out of the blood. [1] "
        "Diabetes and insulin are closely linked conditions. [1]"
    )
    assert len(embedder.calls) == 1 and len(embedder.calls[0]) == 5  # the question and source 1's sentences


def test_focus_widens_when_the_top_source_is_off_topic():
    g = ExtractiveGenerator(KeywordEmbedder())
    text = g.generate(Q, [SOURCES[1], SOURCES[0], SOURCES[2]])  # the asthma page ranked first
    assert "[1]" not in text and "[2]" in text and "[3]" in text


def test_structured_abstract_quotes_results_without_their_label():
    abstract = Chunk(
        "p#0",
        "p",
        "PMID 123 (2001)",
        "Objective: To study diabetes and insulin in adults.\nMethods: Diabetes patients took insulin daily.\n"
        "Results: Insulin lowered the blood sugar of diabetes patients.\nConclusions: Insulin helps people with diabetes.",
    )
    text = ExtractiveGenerator(KeywordEmbedder()).generate(Q, [abstract])
    assert text == (
        "In one study (PMID 123): Insulin lowered the blood sugar of diabetes patients. [1] "
        "In one study (PMID 123): Insulin helps people with diabetes. [1]"
    )


def test_a_list_is_quoted_under_its_lead_in_and_never_alone():
    source = chunk(
        1, "Diabetes and insulin problems include\n- strong thirst\n- high blood sugar\nInsulin is a hormone."
    )
    g = ExtractiveGenerator(KeywordEmbedder())
    assert g.generate(Q, [source]) == (
        "Diabetes and insulin problems include [1]\n- strong thirst [1]\n- high blood sugar [1]\n\n"
        "Insulin is a hormone. [1]"
    )
    alone = chunk(2, "- diabetes and insulin problems\n- insulin and diabetes again")  # items without a lead-in
    assert g.generate(Q, [alone]) == CANNOT_ANSWER_PHRASE


def test_questions_and_fragments_are_not_quoted():
    source = chunk(
        1, "Is diabetes linked to insulin?\nand diabetes with insulin, too\nDiabetes and insulin are linked."
    )
    assert ExtractiveGenerator(KeywordEmbedder()).generate(Q, [source]) == "Diabetes and insulin are linked. [1]"


def test_a_list_item_that_swallowed_the_next_sentence_is_split():
    source = chunk(1, "Diabetes signs include\n- Thirst Diabetes lasts for many years in most people.")
    text = ExtractiveGenerator(KeywordEmbedder()).generate("How long does diabetes last?", [source])
    # the swallowed sentence answers "how long"; the lead-in with its one item is the context
    assert text == "Diabetes signs include [1]\n- Thirst [1]\n\nDiabetes lasts for many years in most people. [1]"


def test_says_what_the_sources_lack_when_no_sentence_answers_the_kind():
    g = ExtractiveGenerator(KeywordEmbedder())
    # no sentence of source 1 says how long diabetes lasts; the asthma source is about something else
    text = g.generate("How long does diabetes last?", [SOURCES[0], SOURCES[1]])
    assert text == (
        "The sources describe Title 1 but do not say how long it lasts. "
        "Diabetes means the blood sugar is too high. [1] "  # the page's first two relevant sentences, in order
        "Diabetes and insulin are closely linked conditions. [1]"
    )
    assert g.generate("How long does asthma last?", [SOURCES[0]]) == CANNOT_ANSWER_PHRASE  # nothing relevant at all


def test_the_sentence_answering_the_kind_with_one_unit_of_context():
    source = chunk(
        1,
        "Diabetes means the blood sugar is too high. Diabetes thirst can last for several days. "
        "Insulin moves sugar out of the blood. People with diabetes often feel strong thirst.",
    )
    text = ExtractiveGenerator(KeywordEmbedder()).generate("How long does diabetes thirst last?", [source])
    # the one duration sentence (cosine 1.0), then context: the last sentence repeats it (cosine 1.0 > 0.95),
    # so the first (0.5) is the context; in source order
    assert text == "Diabetes means the blood sugar is too high. [1] Diabetes thirst can last for several days. [1]"


def test_the_page_on_the_asked_topic_whose_section_answers_the_kind_leads():
    def titled(n, title, text):
        return Chunk(f"doc{n}#0", f"doc{n}", title, text)

    sources = [
        titled(1, "Type 1 diabetes (treatment)", "Insulin treats type 1 diabetes every day."),  # narrower
        titled(2, "Diabetes (information)", "Diabetes means the blood sugar is too high."),  # no treatment section
        titled(3, "Diabetes (treatment)", "Diabetes is treated with diet and insulin."),
    ]
    assert ExtractiveGenerator(KeywordEmbedder()).generate("How is diabetes treated?", sources) == (
        "Diabetes is treated with diet and insulin. [3]"
    )


def test_a_research_section_answers_no_kind_of_question():
    research = Chunk("r#0", "r", "Diabetes (research)", "Researchers study how insulin may treat diabetes better.")
    page = Chunk("p#0", "p", "Diabetes (information)", "Diabetes treatment includes insulin and diet.")
    g = ExtractiveGenerator(KeywordEmbedder())
    assert (
        g.generate("How is diabetes treated?", [research, page]) == "Diabetes treatment includes insulin and diet. [2]"
    )
    assert "Researchers" in g.generate("Tell me about diabetes and insulin", [research, page])  # no kind: as before


def test_select_gives_the_training_builder_verbatim_quotes_or_nothing_when_the_kind_is_unanswered():
    g = ExtractiveGenerator(KeywordEmbedder())
    source = chunk(
        1, "Diabetes and insulin problems include\n- strong thirst\n- high blood sugar\nInsulin is a hormone."
    )
    picked = g.select(Q, [SOURCES[1], source])  # 1-based numbers into the sources given, list items after their lead-in
    assert [(n, text) for n, text, _ in picked] == [
        (2, "Diabetes and insulin problems include"),
        (2, "strong thirst"),
        (2, "high blood sugar"),
        (2, "Insulin is a hormone."),
    ]
    assert all(0.3 <= cos <= 1.0 for *_, cos in picked)
    # nothing says how long diabetes lasts: the answer would say so, and no quote is a training target
    assert g.select("How long does diabetes last?", [SOURCES[0], SOURCES[1]]) == []
