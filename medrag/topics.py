"""Whose fact it is: a source's topic, whether it is narrower than the question, and naming it.

A sentence such as "This condition is inherited in an autosomal dominant pattern." is true of its
source's topic ("CHMP2B-related frontotemporal dementia"), not of everything the question asks
about ("Is dementia inherited?"). `attribute(sentence, question, title)` puts the topic in front
of such a sentence, "For CHMP2B-related frontotemporal dementia: This condition is ...", and
leaves the quote itself verbatim. The training-data builder uses the same function, so the
model learns the rule the extractive generator follows.

Shortcuts on purpose: the topic is the source title without a trailing MedQuAD section
("Flu (information)" -> "Flu"); "narrower" means the topic has a content word the question
lacks, so a synonym ("Influenza" for "flu") counts as narrower and is named, which is redundant
but never wrong. A sentence's subject is topical when it opens with a pronoun or a phrase like
"The disorder", "These symptoms", "Affected individuals" (see `topical_subject`). A study abstract ("PMID 123 (2001)")
is always narrower than a visitor's question, so every sentence quoted from one is introduced.
"""

from __future__ import annotations

import re

from medrag.prompts import STUDY_INTRO, TOPIC_INTRO

# MedQuAD's answer sections, as the corpus puts them in titles: "Gout (treatment)".
SECTIONS = {
    "information": "overview",
    "symptoms": "symptoms",
    "causes": "causes",
    "inheritance": "inheritance",
    "genetic changes": "genetic changes",
    "treatment": "treatment",
    "frequency": "frequency",
    "exams and tests": "diagnosis",
    "research": "research",
    "outlook": "outlook",
    "susceptibility": "who is at risk",
    "considerations": "considerations",
    "prevention": "prevention",
    "stages": "stages",
    "complications": "complications",
    "support groups": "support groups",
}
_SECTION = re.compile(r"\s*\((" + "|".join(map(re.escape, SECTIONS)) + r")\)\s*$", re.IGNORECASE)
_STUDY = re.compile(r"^PMID (\d+)\b")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by can for from has have how i in is it its my of on or the to what when which who why "
    "with does do did you your about me long will there any get getting".split()
)
# Words that name no particular condition: "Crohn's disease" is not narrower than "crohns".
_GENERIC = frozenset(
    "disease diseases disorder disorders syndrome syndromes condition conditions problem problems health "
    "information infection infections what need know".split()
)
_ANAPHOR = re.compile(
    r"\b(?:this|these|the|that|such) (?:condition|conditions|disorder|disorders|disease|diseases|syndrome|illness|"
    r"cancer|tumou?rs?|infection|deficiency)\b(?! (?:of|affecting|called|in)\b)"
    r"|\b(?:these|affected) (?:individuals|people|patients|persons)\b"
)
_OPENERS = frozenset("however but also often usually sometimes rarely and so yet still".split())
_QUALIFIERS = frozenset("of affecting in among that which caused called associated related for with".split())
_PRONOUNS = frozenset("it they its their this these those such".split())
_DETERMINERS = _PRONOUNS | {"the", "that", "affected", "common", "most"}
# What a sentence calls its source's topic without naming it: "The disorder", "These symptoms".
_TOPIC_NOUNS = frozenset(
    "condition conditions disorder disorders disease diseases syndrome syndromes cancer cancers tumor tumors "
    "tumour tumours infection infections illness deficiency malformation abnormality "
    "symptom symptoms sign signs feature features individual individuals patient patients person persons people "
    "child children treatment treatments complication "
    "complications mutation mutations pain rash attacks episodes seizures sores patches lesions".split()
)


def source_topic(title: str) -> str:
    """What a source is about: its title less a trailing MedQuAD section ("Gout (treatment)" -> "Gout")."""
    return _SECTION.sub("", title or "").strip()


def source_section(title: str) -> str | None:
    """The MedQuAD section a title ends with, in plain words ("exams and tests" -> "diagnosis"), or None."""
    m = _SECTION.search(title or "")
    return SECTIONS[m.group(1).lower()] if m else None


def study_id(title: str) -> str | None:
    """The PubMed id of an abstract titled "PMID 123 (2001)", else None."""
    m = _STUDY.match(title or "")
    return m.group(1) if m else None


def content_words(text: str) -> set[str]:
    """Lower-case words that say what a text is about (no stop or generic words), singular."""
    text = re.sub(r"['\u2019]s\b", "", text.lower())
    return {_singular(w) for w in _WORD.findall(text) if w not in _STOP and w not in _GENERIC}


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) else word


def narrower_topic(question: str, title: str) -> str | None:
    """The source's topic when it is narrower than what the question asks about, else None.

    Narrower: the topic has a content word the question does not ("CHMP2B-related
    frontotemporal dementia" for "Is dementia inherited?"). A study is always narrower.
    """
    if study_id(title):
        return source_topic(title)
    topic = source_topic(title)
    return topic if content_words(topic) - content_words(question) else None


def topical_subject(sentence: str) -> bool:
    """Does the sentence speak of its source's topic without naming it ("This condition", "It", "They")?

    True when it opens with a pronoun ("It", "These"), refers back to "the condition", "this
    disorder" or "these individuals" anywhere ("People with this condition", "When the condition
    is caused"), opens with a topic noun ("Symptoms usually go away"), or has a determiner before
    the first topic noun of its first six words ("The most common symptoms are", "an affected
    person"), unless that noun says whose it is ("Symptoms of asthma", "people with the flu").
    """
    words = re.findall(r"[a-z']+", sentence.lower())
    while words and words[0] in _OPENERS:  # "However, it is caused by ..."
        words = words[1:]
    if not words:
        return False
    if words[0] in _PRONOUNS or _ANAPHOR.search(" ".join(words)):
        return True
    noun = next((i for i, w in enumerate(words[:6]) if w in _TOPIC_NOUNS), None)
    if noun is None or (noun + 1 < len(words) and words[noun + 1] in _QUALIFIERS):
        return False  # "Symptoms of asthma", "The disease affecting the knee" say whose they are
    return noun == 0 or any(w in _DETERMINERS for w in words[:noun])


def names_topic(text: str, topic: str) -> bool:
    """Is `topic` named in `text` (all its content words present)?"""
    words = content_words(topic)
    return bool(words) and words <= content_words(text)


def attribute(sentence: str, question: str, title: str) -> str:
    """`sentence` (verbatim), introduced by its source's topic when read alone it would claim too much.

    A study's sentence always gets "In one study (PMID 123): "; another source's sentence gets
    "For <topic>: " when the topic is narrower than the question, the sentence does not name the
    topic, and either its subject is topical ("This condition ...") or the topic is a variant of
    what was asked and the sentence uses none of its words ("Each headache may last ..." from a
    page on sporadic hemiplegic migraine, for "how long do migraines last?").
    """
    if study_id(title):
        return STUDY_INTRO.format(study=f"PMID {study_id(title)}") + sentence
    topic = narrower_topic(question, title)
    if not topic or names_topic(sentence, topic):
        return sentence
    variant = mentions_topic(question, topic)
    if topical_subject(sentence) or (variant and not mentions_topic(sentence, topic)):
        return TOPIC_INTRO.format(topic=topic) + sentence
    return sentence


def mentions_topic(text: str, topic: str) -> bool:
    """Does `text` use any content word of `topic` ("Knee problems ..." for "Knee Injuries and Disorders")?"""
    return bool(content_words(topic) & content_words(text))
