"""`EvidenceGate`: is there enough in the retrieved sources to answer a question, and if not, why.

Two rules, checked once per question by the pipeline before any generation:
- the best dense cosine among the hits is at least `PipelineConfig.min_evidence` (cosine rather than
  the RRF score: RRF says only how ranks agree, not whether anything is close);
- with `decline_unknown_words`, every topic word of the question occurs in some chunk: a word no
  chunk contains is a name the corpus never mentions (an unknown drug, a made-up disease).

Words of asking ("how", "my", "get") and stopwords never count as topic words, nor words the
embedder's own vocabulary holds whole (everyday English), so a small corpus that never says
"safe" still answers "is it safe...?". Shortcut on purpose: a word is matched by its BM25 stem,
so "wheezes" is known when a chunk says "wheezing".
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from medrag.config import PipelineConfig
from medrag.index import STOPWORDS, TOKEN, analyze
from medrag.types import Hit

QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how does do did doing done can could should would will shall may might "
    "must have has had get gets got getting tell know please anyone someone thanks thank hi hello "
    "i me my mine myself we us our you your yours he him his she her it its they them their".split()
)  # words of asking, not of the topic: never a reason to decline


def evidence(hits: Sequence[Hit]) -> float:
    """How strongly the corpus covers a question: the best dense cosine among `hits` (0.0 for none)."""
    return max((h.dense_score for h in hits if h.dense_score is not None), default=0.0)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # "" when ok; "weak_evidence" (Answer.decline_reason) otherwise
    evidence: float = 0.0  # the best cosine among the hits
    unknown: tuple[str, ...] = ()  # question words no chunk contains

    @property
    def explanation(self) -> str:
        """What the decline message adds for a reader: the words the sources never mention, if any."""
        return f" The sources never mention: {', '.join(self.unknown)}." if self.unknown else ""


class EvidenceGate:
    def __init__(self, index, embedder=None, config: PipelineConfig | None = None):
        """`index`: anything with `has_term(stem)`; `embedder`: its tokenizer's vocabulary names everyday words."""
        self.index, self.embedder = index, embedder
        self.config = config or PipelineConfig()
        self._vocab: frozenset[str] | None = None
        self._lock = threading.Lock()  # the vocabulary is read once, whichever session asks first

    def check(self, question: str, hits: Sequence[Hit], also=None) -> Verdict:
        """`also`: more text searched beside the index (a visitor's own files): a word it holds is known."""
        score = evidence(hits)
        unknown = tuple(self.unknown_words(question, also)) if self.config.decline_unknown_words else ()
        if score < self.config.min_evidence or unknown:
            return Verdict(False, "weak_evidence", score, unknown)
        return Verdict(True, "", score)

    def unknown_words(self, text: str, also=None) -> list[str]:
        """Topic words of `text` that no chunk (of the index, nor of `also`: anything with `has_term`) contains,
        in order, each once."""
        words = dict.fromkeys(w for w in TOKEN.findall(text.lower()) if w not in STOPWORDS | QUESTION_WORDS)
        return [
            w
            for w in words
            if (terms := analyze(w))
            and not self.is_common_word(w)
            and not self.index.has_term(terms[0])
            and not (also is not None and also.has_term(terms[0]))
        ]

    def is_common_word(self, word: str) -> bool:
        """True when the embedder's vocabulary holds `word` whole: everyday English, not a rare name."""
        tokenizer = getattr(self.embedder, "tokenizer", None)
        if tokenizer is None:
            return False
        with self._lock:
            if self._vocab is None:
                self._vocab = frozenset(tokenizer.get_vocab())
        return word.lower() in self._vocab
