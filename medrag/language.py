"""Does a question read as English? A cheap check run before anything is retrieved.

The app's sources, its embedding model and its red-flag model are English. A question in
another language would only get "the sources never mention ..." (or a random red flag), so the
pipeline answers it with a fixed message that names the emergency numbers instead.

Two signals, both computed from the text alone in microseconds:
- script: when most letters are not Latin (Cyrillic, Arabic, Devanagari, CJK, ...), it is not
  English;
- function words: in Latin script, the small words that carry grammar ("the", "my", "is" against
  "el", "mi", "est", "und", "não") decide. A word that is also common English ("die", "son",
  "was", "per", "come") is never counted as foreign.

Shortcuts taken on purpose:
- It leans towards English: a question with no clear sign either way ("diabetes?", "metformin
  dose", drug names, typos, jargon) is English, because a wrong "not English" would refuse a fair
  question, while a wrong "English" only gives the ordinary decline.
- Only the languages most often met in Europe and the Americas (and a few large others) have
  word lists; other Latin-script languages fall back to their diacritics.
"""

from __future__ import annotations

import re
import unicodedata

ENGLISH = frozenset(
    "the a an is are was were be been being am i my me mine you your he she his her him it its they them their "
    "we our us what how why when where which who whom whose can could should would will shall may might must "
    "do does did done have has had having of to in on for with at by from about into after before over under "
    "and or but not no nor this that these those there here if then than so very too any some much many more "
    "most just now also only still again each every other such own same both all few get got take took make "
    "made need help please i'm it's what's don't can't isn't".split()
)

# Function words (and a few words people write in an emergency) that are not also English words.
# Left out on purpose, being English words or medical terms too: mi (MI), de and du (de Quervain,
# cri du chat), au (café au lait), la (La Crosse), von (von Willebrand), mal (grand mal), hay (hay
# fever), y (Y chromosome), die, son, was, per, non, come, pour, sin, den, kind, um, com, ada, apa,
# po, sang, ma, ai.
_FOREIGN_WORDS = (
    # Spanish
    "el los las del por para que qué cómo como cuál cuándo dónde una unos unas está están estoy mis tengo "
    "tiene tienen hijo hija niño niña muy pero con puedo puede hacer dolor pecho cuando también ayuda "
    "socorro fiebre sangre respira respirar médico porque es se lo le ya "
    # French
    "le les des une est sont je j'ai mon mes pas avec qui quoi il elle nous vous très fièvre douleur "
    "aidez-moi aux ce cette mais ou où enfant suis "
    # German
    "der das und ist ich nicht mit ein eine einen mein meine sind wie habe kann bitte sehr auch hilfe "
    "schmerzen brust fieber warum wo wer welche oder aber zu dem "
    # Portuguese
    "os uma não meu minha estou são tem filho filha dor peito ajuda febre você ele ela isso muito "
    # Italian
    "il lo gli della delle che sono ho mio mia perché cosa molto aiuto dolore petto figlio figlia febbre "
    # Dutch
    "het een ik niet wat mijn hebben heb voor hoe waarom zijn pijn koorts hulp alstublieft "
    # Indonesian / Malay, Turkish, Polish, Tagalog
    "yang saya tidak ini itu anak sakit tolong ve bir bu için çok benim yok ağrı nie jest się że mój moja "
    "mnie ból pomocy ang ng mga ako ko ano"
)
FOREIGN = frozenset(_FOREIGN_WORDS.split()) - ENGLISH

# Latin letters with marks, common in other languages and rare in English ("café" aside)
_MARKED = re.compile(r"[à-ÿĀ-ſƠ-ưȘ-țḀ-ỹ]")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def script_share(text: str) -> float:
    """Share of the letters in `text` that are Latin (1.0 when there are no letters)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 1.0
    latin = sum(1 for c in letters if c.isascii() or unicodedata.name(c, "").startswith("LATIN"))
    return latin / len(letters)


def reads_as_english(text: str) -> bool:
    """False only when `text` is clearly in another language (see the module docstring)."""
    text = text[:2000].lower().replace("\u2019", "'")  # the first lines say which language it is
    if script_share(text) < 0.5:
        return False
    words = _WORD.findall(text)
    if not words:
        return True
    english = sum(w in ENGLISH for w in words)
    foreign = sum(w in FOREIGN for w in words) + text.count("¿") + text.count("¡")
    if foreign >= 2 and foreign > english:
        return False
    marked = sum(1 for w in words if _MARKED.search(w))
    if english == 0 and foreign >= 1 and len(words) <= 2:  # "Hilfe!", "fiebre alta"
        return False
    # no English word, and marked letters in half the words or more: "Tôi bị đau ngực"
    return not (english == 0 and len(words) >= 3 and marked * 2 >= len(words))
