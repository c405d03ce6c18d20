"""A stand-in for `spaces.GPU` that behaves as it does on ZeroGPU, for tests on a machine without one.

What it copies from the `spaces` package (0.51, zero/wrappers.py): the decorated generator runs in a
worker process forked from the caller's and kept for later calls while it lives; each call's
arguments go to the worker pickled, and only what the function yields comes back, pickled again;
mutations of the arguments stay in the worker; an exception other than gr.Error comes back as its
class name only ("ZeroGPU worker error"); the requested `duration` (a number, or a callable given the
call's arguments) is recorded per call, as the quota is charged by it; a caller that closes the generator
early sets the worker's stop event, and the worker closes the task's generator after its next yield.

Shortcuts on purpose: one worker (one GPU), no scheduling, no quota; `timeout` bounds each wait for
the worker, so a worker stuck on a lock fails the test instead of hanging it.
"""

from __future__ import annotations

import functools
import multiprocessing
import pickle
import traceback

_FORK = multiprocessing.get_context("fork")


def _serve(task, calls, results, stop) -> None:
    """The worker: run each pickled call of `task`, sending back every yield, then "end" (or "error")."""
    while (call := calls.get()) is not None:
        args, kwargs = pickle.loads(call)
        stop.clear()
        try:
            gen = task(*args, **kwargs)
            for item in gen:
                if stop.is_set():  # as spaces' thread_wrapper: the caller went away, close the task
                    gen.close()
                    break
                results.put(("yield", pickle.dumps(item)))
        except Exception as e:
            results.put(("error", f"{type(e).__name__}: {traceback.format_exc()}"))
            continue
        results.put(("end", None))


class ZeroGPU:
    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        self.durations: list[float] = []  # the duration requested by each call, in order
        self.forks = 0  # workers started
        self._worker = None

    def GPU(self, task=None, *, duration=None, size=None):  # noqa: N802  the name `spaces` gives it
        if task is None:
            return functools.partial(self.GPU, duration=duration, size=size)

        @functools.wraps(task)
        def handler(*args, **kwargs):
            self.durations.append(duration(*args, **kwargs) if callable(duration) else duration)
            call = pickle.dumps((args, kwargs))  # as `spaces` does: a PicklingError surfaces here
            process, calls, results, stop = self._start(task)
            calls.put(call)
            kind = None
            try:
                while kind not in ("end", "error"):
                    kind, value = results.get(timeout=self.timeout)
                    if kind == "error":
                        raise RuntimeError(f"ZeroGPU worker error: {value.split(':', 1)[0]}")
                    if kind == "yield":
                        try:
                            yield pickle.loads(value)
                        except GeneratorExit:  # as spaces' gradio_handler: tell the worker to stop
                            stop.set()
                            raise
            finally:  # a caller that stops early: let the worker finish this call before the next one
                while kind not in ("end", "error"):
                    kind, value = results.get(timeout=self.timeout)

        return handler

    def _start(self, task):
        if self._worker is None or not self._worker[0].is_alive():
            calls, results, stop = _FORK.Queue(), _FORK.Queue(), _FORK.Event()
            process = _FORK.Process(target=_serve, args=(task, calls, results, stop), daemon=True)
            process.start()
            self._worker, self.forks = (process, calls, results, stop), self.forks + 1
        return self._worker

    def close(self) -> None:
        if self._worker is not None:
            process, calls, _, _ = self._worker
            calls.put(None)
            process.join(10)
            if process.is_alive():
                process.kill()
            self._worker = None
