"""The process heap: freed memory given back to the operating system, and a start-up that does
not garbage-collect what it keeps.

``trim`` (glibc ``malloc_trim``): after a burst of large allocations (a bulk embedding chunk's
activations, a model's graph optimisation at load) glibc keeps the freed pages mapped in its
arenas, so the process's RSS stays at its peak while it idles. ``trim`` hands them back; it costs
a few ms, so workers call it when they go idle, not per request. Elsewhere than glibc it does
nothing.

``start_up``: while a process imports its libraries and builds what it serves (the gateway:
fastmcp, the MCP SDK, pydantic's schemas), nearly every object it makes lives as long as the
process. The collector's older generations would be walked again and again as that heap grows
(~0.1 s of a gateway's start, two full collections of ~150,000 objects among them) to find
almost nothing; so meanwhile only the youngest generation is collected (where start-up's
short-lived cycles die), and at the end what start-up made is frozen (``gc.freeze``): later
full collections skip it. What it leaves uncollected is a few hundred KiB at most.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes  # imported where used: the gateway imports this module at its start

log = logging.getLogger("sessiond.heap")

_libc: ctypes.CDLL | None | bool = None  # None: not looked up yet; False: not available


def trim() -> bool:
    """Return free heap pages to the OS; False where glibc's ``malloc_trim`` is missing."""
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = lib if hasattr(lib, "malloc_trim") else False
        except OSError as exc:
            log.info("no malloc_trim here (%s): freed heap memory stays mapped", exc)
            _libc = False
    if _libc is False:
        return False
    _libc.malloc_trim(0)
    return True


@contextlib.contextmanager
def start_up() -> Iterator[None]:
    """Collect only the youngest generation inside; freeze what survives at the end."""
    saved = gc.get_threshold()
    held_off = 1 << 30  # the older generations' collections never come due inside
    gc.set_threshold(saved[0], held_off, held_off)
    try:
        yield
    finally:
        gc.freeze()
        gc.set_threshold(*saved)


def resident_bytes() -> int:
    """This process's resident memory (RSS), read from ``/proc`` where there is one (so the
    workers need not import psutil for it)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import psutil  # macOS and others

        return psutil.Process().memory_info().rss
