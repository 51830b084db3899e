"""Git, read side: where the repository is, what is in progress, and ``GitState``.

Every command runs through ``procs.run`` (clean environment, time limit, capped output) with
``GIT_OPTIONAL_LOCKS=0``, so reading the state never takes ``index.lock`` from the user.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from quality_worker import procs
from shared import protocol as p

STATUS_MAX_OUTPUT = 2 << 20  # git status -z beyond this is not read: counts become lower bounds
MAX_CHANGED = 50
MAX_SINCE_FILES = 200
# What a git command may take when the caller's budget allows more: a read should be quick.
READ_TIMEOUT_S = 10.0

# In-progress operations, by the file or directory git keeps for each (``--git-path`` names).
OPERATIONS = (
    ("MERGE_HEAD", "merge"),
    ("rebase-merge", "rebase"),
    ("rebase-apply", "rebase"),  # also `git am`
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
    ("BISECT_LOG", "bisect"),
)


class GitUnusable(Exception):
    """git cannot answer for this directory; the message says why, for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # a CommitResult skip code: no_git, not_a_repo, git_error, timeout
        self.message = message


def git_binary() -> str | None:
    return shutil.which("git", path=procs.clean_env().get("PATH"))


@dataclass
class Repo:
    cwd: Path  # the project directory commands run in
    top: Path  # the work tree's top level
    git_dir: Path
    index: Path  # this work tree's index file (a linked worktree has its own)
    hooks: Path
    operation: str | None


class Git:
    """git commands in one directory, each bounded by its own limit and the job's deadline."""

    def __init__(self, cwd: Path, deadline: float, binary: str | None = None) -> None:
        self.cwd = cwd
        self.deadline = deadline
        self.binary = binary or git_binary()
        if self.binary is None:
            raise GitUnusable("no_git", "git is not installed (no git executable on the "
                              "quality worker's PATH)")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, *args: str, timeout_s: float = READ_TIMEOUT_S, env: dict | None = None,
            max_output: int = procs.MAX_OUTPUT, stop_when_cut: bool = False,
            while_stopping: bool = False) -> procs.Finished:
        limit = min(timeout_s, self.left())
        name = _subcommand(args)
        if limit <= 0:
            raise GitUnusable("timeout", f"no time left for git {name}")
        try:
            done = procs.run([self.binary, "-c", "color.ui=false", *args], cwd=self.cwd,
                             timeout_s=limit, env=env, max_output=max_output,
                             stop_when_cut=stop_when_cut, while_stopping=while_stopping)
        except OSError as exc:
            if procs.stopped():
                raise GitUnusable("timeout", str(exc)) from None
            raise GitUnusable("no_git", f"git cannot be run ({self.binary}): {exc}") from None
        if done.timed_out and procs.stopped():
            raise GitUnusable("timeout", f"git {name} was stopped: the quality worker is "
                              "stopping")
        if done.timed_out:
            raise GitUnusable("timeout", f"git {name} did not finish in {limit:.1f} s; "
                              "it was stopped")
        return done

    def repo(self) -> Repo:
        """The repository around ``cwd``; ``GitUnusable`` when there is no work tree."""
        names = [name for name, _ in OPERATIONS]
        args = ["rev-parse", "--is-inside-work-tree", "--show-toplevel", "--absolute-git-dir",
                "--git-path", "index", "--git-path", "hooks"]
        for name in names:
            args += ["--git-path", name]
        done = self.run(*args)
        lines = done.out.decode("utf-8", "surrogateescape").splitlines()
        if not done.ok or len(lines) != 5 + len(names) or lines[0] != "true":
            if lines[:1] == ["false"]:
                why = "it is inside a .git directory or a bare repository, not a work tree"
            else:
                why = done.error_line()
            raise GitUnusable("not_a_repo", f"{self.cwd} is not in a git work tree: {why}")
        paths = [self.cwd / line for line in lines[3:]]  # relative to cwd unless absolute
        operation = next((op for (_, op), path in zip(OPERATIONS, paths[2:]) if path.exists()),
                         None)
        return Repo(self.cwd, Path(lines[1]), Path(lines[2]), paths[0], paths[1], operation)

    def head_branch(self) -> str | None:
        """The branch HEAD is on, None when detached."""
        done = self.run("symbolic-ref", "-q", "--short", "HEAD")
        return done.out.decode("utf-8", "surrogateescape").strip() if done.ok else None

    def head_commit(self, *, while_stopping: bool = False) -> str | None:
        done = self.run("rev-parse", "-q", "--verify", "HEAD^{commit}",
                        while_stopping=while_stopping)
        return done.out.decode().strip() if done.ok else None

    def state(self, repo: Repo, since: str = "") -> p.GitState:
        st = self._status(repo)
        if st.head:
            self._history(st)
        if since:
            self._since(st, since)
        return st

    # ---------------------------------------------------------------- pieces
    def _status(self, repo: Repo) -> p.GitState:
        done = self.run("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal",
                        max_output=STATUS_MAX_OUTPUT, stop_when_cut=True)
        if not done.ok and not done.cut:
            raise GitUnusable("git_error", f"git status failed: {done.error_line()}")
        fields = done.out.split(b"\0")
        if done.cut:
            fields = fields[:-1]  # the last one may be cut in half
        st = p.GitState(root=str(repo.top), branch=None, head=None, operation=repo.operation,
                        clean=True, staged=0, unstaged=0, untracked=0, conflicted=0,
                        bounded=done.cut)
        skip_next = False
        for raw in fields:
            if skip_next:  # a rename's original path
                skip_next = False
                continue
            line = raw.decode("utf-8", "surrogateescape")
            if not line:
                continue
            if line.startswith("# "):
                _header(st, line[2:])
                continue
            kind = line[0]
            if kind in "12":
                xy = line[2:4]
                st.staged += xy[0] != "."
                st.unstaged += xy[1] != "."
                skip_next = kind == "2"
                path = line.split(" ", 8 if kind == "1" else 9)[-1]
            elif kind == "u":
                st.conflicted += 1
                path = line.split(" ", 10)[-1]
            elif kind == "?":
                st.untracked += 1
                path = line[2:]
            else:
                continue
            if len(st.changed) < MAX_CHANGED:
                st.changed.append(path)
        st.clean = not (st.staged or st.unstaged or st.untracked or st.conflicted)
        if st.bounded:
            st.notes.append(f"git status printed over {STATUS_MAX_OUTPUT >> 20} MB; the counts "
                            "are what was read (at least)")
        return st

    def _history(self, st: p.GitState) -> None:
        done = self.run("log", "-1", "--format=%ct%x00%s", "HEAD")
        if done.ok and b"\0" in done.out:
            stamp, subject = done.out.decode("utf-8", "replace").rstrip("\n").split("\0", 1)
            when = datetime.fromtimestamp(int(stamp), UTC)
            st.last_commit_at = when.isoformat(timespec="seconds")
            st.last_commit_age_days = round(
                max(0.0, (datetime.now(UTC) - when).total_seconds()) / 86400, 2)
            st.last_commit_subject = subject[:200]
        else:
            st.notes.append(f"last commit unknown: {done.error_line()}")
        done = self.run("rev-list", "--count", "--since=30.days.ago", "HEAD")
        if done.ok:
            st.commits_30d = int(done.out.strip() or 0)
        else:
            st.notes.append(f"commits in the last 30 days unknown: {done.error_line()}")

    def _since(self, st: p.GitState, since: str) -> None:
        st.since = since
        if since.startswith("-") or not since.strip() or "\0" in since or len(since) > 200:
            st.notes.append(f"since {since[:200]!r} is not a commit")
            return
        done = self.run("rev-list", "--count", f"{since}..HEAD")
        if not done.ok:
            st.notes.append(f"since {since[:40]}: {done.error_line()}")
            return
        st.since_commits = int(done.out.strip() or 0)
        done = self.run("diff", "--name-only", "-z", "--no-renames", since, "--",
                        stop_when_cut=True, max_output=1 << 20)
        names = [n.decode("utf-8", "surrogateescape") for n in done.out.split(b"\0") if n]
        if done.cut:
            names = names[:-1]
            st.bounded = True
        st.since_files = names[:MAX_SINCE_FILES]
        st.since_files_total = len(names)


def _subcommand(args: tuple[str, ...]) -> str:
    """"commit" in ("-c", "gc.auto=0", "commit", "-q"), for messages."""
    for i, arg in enumerate(args):
        if not arg.startswith("-") and (i == 0 or args[i - 1] != "-c"):
            return arg
    return args[0] if args else "?"


def _header(st: p.GitState, header: str) -> None:
    key, _, value = header.partition(" ")
    if key == "branch.oid":
        st.head = None if value == "(initial)" else value
    elif key == "branch.head":
        st.branch = None if value == "(detached)" else value
    elif key == "branch.upstream":
        st.upstream = value
    elif key == "branch.ab":
        ahead, behind = value.split()
        st.ahead, st.behind = int(ahead), -int(behind)
