"""Crash and shutdown behaviour of the real stack: kill -9, SIGTERM, idle exit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import AsyncExitStack

import psutil
import pytest
from conftest import (
    REPO,
    Stack,
    base_env,
    call,
    gateway_client,
    modules_after,
    stack_info,
    wait_all_ready,
    wait_for,
)


@pytest.mark.parametrize("victim", ["store", "embed-0", "quality"])
def test_kill9_worker_is_restarted_within_2s(stack, env, victim):
    async def scenario():
        async with gateway_client(env) as client:
            await call(client, "health_check")  # its probe starts the quality worker (on demand)
            before = {w["name"]: w for w in (await wait_all_ready(client))["workers"]}
            old_pid = before[victim]["pid"]
            os.kill(old_pid, signal.SIGKILL)
            t0 = time.monotonic()
            while True:
                st = (await call(client, "status"))["stack"]
                w = {w["name"]: w for w in st["workers"]}[victim]
                if w["state"] == "ready" and w["pid"] != old_pid:
                    break
                assert time.monotonic() - t0 < 2.0, f"{victim} not back within 2 s: {w}"
                await asyncio.sleep(0.02)
            assert w["restarts"] == before[victim]["restarts"] + 1
            assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"
            health = await call(client, "health_check")
            assert health["status"] == "healthy", health

    asyncio.run(scenario())


def test_kill9_gateway_leaves_stack_serving_others(env, home):
    async def scenario():
        async with AsyncExitStack() as doomed:
            first = await doomed.enter_async_context(gateway_client(env))
            pong = await call(first, "ping")
            os.kill(pong["gateway_pid"], signal.SIGKILL)
            async with gateway_client(env) as second:
                st = (await call(second, "status"))["stack"]
                assert st["stack_pid"] == pong["stack_pid"]
                assert (await call(second, "ping"))["ok"]
            doomed.pop_all()  # its server is dead; closing it would only report that

    asyncio.run(scenario())


def test_sigterm_stops_every_process_cleanly(stack, env, home):
    async def ready():
        async with gateway_client(env) as client:
            await call(client, "health_check")  # its probe starts the quality worker (on demand)
            await wait_all_ready(client)

    asyncio.run(ready())
    supervisor = psutil.Process(stack.proc.pid)
    family = [supervisor] + supervisor.children(recursive=True)
    assert len(family) == 4  # supervisor, store, embed-0, quality
    t0 = time.monotonic()
    code = stack.stop(timeout=5)
    _, alive = psutil.wait_procs(family, timeout=max(0.1, 5 - (time.monotonic() - t0)))
    assert code == 0
    assert not alive, f"left running: {alive}"
    assert time.monotonic() - t0 < 5
    assert stack_info(home) is None  # stack.json removed
    log = (home / "logs" / "stack.log").read_text()
    for step in ("stop intake", "drain", "stop workers", "stop store"):
        assert f"shutdown step {step}" in log
    assert "database checkpointed and closed" in (home / "logs" / "store.log").read_text()


def test_workers_share_the_supervisors_session_in_process_groups_of_their_own(stack, env):
    """Their own groups: a terminal's Ctrl+C reaches only the supervisor. Its session: Linux
    schedules a session as one group, so the embed worker's low-priority bulk lanes yield the
    cores to the store and the hub only if all of them share one (see ``shared.supervisor``)."""
    async def ready():
        async with gateway_client(env) as client:
            await call(client, "health_check")  # its probe starts the quality worker (on demand)
            await wait_all_ready(client)

    asyncio.run(ready())
    supervisor = stack.proc.pid
    children = psutil.Process(supervisor).children()
    assert sorted(c.cmdline()[-1] for c in children) == ["embed-0", "quality", "store"]
    for child in children:
        assert os.getsid(child.pid) == os.getsid(supervisor), child.cmdline()
        assert os.getpgid(child.pid) == child.pid, child.cmdline()
    assert os.getpgid(supervisor) != os.getpgid(children[0].pid)


def test_an_embed_worker_runs_with_one_heap_arena_unless_told_otherwise(home):
    """Its lanes' threads would each get a glibc arena whose freed memory malloc_trim cannot
    give back (~35 MB held after an import); the user's own setting wins."""
    def arenas(env) -> dict[str, str | None]:
        s = Stack(home, env)
        try:
            asyncio.run(ready(env))
            return {c.cmdline()[-1]: c.environ().get("MALLOC_ARENA_MAX")
                    for c in psutil.Process(s.proc.pid).children()}
        finally:
            s.stop()

    async def ready(env):
        async with gateway_client(env) as client:
            await wait_all_ready(client)

    assert arenas(base_env(home)) == {"embed-0": "1", "store": None}
    assert arenas(base_env(home, MALLOC_ARENA_MAX="4"))["embed-0"] == "4"


def test_a_local_stacks_supervisor_and_workers_import_no_asyncio(tmp_path):
    """asyncio and ssl are ~3 MB of each process that imports them; of a local stack only the
    store needs asyncio (its embed filler). pyzmq's ZAP authenticator and monitor parser bring
    both, so they are imported only where CURVE is used."""
    loaded = modules_after("from sessiond.main import _parser\n"
                           "_parser()\n"
                           "import shared.supervisor, embed_worker.worker, quality_worker.worker\n",
                           base_env(tmp_path))
    assert not loaded & {"asyncio", "ssl"}


def test_second_stack_on_same_home_refuses(stack, home, env):
    out = subprocess.run([sys.executable, "-m", "sessiond", "stack"], env=env, cwd=REPO,
                         capture_output=True, timeout=30, check=False)
    assert out.returncode == 4  # ExitCode.ALREADY_RUNNING
    assert stack.proc.poll() is None


def test_idle_stack_exits_by_itself(home):
    env = base_env(home, SESSIOND_IDLE_TIMEOUT_S="1.5")
    s = Stack(home, env)
    family = [psutil.Process(s.proc.pid)] + psutil.Process(s.proc.pid).children(recursive=True)
    assert s.proc.wait(timeout=15) == 0
    _, alive = psutil.wait_procs(family, timeout=5)
    assert not alive
    assert "idle for" in (home / "logs" / "stack.log").read_text()


def test_gateway_restarts_a_stack_that_went_away(env, home):
    async def scenario():
        async with gateway_client(env) as client:
            first = (await call(client, "ping"))["stack_pid"]
            proc = psutil.Process(first)
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            second = (await call(client, "ping"))["stack_pid"]
            assert second != first
            wait_for(lambda: stack_info(home) and stack_info(home)["pid"] == second, 5)

    asyncio.run(scenario())


def test_kill9_supervisor_leaves_no_orphans_and_a_new_stack_starts(env, home):
    async def scenario():
        async with gateway_client(env) as client:
            await call(client, "health_check")  # starts the quality worker: orphan it too
            st = await wait_all_ready(client)
            supervisor = psutil.Process(st["stack_pid"])
            workers = [psutil.Process(w["pid"]) for w in st["workers"]]
            supervisor.kill()
            _, alive = psutil.wait_procs(workers, timeout=5)
            assert not alive, f"orphaned workers: {alive}"
            # The next call finds the stack gone and starts a new one.
            assert (await call(client, "ping"))["stack_pid"] != st["stack_pid"]
            await wait_all_ready(client)

    asyncio.run(scenario())


def test_a_dead_hub_thread_takes_the_stack_down(env, home):
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "helpers" /
                                                 "stack_with_hub_fault.py")],
                            env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (stack_info(home) or {}).get("pid") == proc.pid, 15, what="stack.json")

        async def ready():
            async with gateway_client(env) as client:
                await call(client, "health_check")  # starts the quality worker (on demand)
                return await wait_all_ready(client)

        st = asyncio.run(ready())
        workers = [psutil.Process(w["pid"]) for w in st["workers"]]
        assert len(workers) == 3, st["workers"]  # store, embed-0, quality
        proc.send_signal(signal.SIGUSR1)  # the hub thread raises
        code = proc.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 7, code  # ExitCode.CRASHED: a gateway starts a new stack on its next call
    assert not alive, f"left running: {alive}"
    assert stack_info(home) is None
    log = (home / "logs" / "stack.log").read_text()
    assert "injected hub fault" in log and "hub thread died" in log
    assert "database checkpointed and closed" in (home / "logs" / "store.log").read_text()
