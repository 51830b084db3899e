"""Give freed heap memory back to the operating system (glibc ``malloc_trim``).

After a burst of large allocations (a bulk embedding chunk's activations, a model's
graph optimisation at load) glibc keeps the freed pages mapped in its arenas, so the process's
RSS stays at its peak while it idles. ``trim`` hands them back; it costs a few ms, so workers
call it when they go idle, not per request. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("sessiond.heap")

_libc: ctypes.CDLL | None | bool = None  # None: not looked up yet; False: not available


def trim() -> bool:
    """Return free heap pages to the OS; False where glibc's ``malloc_trim`` is missing."""
    global _libc
    if _libc is None:
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
