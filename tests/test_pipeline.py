from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from medrag.config import PipelineConfig
from medrag.errors import ConfigError, IndexLoadError, InputError
from medrag.index import VectorIndex
from medrag.pipeline import RAGPipeline, open_configured_index, retrieval_query
from medrag.prompts import (
    CANNOT_ANSWER_PHRASE,
    CRISIS_MESSAGE,
    DISCLAIMER,
    NOT_ENGLISH_MESSAGE,
    POISON_MESSAGE,
    URGENT_CARE_MESSAGE,
    URGENT_MESSAGES,
)
from medrag.types import Chunk

WORDS = ("asthma", "wheezing", "flu", "virus", "children", "vaccine")


class WordEmbedder:
    """Vector = which of WORDS a text contains, L2-normalised: cosines are checkable by hand."""

    model_id, dim = "fake-words", len(WORDS)

    def embed(self, texts, **_):
        bags = [set(re.findall(r"[a-z]+", t.lower())) for t in texts]
        v = np.array([[float(w in b) for w in WORDS] for b in bags], dtype=np.float32)
        n = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(n == 0, 1, n)


CHUNKS = [
    Chunk(id="a#0", doc_id="a", title="Asthma", text="Asthma causes wheezing. Asthma is common.", url="https://a"),
    Chunk(
        id="f#0",
        doc_id="f",
        title="Flu",
        text="The flu is caused by a virus. A vaccine lowers the risk.",
        url="https://f",
    ),
    Chunk(
        id="c#0",
        doc_id="c",
        title="Flu in children",
        text="Children with the flu need rest and fluids.",
        url="https://c",
    ),
]


class SpyGenerator:
    name = "spy"

    def __init__(self, reply: str):
        self.reply, self.calls = reply, []

    def stream(self, question, sources, history=None, *, info=None, **kw):
        self.calls.append((question, [s.id for s in sources]))
        if info is not None:
            info["versions"] = {"adapter": "me@abc"}
            info["warnings"] = ["trimmed"]
        yield from re.findall(r"\S+\s*", self.reply)

    def versions(self):
        return {"generator": "spy"}


def make(reply="Asthma causes wheezing. [1]", **cfg) -> tuple[RAGPipeline, SpyGenerator]:
    emb = WordEmbedder()
    index = VectorIndex.build(
        CHUNKS,
        emb.embed([c.embed_text for c in CHUNKS]),
        model_id=emb.model_id,
        dim=emb.dim,
        chunker={},
        corpus_sha256="x",
    )
    gen = SpyGenerator(reply)
    config = PipelineConfig(top_k=2, min_evidence=0.3, **cfg)
    return RAGPipeline(config, embedder=emb, index=index, generator=gen), gen


def test_stream_grows_and_the_final_answer_is_checked():
    pipe, gen = make("Asthma causes wheezing. [1] Made up claim about elephants here. [9]")
    partials = list(pipe.stream("Does asthma cause wheezing?"))
    texts = [p.text for p in partials[:-1]]
    assert len(texts) > 3 and all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    final = partials[-1]
    assert final.kind == "answer" and not final.declined
    assert final.text == "Asthma causes wheezing. [1] Made up claim about elephants here."
    assert final.removed_citations == 1
    assert final.unsupported == ["Made up claim about elephants here."]
    assert final.cited_numbers == [1] and final.sources[0].chunk.doc_id == "a"
    assert final.versions["adapter"] == "me@abc" and final.versions["embedding_model"] == "fake-words"
    assert final.warnings == ["trimmed"] and final.disclaimer == DISCLAIMER
    assert {"retrieval", "first_token", "total"} <= final.timings.keys()
    assert gen.calls[0][0] == "Does asthma cause wheezing?" and gen.calls[0][1][0] == "a#0"


def test_red_flag_answers_with_the_urgent_message_and_no_generation():
    pipe, gen = make()
    ans = pipe.answer("My father has crushing chest pain and can't breathe")
    assert ans.kind == "urgent" and ans.text == URGENT_CARE_MESSAGE and ans.decline_reason == "red_flag"
    assert gen.calls == [] and ans.sources == []


@pytest.mark.parametrize(
    ("question", "help"),
    [
        ("I want to kill myself", "crisis"),
        ("my toddler swallowed a button battery", "poison"),
        ("My father has crushing chest pain and can't breathe", "emergency"),
    ],
)
def test_each_kind_of_emergency_gets_the_message_for_its_help(question, help):
    pipe, gen = make()
    ans = pipe.answer(question)
    assert ans.kind == "urgent" and ans.decline_reason == "red_flag" and ans.text == URGENT_MESSAGES[help]
    assert gen.calls == [] and ans.sources == []


def test_the_urgent_messages_name_the_right_lines_and_their_sources():
    assert "988" in CRISIS_MESSAGE and "116 123" in CRISIS_MESSAGE
    assert "1-800-222-1222" in POISON_MESSAGE and "NHS 111" in POISON_MESSAGE and "999" in POISON_MESSAGE
    for message in URGENT_MESSAGES.values():  # a life in danger: the emergency number, always
        assert "emergency number" in message and "911" in message and "112" in message and "Sources:" in message
    assert URGENT_MESSAGES["emergency"] == URGENT_CARE_MESSAGE


def test_an_emergency_only_the_model_sees_is_answered_before_any_retrieval(embedder):
    gen = SpyGenerator("unused")
    pipe = RAGPipeline(PipelineConfig(), embedder=embedder, generator=gen)
    ans = pipe.answer("I'm 30 weeks pregnant and bleeding heavily")  # answered as an ordinary question before
    assert ans.kind == "urgent" and ans.text == URGENT_CARE_MESSAGE
    assert pipe.answer("nobody would miss me if I was gone").text == CRISIS_MESSAGE
    assert pipe.answer("my son ate some of grandma's heart pills").text == POISON_MESSAGE
    assert gen.calls == [] and pipe._index is None  # no index was even opened


def test_the_question_is_embedded_once_for_the_safety_check_and_retrieval(embedder, monkeypatch):
    runner = embedder._load()
    calls = []
    encode_one = runner.encode_one
    monkeypatch.setattr(runner, "encode_one", lambda text: calls.append(text) or encode_one(text))
    index = VectorIndex.build(
        CHUNKS,
        embedder.embed([c.embed_text for c in CHUNKS]),
        model_id=embedder.model_id,
        dim=384,
        chunker={},
        corpus_sha256="x",
    )
    pipe = RAGPipeline(
        PipelineConfig(top_k=2, min_evidence=0.1),
        embedder=embedder,
        index=index,
        generator=SpyGenerator("Asthma causes wheezing. [1]"),
    )
    ans = pipe.answer("Does asthma cause wheezing in the lungs?")
    assert ans.kind == "answer" and calls == ["Does asthma cause wheezing in the lungs?"]


@pytest.mark.parametrize(
    "question", ["¿Qué es la diabetes?", "mi hijo no respira", "Мой ребенок не дышит", "我的孩子发烧了"]
)
def test_a_question_in_another_language_gets_the_english_only_message_with_the_emergency_numbers(question):
    pipe, gen = make()
    ans = pipe.answer(question)  # before: "I cannot answer ... The sources never mention: ..."
    assert ans.kind == "invalid" and ans.declined and ans.decline_reason == "not_english"
    assert ans.text == NOT_ENGLISH_MESSAGE and "112" in ans.text and "911" in ans.text and "999" in ans.text
    assert gen.calls == []


def test_weak_evidence_declines_without_calling_the_generator():
    pipe, gen = make()
    ans = pipe.answer("What is the capital of France?")
    assert ans.kind == "declined" and ans.decline_reason == "weak_evidence"
    assert ans.text == CANNOT_ANSWER_PHRASE + " The sources never mention: capital, france."
    assert gen.calls == []


def test_a_word_no_source_contains_declines_even_when_the_rest_matches():
    pipe, gen = make()
    ans = pipe.answer("Does zorvatrexil cause asthma wheezing?")
    assert ans.declined and ans.text.endswith("The sources never mention: zorvatrexil.") and gen.calls == []
    pipe.config.decline_unknown_words = False
    assert not pipe.answer("Does zorvatrexil cause asthma wheezing?").declined


@pytest.mark.parametrize("bad", ["", "   \n ", "x" * 1001, "asthma\x00?", "what\x07 is asthma"])
def test_bad_input_gets_a_message_and_no_work(bad):
    pipe, gen = make()
    ans = pipe.answer(bad)
    assert ans.kind == "invalid" and ans.declined and ans.decline_reason == "bad_input"
    assert ans.text and gen.calls == []


def test_model_that_declines_is_marked_declined():
    pipe, _ = make(CANNOT_ANSWER_PHRASE)
    ans = pipe.answer("Does asthma cause wheezing?")
    assert ans.declined and ans.decline_reason == "model_declined"


def test_follow_up_question_carries_the_previous_turn():
    history = [{"role": "user", "content": "What is the flu?"}, {"role": "assistant", "content": "A virus. [1]"}]
    assert retrieval_query("and for children?", history) == "What is the flu? and for children?"
    long_question = "What are the long term effects of asthma on adult lung function?"
    assert retrieval_query(long_question, history) == long_question
    assert retrieval_query("and for children?", None) == "and for children?"
    pipe, gen = make()
    pipe.answer("and for children?", history=history)
    assert gen.calls[0][1][0] == "c#0"


def test_overrides_reach_retrieval():
    pipe, _ = make()
    assert len(pipe.answer("Does asthma cause wheezing?", top_k=1).sources) == 1
    assert pipe.answer("Does asthma cause wheezing?", mode="bm25").sources[0].retrievers == ("bm25",)


def test_nothing_heavy_loads_on_construction_or_import():
    pipe = RAGPipeline(PipelineConfig(index_dir="/nonexistent"))
    assert pipe._embedder is None and pipe._index is None and pipe._generator is None
    code = "import sys, medrag.pipeline; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_unknown_words_skip_pronouns_and_everyday_words():
    pipe, _ = make()
    assert pipe.index.unknown_words("Can my kid get zorvatrexil?") == ["kid", "zorvatrexil"]
    assert pipe.index.unknown_words("Can my kid get zorvatrexil?", common=lambda w: w == "kid") == ["zorvatrexil"]


def test_real_vocabulary_tells_everyday_words_from_names(embedder):
    assert embedder.is_common_word("safe") and embedder.is_common_word("Insurance")
    assert not embedder.is_common_word("zorvatrexil") and not embedder.is_common_word("kravitz")


# --- the pipeline checks its own arguments --------------------------------------------------------

BAD_OPTIONS = [
    ({"top_k": -1}, "top_k=-1 is not allowed: top_k must be an integer from 1 to 20"),
    ({"top_k": 0}, "top_k=0 is not allowed: top_k must be an integer from 1 to 20"),
    ({"top_k": 21}, "top_k=21 is not allowed"),
    ({"top_k": "abc"}, "top_k='abc' is not allowed: top_k must be an integer from 1 to 20"),
    ({"top_k": 2.5}, "top_k=2.5 is not allowed"),
    ({"top_k": True}, "top_k=True is not allowed"),
    ({"mode": "fast"}, "mode='fast' is not allowed: mode must be one of dense, bm25, hybrid"),
    ({"mode": ["bm25"]}, "mode=['bm25'] is not allowed"),
    ({"temperature": -0.1}, "temperature=-0.1 is not allowed: temperature must be a number from 0.0 to 2.0"),
    ({"temperature": float("nan")}, "temperature=nan is not allowed"),
    ({"temperature": "hot"}, "temperature='hot' is not allowed"),
    ({"max_new_tokens": 0}, "max_new_tokens=0 is not allowed: max_new_tokens must be an integer from 1 to 4096"),
    ({"max_new_tokens": 10**9}, "max_new_tokens=1000000000 is not allowed"),
    ({"topk": 3}, "Unknown option 'topk': the options are top_k, mode, temperature, max_new_tokens"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_a_bad_option_raises_input_error_naming_it_its_value_and_the_range(options, message):
    pipe, gen = make()
    with pytest.raises(InputError, match="^" + re.escape(message)):
        pipe.answer("Does asthma cause wheezing?", **options)
    assert gen.calls == []


def test_options_at_their_bounds_and_none_for_the_default():
    pipe, gen = make()
    assert (
        len(pipe.answer("Does asthma cause wheezing?", top_k=np.int64(1), temperature=0, max_new_tokens=1).sources) == 1
    )
    assert len(pipe.answer("Does asthma cause wheezing?", top_k=20, temperature=2.0, max_new_tokens=4096).sources) == 3
    assert len(pipe.answer("Does asthma cause wheezing?", top_k=None, mode=None, temperature=None).sources) == 2


def test_a_bad_configured_default_is_a_config_error():
    pipe, _ = make()
    pipe.config = pipe.config.replace(top_k=-1)  # as MEDRAG_TOP_K=-1 would set it
    with pytest.raises(ConfigError, match=r"^MEDRAG_TOP_K=-1 is not allowed: it must be an integer from 1 to 20"):
        pipe.answer("Does asthma cause wheezing?")


@pytest.mark.parametrize(
    ("question", "message"),
    [
        (None, "Please type a question."),
        (b"What is asthma?", "The question must be text, not bytes: send it as a string (UTF-8)."),
        (42, "The question must be text, not int: send it as a string (UTF-8)."),
        (["What is asthma?"], "The question must be text, not list: send it as a string (UTF-8)."),
        ("What is asthma\ud83d?", "Your question contains a broken character (a lone surrogate, U+D83D) that cannot"),
    ],
)
def test_a_question_that_is_not_text_is_an_invalid_answer_saying_what_to_do(question, message):
    pipe, gen = make()
    ans = pipe.answer(question)
    assert (ans.kind, ans.decline_reason) == ("invalid", "bad_input") and ans.text.startswith(message)
    assert isinstance(ans.question, str)
    ans.question.encode("utf-8")  # no lone surrogate comes back: it could not be sent as JSON
    assert gen.calls == []


def test_history_must_be_messages():
    pipe, _ = make()
    for bad in ("what is asthma?", [["user", "hi"]], 5):
        with pytest.raises(InputError, match="history must"):
            pipe.answer("and for children?", history=bad)


# --- the configured index folder is opened as it is ----------------------------------------------


def test_a_configured_folder_that_is_no_index_is_an_error_and_never_wiped(tmp_path):
    folder = tmp_path / "my-index"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    config = PipelineConfig(index_dir=str(folder))
    with pytest.raises(IndexLoadError, match=r"my-index \(MEDRAG_INDEX_DIR\) exists but holds no MedRAG index"):
        open_configured_index(config, WordEmbedder())
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_configured_folder_that_is_absent_is_not_filled_with_the_sample_corpus(tmp_path):
    config = PipelineConfig(index_dir=str(tmp_path / "typo"))
    with pytest.raises(IndexLoadError, match=r"No index at .*typo \(MEDRAG_INDEX_DIR\): build it with 'python index"):
        open_configured_index(config, WordEmbedder())
    assert not (tmp_path / "typo").exists()


def test_the_default_folder_is_built_from_the_sample_corpus(tmp_path, monkeypatch, embedder, cache_dir):
    monkeypatch.setattr("medrag.pipeline.DEFAULT_INDEX_DIR", tmp_path / "index")
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "asthma.md").write_text("# Asthma\n\nAsthma narrows the airways.\n")
    config = PipelineConfig(
        index_dir=str(tmp_path / "index"), sample_docs=str(tmp_path / "sample"), cache_dir=str(cache_dir)
    )
    index, source = open_configured_index(config, embedder)
    assert source is None and [c.doc_id for c in index.chunks] == ["asthma"]
