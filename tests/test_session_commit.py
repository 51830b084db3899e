"""The checkpoint's commit through a real MCP client, and bad input to the session tools.

The git_commit permission: refused without a grant or a client that can ask (the rest of the
checkpoint is still made and reported), asked through MCP elicitation in both eras of the
protocol (on a 2026-07-28 connection the call returns the question and is made again: the
checkpoint is stored once); turned off by configuration. Directories that do not exist, are
files, lie outside the allowed places or hold a NUL; a project without git, one mid-rebase, a
failing hook and a hanging one: a readable message, no crash, no commit, the index as it was.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from conftest import call, call_error, gateway_client, private_stack
from git_fixtures import (
    base,
    commit_all,
    git,
    hook,
    index_digest,
    new_repo,
    quality_stack,
    stack_overrides,
    write,
)

COMMIT_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def env():
    yield from quality_stack(SESSIOND_CHECKPOINT_COMMIT_TIMEOUT_S=str(COMMIT_TIMEOUT_S))


def shop() -> Path:
    repo = new_repo("shop")
    write(repo, {"app.py": "VALUE = 1\n", "README.md": "# shop\n"})
    commit_all(repo)
    return repo


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


class User:
    """Plays the user behind a client with elicitation."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.asked: list[str] = []

    async def __call__(self, message, response_type, params, context):
        self.asked.append(message)
        assert self.answers, f"asked unexpectedly: {message}"
        return {"value": self.answers.pop(0)}


async def memory_of(client, memory_id: str) -> dict:
    (memory,) = (await call(client, "get_memory", {"ids": [memory_id]}))["memories"]
    return memory


def test_refused_without_a_grant_and_the_rest_of_the_checkpoint_still_made(env):
    repo = shop()
    write(repo, {"app.py": "VALUE = 2\n"})
    before, digest = head(repo), index_digest(repo)

    async def scenario():
        async with gateway_client(env) as client:
            started = await call(client, "start", {"working_directory": str(repo)})
            cp = await call(client, "checkpoint", {"message": "no grant yet"})
            assert cp["commit"]["skipped"] == "refused" and not cp["commit"]["committed"]
            assert ('permissions(action="trust", operation="git_commit"'
                    in cp["commit"]["reason"])
            assert "1 modified" in cp["commit"]["reason"]  # what it was about to commit
            assert cp["score"] is not None and cp["number"] == 1
            memory = await memory_of(client, cp["memory_id"])
            assert memory["session_id"] == started["session_id"]
            assert "Commit: none (refused" in memory["content"]
            perm = next(s for s in cp["quality"]["losing"] if s.startswith("permissions"))
            assert "refused" in perm
            st = await call(client, "permissions", {"action": "status",
                                                    "operation": "git_commit"})
            assert st["decisions"][0]["decision"] == "refused"
            await call(client, "end")

    asyncio.run(scenario())
    assert head(repo) == before and index_digest(repo) == digest


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_the_user_is_asked_through_elicitation(env, mode):
    repo = shop()
    user = User()

    async def scenario():
        async with gateway_client(env, elicitation_handler=user, mode=mode) as client:
            started = await call(client, "start", {"working_directory": str(repo)})
            assert not user.asked  # starting commits nothing, so asks nothing
            quiet = await call(client, "checkpoint", {})
            assert quiet["commit"]["skipped"] == "nothing_changed" and not user.asked

            write(repo, {"app.py": "VALUE = 2\n", "new.txt": "untracked\n"})
            user.answers = ["no"]
            said_no = await call(client, "checkpoint", {"message": "try one"})
            assert said_no["commit"]["skipped"] == "refused"
            assert "the user did not allow git_commit" in said_no["commit"]["reason"]
            assert user.asked[-1].startswith(f"Allow git_commit: commit the tracked changes "
                                             f"of {repo.name} in {repo} on branch main")
            assert "1 untracked file(s) left out" in user.asked[-1]
            assert head(repo) == first

            user.answers = ["yes"]
            said_yes = await call(client, "checkpoint", {"message": "try two"})
            assert said_yes["commit"]["committed"] and said_yes["commit"]["files"] == ["M app.py"]
            assert head(repo) == said_yes["commit"]["sha"]
            assert said_yes["number"] == 3 and len(user.asked) == 2

            # one checkpoint memory per call, even where the call was made twice (2026 era)
            stats = await call(client, "reflection_stats",
                               {"session_id": started["session_id"]})
            assert stats["session"]["by_kind"] == {"checkpoint": 3}
            status = await call(client, "status")
            assert status["session"]["checkpoint_count"] == 3
            await call(client, "end")

    first = head(repo)
    asyncio.run(scenario())


def test_bad_directories_are_refused_readably_and_record_nothing(env):
    a_file = base() / "a-file.txt"
    a_file.write_text("not a directory\n")
    cases = [
        (str(base() / "no-such-project"), "does not exist"),
        (str(a_file), "is a file, not a directory"),
        ("/", "outside the allowed places"),
        ("/etc", "outside the allowed places"),
        (str(base()) + "/bad\x00name", "without NUL"),
    ]
    if os.geteuid() != 0:  # root reads any directory
        locked = base() / "locked"
        locked.mkdir(exist_ok=True)
        locked.chmod(0)
        cases.append((str(locked), "cannot be read"))

    async def scenario():
        async with gateway_client(env) as client:
            for where, expected in cases:
                for tool in ("start", "status"):
                    text = await call_error(client, tool, {"working_directory": where})
                    assert expected in text, (tool, where, text)
            text = await call_error(client, "checkpoint", {"working_directory": str(base())})
            assert "call start first" in text
            text = await call_error(client, "end", {})
            assert "call start first" in text
            text = await call_error(client, "start", {"working_directory": "x" * 5000})
            assert "5000" in text or "at most 4096" in text
            status = await call(client, "status")
            assert status["session"] is None
            assert not [s for s in status["open_sessions"] if s["this_window"]]

    asyncio.run(scenario())


def test_no_git_mid_rebase_and_hooks_that_fail_or_hang(env):
    plain = Path(base()) / "plain-project"
    plain.mkdir(exist_ok=True)
    (plain / "main.py").write_text("print('hi')\n")
    rebasing = shop()
    git(rebasing, "checkout", "-q", "-b", "topic")
    write(rebasing, {"app.py": "VALUE = 'topic'\n"})
    commit_all(rebasing, "topic change")
    git(rebasing, "checkout", "-q", "main")
    write(rebasing, {"app.py": "VALUE = 'main'\n"})
    commit_all(rebasing, "main change")
    git(rebasing, "checkout", "-q", "topic")
    git(rebasing, "rebase", "main", check=False)
    assert (rebasing / ".git" / "rebase-merge").is_dir()
    failing, hanging = shop(), shop()
    hook(failing, "pre-commit", "echo 'style check failed: app.py line 1' >&2\nexit 1")
    hook(hanging, "pre-commit", "sleep 300")
    for repo in (failing, hanging):
        write(repo, {"app.py": "VALUE = 2\n"})
    states = {r: (head(r), index_digest(r)) for r in (rebasing, failing, hanging)}

    async def checkpoint_of(client, repo: Path) -> dict:
        await call(client, "start", {"working_directory": str(repo)})
        cp = await call(client, "checkpoint", {"message": f"in {repo.name}"})
        ended = await call(client, "end")
        assert Path(ended["handoff_path"]).is_file()
        assert (await memory_of(client, cp["memory_id"]))["kind"] == "checkpoint"
        return cp, ended

    async def scenario():
        async with gateway_client(env) as client:
            await call(client, "permissions", {"action": "trust", "operation": "git_commit"})
            try:
                cp, ended = await checkpoint_of(client, plain)
                assert cp["commit"]["skipped"] == "not_a_repo", cp["commit"]
                assert "git" in cp["commit"]["reason"] and cp["score"] is not None
                assert ended["commits_since_start"] is None and ended["files_changed"] == []

                cp, _ = await checkpoint_of(client, rebasing)
                assert cp["commit"]["skipped"] == "operation_in_progress"
                assert "rebase is in progress" in cp["commit"]["reason"]

                cp, _ = await checkpoint_of(client, failing)
                assert cp["commit"]["skipped"] == "commit_failed"
                assert "style check failed: app.py line 1" in cp["commit"]["hook_output"]

                cp, _ = await checkpoint_of(client, hanging)
                assert cp["commit"]["skipped"] == "timeout", cp["commit"]
                assert "did not finish" in cp["commit"]["reason"]
                assert "no commit was made" in cp["commit"]["reason"]
            finally:
                await call(client, "permissions", {"action": "revoke_all"})

    asyncio.run(scenario())
    for repo, state in states.items():
        assert (head(repo), index_digest(repo)) == state, repo.name


def test_checkpoint_commits_can_be_turned_off():
    repo = shop()
    write(repo, {"app.py": "VALUE = 2\n"})
    before = head(repo)
    user = User()

    async def scenario(env):
        async with gateway_client(env, elicitation_handler=user, mode="legacy") as client:
            started = await call(client, "start", {"working_directory": str(repo)})
            cp = await call(client, "checkpoint", {})
            await call(client, "end")
        return started, cp

    with private_stack(**stack_overrides(SESSIOND_CHECKPOINT_COMMIT="false")) as (env, _):
        started, cp = asyncio.run(scenario(env))
    assert cp["commit"] == {**cp["commit"], "enabled": False, "committed": False,
                            "skipped": "disabled"}
    assert "checkpoint_commit = false" in cp["commit"]["reason"]
    assert started["quality"]["categories"]["permissions"] is None  # not applicable
    assert not user.asked and head(repo) == before
