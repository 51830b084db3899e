"""Eight gateways at once against one stack (eight Claude windows): concurrent stores and
searches, zero lock errors, zero lost writes. Only the store worker opens the database, so there
is nothing for the gateways to contend for but the store's queue."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
from conftest import gateway_client, private_stack, wait_all_ready

from .support import LONG, report

pytestmark = pytest.mark.faults

GATEWAYS = 8
WRITES_PER_GATEWAY = 400 if LONG else 30


async def one_gateway(env, n: int, start: asyncio.Barrier):
    acked, errors, searches = {}, [], 0
    async with gateway_client(env, timeout=60) as client:
        pid = (await client.call_tool("ping", {})).structured_content["gateway_pid"]
        await start.wait()  # all eight connected: from here they run at once
        for i in range(WRITES_PER_GATEWAY):
            content = (f"window {n} note {i}: the cache key for tenant_{i % 7} "
                       f"({secrets.token_hex(4)})")
            result = await client.call_tool(
                "store_reflection" if i % 2 else "store_conversation",
                {"content": content, "project": f"window-{n % 3}"}, raise_on_error=False)
            if result.is_error:
                errors.append(result.content[0].text)
            else:
                acked[result.structured_content["id"]] = content
            if i % 3 == 0:
                found = await client.call_tool("quick_search", {
                    "query": f"cache key tenant_{i % 7}", "limit": 5}, raise_on_error=False)
                if found.is_error:
                    errors.append(found.content[0].text)
                searches += 1
    return pid, acked, errors, searches


def test_eight_gateways_at_once_lose_nothing_and_never_lock(tmp_path):
    t0 = time.monotonic()
    # Every worker running from the start (the quality worker too), checked for crashes.
    with private_stack(SESSIOND_QUALITY_PARK_AFTER_S="0") as (env, home):
        async def scenario():
            start = asyncio.Barrier(GATEWAYS)
            async with gateway_client(env) as checker:
                before = await wait_all_ready(checker)
                results = await asyncio.gather(*(one_gateway(env, n, start)
                                                 for n in range(GATEWAYS)))
                acked = {k: v for _, a, _, _ in results for k, v in a.items()}
                found = {}
                ids = list(acked)
                for i in range(0, len(ids), 100):
                    got = await checker.call_tool("get_memory", {"ids": ids[i:i + 100]})
                    found.update((m["id"], m["content"])
                                 for m in got.structured_content["memories"])
                stats = (await checker.call_tool("reflection_stats", {})).structured_content
                after = (await checker.call_tool("status", {})).structured_content["stack"]
            return before, after, results, acked, found, stats

        before, after, results, acked, found, stats = asyncio.run(scenario())
        store_log = (home / "logs" / "store.log").read_text()
    errors = [e for _, _, errs, _ in results for e in errs]
    locks = [e for e in errors if "lock" in e.lower()] + [
        line for line in store_log.splitlines() if "lock" in line.lower() and "ERROR" in line]
    report(tmp_path, "many_gateways", {
        "gateways": GATEWAYS, "distinct_gateway_pids": len({pid for pid, *_ in results}),
        "acked_writes": len(acked), "lost": len(set(acked) - set(found)),
        "searches": sum(s for *_, s in results), "errors": len(errors),
        "lock_errors": len(locks), "run_time_s": round(time.monotonic() - t0, 1)})
    assert len({pid for pid, *_ in results}) == GATEWAYS
    assert not locks, locks[:3]
    assert not errors, errors[:3]
    assert len(acked) == GATEWAYS * WRITES_PER_GATEWAY
    assert found == {i: c.strip() for i, c in acked.items()}
    assert stats["memories"] == len(acked)
    assert [(w["pid"], w["restarts"]) for w in after["workers"]] == \
           [(w["pid"], w["restarts"]) for w in before["workers"]]
