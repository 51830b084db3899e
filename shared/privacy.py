"""What is never stored: text between ``<private>`` and ``</private>``, lines matching the
configured ``private_patterns``, and nothing at all from a project that opted out of capture.

``Privacy.filter(text)`` returns the text without its private parts (the store applies it to
every new memory before redaction, the hooks before a turn leaves their process, so a turn that
was all private is not even sent). The tags are matched in any case; an opening tag without a
closing one hides the rest of the text (a forgotten ``</private>`` must not leak what follows).
Patterns are shell-style (``*`` any run, ``?`` one character, ``[...]`` a set), matched against
each whole line, case-insensitively: ``*BEGIN INTERNAL*`` drops every line holding that phrase.
They are compiled to regexes of atomic groups (``fnmatch.translate``), which read each line in
linear time whatever the pattern; no user regex is ever run on user text.

``ignored(cfg, directory)`` says whether automatic capture is off for a project directory: a
``.sessiond-ignore`` file in it or in one of its parents, or the directory lying under one of
the configured ``capture_exclude`` directories.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.config import Config

IGNORE_FILE = ".sessiond-ignore"
MAX_PATTERNS = 100
MAX_PATTERN_LEN = 500
_OPEN = re.compile(r"<private>", re.IGNORECASE)
_CLOSE = re.compile(r"</private>", re.IGNORECASE)


def pattern_lines(raw: str) -> list[str]:
    """The configured patterns: one a line; blank lines ignored."""
    return [line.strip() for line in raw.splitlines() if line.strip()]


def check_patterns(raw: str) -> str | None:
    """Why ``raw`` is not a valid ``private_patterns`` setting, or None."""
    patterns = pattern_lines(raw)
    if len(patterns) > MAX_PATTERNS:
        return f"private_patterns holds {len(patterns)} patterns; at most {MAX_PATTERNS}"
    for p in patterns:
        if len(p) > MAX_PATTERN_LEN:
            return f"a private_patterns pattern is longer than {MAX_PATTERN_LEN} characters"
    return None


@dataclass(frozen=True)
class Privacy:
    lines: re.Pattern[str] | None  # one alternation of every configured pattern

    @classmethod
    def from_config(cls, cfg: Config) -> Privacy:
        return cls.from_patterns(pattern_lines(cfg.private_patterns))

    @classmethod
    def from_patterns(cls, patterns: list[str]) -> Privacy:
        if not patterns:
            return cls(None)
        return cls(re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns),
                              re.IGNORECASE))

    def filter(self, text: str) -> str:
        """``text`` without its ``<private>`` parts and its lines matching a pattern."""
        text = strip_private_tags(text)
        if self.lines is None or not text:
            return text
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if not self.lines.match(line.rstrip("\r\n"))]
        return text if len(kept) == len(lines) else "".join(kept)


def strip_private_tags(text: str) -> str:
    """``text`` without what lies between ``<private>`` and ``</private>`` (tags included); an
    unclosed ``<private>`` hides the rest. One pass: each character is read once."""
    opened = _OPEN.search(text)
    if opened is None:
        return text
    out: list[str] = []
    pos = 0
    while opened is not None:
        out.append(text[pos:opened.start()])
        closed = _CLOSE.search(text, opened.end())
        if closed is None:
            return "".join(out)
        pos = closed.end()
        opened = _OPEN.search(text, pos)
    out.append(text[pos:])
    return "".join(out)


def excluded_dirs(cfg: Config) -> list[Path]:
    return [Path(os.path.expanduser(d.strip())).absolute()
            for d in cfg.capture_exclude.split(os.pathsep) if d.strip()]


def ignored(cfg: Config, directory: str | os.PathLike[str]) -> str | None:
    """Why automatic capture is off for the project at ``directory`` (a ``.sessiond-ignore``
    file in it or a parent, or a ``capture_exclude`` setting), or None when it is on."""
    path = Path(os.path.abspath(directory))
    for d in excluded_dirs(cfg):
        if path == d or path.is_relative_to(d):
            return f"{path} is under capture_exclude ({d})"
    for folder in (path, *path.parents):
        try:
            if (folder / IGNORE_FILE).exists():
                return f"{folder / IGNORE_FILE} exists"
        except OSError:
            continue
    return None
