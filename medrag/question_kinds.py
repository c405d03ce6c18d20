"""What kind of question a visitor asked, and whether a source sentence answers that kind.

`question_kind("How long does the flu last?") == "duration"`; `answers_kind(sentence, "duration")`
is True for "Symptoms usually last 2 to 14 days." and False for "Flu is a respiratory infection."
The extractive generator prefers sentences that answer the kind asked, and when no source
sentence does, it says so with `Kind.missing` ("how long it lasts").

Shortcuts on purpose: both sides are hand-written regular expressions over English wording
(tuned on data/eval/answers.jsonl, never on the held-aside file), checked in order, first match
wins. A kind whose `answer` is None ("definition", "other") is answered by any relevant sentence.
A cue in a sentence says it speaks to the kind, not that it is right: the generator still
requires the sentence to be similar to the question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_N = r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|twelve|a few|few|several|many|a couple of)"
_SPAN = rf"\b{_N}\b(?:\s*(?:to|-|or|and)\s*{_N}\b)?[\s-]*(?:more\s+)?(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?)\b"
_TIME = re.compile(
    rf"{_SPAN}|\bwithin (?:a|an|days|weeks|months|hours|\d)|\b(?:a )?lifetime\b|\blife-?long\b|"
    r"\b(?:for|over) (?:several |many |a few )?(?:days|weeks|months|years|hours)\b|\blong time\b",
    re.I,
)


@dataclass(frozen=True)
class Kind:
    name: str
    asked: re.Pattern | None  # how a visitor asks it; None: never detected (the fallback)
    answer: re.Pattern | None  # words a sentence that answers it contains; None: any relevant sentence
    missing: str  # what the sources do not say, in "The sources describe X but do not say {missing}."


def _re(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


# In detection order: the first kind whose `asked` matches the question wins.
KINDS: tuple[Kind, ...] = (
    Kind(
        "differential",
        _re(
            r"what (?:could|might|can) (?:it|this|that) be|what (?:could|might) (?:be )?caus|what (?:is|could be) "
            r"(?:causing|wrong)|could (?:it|this) be|why (?:do|does|am|is|are|have) (?:i|my|me)\b|"
            r"\bmy \w+(?: \w+)? (?:hurts?|aches?|is (?:always )?\w+)\b.*\bwhat\b|why is my|what usually causes"
        ),
        _re(
            r"\bcaus|\bcommon\b|\bsign of|due to|\bresult|\binclude|such as|may (?:be|also)|\bcan\b|\breasons?\b|"
            r"\bif (?:you|they|people)\b|\bmakes? you\b"
        ),
        "what could cause it",
    ),
    Kind(
        "cost",
        _re(
            r"\bcosts?\b|\bprice|how much (?:is|does|do|will) (?:a |an |the )?\w+(?: \w+)?\??$|insurance|afford|pay for"
        ),
        _re(r"\bcosts?\b|\bprice|\$|dollars?|insurance|medicare|medicaid|\bpay\b|\bfees?\b|afford|expens"),
        "what it costs",
    ),
    Kind(
        "recurrence",
        _re(r"come back|comes back|coming back|\brecur|\breturn|\bagain\b|relapse|\btwice\b|grow back|flare"),
        _re(
            r"come back|comes back|came back|\brecur|\breturns?\b|\bagain\b|relaps|remission|reappear|"
            r"\bflares?\b|grow back|future occurrences"
        ),
        "whether it can come back",
    ),
    Kind(
        "duration",
        _re(
            r"\bhow long\b|how many (?:days|weeks|months|years|hours)|\bduration\b|\bwhen will\b.*\b(?:go away|stop|end)"
        ),
        None,  # answers_kind: a lasting verb, or a change verb with a span of time (see _duration)
        "how long it lasts",
    ),
    Kind(
        "contagious",
        _re(r"contagious|\bcatch\b|\bspread|infectious|transmit|from (?:someone|another|other people|person)"),
        _re(
            r"contagious|\bcatch|transmit|person[- ]to[- ]person|from (?:people|person|human)|"
            r"spread\w* (?:easily|from|through|by|among|between|via|in the air)|"
            r"spread\w* to (?:other people|others|another person|someone|people|children|babies)|"
            r"(?:direct|close|skin|sexual|personal) contact|(?:through|by) (?:the air|direct|close|sexual|contact|sex)|"
            r"\bbites?\b|passed? (?:from|to)"
        ),
        "whether it spreads from person to person",
    ),
    Kind(
        "inheritance",
        _re(
            r"inherit|hereditary|genetic|\bgenes?\b|runs? in (?:the )?famil|passed (?:down|on)|from (?:my|their) (?:mom|dad|mother|father|parents?)"
        ),
        _re(
            r"inherit|hereditary|genetic|\bgenes?\b|famil|autosomal|x-linked|mutation|passed (?:down|on|from)|parents?\b"
        ),
        "whether it is inherited",
    ),
    Kind(
        "safety",
        _re(
            r"\bsafe|\bsafety\b|\bharmful\b|\bok(?:ay)? to\b|\bgood (?:for|to)\b|\bbad (?:for|to)\b|"
            r"can (?:i|you) (?:take|drink|eat|use|exercise|fly|get an?)\b|should i (?:take|avoid|stop)"
        ),
        _re(
            r"\bsafe|\bsafety\b|harm|\bshould(?: not|n't)?\b|\bavoid|not recommended|\btalk (?:to|with)|"
            r"side effects?|danger|caution|can make it worse|\bdo not\b|\bdon't\b|\blimit\b|\bless than\b|"
            r"\bsmall\b|\bprotect"
        ),
        "whether it is safe",
    ),
    Kind(
        "frequency",
        _re(r"how common|how many (?:people|men|women|kids|children|babies|americans|adults)|how rare|prevalen"),
        _re(r"\d|percent|\bcommon\b|\brare\b|million|thousand|affects?\b|prevalen|incidence|\bmost\b|\bmany\b"),
        "how common it is",
    ),
    Kind(
        "complications",
        _re(
            r"complication|lead to|what (?:can|could|will) happen|\bdamage|side effects|"
            r"if (?:it'?s |it is |left )?(?:not |un)treated|isn'?t treated|problems can"
        ),
        _re(
            r"complication|lead to|\bcaus|damage|problems?\b|\bharm|\brisk of|serious|\bloss\b|failure|\bstroke|not treated|without treatment"
        ),
        "what complications it can cause",
    ),
    Kind(
        "prevention",
        _re(
            r"prevent|\bavoid|lower (?:my|the) risk|reduce (?:my|the) risk|keep .* from|\bvaccin|\bbooster|protect|\bstop .* getting|keep .* strong"
        ),
        _re(
            r"prevent|\bavoid|lower (?:your|the) risk|reduce|protect|vaccin|\bshots?\b|booster|\bdon't|\bdo not|wash|\bwear|\bkeep|\blimit|\bquit|\bdelay|elevat"
        ),
        "how to prevent it",
    ),
    Kind(
        "outlook",
        _re(
            r"outlook|prognosis|surviv|life expectancy|go(?:es)? away|get(?:ting)? better|recover|fatal|\bdie\b|deadly|\bcured?\b|"
            r"curable|permanent|get worse|worse than|grow out|dangerous|on (?:its|their) own|by (?:itself|themselves)|success rate|revers"
        ),
        _re(
            r"outlook|prognosis|recover|\bcure|fatal|death|\bdie|life-threatening|surviv|better|improve|worse|go(?:es)? away|"
            r"disappear|permanent|chronic|life-?long|controlled|under control|\bharm|\bmild|on (?:its|their) own|"
            r"by (?:itself|themselves)|"
            r"without (?:help|treatment)|\bpass|\bstay\b|dangerous|deadly"
        ),
        "what the outlook is",
    ),
    Kind(
        "symptoms",
        _re(r"symptom|\bsigns?\b|what does .* feel like|how (?:do|can) (?:i|you) (?:know|tell) if|look like|warning"),
        _re(r"symptom|\bsigns?\b|\bfeel|\bpain|\bache|fever|rash|itch|swell|cough|tired|fatigue|\bnotice"),
        "what symptoms it causes",
    ),
    Kind(
        "diagnosis",
        _re(
            r"diagnos|\btest(?:ed|s|ing)? (?:for|if)|is there a test|how (?:do|can|would) (?:doctors?|you|they) (?:know|tell|check|find)|\bcounts? as\b|check(?:ed)? for"
        ),
        _re(
            r"diagnos|\btests?\b|\bexam|x-rays?|\bscans?\b|biopsy|imaging|\bcheck|screen|sample|\bmeasur|reading|histor|tell if|\bor higher\b|\byou may have\b"
        ),
        "how it is diagnosed",
    ),
    Kind(
        "risk",
        _re(
            r"\bwho (?:is|are|gets?|should|can)\b|risk factor|at risk|more likely|what age|\bwhy do (?:women|men|girls|boys|kids)"
        ),
        _re(
            r"\brisk|more (?:likely|common)|most (?:common|likely|often)|\banyone\b|people (?:who|with|over|older|younger)|\bage\b|\byears old|\bwomen|\bmen\b|children|famil"
        ),
        "who is at risk",
    ),
    Kind(
        "treatment",
        _re(
            r"\btreat|get rid|\bfix\b|remed|medicine|medication|therap|\bhelps?\b|relie|what (?:can|should) i (?:do|take)|\bmanage|surgery"
        ),
        _re(
            r"\btreat|therap|medicine|medication|\bdrugs?\b|surger|\bcure|manag|reliev|\bhelps?\b|remov|antibiotic|\bdiet\b|splint|procedure|lifestyle|\bcheck for|airway|\bcan do\b"
        ),
        "how it is treated",
    ),
    Kind(
        "cause",
        _re(
            r"\bcaus|\bwhy (?:do|does|is|are)\b|how (?:do|does|did) (?:you|i|people|kids|someone|one) (?:get|catch)|\bbrings? on|\btrigger|\breason"
        ),
        _re(
            r"\bcaus|due to|result|because|trigger|lead to|comes? from|linked to|related to|happens when|occurs when|\bwhen\b|\bget it\b|\bbites?\b|infect|virus|bacteri|no one knows|unknown|\bfrom\b|\bbuilds? up|\bspread|\binclude"
        ),
        "what causes it",
    ),
    Kind("definition", _re(r"^\s*(?:what(?:'s| is| are)|define)\b"), None, "what it is"),
    Kind("other", None, None, "the rest"),
)
BY_NAME = {k.name: k for k in KINDS}

_LAST = re.compile(r"\blast(?:s|ed|ing)?\b(?! (?:year|month|week|trimester|case|stage|resort)s?\b)", re.I)
_CHANGE = re.compile(
    r"\b(?:recover\w*|(?:get|gets|getting|feel) better|improv\w*|go(?:es)? away|clears? up|heal(?:s|ed|ing)?|resolv\w*|"
    r"disappear\w*|fades?|stabiliz\w*|takes?|pass(?:es|ed|ing)?|better)\b",
    re.I,
)


def question_kind(question: str) -> str:
    """The kind of question asked: one of `KINDS`' names ("other" when nothing matches)."""
    for kind in KINDS:
        if kind.asked is not None and kind.asked.search(question):
            return kind.name
    return "other"


def answers_kind(sentence: str, kind: str) -> bool:
    """Does `sentence` speak to the kind asked? Always True for kinds without cues."""
    if kind == "duration":
        return _duration(sentence)
    pattern = BY_NAME[kind].answer if kind in BY_NAME else None
    return pattern is None or bool(pattern.search(sentence))


def has_cues(kind: str) -> bool:
    """Whether a kind can go unanswered: one with cues to look for in the sources."""
    return kind == "duration" or (kind in BY_NAME and BY_NAME[kind].answer is not None)


def _duration(sentence: str) -> bool:
    """A span of time said to last, or a change (recover, heal, go away) within a span of time."""
    if _LAST.search(sentence) and (_TIME.search(sentence) or re.search(r"\blong\b|\blonger\b|\bshort\b", sentence)):
        return True
    return bool(_CHANGE.search(sentence) and _TIME.search(sentence))
