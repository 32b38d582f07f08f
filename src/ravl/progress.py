"""Progress: the ``(done, total)`` callback type every long job takes (a job of several steps names
each with :func:`describe`), and one line of status when
a model is prepared for the first time (the SmolLM2 cache, an ONNX
export, the ConSE class matrix), with the expected time, through a listener the front door sets.

The library never prints: code deep inside a backend factory calls :func:`preparing`, which tells
the listener of the current context, if any. A CLI command runs its work inside
``with listen(log):`` (its stderr logger); the server sets none, so it hears nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: ``progress(done, total)``: the one callback type of every long-running library function (the CLI
#: passes a tqdm bar on stderr, the server nothing). One with a ``describe(text)`` method also shows
#: the name of the step it counts (the CLI's bar); a plain callable hears only the counts
Progress = Callable[[int, int], None]
Listener = Callable[[str], None]
_LISTENER: ContextVar[Listener | None] = ContextVar("ravl_prepare_listener", default=None)


@contextmanager
def listen(listener: Listener | None) -> Iterator[None]:
    """Within the block, :func:`preparing` lines go to ``listener`` (None: nowhere)."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def preparing(what: str, expected: str) -> None:
    """Say that ``what`` is being prepared once, and how long that usually takes (``expected``,
    e.g. "about 45 s"); later runs reuse the cached result."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(f"preparing {what} for the first time ({expected}; cached for later runs)")


def describe(progress: Progress | None, text: str) -> None:
    """Say that what ``progress`` counts from now on is ``text`` (e.g. "index images: adding"), when
    it can show that (it has a ``describe`` method); counts restart at the next call."""
    name = getattr(progress, "describe", None)
    if callable(name):
        name(text)


class _Prefixed:
    def __init__(self, progress: Progress, prefix: str):
        self._progress, self._prefix = progress, prefix

    def __call__(self, done: int, total: int) -> None:
        self._progress(done, total)

    def describe(self, text: str) -> None:
        describe(self._progress, f"{self._prefix}: {text}")


def stepped(progress: Progress | None) -> Progress | None:
    """``progress`` when it can name steps (a ``describe`` method), else None: a job that goes on to
    further steps (the index builds after an ingest) reports them only to a progress that can say
    which step it counts, so a plain ``(done, total)`` callback hears one job's counts only."""
    return progress if callable(getattr(progress, "describe", None)) else None


def prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    """``progress`` whose step names start with ``prefix`` (e.g. "index images"); None stays None."""
    return None if progress is None else _Prefixed(progress, prefix)
