"""health_check probes each component with the job it is there for, through a real stack."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from conftest import call, gateway_client, private_stack, wait_all_ready


async def health(env: dict[str, str]) -> tuple[str, dict[str, dict]]:
    async with gateway_client(env) as client:
        await wait_all_ready(client)
        await call(client, "store_reflection", {"content": "health reads this memory back"})
        result = await call(client, "health_check")
    return result["status"], {c["name"]: c for c in result["components"]}


def test_each_worker_is_probed_by_its_real_job():
    with private_stack() as (env, _home):
        status, by_name = asyncio.run(health(env))
    assert status == "healthy", by_name
    # The store read its table: the memory just stored is counted.
    assert by_name["store"]["reason"].startswith("read 1 memories"), by_name["store"]
    # The embed pool embedded a text: one unit vector of the model's length came back.
    assert "384-float unit vector" in by_name["embed"]["reason"], by_name["embed"]
    # The quality worker ran its tools: their versions are the reason.
    reason = by_name["quality"]["reason"]
    assert "git version" in reason and "Python 3." in reason, by_name["quality"]


def test_quality_is_degraded_when_its_tools_are_not_there():
    empty = Path(tempfile.mkdtemp(prefix="sd-path-"))  # PATH without git or anything else
    with private_stack(PATH=str(empty)) as (env, _home):
        status, by_name = asyncio.run(health(env))
    assert status == "degraded", by_name
    quality = by_name["quality"]
    assert quality["status"] == "degraded"
    assert "git is not usable" in quality["reason"] and "not on PATH" in quality["reason"]
    assert all(c["status"] == "healthy" for n, c in by_name.items() if n != "quality"), by_name
