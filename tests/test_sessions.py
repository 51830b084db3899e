"""Sessions end to end: a real MCP client over stdio -> gateway -> hub -> store (DuckDB) and the
quality worker, in real git repositories (``git_fixtures``).

start -> edit a tracked file and create an untracked one -> checkpoint (the commit holds only the
tracked change and names the score) -> end (the handoff file under the data dir, with its
sections) -> start again (that handoff's summary and the last session's memories); the tidy and
neglected fixture projects through start; the git_commit permission in front of the checkpoint
commit; memories carrying the session's id and the session filter of search and stats; several
windows at once; status.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from conftest import REPO, call, call_error, gateway_client
from git_fixtures import (
    commit_all,
    git,
    neglected_project,
    new_repo,
    quality_stack,
    tidy_project,
    write,
)

from gateway.handoff import SECTIONS


@pytest.fixture(scope="module")
def env():
    yield from quality_stack(SESSIOND_QUALITY_THRESHOLD="10")


def home_of(env) -> Path:
    return Path(env["SESSIOND_HOME"])


def shop() -> Path:
    repo = new_repo("shop")
    write(repo, {"app.py": "VALUE = 1\n", "lib/util.py": "def f():\n    return 1\n",
                 "README.md": "# shop\n\nA shop. " + "It sells things. " * 20 + "\n"})
    commit_all(repo)
    return repo


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


async def trust_commits(client, minutes: float = 30) -> None:
    await call(client, "permissions", {"action": "trust", "operation": "git_commit",
                                       "ttl_minutes": minutes})


async def revoke_commits(client) -> None:
    await call(client, "permissions", {"action": "revoke", "operation": "git_commit"})


def test_start_checkpoint_end_and_start_again(env):
    repo = shop()
    first_head = head(repo)

    async def scenario():
        async with gateway_client(env) as client:
            started = await call(client, "start", {"working_directory": str(repo)})
            sid = started["session_id"]
            assert started["root"] == str(repo) and started["project"] == repo.name
            assert started["detected_from"] == "argument" and not started["resumed"]
            assert started["handoff"] is None and started["memory"]["last_session"] is None
            assert 0 < started["quality"]["score"] <= 100
            assert started["git"]["head"] == first_head and started["git"]["branch"] == "main"

            noted = await call(client, "store_reflection", {
                "content": "The shop's VALUE constant drives the price table"})
            assert noted["session_id"] == sid and noted["project"] == repo.name

            write(repo, {"app.py": "VALUE = 2\n", "scratch.txt": "untracked, stays out\n"})
            await trust_commits(client)
            try:
                cp = await call(client, "checkpoint", {"message": "bumped VALUE"})
            finally:
                await revoke_commits(client)
            assert cp["session_id"] == sid and cp["number"] == 1
            assert cp["commit"]["committed"], cp["commit"]
            assert cp["commit"]["files"] == ["M app.py"]
            assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["app.py"]
            assert git(repo, "status", "--porcelain") == "?? scratch.txt\n"
            message = git(repo, "log", "-1", "--format=%B")
            assert f"(quality: {cp['score']:.0f}/100)" in message
            assert f"Session: {sid}" in message and "bumped VALUE" in message
            assert cp["delta"] == round(cp["score"] - started["quality"]["score"], 1)
            got = await call(client, "get_memory", {"ids": [cp["memory_id"]]})
            (memory,) = got["memories"]
            assert memory["kind"] == "checkpoint" and memory["session_id"] == sid
            assert f"quality {cp['score']:.1f}/100" in memory["content"]

            ended = await call(client, "end")
            path = Path(ended["handoff_path"])
            assert path.is_file() and path.is_relative_to(home_of(env) / "handoffs")
            assert not path.is_relative_to(repo)
            text = path.read_text()
            for section in SECTIONS:
                assert f"## {section}" in text, section
            assert "app.py" in text and cp["memory_id"] in text and noted["id"] in text
            assert ended["commits_since_start"] == 1 and ended["files_changed"] == ["app.py"]
            assert ended["memories_stored"] == 2
            assert [t["label"] for t in ended["trend"]] == ["start", "checkpoint 1", "end"]
            assert ended["summary"] in text
            assert git(repo, "status", "--porcelain") == "?? scratch.txt\n"  # not in the repo

            again = await call(client, "start", {"working_directory": str(repo)})
            assert again["session_id"] != sid
            assert again["handoff"]["path"] == str(path)
            assert again["handoff"]["summary"] == ended["summary"]
            last = again["memory"]["last_session"]
            assert last["id"] == sid and last["end_reason"] == "ended"
            assert last["handoff_path"] == str(path) and last["memories"] == 2
            assert {m["id"] for m in again["memory"]["last_session_memories"]} == {
                noted["id"], cp["memory_id"]}
            assert again["memory"]["by_kind"] == {"checkpoint": 1, "reflection": 1}
            await call(client, "end")

    asyncio.run(scenario())


def test_tidy_scores_clearly_higher_than_neglected_through_start(env):
    async def scenario():
        async with gateway_client(env) as client:
            tidy = await call(client, "init", {"working_directory": str(tidy_project())})
            await call(client, "end")
            neglected = await call(client, "start",
                                   {"working_directory": str(neglected_project())})
            await call(client, "end")
        return tidy["quality"], neglected["quality"]

    tidy, neglected = asyncio.run(scenario())
    assert tidy["score"] >= neglected["score"] + 30, (tidy["score"], neglected["score"])
    losing = " ".join(neglected["losing"])
    for reason in ("lint", "tests", "readme", "git_clean", "gitignore_secrets"):
        assert reason in losing, (reason, neglected["losing"])
    assert any("ruff" in r for r in neglected["recommendations"])
    assert not any(line.startswith(("lint", "tests ")) for line in tidy["losing"])


def test_memories_carry_the_session_and_search_and_stats_filter_by_it(env):
    repo = shop()

    async def scenario():
        async with gateway_client(env) as client:
            first = (await call(client, "start", {"working_directory": str(repo)}))["session_id"]
            a = [(await call(client, "store_reflection", {
                "content": f"celery broker setting number {i} for the shop workers"}))["id"]
                for i in range(2)]
            conv = await call(client, "store_conversation", {
                "content": "we talked about the celery broker timeouts"})
            assert conv["session_id"] == first
            given = await call(client, "store_conversation", {
                "content": "celery broker notes from another tool", "session_id": "elsewhere"})
            assert given["session_id"] == "elsewhere"  # an explicit session id is kept
            await call(client, "end")
            outside = await call(client, "store_reflection", {
                "content": "celery broker, outside any session", "project": repo.name})
            assert outside["session_id"] is None
            second = (await call(client, "start", {"working_directory": str(repo)}))["session_id"]
            b = (await call(client, "store_reflection", {
                "content": "celery broker moved to redis in the second session"}))["id"]

            def ids(found: dict) -> set[str]:
                return {r["id"] for r in found["results"]}

            query = {"query": "celery broker", "limit": 20}
            assert ids(await call(client, "quick_search", query)) >= {*a, conv["id"], b,
                                                                     outside["id"]}
            in_first = await call(client, "quick_search", {**query, "session_id": first})
            assert ids(in_first) == {*a, conv["id"]}
            assert all(r["session_id"] == first for r in in_first["results"])
            assert ids(await call(client, "reflect_on_past", {
                **query, "session_id": first, "kinds": ["reflection"]})) == set(a)
            assert ids(await call(client, "quick_search", {**query, "session_id": "current"}
                                  )) == {b}
            assert ids(await call(client, "get_more_results", {
                **query, "offset": 1, "session_id": first})) < {*a, conv["id"]}
            assert ids(await call(client, "quick_search", {**query, "session_id": "nope"})) == set()

            stats = await call(client, "reflection_stats", {"session_id": first})
            assert stats["session"]["memories"] == 3
            assert stats["session"]["by_kind"] == {"conversation": 1, "reflection": 2}
            assert stats["session"]["session"]["end_reason"] == "ended"
            assert stats["memories"] >= 6  # the whole store's counts are still there
            current = await call(client, "reflection_stats", {"session_id": "current"})
            assert current["session"]["id"] == second and current["session"]["memories"] == 1
            await call(client, "end")
            text = await call_error(client, "quick_search", {**query, "session_id": "current"})
            assert "call start first" in text

    asyncio.run(scenario())


def test_a_big_quality_change_makes_a_reflection(env):
    repo = neglected_project()

    async def scenario():
        async with gateway_client(env) as client:
            started = await call(client, "start", {"working_directory": str(repo)})
            small = await call(client, "checkpoint", {"message": "nothing yet"})
            assert small["delta"] == 0 and small["reflection_id"] is None
            write(repo, {"README.md": "# app\n\n" + "What the app does and how to run it. " * 8,
                         "tests/test_app.py": "def test_main():\n    assert True\n",
                         ".gitignore": ".env\n.env.*\n", "pyproject.toml": TOML})
            moved = await call(client, "checkpoint", {"message": "README, tests, manifest"})
            assert moved["delta"] >= 10, moved
            assert moved["reflection_id"] and "threshold of 10" in moved["reflection"]
            (reflection,) = (await call(client, "get_memory", {
                "ids": [moved["reflection_id"]]}))["memories"]
            assert reflection["kind"] == "reflection"
            assert reflection["session_id"] == started["session_id"]
            assert "What moved: " in reflection["content"] and "tests +" in reflection["content"]
            asked = await call(client, "checkpoint", {"reflect": True})
            assert asked["reflection"] == "asked for at the checkpoint"
            ended = await call(client, "end")
            assert [t["label"] for t in ended["trend"]] == [
                "start", "checkpoint 1", "checkpoint 2", "checkpoint 3", "end"]
            assert ended["memories_stored"] == 5  # three checkpoints, two reflections

    asyncio.run(scenario())


TOML = '[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'


def test_several_windows_status_and_a_window_that_went_away(env):
    one, two = shop(), shop()

    async def scenario():
        async with AsyncExitStack() as doomed, AsyncExitStack() as doomed_too:
            first = await doomed.enter_async_context(gateway_client(env))
            gone_pid = (await call(first, "ping"))["gateway_pid"]
            lost = (await call(first, "start", {"working_directory": str(one)}))["session_id"]
            second = await doomed_too.enter_async_context(gateway_client(env))
            async with gateway_client(env) as third:
                kept = (await call(second, "start", {"working_directory": str(two)}))
                st = await call(third, "status", {"working_directory": str(one)})
                assert st["session"] is None and st["project"] == one.name
                assert st["git"]["branch"] == "main" and st["score"] is not None
                assert st["stack"]["workers"] and st["stack"]["gateway_pid"] != gone_pid
                mine = {s["id"]: s for s in st["open_sessions"]}
                assert {lost, kept["session_id"]} <= set(mine)
                assert not mine[lost]["this_window"] and mine[lost]["gateway_pid"] == gone_pid
                own = await call(second, "status")
                assert own["session"]["id"] == kept["session_id"]
                assert own["session"]["this_window"] and own["detected_from"] == "session"
                out = await asyncio.to_thread(subprocess.run, [
                    sys.executable, "-m", "sessiond", "status", str(two)], env=env, cwd=REPO,
                    capture_output=True, text=True, timeout=90, check=False)
                assert out.returncode == 0, out.stderr
                assert f"project: {two.name} ({two}" in out.stdout
                assert "git: main @" in out.stdout and kept["session_id"][:12] in out.stdout

                os.kill(gone_pid, signal.SIGKILL)
                doomed.pop_all()  # its server is dead; closing it would only report that
                again = await call(third, "start", {"working_directory": str(one)})
                assert again["abandoned"] == [lost] and again["session_id"] != lost
                stats = await call(third, "reflection_stats", {"session_id": lost})
                assert stats["session"]["session"]["end_reason"] == "abandoned"
                await call(third, "end")

                # the second window's gateway dies too: a new one takes its session over
                os.kill((await call(second, "ping"))["gateway_pid"], signal.SIGKILL)
                doomed_too.pop_all()
            async with gateway_client(env) as fourth:
                write(two, {"app.py": "VALUE = 3\n"})
                cp = await call(fourth, "checkpoint", {"working_directory": str(two)})
                assert cp["session_id"] == kept["session_id"] and cp["number"] == 1
                status = await call(fourth, "status")
                assert status["session"]["id"] == kept["session_id"]
                assert status["session"]["this_window"]
                await call(fourth, "end")

    asyncio.run(scenario())


def test_the_project_comes_from_the_clients_roots(env):
    repo, other = shop(), shop()

    async def scenario():
        async with gateway_client(env, roots=[repo.as_uri()], mode="legacy") as client:
            started = await call(client, "start")
            assert started["detected_from"] == "roots" and started["root"] == str(repo)
            await call(client, "end")
            inner = repo / "lib"
            sub = await call(client, "start", {"working_directory": "lib"})
            assert sub["detected_from"] == "argument" and sub["root"] == str(inner)
            await call(client, "end")
            text = await call_error(client, "start", {"working_directory": str(other)})
            assert "outside the client's roots" in text

    asyncio.run(scenario())
