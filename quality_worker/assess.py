"""One assessment: gather the facts (bounded file scan, repository), then run the slow parts
at once (ruff, the tool probe, git status, the lockfile check) while the file-based signals are
judged, all inside the request's time budget; combine into a ``QualityReport``.

crackerjack is probed (its version is in ``tools``) but not run: ``crackerjack run`` fixes and
formats files by default and takes tens of seconds, which an assessment that must not write to
the project and must answer within its budget cannot afford.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from pathlib import Path

from quality_worker import code_signals, git_signals, project_signals, score
from quality_worker.git import GitUnusable
from quality_worker.lint import Lint, run_ruff
from quality_worker.project import describe
from quality_worker.scan import SCAN_TIME_S, scan
from quality_worker.tools import probe_tools_cached
from shared import protocol as p

MIN_BUDGET_S, MAX_BUDGET_S = 0.5, 60.0
RUFF_MAX_S = 30.0
TOOLS = (*p.PROBED_TOOLS, "crackerjack")
MARGIN_S = 0.05  # kept back from the budget to assemble the report


def assess(root: Path, request: p.AssessQuality, cache_home: Path) -> p.QualityReport:
    t0 = time.monotonic()
    budget = min(max(request.budget_s, MIN_BUDGET_S), MAX_BUDGET_S)
    deadline = t0 + budget - MARGIN_S
    measured_at = datetime.now(UTC).isoformat(timespec="seconds")
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="assess") as pool:
        tools_job = pool.submit(probe_tools_cached, TOOLS, cwd=cache_home)
        files = scan(root, time_s=min(SCAN_TIME_S, budget / 4))
        pr = describe(root, files, deadline)
        lint_job = (pool.submit(run_ruff, root, cache_home,
                                min(RUFF_MAX_S, deadline - time.monotonic()))
                    if request.lint and pr.python else None)
        git_job = pool.submit(pr.git.state, pr.repo) if pr.git and pr.repo else None
        sync_job = pool.submit(project_signals.lockfile_sync, pr, deadline)
        signals = [
            project_signals.vcs(pr), project_signals.readme(pr), project_signals.tests(pr),
            project_signals.manifest(pr), project_signals.lockfile(pr), project_signals.ci(pr),
            project_signals.docs(pr), project_signals.gitignore_secrets(pr),
            code_signals.test_results(pr), code_signals.coverage(pr),
            code_signals.type_checking(pr),
            git_signals.permissions(request.permissions),
        ]
        bounds = [files.bound] if files.bounded else []
        state, git_why = _git_result(git_job, deadline)
        lint = _lint_result(lint_job, deadline)
        tools = _wait(tools_job, deadline) or []
        sync = _wait(sync_job, deadline) or score.unknown("lockfile_sync", "no time left")
    signals += [
        sync,
        code_signals.lint(pr, lint, request.lint),
        git_signals.git_clean(pr, state, git_why), git_signals.git_upstream(pr, state, git_why),
        git_signals.git_recent(pr, state, git_why),
        git_signals.tools(pr, tools) if tools else score.unknown("tools", "tool probe: no time"),
    ]
    bounds += _more_bounds(lint, state)
    total, categories, breakdown, advice = score.combine(signals)
    return p.QualityReport(
        path=str(root), project=root.name, score=total, categories=categories,
        breakdown=breakdown, recommendations=advice, bounded=bool(bounds), bounds=bounds,
        git=state, tools=tools, files_scanned=files.entries, measured_at=measured_at,
        elapsed_ms=round((time.monotonic() - t0) * 1000, 1))


def _wait(job: Future | None, deadline: float):
    """The job's result, or None if it is not done in time (its processes have their own
    limits, never past the deadline, so the pool's exit does not wait long)."""
    if job is None:
        return None
    try:
        return job.result(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
    except FutureTimeout:
        return None


def _git_result(job: Future | None, deadline: float) -> tuple[p.GitState | None, str]:
    if job is None:
        return None, ""
    try:
        state = _wait(job, deadline)
    except GitUnusable as exc:
        return None, exc.message
    return state, "" if state is not None else "git status: no time left"


def _lint_result(job: Future | None, deadline: float) -> Lint | None:
    if job is None:
        return None
    return _wait(job, deadline) or Lint(error="ruff did not finish within the time budget",
                                        timed_out=True)


def _more_bounds(lint: Lint | None, state: p.GitState | None) -> list[str]:
    out = []
    if lint is not None and lint.timed_out:
        out.append(lint.error)
    if lint is not None and lint.cut:
        out.append(f"ruff printed more findings than are read; {lint.findings} were counted")
    if state is not None and state.bounded:
        out.append("git status listed more changes than are read; the counts are at least")
    return out
