"""Kills under load: every kind of worker kill -9'd again and again, then the supervisor kill -9'd,
then the stack SIGTERM'd, while three real MCP gateways keep storing, importing and searching.

Afterwards every acknowledged write is there, read back by id with ``get_memory`` and equal to
what was sent; every call was answered within its deadline; no gateway exited; once the stack is
stopped no process with this data dir in its environment is left. The gateways start the stack
themselves (as Claude windows do), so after the supervisor dies the next gateway call starts a
new one. Recovery time is from a kill until the killed service answers a real request again
(the store reads, the embed pool embeds, the quality worker runs its tool probe; for the
supervisor: a new hub answers and every worker is ready). The restart backoff is capped at 1 s
here (default 5 s), so a worker killed again and again is back within seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import base_env, gateway_client, out_dir

from gateway.stack_control import START_TIMEOUT_S
from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.errors import ServiceError
from shared.transport import endpoints

from .support import LONG, REPO, alive, processes_of, report

pytestmark = pytest.mark.faults

WORKER_KILLS = 99 if LONG else 12
VICTIMS = ("store", "embed-0", "quality")
REQUEST_TIMEOUT_S = 10.0
# A call is answered within its deadline: the request's own, plus, when the stack went away
# under it, the gateway's wait for a new stack and a second try.
CALL_BOUND_S = REQUEST_TIMEOUT_S + 2
RESTART_CALL_BOUND_S = 2 * REQUEST_TIMEOUT_S + START_TIMEOUT_S + 5


@dataclass
class Ledger:
    """Everything the load saw."""

    acked: dict[str, str] = field(default_factory=dict)  # id -> content sent
    # (started, ended, tool, outcome) of every call
    calls: list[tuple[float, float, str, str]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    restarts: list[tuple[float, float]] = field(default_factory=list)  # stack-restart windows

    def record(self, t0: float, tool: str, outcome: str) -> None:
        self.calls.append((t0, time.monotonic(), tool, outcome))


async def _call(client, ledger: Ledger, tool: str, args: dict) -> dict | None:
    """One load call: its structured result, or None (a tool error, recorded; an exception
    means no answer came at all, which is recorded as such)."""
    t0 = time.monotonic()
    try:
        result = await client.call_tool(tool, args, raise_on_error=False)
    except Exception as exc:  # noqa: BLE001 - recorded and asserted on: nothing may hang
        ledger.errors[f"{tool}: no answer: {type(exc).__name__}: {exc}"[:160]] += 1
        ledger.record(t0, tool, "no answer")
        return None
    if result.is_error:
        text = "\n".join(getattr(c, "text", "") for c in result.content)
        ledger.errors[f"{tool}: {text}"[:160]] += 1
        ledger.record(t0, tool, "error")
        return None
    ledger.record(t0, tool, "ok")
    return result.structured_content


async def writer(client, ledger: Ledger, name: str, stop: asyncio.Event) -> None:
    tool, search = (("store_reflection", "quick_search") if name == "A"
                    else ("store_conversation", "reflect_on_past"))
    i = 0
    while not stop.is_set():
        i += 1
        content = f"writer {name} memory {i} ({secrets.token_hex(6)}) about module_{i % 17}"
        args = {"content": content, "project": "kills"}
        if tool == "store_conversation":
            args["session_id"] = f"session-{name}"
        stored = await _call(client, ledger, tool, args)
        if stored is not None:
            ledger.acked[stored["id"]] = content
        if i % 4 == 0:
            await _call(client, ledger, search, {"query": f"module_{i % 17}", "limit": 5})
        await asyncio.sleep(0.02)


async def importer(client, ledger: Ledger, folder: Path, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        rows = [{"id": secrets.token_hex(16), "kind": "note", "project": "kills-import",
                 "content": f"imported batch {n} row {r} ({secrets.token_hex(4)})", "tags": [],
                 "created_at": "2026-11-01T10:00:00+00:00", "metadata": {}, "session_id": None}
                for r in range(25)]
        path = folder / f"batch-{n}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        done = await _call(client, ledger, "import_memories", {"path": str(path)})
        if done is not None:
            assert done["count"] + done["skipped"] == len(rows), done
            ledger.acked.update((row["id"], row["content"]) for row in rows)
        await _call(client, ledger, "search_summary", {"query": f"imported batch {n}"})
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------ the killer's side
async def _stack(probe: HubClient) -> p.StackInfo:
    info = await probe.request(p.SERVICE_HUB, p.StackStatus(), timeout_s=5)
    assert isinstance(info, p.StackInfo)
    return info


async def _ready(probe: HubClient, timeout: float = 60) -> p.StackInfo:
    """The stack's status once every worker is ready (a stack that is gone is waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await _stack(probe)
            if all(w.state in ("ready", "busy") and w.pid for w in info.workers):
                return info
        except ServiceError:
            pass  # no stack answering yet: the next gateway call starts one
        assert time.monotonic() < deadline, "the stack did not come back"
        await asyncio.sleep(0.05)


REAL_JOBS = {
    "store": lambda: p.GetMemories(ids=["0" * 32]),
    "embed": lambda: p.Embed(texts=[f"probe {secrets.token_hex(4)}"], kind="query"),
    "quality": lambda: p.ProbeTools(),
}


async def _answers_again(probe: HubClient, service: str, old_pid: int) -> None:
    """Until a worker other than ``old_pid`` answers a ping for ``service``, then its real
    job."""
    deadline = time.monotonic() + 60
    while True:
        try:
            pong = await probe.request(service, p.Ping(), timeout_s=5, idempotent=True,
                                       retry_unavailable=True)
            if isinstance(pong, p.Pong) and pong.pid != old_pid:
                reply = await probe.request(service, REAL_JOBS[service](), timeout_s=10,
                                            idempotent=True, retry_unavailable=True)
                assert not isinstance(reply, p.Error), reply
                return
        except ServiceError:
            pass  # the dead worker was still registered, or none is yet
        assert time.monotonic() < deadline, f"{service} did not come back"
        await asyncio.sleep(0.02)


async def kill_workers(probe: HubClient, count: int, rng: random.Random) -> list[dict]:
    kills = []
    for k in range(count):
        name = VICTIMS[k % len(VICTIMS)]
        await asyncio.sleep(rng.uniform(0.1, 0.8))  # land at a different point of the load
        info = await _ready(probe)
        worker = next(w for w in info.workers if w.name == name)
        os.kill(worker.pid, signal.SIGKILL)
        t0 = time.monotonic()
        await _answers_again(probe, worker.service, worker.pid)
        kills.append({"victim": name, "recovery_s": round(time.monotonic() - t0, 3)})
    return kills


async def stop_stack(probe: HubClient, ledger: Ledger, sig: signal.Signals) -> dict:
    """Send ``sig`` to the supervisor; wait for the stack the gateways start next."""
    info = await _ready(probe)
    os.kill(info.pid, sig)
    t0 = time.monotonic()
    deadline = t0 + 60
    while True:
        try:
            pong = await probe.request(p.SERVICE_HUB, p.Ping(), timeout_s=1)
            if pong.pid != info.pid:
                break
        except ServiceError:
            pass
        assert time.monotonic() < deadline, "no new stack"
        await asyncio.sleep(0.05)
    await _ready(probe)
    t1 = time.monotonic()
    ledger.restarts.append((t0, t1))
    return {"victim": f"supervisor ({sig.name})", "recovery_s": round(t1 - t0, 3)}


# ------------------------------------------------------------------ the test
@pytest.mark.timeout(1800 if LONG else 300)
def test_kills_under_load_lose_no_acknowledged_write(home, tmp_path):
    env = base_env(home, SESSIOND_RESTART_BACKOFF_MAX_S="1.0", SESSIOND_LOG_LEVEL="INFO",
                   SESSIOND_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
                   SESSIOND_QUALITY_PARK_AFTER_S="0")  # the quality worker a victim from the start
    folder = out_dir(home)
    ledger = Ledger()
    rng = random.Random(9)
    t_start = time.monotonic()

    async def scenario():
        probe = HubClient(endpoints(load_config(env)).clients)
        stop = asyncio.Event()
        async with AsyncExitStack() as gateways:
            clients = [await gateways.enter_async_context(gateway_client(env, timeout=90))
                       for _ in range(3)]
            pids = [(await clients[i].call_tool("ping", {})).structured_content["gateway_pid"]
                    for i in range(3)]
            first = await _ready(probe)
            load = [asyncio.create_task(writer(clients[0], ledger, "A", stop)),
                    asyncio.create_task(writer(clients[1], ledger, "B", stop)),
                    asyncio.create_task(importer(clients[2], ledger, folder, stop))]
            try:
                kills = await kill_workers(probe, WORKER_KILLS, rng)
                restarts = {w.name: w.restarts for w in (await _stack(probe)).workers}
                kills.append(await stop_stack(probe, ledger, signal.SIGKILL))
                kills += await kill_workers(probe, 3, rng)  # the new stack's workers too
                kills.append(await stop_stack(probe, ledger, signal.SIGTERM))
                await asyncio.sleep(1.0)  # writes to the third stack
            finally:
                stop.set()
                await asyncio.gather(*load)
            missing, changed = await _read_back(clients[0], ledger.acked)
            gateways_alive = [alive(pid) for pid in pids]
        probe.close()
        return first, kills, restarts, missing, changed, gateways_alive

    first, kills, restarts, missing, changed, gateways_alive = asyncio.run(scenario())
    stopped = subprocess.run([sys.executable, "-m", "sessiond", "stop"], env=env, cwd=REPO,
                             capture_output=True, timeout=60, check=False)
    orphans = _wait_gone(home, 20)

    worker_kills = Counter(k["victim"] for k in kills[:WORKER_KILLS])
    slow = [(round(t1 - t0, 2), tool, outcome) for t0, t1, tool, outcome in ledger.calls
            if t1 - t0 > _bound(ledger, t0, t1)]
    recoveries = [k["recovery_s"] for k in kills]
    counts = {
        "kills": len(kills), "worker_kills": dict(worker_kills),
        "acked_writes": len(ledger.acked), "lost": len(missing), "changed": len(changed),
        "calls": len(ledger.calls),
        "calls_answered_with_an_error": sum(ledger.errors.values()),
        "worst_recovery_s": max(recoveries),
        "median_recovery_s": sorted(recoveries)[len(recoveries) // 2],
        "worst_recovery_by_victim": _worst_by_victim(kills),
        "slowest_call_s": round(max(t1 - t0 for t0, t1, _, _ in ledger.calls), 2),
        "calls_past_deadline": len(slow), "run_time_s": round(time.monotonic() - t_start, 1),
        "errors": dict(ledger.errors.most_common(8)), "kill_log": kills,
    }
    report(tmp_path, "kills", counts)
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    assert not changed, f"{len(changed)} acknowledged writes changed, e.g. {changed[:3]}"
    assert not slow, f"calls past their deadline: {slow[:5]}"
    assert not any("no answer" in e for e in ledger.errors), ledger.errors
    assert all(gateways_alive), gateways_alive
    assert stopped.returncode == 0, stopped.stderr
    assert not orphans, f"left running: {[(o.pid, o.name()) for o in orphans]}"
    assert restarts == {w.name: worker_kills[w.name] for w in first.workers}, restarts
    assert len(ledger.acked) > 500  # the load kept writing through the kills


async def _read_back(client, acked: dict[str, str]) -> tuple[list[str], list[str]]:
    """Ids missing and ids whose content differs, read with get_memory 100 at a time."""
    ids = list(acked)
    missing, changed = [], []
    for i in range(0, len(ids), 100):
        batch = ids[i:i + 100]
        result = await client.call_tool("get_memory", {"ids": batch}, raise_on_error=False)
        assert not result.is_error, result.content
        found = {m["id"]: m["content"] for m in result.structured_content["memories"]}
        missing += [m for m in batch if m not in found]
        changed += [m for m in batch if m in found and found[m] != acked[m].strip()]
    return missing, changed


def _bound(ledger: Ledger, t0: float, t1: float) -> float:
    """A call's deadline: longer if a stack restart began while it ran."""
    overlaps = any(a <= t1 and t0 <= b for a, b in ledger.restarts)
    return RESTART_CALL_BOUND_S if overlaps else CALL_BOUND_S


def _worst_by_victim(kills: list[dict]) -> dict[str, float]:
    worst: dict[str, float] = {}
    for k in kills:
        worst[k["victim"]] = max(worst.get(k["victim"], 0.0), k["recovery_s"])
    return worst


def _wait_gone(home: Path, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while (left := processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
