"""Typed results of the session tools (structured MCP output) and their construction from the
wire messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.handoff import Handoff, TrendPoint
from gateway.system_tools import StatusResult
from shared import protocol as p

SNIPPET_CHARS = 300


@dataclass
class QualitySummary:
    score: float  # 0..100 over the measured signals
    categories: dict[str, float | None]  # project, code, git, tools, permissions
    losing: list[str]  # the measured signals that lose points: "lint -4.1: 12 findings ..."
    not_measured: list[str]  # "coverage: no report found"
    recommendations: list[str]
    bounded: bool  # a limit cut the assessment short: see bounds
    bounds: list[str]
    measured_at: str
    elapsed_ms: float


@dataclass
class GitView:
    root: str
    branch: str | None  # None: detached HEAD
    head: str | None
    operation: str | None  # a merge, rebase, ... in progress
    clean: bool
    staged: int
    unstaged: int
    untracked: int
    conflicted: int
    upstream: str | None
    ahead: int | None
    behind: int | None
    last_commit_subject: str
    last_commit_age_days: float | None
    changed: list[str]  # the first paths git status lists


@dataclass
class MemoryBrief:
    id: str
    kind: str
    project: str
    created_at: str
    session_id: str | None
    tags: list[str]
    snippet: str  # the start of its content (get_memory has all of it)
    score: float | None = None  # relevance, for the relevant ones


@dataclass
class CheckpointView:
    at: str
    score: float | None
    delta: float | None
    commit: str  # committed, or why not
    sha: str
    memory_id: str
    note: str


@dataclass
class SessionView:
    id: str
    project: str
    root: str
    gateway_pid: int | None
    this_window: bool  # started by the gateway answering
    started_at: str
    ended_at: str | None
    end_reason: str | None  # ended, abandoned (its window went away), replaced
    start_score: float | None
    last_score: float | None
    end_score: float | None
    start_head: str
    branch: str
    checkpoint_count: int
    memories: int  # stored with its id
    handoff_path: str
    last_active_at: str
    checkpoints: list[CheckpointView] = field(default_factory=list)


@dataclass
class ProjectMemory:
    memories: int  # this project's memories
    by_kind: dict[str, int]
    last_session: SessionView | None  # the newest ended session of this project directory
    last_session_memories: list[MemoryBrief]  # stored in it, newest first
    recent: list[MemoryBrief]  # this project's newest memories
    relevant: list[MemoryBrief]  # by meaning, to the last handoff (or the project's state)
    relevant_query: str


@dataclass
class CommitView:
    enabled: bool  # checkpoint_commit is on
    committed: bool
    sha: str
    branch: str
    files: list[str]  # "M src/app.py"
    files_total: int
    skipped: str  # why no commit: a code (nothing_changed, refused, disabled, ...)
    reason: str  # ... in words
    hook_output: str
    message: str  # the commit message used


@dataclass
class StartResult:
    session_id: str
    project: str
    root: str
    detected_from: str  # roots (the client's MCP roots), argument, or cwd (the gateway's)
    resumed: bool  # a session of this project was already open in this window: continued
    started_at: str
    quality: QualitySummary | None  # the baseline; None: could not be measured (see notes)
    git: GitView | None
    handoff: Handoff | None  # the last session's handoff file, if any
    memory: ProjectMemory
    other_windows: list[SessionView]  # sessions open on this project in other windows
    abandoned: list[str]  # open sessions of this project whose window is gone, ended now
    previous_ended: str  # this window's session of another project, ended first ("" none)
    notes: list[str]
    message: str


@dataclass
class CheckpointResult:
    session_id: str
    project: str
    number: int  # the session's n-th checkpoint
    score: float | None
    previous_score: float | None  # at the previous checkpoint, or the start
    delta: float | None
    quality: QualitySummary | None
    commit: CommitView
    memory_id: str  # the checkpoint memory
    reflection_id: str | None  # the reflection made (score moved by >= threshold, or asked)
    reflection: str
    notes: list[str]
    message: str


@dataclass
class EndResult:
    session_id: str
    project: str
    root: str
    started_at: str
    ended_at: str
    duration_s: float
    start_score: float | None
    score: float | None
    delta: float | None
    trend: list[TrendPoint]
    memories_stored: int
    memories: list[MemoryBrief]
    files_changed: list[str]
    files_changed_total: int
    commits_since_start: int | None
    recommendations: list[str]
    summary: str
    handoff_path: str  # "" if it could not be written (see notes)
    notes: list[str]
    message: str


@dataclass
class SessionStatus:
    session: SessionView | None  # this window's open session
    project: str | None
    root: str | None
    detected_from: str
    score: float | None  # the last measured (this session's, else the project's last session's)
    score_from: str  # which measurement that was
    git: GitView | None
    open_sessions: list[SessionView]  # every window's, from the store
    notes: list[str]
    stack: StatusResult  # the stack's status (the status tool's content before sessions)


# ------------------------------------------------------------------ converters
def quality(r: p.QualityReport) -> QualitySummary:
    losing = sorted((s for s in r.breakdown if s.status == "measured" and s.value < 1),
                    key=lambda s: s.points - s.share * 100)
    return QualitySummary(
        score=r.score, categories={c.name: c.score for c in r.categories},
        losing=[f"{s.name} -{s.share * 100 - s.points:.1f}: {s.detail}" for s in losing],
        not_measured=[f"{s.name}: {s.detail}" for s in r.breakdown if s.status == "unknown"],
        recommendations=list(r.recommendations), bounded=r.bounded, bounds=list(r.bounds),
        measured_at=r.measured_at, elapsed_ms=r.elapsed_ms)


def git_view(g: p.GitState | None) -> GitView | None:
    if g is None:
        return None
    return GitView(root=g.root, branch=g.branch, head=g.head, operation=g.operation,
                   clean=g.clean, staged=g.staged, unstaged=g.unstaged, untracked=g.untracked,
                   conflicted=g.conflicted, upstream=g.upstream, ahead=g.ahead, behind=g.behind,
                   last_commit_subject=g.last_commit_subject,
                   last_commit_age_days=g.last_commit_age_days, changed=g.changed[:20])


def memory_brief(h: p.Hit, scored: bool = False) -> MemoryBrief:
    m = h.memory
    text = " ".join(m.content.split())
    return MemoryBrief(id=m.id, kind=m.kind, project=m.project, created_at=m.created_at,
                       session_id=m.session_id, tags=m.tags,
                       snippet=text if len(text) <= SNIPPET_CHARS
                       else text[:SNIPPET_CHARS - 3] + "...",
                       score=round(h.score, 4) if scored else None)


def session_view(r: p.SessionRecord, my_pid: int) -> SessionView:
    return SessionView(
        id=r.id, project=r.project, root=r.root, gateway_pid=r.gateway_pid,
        this_window=r.gateway_pid == my_pid and r.ended_at is None, started_at=r.started_at,
        ended_at=r.ended_at, end_reason=r.end_reason, start_score=r.start_score,
        last_score=r.last_score, end_score=r.end_score, start_head=r.start_head,
        branch=r.branch, checkpoint_count=r.checkpoint_count, memories=r.memories,
        handoff_path=r.handoff_path, last_active_at=r.last_active_at,
        checkpoints=[CheckpointView(c.at, c.score, c.delta, c.commit, c.sha, c.memory_id,
                                    c.note) for c in r.checkpoints])


def commit_view(r: p.CommitResult | None, *, enabled: bool, skipped: str = "",
                reason: str = "") -> CommitView:
    if r is None:
        return CommitView(enabled=enabled, committed=False, sha="", branch="", files=[],
                          files_total=0, skipped=skipped, reason=reason, hook_output="",
                          message="")
    return CommitView(enabled=enabled, committed=r.committed, sha=r.sha, branch=r.branch,
                      files=r.files, files_total=r.files_total, skipped=r.skipped,
                      reason=r.skipped_reason, hook_output=r.hook_output, message=r.message)
