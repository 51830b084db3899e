"""Announcing a call that will keep this process's threads from running for a while.

Some library calls hold the GIL for a long time (usearch loading a 1M-vector index: ~0.5 s
quiet, over a second on a loaded machine). Meanwhile a worker's IO thread cannot send its
heartbeats, and the hub would purge a worker that is only busy, failing the requests in its
hands. Code about to make such a call says so with :func:`expect_silence`; a worker process
registers :func:`set_announcer` so that this tells the hub first (``Heartbeat.quiet_s``). In a
process with no worker (a test, a benchmark, a command) it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

_announcer: Callable[[float], None] | None = None


def set_announcer(announce: Callable[[float], None] | None) -> None:
    """Route :func:`expect_silence` to ``announce`` (None: back to doing nothing)."""
    global _announcer
    _announcer = announce


def expect_silence(seconds: float) -> None:
    """Say that this process may not run its other threads for up to ``seconds`` from now."""
    if _announcer is not None and seconds > 0:
        _announcer(seconds)
