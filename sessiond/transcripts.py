"""Reading Claude Code transcripts (``~/.claude/projects/<project-dir>/<session>.jsonl``).

Each line of a transcript is a JSON object. Only ``"type": "user"`` and ``"type": "assistant"``
lines carry conversation: their ``message.content`` is a string or a list of blocks, of which only
``text`` blocks are human-readable (``tool_use``, ``tool_result``, ``thinking``, ``image`` ... are
left out). Meta lines (``isMeta``), slash-command echoes (``<command-name>...``,
``<local-command-stdout>...``) and interruption markers are left out too. Everything else
(``summary``, ``system``, ``file-history-snapshot``, ...) is ignored; a line that is not a JSON
object is counted as malformed and skipped, never fatal.

A kept turn's content is ``"user: <text>"`` or ``"assistant: <text>"``: search results then say
who spoke without opening the metadata, and the same words said by both sides stay two memories.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from shared.limits import (
    INVALID_TEXT_MARK,
    MAX_CONTENT_BYTES,
    MAX_PROJECT_LEN,
    MAX_SESSION_ID_LEN,
)
from shared.privacy import Privacy

ROLES = ("user", "assistant")
SOURCE = "claude-code"

# User "turns" that are Claude Code's own bookkeeping, not something a person wrote.
_NOISE = re.compile(
    r"^(?:<(?:command-name|command-message|command-args|local-command-stdout|"
    r"local-command-stderr)>.*|\[Request interrupted by user[^\]]*\])$",
    re.DOTALL,
)


@dataclass(slots=True)
class Turn:
    """One human-readable user or assistant turn, ready to become a ``conversation`` memory."""

    role: str
    content: str  # "user: ..." / "assistant: ...", cut to MAX_CONTENT_BYTES
    created_at: str | None  # the line's ISO-8601 timestamp (None: missing or unparseable)
    session_id: str | None
    project: str
    metadata: dict[str, Any]


@dataclass(slots=True)
class FileStats:
    lines: int = 0
    turns: int = 0
    malformed: int = 0
    end: int = 0  # the byte offset after the last line read
    # (line number, reason) of the first few malformed lines, for the warning
    examples: list[tuple[int, str]] = field(default_factory=list)


def find_transcripts(root: Path) -> list[Path]:
    """``root`` itself if it is a file, else every ``*.jsonl`` below it (recursively), sorted."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.jsonl") if p.is_file() and not p.name.startswith("."))


def first_object(path: Path) -> dict[str, Any] | None:
    """The first non-empty line of ``path`` as a JSON object, or None."""
    try:
        with open(path, "rb") as f:
            for raw in f:
                if raw.strip():
                    value = json.loads(raw)
                    return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None
    return None


def first_cwd(path: Path, lines: int = 50) -> str | None:
    """The ``cwd`` of the first of the first ``lines`` lines that has one (the directory
    Claude Code ran in), or None."""
    try:
        with open(path, "rb") as f:
            for _, raw in zip(range(lines), f, strict=False):
                try:
                    value = json.loads(raw)
                except (ValueError, RecursionError):
                    continue
                cwd = value.get("cwd") if isinstance(value, dict) else None
                if isinstance(cwd, str) and cwd.strip():
                    return cwd
    except OSError:
        return None
    return None


def is_export_file(path: Path) -> bool:
    """Whether ``path`` looks like a ``sessiond export`` file (first line has id, kind, content)."""
    first = first_object(path)
    return first is not None and {"id", "kind", "content"} <= first.keys()


def project_dir_of(path: Path) -> Path:
    """The ``~/.claude/projects/<project-dir>`` a transcript lives in (sub-agent transcripts
    sit deeper, under ``<project-dir>/<session>/subagents/``); else the file's own directory."""
    for parent in path.parents:
        if parent.parent.name == "projects":
            return parent
    return path.parent


def project_from_dir_name(name: str) -> str:
    """Claude Code names a project's directory after its path with every ``/`` (and other
    non-alphanumeric character) turned into ``-``: ``/home/me/proj`` -> ``-home-me-proj``. The
    last component is the best guess at the project name (``my-app`` comes back as ``app``;
    this is only used for lines without a ``cwd``)."""
    if name.startswith("-"):
        parts = [part for part in name.split("-") if part]
        if parts:
            return parts[-1]
    return name


def clean_text(text: str) -> str:
    """Text the store accepts: no NUL characters, no lone surrogates (they become ``?``), no
    U+FFFF (the hub client's mark of undecodable input; it becomes U+FFFD)."""
    text = text.replace("\x00", "").replace(INVALID_TEXT_MARK, "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def cut_utf8(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (on a character boundary); whether cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, False
    return data[:limit].decode("utf-8", "ignore"), True


def _short(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = clean_text(value).strip()
    return value[:limit] or None


def message_text(content: Any) -> str:
    """The human-readable text of a message's ``content``: a string, or its ``text`` blocks
    joined by blank lines."""
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str) and text.strip():
                parts.append(text.strip())
    return "\n\n".join(parts)


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
        if when.tzinfo is not None:
            when.astimezone(UTC)  # what the store does: year 9999 with an offset overflows
    except (ValueError, OverflowError):
        return None
    return value.strip()


def _posix(path: str) -> PurePosixPath:
    return PurePosixPath(path.strip().replace("\\", "/"))


class ProjectNamer:
    """The project a file's turns go to: ``--project`` if given; else the base name of the
    line's ``cwd``, where a ``cwd`` inside the session's first ``cwd`` (the directory Claude Code
    was started in, after a ``cd`` into a sub-directory) still counts as that first directory;
    else a name derived from the project directory's name."""

    def __init__(self, path: Path, forced: str | None) -> None:
        self.forced = forced
        self.fallback = project_from_dir_name(project_dir_of(path).name) or SOURCE
        self.root: PurePosixPath | None = None

    def see(self, cwd: Any) -> None:
        """Note a line's ``cwd`` (every line's, kept or not): the first one is the root."""
        if self.root is None and isinstance(cwd, str) and cwd.strip():
            self.root = _posix(cwd)

    def __call__(self, cwd: Any) -> str:
        if self.forced:
            return self.forced
        if not isinstance(cwd, str) or not cwd.strip():
            return self._fit(self.root.name if self.root else self.fallback)
        here = _posix(cwd)
        if self.root is not None and self.root.name and here.is_relative_to(self.root):
            here = self.root
        return self._fit(here.name or self.fallback)

    @staticmethod
    def _fit(name: str) -> str:
        return _short(name, MAX_PROJECT_LEN) or SOURCE


def read_turns(path: Path, project: str | None = None, *,
               progress: Callable[[int], None] | None = None,
               stats: FileStats | None = None, start: int = 0, whole_lines: bool = False,
               privacy: Privacy | None = None) -> Iterator[Turn]:
    """Yield the kept turns of one transcript, in file order, from byte ``start``.
    ``progress`` gets the byte count of each line read; ``stats`` counts lines, turns and
    malformed lines, and ``stats.end`` is the offset after the last line read. With
    ``whole_lines`` a last line without its newline (still being written) is left unread.
    ``privacy`` drops the private parts of each turn's text (a turn left empty is not kept)."""
    stats = stats if stats is not None else FileStats()
    namer = ProjectNamer(path, project)
    name = clean_text(path.name)
    with open(path, "rb") as f:
        f.seek(start)
        stats.end = start
        for n, raw in enumerate(f, 1):
            if whole_lines and not raw.endswith(b"\n"):
                break
            stats.end += len(raw)
            if progress is not None:
                progress(len(raw))
            if not raw.strip():
                continue
            stats.lines += 1
            try:
                line = json.loads(raw)
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                _malformed(stats, n, f"not JSON ({exc})")
                continue
            if not isinstance(line, dict):
                _malformed(stats, n, "not a JSON object")
                continue
            namer.see(line.get("cwd"))
            turn = _turn(line, namer, name, privacy)
            if turn is not None:
                stats.turns += 1
                yield turn


def _malformed(stats: FileStats, n: int, reason: str) -> None:
    stats.malformed += 1
    if len(stats.examples) < 3:
        stats.examples.append((n, reason))


def _turn(line: dict[str, Any], namer: ProjectNamer, file_name: str,
          privacy: Privacy | None = None) -> Turn | None:
    kind = line.get("type")
    message = line.get("message")
    if kind not in ROLES or not isinstance(message, dict) or line.get("isMeta") is True:
        return None
    role = message.get("role") if message.get("role") in ROLES else kind
    text = clean_text(message_text(message.get("content"))).strip()
    if privacy is not None and text:
        text = privacy.filter(text).strip()
    if not text or (role == "user" and _NOISE.match(text)):
        return None
    prefix = f"{role}: "
    text, truncated = cut_utf8(text, MAX_CONTENT_BYTES - len(prefix.encode()))
    metadata: dict[str, Any] = {"source": SOURCE, "role": role, "file": file_name}
    uuid = _short(line.get("uuid"), 200)
    if uuid:
        metadata["uuid"] = uuid
    if truncated:
        metadata["truncated"] = True
    if line.get("isSidechain") is True:
        metadata["sidechain"] = True
    return Turn(role=role, content=prefix + text, created_at=_timestamp(line.get("timestamp")),
                session_id=_short(line.get("sessionId"), MAX_SESSION_ID_LEN),
                project=namer(line.get("cwd")), metadata=metadata)


def display(path: Path) -> str:
    """``path`` with the home directory shown as ``~``."""
    home = os.path.expanduser("~")
    text = str(path)
    return "~" + text[len(home):] if home != "/" and text.startswith(home + os.sep) else text
