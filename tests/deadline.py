"""`within(seconds)`: the bound a test puts on work that must never hang (SIGALRM, main thread only).

A bound, not a speed figure: each limit is a hundred times or more what the work takes here, so
only a hang or a quadratic blow-up trips it. Regex matching, reads and sleeps are interrupted too.
"""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def within(seconds: float):
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield  # no alarm here (Windows, a worker thread): the work still runs, unbounded
        return

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang or a quadratic blow-up")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
