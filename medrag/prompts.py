"""Named prompt templates and the fixed phrases that tests and the UI look for.

`build_messages` / `build_prompt` are the one way a prompt is made, for inference and for
training alike (`medrag.qlora` calls `build_prompt` and appends the answer), so the model is
trained on exactly what it later sees. Sources are numbered `[n] Title` and fenced by
`<sources>` tags, apart from the instructions. Instructions live in the user turn because
Mistral-Instruct's chat template has no system role.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from medrag.chunking import split_sentences

CANNOT_ANSWER_PHRASE = "I cannot answer this question from the available sources."

DISCLAIMER = (
    "General information from the sources shown, not medical advice. "
    "For advice about your own health, talk to a doctor, nurse or pharmacist."
)

# The fixed answers to a red flag (medrag.safety), one per kind of help; no generation happens for
# these questions. Every number and instruction comes from the source named in the message:
# NHS "When to call 999" (nhs.uk/nhs-services/urgent-and-emergency-care-services/when-to-call-999/),
# MedlinePlus "Recognizing medical emergencies" (medlineplus.gov/ency/article/001927.htm),
# 988 Suicide & Crisis Lifeline (988lifeline.org: call or text 988), Samaritans (samaritans.org:
# 116 123, free, day or night), NHS "Help for suicidal thoughts" (nhs.uk/mental-health/feelings-
# symptoms-behaviours/behaviours/help-for-suicidal-thoughts/), Poison Help (poisonhelp.hrsa.gov:
# 1-800-222-1222 reaches the local US poison center; call 911 if someone is unconscious or has
# trouble breathing), NHS "Poisoning" (nhs.uk/conditions/poisoning/: call 999 or go to A&E if someone
# may have swallowed, touched or breathed in something harmful; NHS 111 if unsure it is harmful; do
# not make them sick), and 112, the emergency number in every EU country (European Commission).
URGENT_CARE_MESSAGE = (
    "This may be a medical emergency. Call your local emergency number now "
    "(911 in the US, 999 in the UK, 112 in the EU) or go to the nearest emergency department. "
    "Do not wait for an online answer. "
    "If you are thinking about suicide or about harming yourself, call or text 988 in the US, "
    "or call Samaritans on 116 123 in the UK, or your local crisis line; you can also call your "
    "emergency number. "
    'Sources: NHS "When to call 999"; MedlinePlus "Recognizing medical emergencies"; '
    "988 Suicide & Crisis Lifeline."
)

CRISIS_MESSAGE = (
    "It sounds like you may be thinking about ending your life or harming yourself, or someone "
    "with you is. You do not have to face this alone: call or text 988 in the US (988 Suicide & "
    "Crisis Lifeline), call Samaritans on 116 123 in the UK (free, day or night), or call your local "
    "crisis line. If a life is in danger now, or someone has already hurt themselves or taken "
    "something, call your emergency number (911 in the US, 999 in the UK, 112 in the EU) or go to "
    "the nearest emergency department. "
    'Sources: 988 Suicide & Crisis Lifeline; Samaritans; NHS "Help for suicidal thoughts".'
)

POISON_MESSAGE = (
    "Someone may have swallowed, breathed in or touched something harmful, or taken too much of a "
    "medicine. If they are unconscious, having a fit or having trouble breathing, call your "
    "emergency number now (911 in the US, 999 in the UK, 112 in the EU). "
    "In the US, call Poison Help on 1-800-222-1222 now, even if they seem well; it connects you "
    "to your local poison center. In the UK, call 999 or go to A&E; call NHS 111 if you are not "
    "sure the substance is harmful. Do not try to make them sick, and keep the packet or "
    "container to show. If it was taken on purpose, you can also call or text 988 (US) or call "
    "Samaritans on 116 123 (UK). "
    'Sources: Poison Help (HRSA); NHS "Poisoning"; 988 Suicide & Crisis Lifeline; Samaritans.'
)

URGENT_MESSAGES = {  # RedFlag.help -> the message the pipeline answers with
    "emergency": URGENT_CARE_MESSAGE,
    "crisis": CRISIS_MESSAGE,
    "poison": POISON_MESSAGE,
}

NOT_ENGLISH_MESSAGE = (
    "This app reads questions in English only; please ask in English. "
    "If this is an emergency, call your local emergency number now: 112 in the EU and many other "
    "countries, 911 in the US and Canada, 999 in the UK. "
    'Sources: European Commission "112, the European emergency number"; NHS "When to call 999".'
)

GROUNDED_INSTRUCTIONS = """You are MedRAG, a careful medical information assistant.
Answer the question using only the numbered sources between <sources> and </sources>.
Rules:
- Use only facts stated in the sources, never outside knowledge.
- After each sentence, cite the source it comes from as [n], for example [1] or [2][3].
- If the sources do not contain the answer, reply exactly: {cannot_answer}
- A fact from a source about a narrower topic than the question (one form, type or cause of what
  is asked about) holds for that topic only: name it first, as in "For <topic>: ...", and never
  state it as true in general.
- If the sources cover the topic but not what is asked, say what they describe and what they do
  not say, in the form: The sources describe <what they cover> but do not say <what was asked>.
- Do not diagnose, and give no doses or treatment plans beyond what the sources state.
- Write in plain language, in a few short sentences or bullet points."""

# A quoted sentence about a narrower topic than the question is introduced by that topic; the quote
# after the introduction stays verbatim (the citation check strips the introduction before scoring).
TOPIC_INTRO = "For {topic}: "
STUDY_INTRO = "In one study ({study}): "
INTRO = re.compile(r"^(?:For [^:\n\[\]]{1,200}|In one study \(PMID \d+\)): ")

# What the answer says when the sources cover the topic but not what was asked: neither a decline
# nor an invented answer. `says_what_is_missing` is the test the evaluation and the tests use.
MISSING_TEMPLATE = "The sources describe {covered} but do not say {missing}."
_MISSING = re.compile(r"\bThe sources describe \S.*? but do not say \S.*?[.]")


def missing_statement(covered: Sequence[str], missing: str) -> str:
    """ "The sources describe Flu and Flu Shot but do not say how long it lasts." """
    names = list(dict.fromkeys(c for c in covered if c)) or ["this topic"]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return MISSING_TEMPLATE.format(covered=listed, missing=missing)


def says_what_is_missing(text: str) -> bool:
    """Does `text` say, in the fixed form, what the sources cover and what they do not say?"""
    return bool(_MISSING.search(text or ""))


SOURCE_TEMPLATE = "[{number}] {title}\n{text}"

USER_TEMPLATE = """{instructions}

<sources>
{sources}
</sources>

Question: {question}"""

_FENCE = re.compile(r"</?sources>", re.IGNORECASE)


class HasTitleText(Protocol):
    title: str
    text: str


@dataclass(frozen=True)
class Passage:
    """A source as the prompt sees it: anything with a title and a text will do (a Chunk too)."""

    title: str
    text: str


def format_sources(sources: Sequence[HasTitleText]) -> str:
    """Number the sources from 1 in the order given (rank order)."""
    return "\n\n".join(
        SOURCE_TEMPLATE.format(number=i, title=_clean(s.title), text=_clean(s.text)) for i, s in enumerate(sources, 1)
    )


def _clean(text: str) -> str:
    # a document must not be able to close the sources fence and speak as the instructions
    return _FENCE.sub("", text).strip()


def build_messages(
    question: str, sources: Sequence[HasTitleText], history: Sequence[dict[str, str]] | None = None
) -> list[dict[str, str]]:
    """Chat messages: earlier turns (user/assistant, alternating), then the grounded question."""
    user = USER_TEMPLATE.format(
        instructions=GROUNDED_INSTRUCTIONS.format(cannot_answer=CANNOT_ANSWER_PHRASE),
        sources=format_sources(sources) if sources else "(no sources)",
        question=question.strip(),
    )
    return [*_alternating(history or []), {"role": "user", "content": user}]


def _alternating(history: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Keep complete user->assistant pairs only: Mistral's template requires strict alternation."""
    turns, pending = [], None
    for m in history:
        role, content = m.get("role"), str(m.get("content") or "")
        if role == "user":
            pending = content
        elif role == "assistant" and pending is not None:
            turns += [{"role": "user", "content": pending}, {"role": "assistant", "content": content}]
            pending = None
    return turns


def fit_sources(sources: Sequence[HasTitleText], count_tokens: Callable[[str], int], budget: int) -> list[HasTitleText]:
    """Keep sources in rank order within `budget` tokens; lower-ranked sources go first.

    A source that does not fit is dropped whole, never cut mid-sentence. If even the best source
    is over budget on its own, it is shortened to the whole sentences that fit.
    """
    kept, used = [], 0
    for i, s in enumerate(sources, 1):
        cost = count_tokens(SOURCE_TEMPLATE.format(number=i, title=s.title, text=s.text)) + 2
        if used + cost <= budget:
            kept.append(s)
            used += cost
        elif not kept:
            trimmed = _whole_sentences(s, count_tokens, budget)
            if trimmed is not None:
                kept.append(trimmed)
                used = budget
        else:
            break
    return kept


def _whole_sentences(s: Any, count_tokens: Callable[[str], int], budget: int):
    text = ""
    for start, end in split_sentences(s.text):
        sentence = s.text[start:end]
        candidate = f"{text} {sentence}".strip()
        if count_tokens(SOURCE_TEMPLATE.format(number=1, title=s.title, text=candidate)) + 2 > budget:
            break
        text = candidate
    if not text:
        return None
    return dataclasses.replace(s, text=text) if dataclasses.is_dataclass(s) else Passage(s.title, text)


def build_prompt(
    tokenizer: Any,
    question: str,
    sources: Sequence[HasTitleText],
    history: Sequence[dict[str, str]] | None = None,
    context_tokens: int | None = None,
) -> str:
    """The prompt string, through the tokenizer's own chat template, ready for generation."""
    if context_tokens is not None:
        sources = fit_sources(sources, lambda t: len(tokenizer.encode(t, add_special_tokens=False)), context_tokens)
    messages = build_messages(question, sources, history)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


_NUMBERED = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)


def parse_numbered_context(context: str) -> list[Passage]:
    """Split a training context of the form "[1] Title\\ntext\\n\\n[2] ..." into passages."""
    marks = list(_NUMBERED.finditer(context))
    if not marks:
        return []
    out = []
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        body = context[m.end() : nxt.start() if nxt else len(context)]
        out.append(Passage(m.group(2).strip(), body.strip()))
    return out
