"""Question kinds, the cues that answer them, and naming a narrower source's topic (medrag.topics)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrag.prompts import INTRO, MISSING_TEMPLATE, missing_statement, says_what_is_missing
from medrag.question_kinds import BY_NAME, KINDS, answers_kind, has_cues, question_kind
from medrag.topics import (
    attribute,
    content_words,
    narrower_topic,
    source_section,
    source_topic,
    study_id,
    topical_subject,
)


@pytest.mark.parametrize(
    "question, kind",
    [
        ("How long does the flu last?", "duration"),
        ("how many days does chickenpox last?", "duration"),
        ("Can arrhythmia come back after ablation?", "recurrence"),
        ("can you get chickenpox twice", "recurrence"),
        ("Is psoriasis contagious?", "contagious"),
        ("can you catch eczema from someone", "contagious"),
        ("Is epilepsy genetic?", "inheritance"),
        ("Is dementia inherited or acquired?", "inheritance"),
        ("my dad has huntingtons, is it passed down?", "inheritance"),
        ("Is it safe to exercise during pregnancy?", "safety"),
        ("can I drink alcohol while taking antibiotics", "safety"),
        ("my knee hurts when I climb stairs, what could it be?", "differential"),
        ("why am I tired all the time", "differential"),
        ("How much does an MRI cost?", "cost"),
        ("how common is down syndrome", "frequency"),
        ("what can happen if high blood pressure isn't treated", "complications"),
        ("what are the warning signs of meningitis", "symptoms"),
        ("how do doctors diagnose insomnia", "diagnosis"),
        ("how can i keep my bones strong to prevent osteoporosis", "prevention"),
        ("who is at risk for osteoporosis", "risk"),
        ("how is scoliosis treated", "treatment"),
        ("can lyme disease be cured", "outlook"),
        ("what causes rosacea", "cause"),
        ("What is gout?", "definition"),
        ("tell me about arthritis", "other"),
    ],
)
def test_question_kind(question, kind):
    assert question_kind(question) == kind


@pytest.mark.parametrize(
    "sentence, kind, expected",
    [
        ("Symptoms usually begin 2 or 3 days after infection and last 2 to 14 days.", "duration", True),
        ("Most people with dengue recover within 2 weeks.", "duration", True),
        ("It can take months for a bruise to fade, but most last about two weeks.", "duration", True),
        ("Most people with the flu recover on their own without medical care.", "duration", False),
        ("The flu vaccine causes antibodies to develop about two weeks after you get it.", "duration", False),
        ("Between 5% and 20% of people in the U.S. get the flu each year.", "duration", False),
        ("Canker sores aren't contagious.", "contagious", True),
        ("Lice spread by close person-to-person contact.", "contagious", True),
        ("The most common form is plaque psoriasis.", "contagious", False),
        ("These usually clear up the infection, but it can come back.", "recurrence", True),
        ("A procedure called catheter ablation is used to treat some arrhythmias.", "recurrence", False),
        ("This condition is inherited in an autosomal dominant pattern.", "inheritance", True),
        ("Honey is safe for persons 1 year of age and older.", "safety", True),
        ("Flu is a respiratory infection.", "definition", True),  # no cues: any relevant sentence answers
    ],
)
def test_answers_kind(sentence, kind, expected):
    assert answers_kind(sentence, kind) is expected


def test_every_kind_can_say_what_is_missing():
    names = [k.name for k in KINDS]
    assert len(names) == len(set(names)) and names[-1] == "other"
    for kind in KINDS:
        assert kind.missing and BY_NAME[kind.name] is kind
    assert has_cues("duration") and has_cues("contagious") and not has_cues("definition") and not has_cues("other")


def test_missing_statement_is_the_fixed_pattern():
    s = missing_statement(["Flu", "Flu Shot", "Flu"], "how long it lasts")
    assert s == "The sources describe Flu and Flu Shot but do not say how long it lasts."
    assert s == MISSING_TEMPLATE.format(covered="Flu and Flu Shot", missing="how long it lasts")
    assert missing_statement(["a", "b", "c"], "x") == "The sources describe a, b and c but do not say x."
    assert says_what_is_missing("Intro. " + s + " Flu is an infection. [1]")
    assert not says_what_is_missing("The sources describe flu.") and not says_what_is_missing("")


def test_topics_and_sections():
    assert source_topic("CHMP2B-related frontotemporal dementia (inheritance)") == (
        "CHMP2B-related frontotemporal dementia"
    )
    assert source_topic("Enlarged Prostate (BPH) (information)") == "Enlarged Prostate (BPH)"
    assert source_topic("Acetaminophen (paracetamol) safety") == "Acetaminophen (paracetamol) safety"
    assert source_section("Arrhythmia (exams and tests)") == "diagnosis" and source_section("Asthma") is None
    assert study_id("PMID 21880023 (2012)") == "21880023" and study_id("Flu (information)") is None
    assert content_words("Crohn's Disease") == {"crohn"} and content_words("Kidney Stones") == {"kidney", "stone"}


@pytest.mark.parametrize(
    "question, title, narrower",
    [
        ("Is dementia inherited or acquired?", "CHMP2B-related frontotemporal dementia (inheritance)", True),
        ("Is epilepsy genetic?", "juvenile myoclonic epilepsy (inheritance)", True),
        ("Is cystic fibrosis genetic?", "cystic fibrosis (inheritance)", False),
        ("is crohns disease contagious", "Crohn's Disease (information)", False),
        ("How long does the flu last?", "Flu (information)", False),
        ("Is it safe to exercise during pregnancy?", "PMID 21880023 (2012)", True),
    ],
)
def test_narrower_topic(question, title, narrower):
    assert bool(narrower_topic(question, title)) is narrower


@pytest.mark.parametrize(
    "sentence, topical",
    [
        ("This condition is inherited in an autosomal dominant pattern.", True),
        ("It is not contagious.", True),
        ("When the condition is caused by mutations in the GABRA1 gene, it is inherited.", True),
        ("The most common symptoms are pain and numbness.", True),
        ("Affected individuals have seizures.", True),
        ("The pain goes away after resting.", True),
        ("Dementia is the name for a group of symptoms.", False),
        ("Symptoms of asthma include wheezing.", False),
        ("The most common disease affecting the knee is osteoarthritis.", False),
        ("The flu vaccine causes antibodies to develop.", False),
    ],
)
def test_topical_subject(sentence, topical):
    assert topical_subject(sentence) is topical


def test_attribute_names_a_narrower_topic_only_when_needed():
    q = "Is dementia inherited or acquired?"
    s = "This condition is inherited in an autosomal dominant pattern."
    title = "CHMP2B-related frontotemporal dementia (inheritance)"
    assert attribute(s, q, title) == f"For CHMP2B-related frontotemporal dementia: {s}"
    assert attribute(s, "Is CHMP2B-related frontotemporal dementia inherited?", title) == s  # not narrower
    assert attribute("Dementia affects memory.", q, title) == "Dementia affects memory."  # names its subject
    assert attribute("Results were similar.", q, "PMID 1 (1999)") == "In one study (PMID 1): Results were similar."


@given(
    sentence=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=80),
    question=st.text(max_size=60),
    topic=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40),
)
def test_attribute_keeps_the_quote_verbatim(sentence, question, topic):
    """Whatever the source says, the quote follows the introduction unchanged, and INTRO finds that introduction."""
    out = attribute(sentence, question, f"{topic} (inheritance)")
    assert out.endswith(sentence)
    intro = out[: len(out) - len(sentence)]
    assert intro == "" or intro.startswith("For ")
    if intro and not set(topic) & set(":[]\n") and len(source_topic(f"{topic} (inheritance)")) <= 200:
        assert INTRO.match(out).group(0) == intro  # the citation check strips exactly the introduction


def test_a_narrower_variant_of_the_asked_topic_is_named_even_without_a_topical_subject():
    q = "how long do migraines last"
    variant = "sporadic hemiplegic migraine (information)"
    s = "Each headache may last from a few hours to a few days."
    assert attribute(s, q, variant) == f"For sporadic hemiplegic migraine: {s}"
    assert attribute("A migraine attack may last days.", q, variant) == "A migraine attack may last days."  # says whose
    assert attribute(s, q, "Headache (information)") == s  # another topic, not a variant: only topical subjects


def test_the_model_prompt_gets_the_same_rules_and_keeps_the_exact_cannot_answer_rule():
    from medrag.prompts import CANNOT_ANSWER_PHRASE, GROUNDED_INSTRUCTIONS, TOPIC_INTRO, build_messages

    text = build_messages("Is dementia inherited?", [])[-1]["content"]
    assert f"If the sources do not contain the answer, reply exactly: {CANNOT_ANSWER_PHRASE}" in text
    assert '"For <topic>: ..."' in GROUNDED_INSTRUCTIONS and TOPIC_INTRO == "For {topic}: "
    assert "The sources describe <what they cover> but do not say <what was asked>." in text
    assert says_what_is_missing("The sources describe <what they cover> but do not say <what was asked>.")
