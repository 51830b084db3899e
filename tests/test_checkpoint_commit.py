"""CheckpointCommit through a real stack, in real git repositories: the commit holds only the
tracked changes, nothing is committed when nothing changed, on a detached HEAD, mid-rebase or
without an identity; a failing hook is reported with its output and a hanging one is stopped,
each leaving the user's index byte for byte as it was; the worker answers pings meanwhile."""

from __future__ import annotations

import asyncio
import os
import time

import psutil
import pytest
from conftest import Stack, base_env
from git_fixtures import (
    ask,
    client_of,
    commit_all,
    git,
    hook,
    index_digest,
    new_repo,
    quality_stack,
    stack_overrides,
    write,
)

from shared import protocol as p
from shared.errors import ServiceError


@pytest.fixture(scope="module")
def env():
    yield from quality_stack()


def project() -> os.PathLike:
    repo = new_repo("shop")
    write(repo, {"app.py": "VALUE = 1\n", "lib/util.py": "def f():\n    return 1\n",
                 "README.md": "# shop\n"})
    commit_all(repo)
    return repo


def checkpoint(env, repo, **fields) -> p.CommitResult:
    result = ask(env, p.CheckpointCommit(path=str(repo), **fields), timeout_s=60)
    assert isinstance(result, p.CommitResult), result
    return result


def head(repo) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def leftovers(repo) -> list[str]:
    """Lock or staging files left in .git by a checkpoint."""
    return [n for n in os.listdir(repo / ".git") if n.endswith(".lock") or ".sessiond-" in n]


def test_the_commit_holds_only_the_tracked_change_and_the_score(env):
    repo = project()
    write(repo, {"app.py": "VALUE = 2\n", "notes.txt": "untracked, stays out\n"})
    result = checkpoint(env, repo, session_id="s-1", note="halfway through the refactor")
    assert result.committed, result.skipped_reason
    assert result.files == ["M app.py"] and result.files_total == 1
    assert result.sha == head(repo) and result.branch == "main"
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["app.py"]
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith(f"checkpoint: {repo.name} (quality: ")
    assert f"(quality: {result.report.score:.0f}/100)" in message
    assert "Session: s-1" in message and "halfway through the refactor" in message
    assert "Quality Metrics:" in message and "- Code quality:" in message
    assert "Breakdown (points lost):" in message and "- readme " in message
    # The untracked file is still untracked; the index is the commit, nothing left staged.
    assert git(repo, "status", "--porcelain") == "?? notes.txt\n"
    assert leftovers(repo) == []


def test_untracked_files_only_when_asked_and_a_given_report_is_used(env):
    repo = project()
    write(repo, {"new.py": "X = 1\n"})
    assert checkpoint(env, repo).skipped == "nothing_changed"
    report = ask(env, p.AssessQuality(path=str(repo)))
    result = checkpoint(env, repo, include_untracked=True, report=report, project="shop-api")
    assert result.committed and result.files == ["A new.py"]
    assert result.report is None  # the one given was used, none was made
    assert git(repo, "log", "-1", "--format=%s").startswith(
        f"checkpoint: shop-api (quality: {report.score:.0f}/100) - ")


def test_control_characters_in_the_message_fields_are_made_harmless(env):
    repo = project()
    write(repo, {"app.py": "VALUE = 2\n"})
    result = checkpoint(env, repo, project="two\nlines\x00", note="a\x00b\x1b[31m",
                        session_id="s\x00")
    assert result.committed, result.skipped_reason
    title, _, body = git(repo, "log", "-1", "--format=%B").partition("\n")
    assert title.startswith("checkpoint: two lines (quality: ")
    assert "a b [31m" in body and "Session: s" in body and "\x1b" not in body


def test_nothing_changed_detached_head_and_mid_rebase_make_no_commit(env):
    repo = project()
    before = head(repo)
    clean = checkpoint(env, repo)
    assert (clean.committed, clean.skipped) == (False, "nothing_changed")

    git(repo, "checkout", "-q", "--detach")
    write(repo, {"app.py": "VALUE = 3\n"})
    detached = checkpoint(env, repo)
    assert (detached.committed, detached.skipped) == (False, "detached_head")
    assert "detached" in detached.skipped_reason
    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-q", "--", "app.py")
    assert head(repo) == before

    # A rebase stopped on a conflict: .git/rebase-merge exists.
    git(repo, "checkout", "-q", "-b", "topic")
    write(repo, {"app.py": "VALUE = 'topic'\n"})
    commit_all(repo, "topic change")
    git(repo, "checkout", "-q", "main")
    write(repo, {"app.py": "VALUE = 'main'\n"})
    commit_all(repo, "main change")
    git(repo, "checkout", "-q", "topic")
    git(repo, "rebase", "main", check=False)
    assert (repo / ".git" / "rebase-merge").is_dir()
    topic_head, digest = head(repo), index_digest(repo)
    mid = checkpoint(env, repo)
    assert (mid.committed, mid.skipped) == (False, "operation_in_progress")
    assert "rebase is in progress" in mid.skipped_reason
    assert head(repo) == topic_head and index_digest(repo) == digest


def test_no_identity_no_commit(env):
    repo = new_repo("anon", identity=False)
    write(repo, {"a.txt": "1\n"})
    git(repo, "-c", "user.name=Setup", "-c", "user.email=setup@example.com", "add", "a.txt")
    git(repo, "-c", "user.name=Setup", "-c", "user.email=setup@example.com", "commit", "-qm", "i")
    write(repo, {"a.txt": "2\n"})
    result = checkpoint(env, repo)
    assert (result.committed, result.skipped) == (False, "no_identity")
    assert "git config user.name" in result.skipped_reason
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"


def test_a_failing_hook_is_reported_and_the_index_is_as_it_was(env):
    repo = project()
    write(repo, {"app.py": "VALUE = 2\n", "lib/util.py": "def f():\n    return 2\n"})
    git(repo, "add", "lib/util.py")  # the user's own staging: one file staged, one not
    hook(repo, "pre-commit", "echo 'style check failed: app.py line 1' >&2\nexit 1")
    before, digest, status = head(repo), index_digest(repo), git(repo, "status", "--porcelain")
    result = checkpoint(env, repo)
    assert (result.committed, result.skipped) == (False, "commit_failed")
    assert "pre-commit hook refused it" in result.skipped_reason
    assert "style check failed: app.py line 1" in result.hook_output
    assert sorted(result.files) == ["M app.py", "M lib/util.py"]  # what it would have held
    assert head(repo) == before
    assert index_digest(repo) == digest  # byte for byte
    assert git(repo, "status", "--porcelain") == status
    assert leftovers(repo) == []


def test_an_existing_index_lock_is_left_alone(env):
    repo = project()
    write(repo, {"app.py": "VALUE = 2\n"})
    (repo / ".git" / "index.lock").write_text("")
    result = checkpoint(env, repo)
    assert (result.committed, result.skipped) == (False, "index_locked")
    assert (repo / ".git" / "index.lock").exists()  # not ours to remove


def test_a_hanging_hook_is_stopped_and_pings_are_answered_meanwhile(env):
    repo = project()
    write(repo, {"app.py": "VALUE = 2\n"})
    pids = repo / "hook.pids"
    hook(repo, "pre-commit", f"sleep 300 & echo $! >> {pids}\necho $$ >> {pids}\nwait")
    before, digest = head(repo), index_digest(repo)

    async def scenario():
        client = client_of(env)
        try:
            commit = asyncio.create_task(client.request(
                p.SERVICE_QUALITY, p.CheckpointCommit(path=str(repo), timeout_s=5),
                timeout_s=60))
            for _ in range(200):  # until the hook runs
                if pids.exists() and len(pids.read_text().split()) == 2:
                    break
                await asyncio.sleep(0.05)
            t0 = time.monotonic()
            pong = await client.request(p.SERVICE_QUALITY, p.Ping(), timeout_s=10)
            ping_s = time.monotonic() - t0
            return await commit, pong, ping_s
        finally:
            client.close()

    t0 = time.monotonic()
    result, pong, ping_s = asyncio.run(scenario())
    assert time.monotonic() - t0 < 30  # 5 s limit; generous for a loaded machine
    assert isinstance(pong, p.Pong) and ping_s < 2.0, ping_s  # not queued behind the commit
    assert (result.committed, result.skipped) == (False, "timeout"), result
    assert "did not finish in" in result.skipped_reason
    assert head(repo) == before and index_digest(repo) == digest
    assert leftovers(repo) == []
    hung = [int(line) for line in pids.read_text().split()]
    assert len(hung) == 2
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                   for pid in hung), "the hook's processes were left running"


def test_stopping_the_stack_mid_commit_ends_the_hook_and_leaves_no_lock(home):
    """SIGTERM to the stack while a hook hangs: the worker kills the hook at once, the commit
    is abandoned and cleaned up (no index.lock for the user to find), within the supervisor's
    grace, so nothing had to be killed."""
    repo = project()
    write(repo, {"app.py": "VALUE = 2\n"})
    pids = repo / "hook.pids"
    hook(repo, "pre-commit", f"sleep 300 & echo $! >> {pids}\necho $$ >> {pids}\nwait")
    before, digest = head(repo), index_digest(repo)
    env = base_env(home, **stack_overrides())
    stack = Stack(home, env)
    assert isinstance(ask(env, p.Ping()), p.Pong)

    async def scenario():
        client = client_of(env)
        try:
            commit = asyncio.create_task(client.request(
                p.SERVICE_QUALITY, p.CheckpointCommit(path=str(repo), timeout_s=120),
                timeout_s=130))
            for _ in range(400):  # until the hook runs
                if pids.exists() and len(pids.read_text().split()) == 2:
                    break
                await asyncio.sleep(0.05)
            code = await asyncio.to_thread(stack.stop, 30)
            try:
                reply = await commit
            except ServiceError as exc:  # the hub may be gone before the answer
                reply = exc
            return code, reply
        finally:
            client.close()

    code, reply = asyncio.run(scenario())
    assert code == 0
    log = (home / "logs" / "stack.log").read_text()
    assert "quality=0; killed 0" in log.replace("embed-0=0,", ""), log[-2000:]
    if isinstance(reply, p.CommitResult):
        assert (reply.committed, reply.skipped) == (False, "timeout")
        assert "stopping" in reply.skipped_reason
    assert head(repo) == before and index_digest(repo) == digest
    assert leftovers(repo) == []
    hung = [int(line) for line in pids.read_text().split()]
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                   for pid in hung), "the hook's processes were left running"
