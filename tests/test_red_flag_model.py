"""The learned red-flag detector: the stored weights are current, load safely, and the training
steps (fit, out-of-fold threshold, build) do what they say on problems small enough to check by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from medrag import red_flag_model as rfm
from medrag.config import EMBEDDING_MODEL_ID
from medrag.errors import ModelLoadError


def test_the_stored_model_is_built_from_the_current_labelled_set_and_code():
    meta = json.loads((rfm.MODEL_DIR / "model.json").read_text())
    assert meta["built_from"] == rfm.built_from(rfm.LABELLED, meta["max_false_alarms"]), (
        "data/eval/red_flags.jsonl or the model's settings changed: run 'python -m medrag.red_flag_model'"
    )


def test_the_stored_model_loads_and_names_the_embedder_it_needs(embedder):
    model = rfm.RedFlagModel.load()
    assert model.model_id == EMBEDDING_MODEL_ID and model.dim == 384
    assert model.weights.shape == (384 + len(rfm.CUES) + rfm.GRAM_BUCKETS + 1, len(rfm.CLASSES))
    assert model.fits(embedder) and not model.fits(Keywords())
    held_out = model.meta["held_out"]
    assert held_out["by"] == "writer" and held_out["recall"] > held_out["rules_only_recall"]
    assert set(model.meta["per_writer"]) == {"A", "B", "C", "mean"}


def test_unreadable_or_mismatched_files_say_how_to_rebuild(tmp_path):
    with pytest.raises(ModelLoadError, match="python -m medrag.red_flag_model"):
        rfm.RedFlagModel.load(tmp_path)
    meta = json.loads((rfm.MODEL_DIR / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps(meta | {"version": 0}))
    np.save(tmp_path / "weights.npy", np.zeros((393, 4), np.float32))
    with pytest.raises(ModelLoadError, match="version 0"):
        rfm.RedFlagModel.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps(meta))
    np.save(tmp_path / "weights.npy", np.zeros((10, 4), np.float32))
    with pytest.raises(ModelLoadError, match=r"\(10, 4\)"):
        rfm.RedFlagModel.load(tmp_path)
    np.save(tmp_path / "weights.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelLoadError, match="cannot be read"):  # never unpickled
        rfm.RedFlagModel.load(tmp_path)


def test_cues_describe_grammar():
    names = [name for name, _ in rfm.CUES]
    asks = dict(zip(names, rfm.cue_vector("What are the signs of a stroke?"), strict=True))
    assert asks["asks"] == asks["question_mark"] == asks["information"] == 1.0 and asks["first_person"] == 0.0
    now = dict(zip(names, rfm.cue_vector("my son collapsed just now"), strict=True))
    assert now["first_person"] == now["someone_else"] == now["now"] == 1.0 and now["asks"] == 0.0
    assert dict(zip(names, rfm.cue_vector("I had a seizure 5 years ago"), strict=True))["past"] == 1.0


def test_fit_separates_four_classes_by_hand():
    # one feature per class (none, emergency, crisis, poison) and a bias column
    x = np.array([[1, 0, 0, 0, 1], [0, 1, 0, 0, 1], [0, 0, 1, 0, 1], [0, 0, 0, 1, 1]] * 3, float)
    labels = np.array([0, 1, 2, 3] * 3)
    score, best = rfm.log_odds(x, rfm.fit(x, labels))
    assert (score[labels == 0] < 0).all() and (score[labels > 0] > 0).all()
    assert best[labels > 0].tolist() == labels[labels > 0].tolist()


def test_threshold_is_the_lowest_that_keeps_false_alarms_within_the_target():
    scores = np.array([0.1, 0.5, 0.9, 2.0, 3.0])
    negatives = np.array([True, True, True, True, False])
    assert rfm.pick_threshold(scores, negatives, np.zeros(5, bool), 0.25) == np.nextafter(0.9, np.inf)
    by_rules = np.array([True, False, False, False, False])  # the rules already raise one near-miss
    assert rfm.pick_threshold(scores, negatives, by_rules, 0.25) == np.nextafter(2.0, np.inf)


class Keywords:
    """A fake embedder: which of four words a text holds. Not the model the stored weights need."""

    model_id, dim = "fake-keywords", 4
    WORDS = ("what", "help", "die", "pills")

    def embed(self, texts):
        return np.array([[float(w in t.split()) for w in self.WORDS] for t in texts])


def test_build_writes_plain_files_that_load_and_predict(tmp_path):
    rows = [("what is asthma", None), ("what is a stroke", None), ("what causes gout", None)] * 3
    rows += [("help he collapsed", "emergency"), ("i want to die", "crisis"), ("he ate my pills", "poison")] * 3
    labelled = tmp_path / "flags.jsonl"
    labelled.write_text(
        "".join(json.dumps({"question": q, "red_flag": h is not None, "help": h}) + "\n" for q, h in rows)
    )
    meta = rfm.build(tmp_path / "model", labelled, Keywords(), max_false_alarms=0.0)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model.json", "weights.npy"]
    assert meta["embedding_model"] == "fake-keywords" and meta["dim"] == 4
    assert meta["trained_on"] == {"file": str(labelled), "emergencies": 9, "near_misses": 9}
    assert meta["held_out"]["false_alarms"] == 0.0 and meta["built_from"] == rfm.built_from(labelled, 0.0)
    assert meta["held_out"]["by"] == "5 folds (no author column)"
    model = rfm.RedFlagModel.load(tmp_path / "model")
    assert model.fits(Keywords())
    for q, h in rows[:6]:
        found = model.predict(q, Keywords().embed([q])[0])
        assert found.flagged is (h is not None) and (h is None or found.help == h), (q, found)


def test_character_grams_survive_typos_and_do_not_depend_on_the_process():
    chest, typo, other = (rfm.gram_vector(q) for q in ("chest pain", "CHST PAIN!!", "what is asthma"))
    assert np.linalg.norm(chest) == pytest.approx(rfm.GRAM_SCALE)
    assert chest @ typo > 0.5 * rfm.GRAM_SCALE**2 > chest @ other
    # the buckets come from crc32, not Python's salted hash(): another process finds the same ones
    code = "from medrag.red_flag_model import gram_vector; print(gram_vector('chest pain').nonzero()[0].tolist())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=os.environ | {"PYTHONHASHSEED": "12345"}, capture_output=True, text=True
    )
    assert json.loads(out.stdout) == chest.nonzero()[0].tolist(), out.stderr


def test_each_writer_is_scored_by_a_model_that_never_saw_that_writer():
    x = np.array([[1, 0, 1], [0, 1, 1]] * 4, float)
    labels = np.array([0, 1] * 4)
    writers = np.array(["A"] * 4 + ["B"] * 4)
    assert rfm.held_out_groups(labels, writers) is writers
    scores = rfm.out_of_group(x, labels, writers)
    flipped = labels.copy()
    flipped[writers == "A"] = 1 - flipped[writers == "A"]  # writer A labels everything the other way
    again = rfm.out_of_group(x, flipped, writers)
    np.testing.assert_array_equal(scores[writers == "A"], again[writers == "A"])  # A's labels never reach A's scores
    assert not np.allclose(scores[writers == "B"], again[writers == "B"])
    folds = rfm.held_out_groups(np.array([0, 1] * 5), np.array([""] * 10))  # one writer: stratified folds
    assert sorted(folds.tolist()) == sorted(["0", "1", "2", "3", "4"] * 2)


def test_the_printout_has_a_row_per_held_out_writer(tmp_path, monkeypatch, capsys):
    rows = [("what is asthma", None, "A"), ("help he collapsed", "emergency", "A"), ("i want to die", "crisis", "A")]
    rows += [("what causes gout", None, "B"), ("he ate my pills", "poison", "B"), ("help me die", "crisis", "B")]
    labelled = tmp_path / "flags.jsonl"
    labelled.write_text(
        "".join(
            json.dumps({"question": q, "red_flag": h is not None, "help": h, "author": a}) + "\n" for q, h, a in rows
        )
    )
    monkeypatch.setattr("medrag.embedder.TextEmbedder", Keywords)
    assert rfm.main(["--labelled", str(labelled), "--out", str(tmp_path / "model")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("held out by writer")
    assert [line.split()[0] for line in lines[2:5]] == ["A", "B", "mean"]
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert set(meta["per_writer"]) == {"A", "B", "mean"} and meta["per_writer"]["A"]["emergencies"] == 2
    assert [row["max_false_alarms"] for row in meta["trade_off"]] == list(rfm.TARGETS)


def test_the_stored_model_generalises_across_writers_better_than_the_embedding_alone():
    # before character grams (embedding + cues, same training), leave-one-writer-out: recall 0.830 /
    # 0.860 / 0.915 at 3 / 5 / 10% false alarms on average, writer C 0.616 / 0.686 / 0.779
    per_writer = json.loads((rfm.MODEL_DIR / "model.json").read_text())["per_writer"]
    assert per_writer["mean"]["recall_at_3pct"] > 0.85 and per_writer["mean"]["recall_at_10pct"] > 0.93
    assert per_writer["C"]["recall_at_10pct"] > 0.82
