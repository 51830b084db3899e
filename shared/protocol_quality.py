"""The quality service's messages (service ``quality``); ``shared.protocol`` re-exports them and
puts them in its ``RequestBody`` / ``ReplyBody`` unions.

=====================  ==================  ==================================================
request                reply               what the worker does
=====================  ==================  ==================================================
``ProbeTools``         ``ToolsReport``     ``NAME --version`` of git, uv, python, ruff, pytest
``AssessQuality``      ``QualityReport``   score 0-100 from measured signals, with reasons
``GitStatus``          ``GitState``        branch, counts, upstream, recent commits
``CheckpointCommit``   ``CommitResult``    commit the tracked changes, or say why not
=====================  ==================  ==================================================

Every git and tool process runs in the quality worker with a time limit and a cap on the output
it may print (its process group is killed at the limit). A path is checked against the allowed
places first (``shared.paths.check_project_dir``): a missing directory, a file, an unreadable
directory or one outside them is a ``bad_request`` saying which. What cannot be measured is
never guessed: a signal is then ``unknown`` (or ``not_applicable``) with the reason, and the
score is computed over the measured signals' weights alone.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PROBED_TOOLS = ("git", "uv", "python", "ruff", "pytest")
ASSESS_BUDGET_S = 8.0  # the default wall-time bound of one assessment
COMMIT_TIMEOUT_S = 30.0  # the default time the commit (and its hooks) may take
MAX_COMMIT_TIMEOUT_S = 300.0

SignalStatus = Literal["measured", "unknown", "not_applicable"]
Category = Literal["project", "code", "git", "tools", "permissions"]
# Why a checkpoint made no commit (CommitResult.skipped); skipped_reason says it in words.
SkipCode = Literal[
    "",  # committed
    "nothing_changed",  # no tracked file differs from HEAD (untracked ones are left alone)
    "no_git",  # no git executable on the worker's PATH
    "not_a_repo",  # not inside a git work tree (or git refused it, e.g. dubious ownership)
    "detached_head",  # HEAD is not a branch
    "operation_in_progress",  # a merge, rebase, cherry-pick, revert or bisect is under way
    "no_identity",  # user.name / user.email not configured: git would have to guess
    "index_locked",  # another git process holds the index (index.lock exists)
    "commit_failed",  # git commit failed, usually a hook refused it: see hook_output
    "timeout",  # staging or the commit (a hook) did not finish in timeout_s; killed
    "git_error",  # another git command failed: see skipped_reason
]


# ------------------------------------------------------------------ requests
class ProbeTools(msgspec.Struct, tag=True):
    """Which of ``PROBED_TOOLS`` (what the quality jobs run) are on the worker's PATH, with their
    versions: the quality worker's cheapest real job, run by the health check."""


class AssessQuality(msgspec.Struct, tag=True):
    """Score the project at ``path`` (see ``QualityReport``). Read-only: nothing is written
    inside the project (ruff's cache goes under the data dir, git takes no optional locks)."""
    path: str  # the project directory, absolute (``~`` allowed)
    # The permission store's summary from the gateway; {} = not known (the signal is unknown).
    # Read: {"git_commit": "granted" | "ask" | "refused" | "disabled", "expires_at": ISO-8601}
    permissions: dict[str, Any] = {}
    lint: bool = True  # run ruff on a Python project
    budget_s: float = ASSESS_BUDGET_S  # wall-time bound; what does not fit is reported, bounded


class GitStatus(msgspec.Struct, tag=True):
    """The git state of the work tree holding ``path``. A ``bad_request`` when git is missing or
    the directory is not in a git work tree (the message says which)."""
    path: str
    # A commit (the session's start, say): also count the commits since it and list the tracked
    # files that differ from it now, committed or not.
    since: str = ""


class CheckpointCommit(msgspec.Struct, tag=True):
    """Commit the tracked changes under ``path`` (``git add -u -- <path>``; with
    ``include_untracked`` also the untracked, not ignored files: ``git add -A -- <path>``).
    What the user had already staged elsewhere is part of the commit too, as with ``git commit``.

    Refused, with ``skipped`` saying why, on a detached HEAD, during a merge/rebase/cherry-pick/
    revert/bisect, without a configured user.name/user.email, or when nothing changed. The user's
    index is never modified unless the commit is made: staging happens in a copy of it
    (``GIT_INDEX_FILE``) while ``index.lock`` is held, as ``git commit -a`` does, and the copy
    replaces the index only after the commit succeeded. So a failing or hanging hook leaves the
    index byte for byte as it was, and no commit."""
    path: str
    project: str = ""  # the name in the message; "" = the directory's name
    session_id: str = ""
    note: str = ""  # a line from the assistant or the user, put in the message
    # The score for the message; None: the worker assesses the project first (returned in
    # CommitResult.report). Rendered by quality_worker.message.checkpoint_message.
    report: QualityReport | None = None
    include_untracked: bool = False
    timeout_s: float = COMMIT_TIMEOUT_S  # for staging and the commit with its hooks
    permissions: dict[str, Any] = {}  # passed to the assessment when ``report`` is None


# ------------------------------------------------------------------- replies
class ToolInfo(msgspec.Struct):
    name: str
    found: bool  # on PATH (ruff also: the one installed with sessiond)
    path: str = ""
    version: str = ""  # the first line `NAME --version` printed, when it exited 0
    error: str = ""  # why there is no version (not on PATH, exit status, no answer in time)


class ToolsReport(msgspec.Struct, tag=True):
    tools: list[ToolInfo]


class Signal(msgspec.Struct):
    """One measured (or unmeasurable) input of the score.

    ``points = value * share * 100``; the score is the sum of every signal's points. ``share`` is
    ``weight`` divided by the summed weights of the *measured* signals, so an unknown signal
    neither helps nor hurts."""
    name: str  # readme, tests, manifest, lockfile, lockfile_sync, ci, docs, vcs,
    #            gitignore_secrets, lint, test_results, coverage, type_checking, git_clean,
    #            git_upstream, git_recent, tools, permissions
    category: Category
    status: SignalStatus
    value: float  # 0..1 (1 = best) when measured; 0 otherwise
    weight: float  # its weight before re-normalisation (all weights sum to 100)
    share: float = 0.0  # its share of the score, 0..1; 0 unless measured
    points: float = 0.0  # what it adds to the score
    detail: str = ""  # what was measured ("12 findings in 4 files"), or why it could not be
    advice: str = ""  # what would raise it ("run `ruff check --fix src/`"); "" when nothing


class CategoryScore(msgspec.Struct):
    name: Category
    score: float | None  # 0..100 over its measured signals; None when none was measured
    share: float  # its measured signals' summed share of the overall score, 0..1


class GitState(msgspec.Struct, tag=True):
    root: str  # the work tree's top level
    branch: str | None  # None: detached HEAD
    head: str | None  # the commit HEAD names; None before the first commit
    operation: str | None  # merge | rebase | cherry-pick | revert | bisect in progress
    clean: bool  # nothing staged, unstaged, untracked or conflicted
    staged: int
    unstaged: int
    untracked: int  # as git status lists them: a wholly untracked directory counts once
    conflicted: int
    upstream: str | None = None
    ahead: int | None = None  # None without an upstream
    behind: int | None = None
    last_commit_at: str | None = None  # ISO-8601 UTC, committer date
    last_commit_age_days: float | None = None
    last_commit_subject: str = ""
    commits_30d: int | None = None  # commits reachable from HEAD in the last 30 days
    changed: list[str] = []  # the first paths git status listed (up to 50)
    since: str = ""  # GitStatus.since, as given
    since_commits: int | None = None  # commits from ``since`` to HEAD
    since_files: list[str] = []  # tracked files differing from ``since`` now (up to 200)
    since_files_total: int = 0
    bounded: bool = False  # git printed more than the worker reads: counts are lower bounds
    notes: list[str] = []  # what could not be measured, and why


class QualityReport(msgspec.Struct, tag=True):
    path: str  # the project directory, resolved
    project: str  # its name
    score: float  # 0..100, one decimal
    categories: list[CategoryScore]
    breakdown: list[Signal]  # every signal, measured or not, in a fixed order
    recommendations: list[str]  # the advice of the signals that lose the most points first
    bounded: bool  # some part stopped at a limit (files scanned, time, output): see ``bounds``
    bounds: list[str] = []  # what was cut short, in words
    git: GitState | None = None  # None: not a git work tree, or git unusable (see signal vcs)
    tools: list[ToolInfo] = []
    files_scanned: int = 0  # directory entries the scan looked at
    measured_at: str = ""  # ISO-8601 UTC
    elapsed_ms: float = 0.0


class CommitResult(msgspec.Struct, tag=True):
    committed: bool
    skipped: SkipCode = ""
    skipped_reason: str = ""  # why no commit, in words the user can act on
    sha: str = ""
    branch: str = ""
    files: list[str] = []  # the paths in the commit, with their status ("M src/app.py"), capped
    files_total: int = 0
    message: str = ""  # the message used (or that would have been)
    hook_output: str = ""  # what the commit and its hooks printed (capped), success or not
    report: QualityReport | None = None  # the assessment made for the message, if the worker made it
    elapsed_ms: float = 0.0
