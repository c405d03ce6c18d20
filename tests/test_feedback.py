"""Votes: kept as JSON lines and committed by huggingface_hub's CommitScheduler to a local Hub-compatible server."""

from __future__ import annotations

import pytest
from feedback_hub import REPO, TOKEN, pushed_votes
from hub_server import HubServer, use_hub

from medrag.feedback import FeedbackStore, Vote


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with HubServer(token=TOKEN) as server:
        use_hub(monkeypatch, server, tmp_path / "hf-home", token=TOKEN)
        yield server


def test_a_vote_reaches_the_dataset_repo_with_its_question_sources_and_versions(hub, tmp_path):
    store = FeedbackStore(REPO, tmp_path / "votes", every=60)  # the scheduler's own tick is an hour away
    try:
        vote = Vote(
            False, "What is asthma?", "Asthma is [1].", ["asthma#0"], {"index": "me/idx@abc", "adapter": "me/a@1"}
        )
        assert store.record(vote) and store.record(vote.with_reason("  the answer\nwas   too short "))
        store.push()
    finally:
        store.stop()
    first, second = pushed_votes(hub)
    assert first == vote.to_dict() and first["liked"] is False and first["source_ids"] == ["asthma#0"]
    assert first["versions"] == {"index": "me/idx@abc", "adapter": "me/a@1"}
    assert second["vote_id"] == first["vote_id"] and second["reason"] == "the answer was too short"
    assert REPO in store.note()


def test_without_a_repo_nothing_is_kept_and_the_note_says_so(tmp_path):
    store = FeedbackStore(None, tmp_path / "votes")
    assert not store.enabled and store.record(Vote(True, "q", "a")) is False and store.push() is None
    assert not (tmp_path / "votes").exists()
    assert "not stored or sent anywhere" in store.note() and "MEDRAG_FEEDBACK_REPO" in store.note()


def test_a_repo_that_cannot_be_opened_keeps_nothing_and_says_why(monkeypatch, tmp_path):
    with HubServer(token=TOKEN) as server:
        use_hub(monkeypatch, server, tmp_path / "hf-home", token="hf_wrong")  # the server refuses this token
        store = FeedbackStore(REPO, tmp_path / "votes")
    assert not store.enabled and store.record(Vote(True, "q", "a")) is False
    assert "could not be opened" in store.note() and not list((tmp_path / "votes").glob("*.jsonl"))
