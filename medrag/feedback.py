"""Visitors' votes on answers: kept as JSON lines in a local folder, pushed to a Hub dataset repo on a schedule.

A `Vote` holds what the visitor typed (the question, an optional reason), what the app answered (the
answer text, its sources' chunk ids) and the versions stamp the answer carries (index and
generator/adapter commits): the signal that tells which adapter helps. Nothing about the visitor
(no address, account, browser or cookie) is recorded.

`FeedbackStore(repo=None)` keeps nothing and pushes nothing (the app says so). With a repo, votes are
appended to `<folder>/votes-<uuid>.jsonl` (one file per process, so two replicas never write the same
file) and huggingface_hub's `CommitScheduler` commits the folder to the dataset repo's `data/` every
`every` minutes and once more at exit. Read them back with
`datasets.load_dataset("json", data_files="hf://datasets/OWNER/NAME/data/*.jsonl")` or `load_dataset(repo)`.

Shortcuts on purpose: a reason sent after a vote is written as the same vote again with the reason
(same `vote_id`): a reader keeps the last line per vote_id. If the repo cannot be created at start
(no token, no network), the store logs why and keeps nothing, rather than stop the app.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("medrag.feedback")

EVERY_MINUTES = 5.0  # CommitScheduler's own default: a few commits an hour, far below the Hub's rate limits
MAX_REASON_CHARS = 500  # a sentence or two; a vote is not a place for documents


@dataclass(frozen=True)
class Vote:
    liked: bool
    question: str
    answer: str
    source_ids: list[str] = field(default_factory=list)  # the answer's sources, by chunk id, in citation order
    versions: dict[str, str] = field(default_factory=dict)  # index and generator/adapter commits it answered with
    reason: str = ""  # optional, as the visitor typed it
    vote_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def with_reason(self, reason: str) -> Vote:
        return replace(self, reason=" ".join(str(reason).split())[:MAX_REASON_CHARS])

    def to_dict(self) -> dict:
        return asdict(self)


class FeedbackStore:
    """Where votes go: a local JSON-lines file pushed to `repo` (a Hub dataset), or nowhere when `repo` is None."""

    def __init__(self, repo: str | None, folder: str | Path, every: float = EVERY_MINUTES, token: str | None = None):
        self.repo, self.scheduler, self.problem = repo, None, ""
        if not repo:
            return
        self.folder = Path(folder)
        self.file = self.folder / f"votes-{uuid.uuid4().hex}.jsonl"
        try:
            from huggingface_hub import CommitScheduler

            self.scheduler = CommitScheduler(
                repo_id=repo,
                repo_type="dataset",
                folder_path=self.folder,
                path_in_repo="data",
                every=every,
                token=token,
            )
        except Exception as e:  # no token, no network, a repo id that is not ours: say so, keep the app up
            self.problem = f"the dataset repo {repo} could not be opened ({type(e).__name__})"
            log.warning("votes are not kept: %s: %s", self.problem, e)

    @property
    def enabled(self) -> bool:
        return self.scheduler is not None

    def record(self, vote: Vote) -> bool:
        """Append `vote` for the next scheduled push; False (and nothing written) when votes are not kept."""
        if self.scheduler is None:
            return False
        with self.scheduler.lock:  # the scheduler reads the file under this lock while it commits
            with self.file.open("a", encoding="utf-8") as f:
                f.write(json.dumps(vote.to_dict(), ensure_ascii=False) + "\n")
        return True

    def push(self):
        """Commit what is waiting now instead of at the next tick (tests, shutdown); the commit info or None."""
        return self.scheduler.trigger().result() if self.scheduler else None

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()

    def note(self) -> str:
        """What the About tab and a vote's toast say about where votes go."""
        kept = (
            "the question you typed, the answer, its sources' ids, the index and model versions and any reason you add"
        )
        if self.scheduler is not None:
            return (
                f"Votes (👍/👎 on an answer) keep {kept}, and are pushed every few minutes to the Hub dataset "
                f"`{self.repo}`. Nothing else about you is recorded: no address, account, browser or cookie."
            )
        why = self.problem or "this deployment sets no MEDRAG_FEEDBACK_REPO"
        return f"Votes are not stored or sent anywhere: {why}."
