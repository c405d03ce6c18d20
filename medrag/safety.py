"""Input checks and red-flag detection: the step before retrieval.

`check_input` refuses input that is not a usable question (empty, too long, control characters)
with a message the user can act on. `detect_red_flag` spots a person describing an emergency
happening now, so the pipeline answers with a fixed urgent message (medrag.prompts.URGENT_MESSAGES,
one per kind of help: `crisis`, `poison`, `emergency`) and generates nothing.

Two detectors, combined so that a miss needs both to miss:
- rules: regexes over lowercased text with contractions spelled out ("can't" -> "can not"), for
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
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from medrag.errors import MedRAGError
from medrag.language import reads_as_english

log = logging.getLogger(__name__)

# every kind of emergency the labelled set (data/eval/red_flags.jsonl) covers -> the help it needs
CATEGORIES: dict[str, str] = {
    "heart_attack": "emergency",
    "stroke": "emergency",
    "suicide_self_harm": "crisis",
    "overdose_poisoning": "poison",
    "severe_bleeding": "emergency",
    "anaphylaxis": "emergency",
    "unresponsive": "emergency",
    "seizure": "emergency",
    "breathing": "emergency",
    "worst_headache": "emergency",
    "meningitis": "emergency",
    "pregnancy": "emergency",
    "baby_child": "emergency",
    "sepsis": "emergency",
    "head_injury": "emergency",
    "diabetic": "emergency",
    "burns": "emergency",
    "heat_cold": "emergency",
    "injury": "emergency",
}
HELP_CATEGORY = {"crisis": "suicide_self_harm", "poison": "overdose_poisoning", "emergency": "emergency"}


@dataclass(frozen=True)
class RedFlag:
    category: str  # a CATEGORIES key from a rule; suicide_self_harm, overdose_poisoning or emergency from the model
    matched: str  # the words that fired, from the normalised question ("" when the model fired)
    help: str = "emergency"  # crisis | poison | emergency: which urgent message applies
    by: str = "rules"  # rules | model
    score: float | None = None  # the model's log-odds, when the model fired


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


# --- building blocks: UPPERCASE words in a rule are replaced by these (the text itself is lowercase) ---
_PARTS = {
    "WORD": r"[\w'-]{1,50}",
    "KIN": r"(?:baby|infant|newborn|toddler|child|kid|son|daughter|boy|girl|husband|wife|partner|mom|mum|mother"
    r"|dad|father|gran|grandma|grandpa|grandad|granddad|grandmother|grandfather|nan|aunt|uncle|cousin|friend"
    r"|brother|sister|boyfriend|girlfriend|roommate|neighbou?r|coworker|colleague)",
    "MEDS": r"(?:pills|tablets|capsules|meds|medicines?|medications?|painkillers|tylenol|acetaminophen|paracetamol"
    r"|ibuprofen|aspirin|insulin|opioids?|oxy\w*|xanax|benadryl|antidepressants?)",
    "POISON": r"(?:bleach|antifreeze|drain cleaner|detergent|laundry (?:pods?|capsules?)|(?:button )?batter(?:y|ies)"
    r"|rat poison|poison|pesticide|weed ?killer|lighter fluid|gasoline|petrol|kerosene|paint thinner|chemicals"
    r"|cleaning (?:product|fluid|spray)|nail polish remover|magnets)",
    "ALLERGEN": r"\b(?:allerg\w*|stings?|stung|bees?|wasps?|hornets?|peanuts?|nuts|shellfish|shrimp|penicillin|hives|epi ?pen)\b",
    "BREATH": r"(?:breathe|breath|breathing|get (?:any )?air)",
    "NOSE": r"(?! (?:(?:properly|well|right|easily|out|in) )?(?:(?:through|out of|with) (?:my|his|her|their|the|one) nos|through it\b))",
    "HERE": r"(?:someone|somebody|a (?:man|woman|person|guy|kid|child)) (?:here|next to me|near me|with me|in front of me)",
}
# "WHO rest": a person (pronoun, "my <up to 4 words>", a bare relative, someone here), hedges, then `rest`
_SUBJ = r"(?P<who>\b(?:i|he|she|they|we|(?:my|our|his|her|their) (?:WORD ){0,3}?WORD|(?:KIN)s?|WORD's KIN|HERE))"
_ADV = r"(?:(?:think|thinks|might|may|could|also|just|still|suddenly|now|really|currently|probably|actually) )*"
_HYPOTHETICAL = re.compile(r"\b(?:if|when|whenever|in case)(?: [\w'-]+){0,5} ?$")

# --- the rules: the first category with a matching pattern wins, so specific ones come first ------
RULES: dict[str, list[str]] = {
    "heart_attack": [
        r"WHO (?:am|is|are|be) having (?:a |another )?(?:heart at+ack|cardiac arrest)",
        r"\b(?:am i|is (?:he|she|my \w+)) having (?:a )?heart at+ack",
        # chest pain together with breathlessness, sweating, or arm or jaw pain
        r"^(?=.*\b(?:i|my|me|he|she)\b)(?=.*\b(?:short(?:ness)? of breath|breathless|(?:hard|difficult) to breathe|trouble breathing|can not breathe?|sweat(?:ing|y)|clammy|arm|jaw)\b).*?(?P<m>\bchest (?:pain|pressure|tightness|discomfort|hurts|is (?:\w+ )?(?:tight|crushing|heavy)|feels (?:\w+ )?(?:tight|heavy|crushed))|\bpain in (?:the (?:middle|centre|center) of )?(?:my|his|her|their) chest)",
    ],
    "stroke": [  # FAST: face, arm, speech; sudden confusion; "having a stroke"
        r"WHO (?:am|is|are|be) having (?:a |another )?(?:stroke|mini[- ]stroke|tia)\b",
        r"\b(?:am i|is (?:he|she|my \w+)) having (?:a )?stroke",
        r"\b(?:my|his|her|their|WORD's) (?:face|mouth|smile) (?:(?:is|has|just|suddenly|started|gone|went|looks|all of a sudden) )*(?:droop(?:ing|ed|y)|drop(?:ping|ped)|sag(?:ging|ged)|lopsided|crooked)",
        r"\b(?:my|his|her|their|WORD's) speech (?:is|has|sounds|became|went|suddenly)(?: \w+)? (?:slurred|slurring|garbled)",
        r"WHO (?:am|is|are) (?:suddenly )?(?:slurring|talking funny|not making sense)",
        r"^(?=.*\bsudden)(?=.*\b(?:my|his|her)\b).*?(?P<m>(?:can not|could not) (?:lift|raise|move) (?:my|his|her|their) (?:left |right )?(?:arm|leg)|(?:weak|numb)(?:ness)? (?:on|in) (?:one side|(?:my|his|her) (?:left |right )?(?:arm|leg|face|side)))",
        r"^(?=.*\bsudden).*?WHO (?:is|am|are|seems|became|got|went) (?:\w+ ){0,3}?(?:confused|disoriented)",
    ],
    "suicide_self_harm": [  # intent, plans and indirect phrasings; talk about suicide as a topic does not fire
        r"\b(?:kill(?:ing)?|end(?:ing)?|tak(?:e|ing)) (?:my ?self|my (?:own )?life)\b(?! (?:back|insurance|assurance|policy|cover|savings|story))",
        r"(?<!not )(?<!never )\b(?:want|wanna|ready|wish|planning|plan|decided) (?:to )?(?:die|be dead|end it)\b(?! (?:my|her|his|your) hair)",
        r"\b(?:do not|no longer|never) want to (?:live|be alive|be here|exist|go on|wake up)\b",
        r"\b(?:end(?:ing)? it all|wish i (?:was|were) dead|better off (?:dead|without me)|(?:no reason|nothing(?: left)?) to live(?: for)?)\b",
        r"\bi (?:am |have been |keep |was )?(?:thinking|having thoughts|have thoughts) (?:about|of) (?:suicide|killing|ending|taking my|hurting my|harming my)",
        r"WHO (?:am|is|are|feel|feels|feeling|have|has|keep|been)(?: \w+){0,2}? suicidal",
        r"\b(?:want|urge|going|planning|tempted) (?:to )?(?:hurt|harm|cut|burn) my ?self|\bi (?:have been |keep |started |am )(?:\w+ )?(?:cutting|harming|hurting|burning) my ?self",
        r"\b(?:painless|easiest|quickest|best) way to (?:die|kill my ?self|commit suicide)\b",
    ],
    "overdose_poisoning": [  # something that has been taken, not "what happens if you take too much"
        r"\b(?:overdosed|od'?d)\b|\b(?:took|taken|swallowed) (?:way |far )?too many MEDS",
        r"\btook (?:a|an|the) (?:whole|full|entire) (?:bottle|pack|packet|box)\b",
        r"\b(?:took|taken|swallowed|ate) (?:a (?:bunch|handful|lot)|lots|loads) of (?:my |his |her |their |the |WORD's )?(?:WORD )?MEDS",
        r"WHO (?:(?:accidentally|may have|might have|has|have|had) )*(?:took|taken|swallowed|ate|eaten|drank|drunk) (?:WORD ){0,4}?(?:too much (?:of )?(?:my |his |her |the )?MEDS|\d+ (?:of )?(?:my |his |her |the )?MEDS)",
        r"WHO (?:(?:accidentally|may have|might have|has|have) )*(?:swallowed|drank|drunk|ate|eaten|ingested|chewed on|got into) (?:WORD ){0,3}?POISON",
        r"\bgot into (?:the |my |his |her |WORD's )?(?:MEDS|POISON)",
    ],
    "severe_bleeding": [
        r"\b(?:will not|would not|does not|can not|is not) stop(?:ping)? (?:the |his |her |my )?bleeding\b|\bbleeding (?:will|would|does|is) not stop",
        r"\bbleeding\b(?: WORD){0,8}? (?:and|but) (?:it )?(?:will not|would not|does not|can not|is not) stop",
        r"WHO (?:am|is|are|has been|have been) (?:still )?(?:bleeding|losing blood) (?:very |really |so )?(?:heavily|a lot|badly|profusely|everywhere|non ?stop|so much|too much)",
        r"WHO (?:has|have) been bleeding (?:for )?(?:over |more than |nearly |almost )?(?:an hour|half an hour|\d+ (?:minutes|mins|hours))",
        r"WHO (?:has|have|is|am) (?:lost|losing) (?:a lot of|so much|lots of) blood",
        r"\bblood (?:is )?(?:pouring|gushing|spurting|squirting|pumping)\b|\b(?:pouring|gushing|spurting) blood\b",
    ],
    "anaphylaxis": [  # a throat closing, or swelling or breathlessness with an allergen named
        r"\b(?:my|his|her|their|WORD's) throat (?:is |feels |feels like it is |keeps )?(?:closing|shutting|swelling shut)",
        r"\b(?:lips?|tongue|throat|face)(?: and (?:lips?|tongue|throat|face))* (?:is |are |started |keeps )?(?:swelling|swollen)(?: up)? (?:after|since) (?:eating|being stung|a (?:bee |wasp )?sting|taking)",
        r"^(?=.*ALLERGEN).*?(?P<m>\b(?:my|his|her|their) (?:lips?|tongue|throat|mouth)(?: and (?:my |his |her )?(?:lips?|tongue|throat|face))* (?:(?:is|are|has|have|keeps|started|starting|getting|suddenly|just) )*(?:swelling|swelled|swollen|puff\w* up|blow\w* up))",
        r"^(?=.*ALLERGEN).*?(?P<m>\b(?:can not|could not|can barely|struggling to) BREATH)",
        r"WHO (?:am|is|are|be) (?:going into|having|in) (?:an? )?(?:anaphyla\w+|severe allergic reaction)",
        r"\b(?:used|gave|give|giving|injected|should i use) (?:my|his|her|their|him his|her her|him|them) (?:\w+ )?epi ?-?pens?\b",
    ],
    "unresponsive": [  # unconscious, not breathing, will not wake: urgent with or without a pronoun
        r"(?<!of )\b(?:not|stopped) breathing\b(?:NOSE)",
        r"WHO (?:is|are|has been|was found|went|seems|lying|looks|collapsed and is) (?:\w+ )?(?:unresponsive|unconscious|not responding|not responsive)(?! to)",
        r"\b(?:KIN|he|she|they) (?:will not|would not|does not|can not|is not) (?:wake|waking|wake up|respond|responding)\b(?! to (?:treatment|therapy|medication|medicine|antibiotics|chemo|drugs))",
        r"\bcan not (?:wake|rouse) (?:him|her|them|my (?:WORD ){0,2}?WORD)\b|\bcan not get (?:him|her|them|my WORD) to (?:wake|respond)",
        r"\b(?:passed out|collapsed|fainted) and (?:is not|will not|can not|has not|does not) (?:wake|waking|respond|responding|come round|come to)",
        r"\bfound (?:WORD ){1,3}?(?:unconscious|unresponsive|not breathing)|\b(?:limp|floppy|blue) and (?:will not|can not|does not|is not) (?:wake|respond)",
        r"WHO (?:is|are|seems|looks|went|has gone) (?:very |really |suddenly |all )?(?:limp|floppy)\b",
        r"WHO (?:just|has just|has|suddenly|has suddenly) collapsed",
    ],
    "seizure": [  # a seizure now, a first seizure, or one that will not stop; not epilepsy as a topic
        r"WHO (?:am|is|are) (?:having|in the middle of) (?:a |another )?(?:seizure|fit|convulsion|febrile seizure)\b",
        r"WHO (?:am|is|are|has been|have been) (?:seizing|convulsing|fitting)\b",
        r"WHO (?:just )?(?:had|has had|has|is having) (?:a |her |his |my |their |its )(?:first|first ever) (?:seizure|fit|convulsion)|(?:just )?(?:had|has had|is having|has) a (?:seizure|fit|convulsion) for the first time|just had a (?:seizure|fit|convulsion)",
        r"\b(?:my|his|her|WORD's) seizure (?:has |is )?(?:lasted|lasting|been going on|going on|will not stop|not stopping)",
    ],
    "breathing": [  # severe difficulty breathing, choking, turning blue
        r"\b(?:can not|could not|can barely|can hardly|unable to) BREATH\b(?:NOSE)",
        r"\b(?:struggling|fighting|gasping|labou?ring) (?:to breathe?|for (?:air|breath|each breath))\b",
        r"\b(?:lips?|face|tongue|mouth) (?:(?:is|are|has|have|look|looks|went|going|gone|getting|turning|turned) )+(?:blue|bluish|purple|gr[ae]y)\b",
        r"WHO (?:is|am|are) (?:turning|going) blue|(?:is|am|are) (?:\w+ )?choking\b",
        r"\b(?:inhaler|puffer|nebuli[sz]er) (?:is |are )?(?:not|does not|did not|will not) (?:working|help\w*)",
        r"WHO (?:has|have|am having|is having) (?:severe|serious|extreme|really bad) (?:trouble|difficulty|shortness of breath|breathlessness)",
    ],
    "worst_headache": [
        r"\bworst headache (?:of|in) (?:my|his|her|their) (?:whole |entire )?li(?:fe|ves)\b|\bworst headache (?:i|he|she|they) (?:have|has|had|ever)\b",
        r"WHO (?:have|has|got|woke up with|am having|is having) (?:a |the )?(?:sudden(?:ly)? |thunderclap |explosive )(?:WORD ){0,2}?headache\b",
    ],
    "meningitis": [  # fever with a rash that does not fade, or fever with a stiff neck
        r"^(?=.*\b(?:fever|temperature|temp|feverish)\b)(?=.*\b(?:my|his|her|he|she|baby|child|son|daughter|toddler)\b).*?(?P<m>\brash\b(?: WORD){0,8}? (?:not (?:fade|blanch|go white|turn white|disappear when)|non[- ]?blanching)|\b(?:non[- ]?blanching|purple|purplish) (?:rash|spots)|\bspots (?:that )?do not (?:fade|blanch))",
        r"^(?=.*\b(?:fever|temperature|temp)\b)(?=.*\b(?:my|he|she|baby|child|son|daughter)\b (?:WORD ){0,3}?(?:has|have|is|got)\b).*?(?P<m>\bstiff neck|\bneck is (?:very |really )?stiff)",
    ],
}


def _compile(rule: str) -> re.Pattern[str]:
    """Expand WHO (subject, hedges, then the rest as group `m`) and the other UPPERCASE parts."""
    if "WHO " in rule:
        before, rest = rule.split("WHO ", 1)
        rule = f"{before}{_SUBJ} {_ADV}(?P<m>{rest})"
    return re.compile(re.sub(r"\b[A-Z]{3,}\b", lambda m: _PARTS[m.group(0)], rule))


_COMPILED = [(category, _compile(rule)) for category, rules in RULES.items() for rule in rules]

MAX_WORD = 50  # longer "words" are base64, hashes or URLs: dropped, so no rule backtracks over them

_CONTRACTIONS = [  # spelled out so the rules need one form: "can't", "cant", "cannot" -> "can not"
    (r"\bi'?m\b", "i am"),
    (r"\bi'?ve\b", "i have"),
    (r"\b(he|she|it|that|who|there)'s\b", r"\1 is"),
    (r"\b(he|she)s\b", r"\1 is"),
    (r"\b(you|we|they)'re\b|\b(you|they)re\b", lambda m: f"{m.group(1) or m.group(2)} are"),
    (r"\b(?:can'?t|cannot)\b", "can not"),
    (r"\bwon'?t\b", "will not"),
    (r"\b(is|are|was|were|do|does|did|has|have|had|could|would|should)n'?t\b", r"\1 not"),
]


def normalise(text: str) -> str:
    """Lowercase, straight apostrophes, punctuation to spaces, contractions spelled out, no word over 50 characters."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = " ".join(w for w in re.sub(r"[^\w\s'-]", " ", text).split() if len(w) <= MAX_WORD)
    for pattern, repl in _CONTRACTIONS:
        text = re.sub(pattern, repl, text)
    return text


def detect_red_flag(question: str, embedder=None, vector: np.ndarray | None = None) -> RedFlag | None:
    """The first rule that finds an emergency happening now, else the classifier's verdict, else None.

    The classifier runs only with an `embedder` of the model it was trained on (or that embedder's
    `vector` of the question) and on a question that reads as English; without one, rules only.
    """
    text = normalise(question)
    flag = _rules(text)
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


def _rules(text: str) -> RedFlag | None:
    for category, rule in _COMPILED:
        for m in rule.finditer(text):
            who = m.start("who") if "who" in rule.groupindex and m.group("who") else -1
            if who >= 0 and _HYPOTHETICAL.search(text[max(0, who - 80) : who]):
                continue  # "what should I do if my child ..." asks about first aid
            matched = m.group("m") if "m" in rule.groupindex and m.group("m") else m.group(0)
            return RedFlag(category, matched.strip(), CATEGORIES[category])
    return None


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
