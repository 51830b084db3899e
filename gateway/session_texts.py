"""What the session tools write in words: the checkpoint memory, the quality reflection, the
permission question of the checkpoint commit, the score trend of a session."""

from __future__ import annotations

from gateway.handoff import TrendPoint
from gateway.session_results import CommitView
from shared import protocol as p

MAX_NOTE_CHARS = 2000
TOP_MOVES = 3


def score_words(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}/100"


def change_words(delta: float | None, since: str) -> str:
    return "" if delta is None else f" ({delta:+.1f} since {since})"


def checkpoint_memory(project: str, session_id: str, number: int, score: float | None,
                      delta: float | None, commit: str, note: str,
                      report: p.QualityReport | None) -> str:
    since = "the start" if number == 1 else "the previous checkpoint"
    title = (f"Checkpoint {number} of session {session_id} on {project}: quality "
             f"{score_words(score)}{change_words(delta, since)}.")
    lines = [title, f"Commit: {commit}."]
    if note.strip():
        lines.append(f"Note: {note.strip()[:MAX_NOTE_CHARS]}")
    if report is not None and report.recommendations:
        lines.append("Open recommendations: " + "; ".join(report.recommendations[:3]))
    return "\n".join(lines)


def commit_words(commit: CommitView) -> str:
    if commit.committed:
        return f"{commit.sha[:12]} on {commit.branch} ({commit.files_total} files)"
    return f"none ({commit.skipped}: {commit.reason})"


def checkpoint_message(number: int, score: float | None, delta: float | None,
                       commit: CommitView) -> str:
    since = "the start" if number == 1 else "the previous checkpoint"
    made = commit.sha[:12] if commit.committed else f"none ({commit.skipped}; see commit.reason)"
    return (f"checkpoint {number}: quality {score_words(score)}{change_words(delta, since)}; "
            f"commit: {made}")


def commit_detail(root: str, project: str, git: p.GitState, untracked: bool) -> str:
    """What the checkpoint commit is about to do, for the user to judge."""
    parts = [f"{n} {what}" for n, what in ((git.staged, "staged"), (git.unstaged, "modified"),
                                          (git.conflicted, "conflicted")) if n]
    text = (f"commit the tracked changes of {project} in {root} on branch {git.branch} "
            f"({', '.join(parts)})")
    if git.untracked:
        text += (f" and {git.untracked} untracked file(s)" if untracked
                 else f"; {git.untracked} untracked file(s) left out")
    return text


def moves(before: p.QualityReport | None, after: p.QualityReport | None) -> list[str]:
    """The signals whose points changed the most between two assessments, in words."""
    if before is None or after is None:
        return []
    was = {s.name: s for s in before.breakdown}
    changes = []
    for s in after.breakdown:
        old = was.get(s.name)
        if old is None:
            continue
        diff = s.points - old.points
        if abs(diff) >= 0.05 or old.status != s.status:
            text = (f"{s.name} {diff:+.1f} (now: {s.detail or s.status}; "
                    f"before: {old.detail or old.status})")
            changes.append((abs(diff), text))
    changes.sort(key=lambda c: -c[0])
    return [text for _, text in changes[:TOP_MOVES]]


def quality_reflection(project: str, session_id: str, number: int, previous: float | None,
                       score: float | None, delta: float | None, why: str, note: str,
                       what_moved: list[str], report: p.QualityReport | None) -> str:
    since = "the start" if number == 1 else f"checkpoint {number - 1}"
    lines = [f"Quality of {project} went from {score_words(previous)} to {score_words(score)}"
             + (f" ({delta:+.1f})" if delta is not None else "")
             + f" between {since} and checkpoint {number} of session {session_id} ({why})."]
    if what_moved:
        lines.append("What moved: " + "; ".join(what_moved) + ".")
    if note.strip():
        lines.append(f"The checkpoint's note: {note.strip()[:MAX_NOTE_CHARS]}")
    if report is not None and report.recommendations:
        lines.append("Still open: " + "; ".join(report.recommendations[:3]))
    return "\n".join(lines)


def trend(started_at: str, start_score: float | None, checkpoints: list[p.CheckpointRecord],
          ended_at: str, end_score: float | None) -> list[TrendPoint]:
    points = [TrendPoint("start", started_at, start_score, None)]
    for i, c in enumerate(checkpoints, 1):
        commit = c.sha[:12] if c.commit == "committed" else c.commit
        points.append(TrendPoint(f"checkpoint {i}", c.at, c.score, c.delta, commit, c.note))
    last = next((t.score for t in reversed(points) if t.score is not None), None)
    delta = None if last is None or end_score is None else round(end_score - last, 1)
    points.append(TrendPoint("end", ended_at, end_score, delta))
    return points
