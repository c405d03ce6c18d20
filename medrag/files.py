"""File-system helpers every writer of a folder shares: hashing, flushing, and the atomic folder swap.

A folder (an index, a shard set, an adapter, a training data set) is written under a temporary
name beside its destination and renamed into place by `swap_into_place`, so a reader sees the old
folder or the new one, never half of either. Shortcut on purpose: the old folder is moved to a
hidden `.NAME.old-XXXX` sibling first and removed last, so a crash between the two renames leaves
it there (medrag.index puts it back on the next load); other writers simply rebuild.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

BLOCK = 1 << 22  # 4 MiB reads: few system calls, little memory


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def fsync(path: Path) -> None:
    """Flush a file (or, best effort, a directory entry) to disk before a rename publishes it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return  # some platforms cannot open directories
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_into_place(tmp: Path, path: Path) -> None:
    """Rename the folder `tmp` to `path`; an existing `path` is first moved to a `.old-*` sibling, removed last.

    If the second rename fails, the old folder is put back before the error goes on."""
    if not path.exists():
        os.rename(tmp, path)
        return
    old = path.parent / f".{path.name}.old-{secrets.token_hex(4)}"
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
