"""The learned red-flag detector: the stored weights are current, load safely, and the training
steps (fit, out-of-fold threshold, build) do what they say on problems small enough to check by hand."""

from __future__ import annotations

import json

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
    assert model.weights.shape == (384 + len(rfm.CUES) + 1, len(rfm.CLASSES))
    assert model.fits(embedder) and not model.fits(Keywords())
    assert model.meta["out_of_fold"]["recall"] > model.meta["out_of_fold"]["rules_only_recall"]


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
    assert meta["out_of_fold"]["false_alarms"] == 0.0 and meta["built_from"] == rfm.built_from(labelled, 0.0)
    model = rfm.RedFlagModel.load(tmp_path / "model")
    assert model.fits(Keywords())
    for q, h in rows[:6]:
        found = model.predict(q, Keywords().embed([q])[0])
        assert found.flagged is (h is not None) and (h is None or found.help == h), (q, found)
