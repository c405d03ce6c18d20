"""Progress of a long build step: a tqdm bar on a terminal, plain lines anywhere else.

A build run under nohup, in CI, in a container log or piped to a file has no terminal: there
tqdm's redrawn bar is one unreadable line (or nothing), so `Progress` prints a line at each
twentieth of the work instead, with the rate and the time left:

    Embedding: 5,367/26,834 chunks (20%), 81.4 chunks/s, 4 min 24 s left

Shortcuts on purpose: the rate is the average since the start (steady enough for a build), and
the line steps are fixed by the total, not by time.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LINES = 20  # a line every 5% of the work: enough to see it move, few enough to read in a log


class Progress:
    def __init__(self, total: int, desc: str, unit: str, *, enabled: bool = True, stream: TextIO | None = None):
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.stream = stream or sys.stderr
        self._t0, self._next_line = time.perf_counter(), 0
        self._bar = None
        self.enabled = enabled and total > 0
        if self.enabled and _isatty(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit.rstrip("s"), file=self.stream)
        self._step = max(1, -(-total // LINES))  # ceil: at most LINES lines, then the last one

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
        elif self.done >= self._next_line or self.done >= self.total:
            self._next_line = (self.done // self._step + 1) * self._step
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        rate = self.done / seconds
        left = f", {_duration((self.total - self.done) / rate)} left" if 0 < self.done < self.total else ""
        percent = 100 * self.done // max(self.total, 1)
        return f"{self.desc}: {self.done:,}/{self.total:,} {self.unit} ({percent}%), {rate:,.1f} {self.unit}/s{left}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
