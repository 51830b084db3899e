"""Signals from the git state (clean tree, upstream, recent work), the tools the worker can
run, and the permission store's summary the gateway passed in."""

from __future__ import annotations

from quality_worker.project import Project
from quality_worker.score import measured, not_applicable, unknown
from shared import protocol as p

DIRTY_HALF_AT = 10  # changed entries at which git_clean is 0.5
RECENT_DAYS = 14  # a last commit this recent counts fully; older halves every HALF_LIFE_DAYS
HALF_LIFE_DAYS = 90


def _no_git(name: str, pr: Project, state: p.GitState | None, why: str) -> p.Signal | None:
    if state is not None:
        return None
    if pr.repo is None and pr.vcs_dir is None:
        return not_applicable(name, "not a git repository")
    return unknown(name, why or pr.git_error or "git state unknown",
                   "install git" if pr.git_error_code == "no_git" else "")


def git_clean(pr: Project, state: p.GitState | None, why: str = "") -> p.Signal:
    if (missing := _no_git("git_clean", pr, state, why)) is not None:
        return missing
    if state.operation:
        return measured("git_clean", 0, f"a {state.operation} is in progress",
                        f"finish or abort the {state.operation} in progress")
    if state.conflicted:
        return measured("git_clean", 0, f"{state.conflicted} conflicted files",
                        "resolve the merge conflicts")
    changed = state.staged + state.unstaged + state.untracked
    if not changed:
        return measured("git_clean", 1, f"clean on {state.branch or 'a detached HEAD'}")
    at_least = "at least " if state.bounded else ""
    detail = (f"{at_least}{state.staged} staged, {state.unstaged} unstaged, "
              f"{state.untracked} untracked")
    tracked = state.staged + state.unstaged
    advice = (f"{tracked} changed tracked files are not committed: checkpoint or commit them"
              if tracked else
              f"{state.untracked} untracked files: add them or list them in .gitignore")
    return measured("git_clean", 1 / (1 + changed / DIRTY_HALF_AT), detail, advice)


def git_upstream(pr: Project, state: p.GitState | None, why: str = "") -> p.Signal:
    if (missing := _no_git("git_upstream", pr, state, why)) is not None:
        return missing
    if state.branch is None:
        return not_applicable("git_upstream", "detached HEAD")
    if state.upstream is None or state.ahead is None:
        return not_applicable("git_upstream", f"{state.branch} has no upstream branch")
    ahead, behind = state.ahead, state.behind or 0
    if not ahead and not behind:
        return measured("git_upstream", 1, f"even with {state.upstream}")
    value = 0.5 ** (ahead / 10) * 0.5 ** (behind / 20)
    advice = []
    if ahead:
        advice.append(f"{ahead} commits not pushed to {state.upstream}: push them")
    if behind:
        advice.append(f"{behind} commits behind {state.upstream}: pull")
    return measured("git_upstream", value, f"{ahead} ahead, {behind} behind {state.upstream}",
                    "; ".join(advice))


def git_recent(pr: Project, state: p.GitState | None, why: str = "") -> p.Signal:
    if (missing := _no_git("git_recent", pr, state, why)) is not None:
        return missing
    if state.head is None:
        return measured("git_recent", 0, "no commit yet", "nothing is committed yet: commit")
    age = state.last_commit_age_days
    if age is None:
        return unknown("git_recent", "; ".join(state.notes) or "last commit date unknown")
    value = 1.0 if age <= RECENT_DAYS else 0.5 ** ((age - RECENT_DAYS) / HALF_LIFE_DAYS)
    when = "today" if age < 1 else f"{age:.0f} days ago"
    detail = f"last commit {when}; {state.commits_30d} commits in the last 30 days"
    return measured("git_recent", value, detail, f"the last commit is {age:.0f} days old")


def tools(pr: Project, found: list[p.ToolInfo]) -> p.Signal:
    """The share of the tools this project's work needs that run: git always; python, ruff and
    pytest for a Python project; uv where there is a uv.lock."""
    needed = ["git"]
    if pr.python:
        needed += ["python", "ruff", "pytest"]
    if "uv.lock" in pr.lockfiles:
        needed.append("uv")
    by_name = {t.name: t for t in found}
    working = [n for n in needed if n in by_name and by_name[n].version]
    missing = [n for n in needed if n not in working]
    if not missing:
        return measured("tools", 1, f"{', '.join(needed)} run")
    reasons = "; ".join(f"{n}: {by_name[n].error if n in by_name else 'not probed'}"
                        for n in missing)
    return measured("tools", len(working) / len(needed), f"missing {reasons}",
                    f"install {', '.join(missing)} where sessiond runs (its PATH)")


def permissions(summary: dict) -> p.Signal:
    """Whether the session's own writes (the checkpoint commit) can go ahead: from the
    permission store's summary, {"git_commit": granted | ask | refused | disabled}."""
    if not summary:
        return unknown("permissions", "no permission summary was given")
    state = summary.get("git_commit")
    expires = summary.get("expires_at")
    if state == "granted":
        until = f" until {expires}" if expires else ""
        return measured("permissions", 1, f"checkpoint commits are trusted{until}")
    if state == "ask":
        return measured("permissions", 0.5, "each checkpoint commit asks the user first",
                        "trust git_commit for the session (`permissions trust git_commit`) "
                        "so checkpoints commit without asking")
    if state == "refused":
        return measured("permissions", 0, "checkpoint commits are refused (no grant)",
                        "checkpoints cannot commit: grant it with `permissions trust "
                        "git_commit`")
    if state == "disabled":
        return not_applicable("permissions", "checkpoint commits are turned off")
    return unknown("permissions", f"unrecognised permission summary: git_commit={state!r}")
