"""What the feedback tests share: the votes repo on the local Hub-compatible server, and reading it back."""

from __future__ import annotations

import json

TOKEN = "hf_feedback_token"
REPO = "tester/medrag-votes"


def pushed_votes(hub) -> list[dict]:
    """Every vote line committed under data/ on the repo's main branch, in file order."""
    files = hub.repos[("dataset", REPO)].resolve("main").files
    return [json.loads(line) for path, data in files.items() if path.startswith("data/") for line in data.splitlines()]
