"""Turns kept in the browser and the Markdown export: what a reload shows again, what a file links to."""

from __future__ import annotations

import re

from medrag.conversation import Turn, chat_messages, export_markdown, history, load_turns, save_turns
from medrag.types import Answer, Chunk, Hit

ASTHMA = Chunk(
    "asthma#0",
    "asthma",
    "Asthma [NIH] ![x](https://attacker.invalid/t.png)",
    "…",
    "https://medlineplus.gov/asthma.html",
)
NO_URL = Chunk("note#0", "note", "A note", "…", "javascript:alert(1)")


def answer(text="Asthma narrows the airways [1]. See also [2].", question="What is asthma? <b>now</b>") -> Answer:
    return Answer(question, text, sources=[Hit(ASTHMA, 1.0), Hit(NO_URL, 0.5)], versions={"index": "me/idx@abc"})


def test_turns_round_trip_through_json_and_show_as_a_fresh_answer():
    turn = Turn.from_answer(answer())
    (back,) = load_turns(save_turns([turn]))
    assert back == turn and back.sources[0].id == "asthma#0" and back.versions == {"index": "me/idx@abc"}
    user, bot = chat_messages([back])
    assert user["content"] == "What is asthma? &lt;b&gt;now&lt;/b&gt;"
    assert "[[1]](https://medlineplus.gov/asthma.html" in bot["content"] and "javascript" not in bot["content"]


def test_what_a_browser_sends_back_is_not_trusted():
    saved = [{"question": "q", "answer": "a"}, {"question": 3}, "junk", {"nope": 1}, None]
    assert [t.question for t in load_turns(saved)] == ["q"]
    assert load_turns("not a list") == [] and load_turns(None) == []


def test_history_is_the_last_complete_turns():
    a, b = Turn("q1", "a1"), Turn("q2", "a2")
    stopped = Turn("q3", "half", stopped=True)
    assert history([a, b, stopped], 1) == [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
    assert history([a, b], 0) == []


def test_export_lists_each_question_answer_and_numbered_sources_with_only_their_links():
    md = export_markdown(
        [Turn.from_answer(answer()), Turn("Chest pain?", "Call 911 [now](https://attacker.invalid)", "urgent")]
    )
    assert "## 1. What is asthma? &lt;b&gt;now&lt;/b&gt;" in md
    assert "Asthma narrows the airways [[1]](https://medlineplus.gov/asthma.html" in md
    assert (
        "1. [Asthma &#91;NIH&#93; !&#91;x&#93;(https&#58;//attacker.invalid/t.png)](https://medlineplus.gov/asthma.html) `asthma#0`"
        in md
    )
    assert "2. A note `note#0`" in md  # no link from a javascript: url
    assert "## 2. Chest pain?" in md and "&#91;now&#93;(https&#58;//attacker.invalid)" in md
    targets = re.findall(r"\]\(([^)\s]+)", re.sub(r' "[^"]*"\)', ")", md))  # every link's target (titles are text)
    assert targets and all(t == "https://medlineplus.gov/asthma.html" for t in targets), targets
    assert "<b>" not in md
