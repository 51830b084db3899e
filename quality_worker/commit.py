"""The checkpoint commit: the tracked changes under the project directory, or nothing.

How the user's index is kept safe (the same protocol ``git commit -a`` and ``git commit <paths>``
follow internally):

1. refuse outside a work tree, on a detached HEAD, during a merge/rebase/cherry-pick/revert/
   bisect, and without a configured identity (``user.useConfigOnly``: git must not guess one);
2. take ``index.lock`` (created exclusively: if it exists, another git process is at work and
   the checkpoint is skipped); git commands of the user wait or fail meanwhile, as they would
   during their own commit;
3. copy the index to a file beside it and stage into the copy (``GIT_INDEX_FILE``):
   ``git add -u -- <dir>`` (``-A`` with ``include_untracked``); the commit's hooks get the copy
   through ``GIT_INDEX_FILE`` too, as they do under ``git commit -a``;
4. nothing staged → skip; else ``git commit`` from the copy;
5. only if the commit was made does the copy replace the index (one rename, under the lock).

So until a commit exists the user's index file is never written: a failing hook, a hook that
hangs (its process group is killed at the time limit), or a crash of the worker leaves it byte
for byte as it was. The alternative of staging into the real index and restoring it from
``git write-tree`` / ``git read-tree`` was rejected: it rewrites the index twice, loses its stat
data (the next ``git status`` re-hashes every file), intent-to-add and skip-worktree entries,
and shows half-staged states to anyone looking meanwhile. One risk remains: if the worker is
killed with the lock held, ``index.lock`` stays behind, exactly as after a crashed ``git commit``;
git then names the file to remove.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path

from quality_worker.git import Git, GitUnusable, Repo
from quality_worker.procs import clean_env
from shared import protocol as p

MAX_FILES_LISTED = 200
AFTER_TIMEOUT_CHECK_S = 2.0  # to look at HEAD once the commit was stopped at its time limit
MAX_HOOK_OUTPUT = 8000  # characters of the commit's output returned
HOOKS = ("pre-commit", "prepare-commit-msg", "commit-msg")
# No background gc or maintenance after the commit (it would outlive the job, holding locks).
COMMIT_CONFIG = ("-c", "user.useConfigOnly=true", "-c", "gc.auto=0",
                 "-c", "maintenance.auto=false", "-c", "commit.verbose=false")

_repo_locks: dict[str, threading.Lock] = {}
_repo_locks_guard = threading.Lock()


def _lock_for(git_dir: Path) -> threading.Lock:
    """One checkpoint at a time per repository inside this worker (the index.lock protocol
    guards against every other process)."""
    with _repo_locks_guard:
        return _repo_locks.setdefault(str(git_dir), threading.Lock())


def skipped(code: str, reason: str, **fields) -> p.CommitResult:
    return p.CommitResult(committed=False, skipped=code, skipped_reason=reason, **fields)


def checkpoint_commit(path: Path, message: str, *, include_untracked: bool,
                      timeout_s: float) -> p.CommitResult:
    """Commit the tracked changes under ``path`` with ``message`` (see the module's doc)."""
    t0 = time.monotonic()
    try:
        git = Git(path, t0 + timeout_s)
        repo = git.repo()
        with _lock_for(repo.git_dir):
            result = _checkpoint(git, repo, message, include_untracked)
    except GitUnusable as exc:
        result = skipped(exc.code, exc.message)
    result.message = message
    result.elapsed_ms = round((time.monotonic() - t0) * 1000, 1)
    return result


def _checkpoint(git: Git, repo: Repo, message: str, include_untracked: bool) -> p.CommitResult:
    if repo.operation:
        return skipped("operation_in_progress",
                       f"a {repo.operation} is in progress in {repo.top}; finish or abort it "
                       "first (no checkpoint commit is made in the middle of one)")
    branch = git.head_branch()
    if branch is None:
        return skipped("detached_head", f"HEAD is detached in {repo.top}; check out a branch "
                       "for checkpoint commits (none is made on a detached HEAD)")
    missing = _missing_identity(git)
    if missing:
        return skipped("no_identity", f"git has no {missing} configured for {repo.top}; set "
                       "it with `git config user.name \"Your Name\"` and `git config user.email "
                       "you@example.com` (add --global for every repository)", branch=branch)
    before = git.head_commit()
    lock = Path(f"{repo.index}.lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return skipped("index_locked", f"another git process is using the index ({lock} "
                       "exists); if none is running, remove that file", branch=branch)
    except OSError as exc:
        return skipped("git_error", f"cannot lock the index ({lock}): {exc.strerror}",
                       branch=branch)
    os.close(fd)
    staging = Path(f"{repo.index}.sessiond-{os.getpid()}-{threading.get_ident()}")
    try:
        return _commit_locked(git, repo, message, include_untracked, branch, before, staging)
    finally:
        for leftover in (staging, Path(f"{staging}.lock"), lock):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _commit_locked(git: Git, repo: Repo, message: str, include_untracked: bool, branch: str,
                   before: str | None, staging: Path) -> p.CommitResult:
    if repo.index.exists():
        shutil.copy2(repo.index, staging)
    env = clean_env(GIT_INDEX_FILE=str(staging))
    add = git.run("add", "-A" if include_untracked else "-u", "--", ".", env=env,
                  timeout_s=git.left())
    if not add.ok:
        return skipped("git_error", f"staging failed: {add.error_line()}", branch=branch)
    listed = git.run("diff", "--cached", "--name-status", "-z", "--no-renames", env=env,
                     max_output=1 << 20, stop_when_cut=True)
    if not listed.ok and not listed.cut:
        return skipped("git_error", f"cannot list the staged files: {listed.error_line()}",
                       branch=branch)
    files = _name_status(listed.out, cut=listed.cut)
    if not files:
        what = "tracked or untracked" if include_untracked else "tracked"
        return skipped("nothing_changed", f"no {what} file changed under {repo.cwd}; nothing "
                       "to commit", branch=branch)
    result = p.CommitResult(committed=False, branch=branch, files=files[:MAX_FILES_LISTED],
                            files_total=len(files))
    try:
        done = git.run(*COMMIT_CONFIG, "commit", "-q", "--no-edit", "-m", message, env=env,
                       timeout_s=git.left())
    except GitUnusable as exc:
        if exc.code != "timeout":
            raise
        git.deadline = time.monotonic() + AFTER_TIMEOUT_CHECK_S  # was the commit made anyway?
        after = git.head_commit(while_stopping=True)
        if after and after != before:  # made; a post-commit hook hung
            _adopt(staging, repo.index)
            result.committed, result.sha = True, after
            result.hook_output = f"the commit was made; then a hook did not finish: {exc}"
            return result
        result.skipped, result.skipped_reason = "timeout", (
            f"the commit did not finish ({exc}); its hooks (in {repo.hooks}) were stopped; "
            "no commit was made and the index is as it was")
        return result
    result.hook_output = done.text(MAX_HOOK_OUTPUT)
    after = git.head_commit()
    if not done.ok or not after or after == before:
        hooks = [h for h in HOOKS if os.access(repo.hooks / h, os.X_OK)]
        by = (f"the {' / '.join(hooks)} hook refused it" if hooks
              else f"git commit exited with {done.code}: {done.error_line()}")
        result.skipped, result.skipped_reason = "commit_failed", (
            f"no commit: {by}; the index is as it was (see hook_output)")
        return result
    _adopt(staging, repo.index)
    result.committed, result.sha = True, after
    return result


def _adopt(staging: Path, index: Path) -> None:
    """The index the commit was made from becomes the user's (we hold index.lock)."""
    os.replace(staging, index)


def _missing_identity(git: Git) -> str:
    for var, what in (("GIT_AUTHOR_IDENT", "author identity"),
                      ("GIT_COMMITTER_IDENT", "committer identity")):
        if not git.run("-c", "user.useConfigOnly=true", "var", var).ok:
            return f"{what} (user.name / user.email)"
    return ""


def _name_status(raw: bytes, *, cut: bool) -> list[str]:
    fields = [f.decode("utf-8", "surrogateescape") for f in raw.split(b"\0")]
    if cut:
        fields = fields[:-1]
    pairs = zip(fields[0::2], fields[1::2])
    return [f"{status} {name}" for status, name in pairs if status and name]
