"""The handoff file an ended session leaves for the next one: what happened, in markdown.

Where: ``<data dir>/handoffs/<project>-<12 hex of the root's sha256>/<UTC time>-<session>.md``
(one directory per project directory, so two checkouts of the same name stay apart; never
inside the project, so a checkpoint commit cannot pick it up). Files are written whole (a temp
file renamed into place), readable by the user only; the next ``start`` of the project reads
the newest one. The sections (``SECTIONS``) are fixed so a reader (or the next session) finds
them: the summary paragraph, the quality trend, files changed, commits, the memories stored,
the open recommendations.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from shared.config import Config, make_private_dir

SECTIONS = ("Summary", "Quality trend", "Files changed since the start",
            "Commits since the start", "Memories stored in this session",
            "Open recommendations")
MAX_READ_BYTES = 256 * 1024  # of a handoff file read back
MAX_CONTENT_CHARS = 8000  # of it returned by start
MAX_LINE_CHARS = 300
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class TrendPoint:
    label: str  # "start", "checkpoint 2", "end"
    at: str  # ISO-8601
    score: float | None
    delta: float | None  # against the point before
    commit: str = ""  # the checkpoint's commit sha, or why there was none
    note: str = ""


@dataclass
class MemoryLine:
    id: str
    kind: str
    created_at: str
    text: str  # the first line, cut


@dataclass
class SessionSummary:
    session_id: str
    project: str
    root: str
    branch: str
    started_at: str
    ended_at: str
    duration_s: float
    start_score: float | None
    end_score: float | None
    trend: list[TrendPoint]
    memories_total: int
    memories: list[MemoryLine]
    files_changed: list[str]
    files_changed_total: int
    commits_since_start: int | None  # None: not a git work tree or the start's HEAD is unknown
    start_head: str
    end_head: str
    recommendations: list[str]
    notes: list[str] = field(default_factory=list)  # what could not be measured

    @property
    def delta(self) -> float | None:
        if self.start_score is None or self.end_score is None:
            return None
        return round(self.end_score - self.start_score, 1)

    def paragraph(self) -> str:
        """The summary in one paragraph (the handoff's Summary section)."""
        checkpoints = sum(1 for t in self.trend if t.label.startswith("checkpoint"))
        text = (f"Worked {duration(self.duration_s)} on {self.project}"
                f"{f' (branch {self.branch})' if self.branch else ''}: "
                f"{checkpoints} checkpoint{'s' * (checkpoints != 1)}, quality "
                f"{_score(self.start_score)} -> {_score(self.end_score)}")
        if self.delta is not None:
            text += f" ({self.delta:+.1f})"
        if self.commits_since_start is not None:
            text += (f"; {self.files_changed_total} file{'s' * (self.files_changed_total != 1)} "
                     f"changed and {self.commits_since_start} commit"
                     f"{'s' * (self.commits_since_start != 1)} since the start")
        text += (f"; {self.memories_total} memor{'y' if self.memories_total == 1 else 'ies'} "
                 "stored.")
        if self.recommendations:
            text += f" Next: {self.recommendations[0]}"
        return _line(text, 1000)


def duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _score(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}"


def _line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """One line of plain text: whitespace collapsed, cut to ``limit``."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def render(s: SessionSummary) -> str:
    lines = [f"# Handoff: {_line(s.project, 200)}", "",
             f"- Session: {s.session_id}",
             f"- Project directory: {s.root}",
             f"- Started: {s.started_at}; ended: {s.ended_at} ({duration(s.duration_s)})",
             f"- Quality: {_score(s.start_score)} -> {_score(s.end_score)}"
             + (f" ({s.delta:+.1f})" if s.delta is not None else "")]
    if s.branch or s.start_head:
        lines.append(f"- Branch: {s.branch or 'detached'}; HEAD {s.start_head[:12] or '?'} at "
                     f"the start, {s.end_head[:12] or '?'} at the end")
    lines += ["", "## Summary", "", s.paragraph(), "", "## Quality trend", "",
              "| point | time | score | change | commit | note |", "|---|---|---|---|---|---|"]
    for t in s.trend:
        change = "" if t.delta is None else f"{t.delta:+.1f}"
        lines.append(f"| {t.label} | {t.at} | {_score(t.score)} | {change} | "
                     f"{_cell(t.commit)} | {_cell(t.note)} |")
    lines += ["", f"## Files changed since the start ({s.files_changed_total})", ""]
    lines += [f"- `{_line(f, 500)}`" for f in s.files_changed] or ["(none)"]
    if s.files_changed_total > len(s.files_changed):
        lines.append(f"- ... and {s.files_changed_total - len(s.files_changed)} more")
    commits = "unknown" if s.commits_since_start is None else str(s.commits_since_start)
    lines += ["", f"## Commits since the start: {commits}", "",
              f"## Memories stored in this session ({s.memories_total})", ""]
    lines += [f"- [{m.kind}] {m.created_at[:16]} {_line(m.text)} (`{m.id}`)"
              for m in s.memories] or ["(none)"]
    if s.memories_total > len(s.memories):
        lines.append(f"- ... and {s.memories_total - len(s.memories)} more")
    lines += ["", "## Open recommendations", ""]
    lines += [f"- {_line(r)}" for r in s.recommendations] or ["(none)"]
    if s.notes:
        lines += ["", "## Not measured", ""] + [f"- {_line(n)}" for n in s.notes]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return _line(text, 120).replace("|", "/")


# ------------------------------------------------------------------ files
def project_dir(cfg: Config, root: str, project: str) -> Path:
    """The directory holding the handoffs of the project at ``root``."""
    digest = hashlib.sha256(root.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    name = _UNSAFE.sub("-", project).strip("-.")[:60] or "project"
    return cfg.handoff_dir / f"{name}-{digest}"


def write(cfg: Config, s: SessionSummary, ended: datetime) -> Path:
    """Write the handoff of ``s`` (atomically, mode 0600); returns its path."""
    folder = project_dir(cfg, s.root, s.project)
    make_private_dir(folder)
    path = folder / f"{ended.strftime('%Y%m%dT%H%M%S%fZ')}-{s.session_id[:12]}.md"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(s))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@dataclass
class Handoff:
    path: str
    summary: str  # the Summary section's paragraph
    recommendations: list[str]  # the Open recommendations section's items
    content: str  # the file, cut to MAX_CONTENT_CHARS
    truncated: bool


def latest(cfg: Config, root: str, project: str) -> Handoff | None:
    """The newest handoff of the project at ``root``, or None. An unreadable file is skipped
    for the next newest."""
    return latest_in(project_dir(cfg, root, project))


def latest_in(folder: Path) -> Handoff | None:
    """The newest readable handoff in one project's handoff directory, or None."""
    try:
        names = sorted((e.name for e in os.scandir(folder)
                        if e.name.endswith(".md") and not e.name.startswith(".")), reverse=True)
    except OSError:
        return None
    for name in names[:10]:
        try:
            with open(folder / name, "rb") as f:
                raw = f.read(MAX_READ_BYTES + 1)
        except OSError:
            continue
        text = raw[:MAX_READ_BYTES].decode("utf-8", "replace")
        return Handoff(path=str(folder / name), summary=_section(text, "Summary"),
                       recommendations=_items(_section(text, "Open recommendations")),
                       content=text[:MAX_CONTENT_CHARS],
                       truncated=len(text) > MAX_CONTENT_CHARS or len(raw) > MAX_READ_BYTES)
    return None


def project_folders(cfg: Config) -> dict[str, str]:
    """Every project's handoff directory name -> its newest handoff's file name."""
    out = {}
    try:
        folders = [e for e in os.scandir(cfg.handoff_dir) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return out
    for folder in folders:
        try:
            names = [e.name for e in os.scandir(folder.path)
                     if e.name.endswith(".md") and not e.name.startswith(".")]
        except OSError:
            continue
        if names:
            out[folder.name] = max(names)
    return out


def _section(text: str, title: str) -> str:
    """The text under ``## <title>`` up to the next heading ("" without one)."""
    lines, inside, out = text.splitlines(), False, []
    for line in lines:
        if line.startswith("## "):
            if inside:
                break
            inside = line[3:].strip().startswith(title)
            continue
        if inside:
            out.append(line)
    return "\n".join(out).strip()


def _items(section: str) -> list[str]:
    return [line[2:].strip() for line in section.splitlines() if line.startswith("- ")]
