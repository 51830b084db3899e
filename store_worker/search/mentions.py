"""What a memory mentions that search filters on, found once at store time: the file paths it
names and whether it is about an error.

Both scans are linear in the text: one regex of a single character class finds maximal runs
(no nesting, nothing to backtrack into), and each run or word is checked in plain code. (The
regexes these replace, applied by the gateway to search hits, took seconds on one long word,
and matched "else", "every" and "email" as errno names.)
"""

from __future__ import annotations

import errno
import re

MAX_FILES = 64  # paths kept per memory
MAX_PATH_LEN = 512

_PATH_RUN = re.compile(r"[\w./\\~+-]+")
_NOT_FILES = frozenset({"e.g", "i.e", "a.k.a", "n.b", "p.s", "ph.d"})  # prose, not paths
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Case-sensitive, whole words: the errno names (ENOENT, ECONNREFUSED, ...).
_ERRNO_NAMES = frozenset(errno.errorcode.values())
# Case-insensitive whole words that say something went wrong.
_ERROR_WORDS = frozenset({
    "error", "errors", "errored", "exception", "exceptions", "traceback", "stacktrace",
    "failed", "failure", "failures", "failing", "crash", "crashed", "crashes", "crashing",
    "panic", "panicked", "segfault", "segfaults", "fatal", "oomkilled", "deadlock",
    "sigsegv", "sigabrt", "sigkill",
})
_ERROR_SUFFIXES = ("Error", "Exception", "Fault")  # TypeError, ConnectionResetException, ...


def _path_of(run: str) -> str | None:
    """``run`` (a maximal run of path characters) as a file path, or None if it is not one:
    its last component must be ``name.ext`` with an extension of 1-8 letters/digits holding a
    letter (so ``3.14`` and ``v1.2.3`` are not files)."""
    run = run.rstrip(".-~+").replace("\\", "/")
    if len(run) > MAX_PATH_LEN or "." not in run:
        return None
    last = run.rsplit("/", 1)[-1]
    name, _, ext = last.rpartition(".")
    if not (name.strip(".") and 1 <= len(ext) <= 8 and ext.isascii() and ext.isalnum()):
        return None
    if ext.isdigit() or not any(c.isalnum() for c in name) or run.lower() in _NOT_FILES:
        return None
    return run


def files_mentioned(text: str) -> list[str]:
    """File paths named in ``text``, first-seen order, at most ``MAX_FILES``."""
    out: dict[str, None] = {}
    for m in _PATH_RUN.finditer(text):
        path = _path_of(m.group())
        if path is not None:
            out.setdefault(path, None)
            if len(out) >= MAX_FILES:
                break
    return list(out)


def file_name(path: str) -> str:
    """The lowercased last component of a path (the key files are looked up by)."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()


def same_file(mentioned: str, asked: str) -> bool:
    """Whether a mentioned path and an asked-for path can name the same file: equal
    (case-insensitive), or one ends with the other at a path-component boundary
    (``src/app.py`` matches ``/repo/src/app.py``; ``app.py`` matches both)."""
    a = mentioned.replace("\\", "/").lower().lstrip("./")
    b = asked.replace("\\", "/").lower().lstrip("./")
    if a == b:
        return True
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return long.endswith("/" + short)


def is_error(text: str) -> bool:
    """Whether ``text`` is about an error: an exception or error class name, an errno name, or
    a word like error, failed, traceback, crash, panic, segfault."""
    for m in _WORD.finditer(text):
        word = m.group()
        if word in _ERRNO_NAMES or word.lower() in _ERROR_WORDS:
            return True
        if len(word) > 5 and word.endswith(_ERROR_SUFFIXES) and word[0].isupper():
            return True
    return False
