"""The quality worker runs on demand: parked at the start, started by a request that waits for
it, parked again after ``quality_park_after_s`` without one (real stack, real processes)."""

from __future__ import annotations

import psutil
from conftest import private_stack, wait_for
from test_embed_pool import run

from shared import protocol as p
from shared.config import load_config


def quality(cfg) -> p.WorkerInfo:
    async def ask(client):
        info = await client.request(p.SERVICE_HUB, p.StackStatus(), retry_unavailable=True)
        return next(w for w in info.workers if w.service == p.SERVICE_QUALITY)
    return run(cfg, ask)


def probe(cfg) -> p.ReplyBody:
    async def ask(client):
        return await client.request(p.SERVICE_QUALITY, p.ProbeTools(), timeout_s=30)
    return run(cfg, ask)


def test_the_quality_worker_starts_for_a_request_and_parks_after_none():
    with private_stack(SESSIOND_QUALITY_PARK_AFTER_S="2") as (env, _):
        cfg = load_config(env)
        parked = wait_for(lambda: (w := quality(cfg)).state == "parked" and w, 30,
                          what="the stack up, quality parked")
        assert parked.pid is None
        for round_ in range(2):  # started, parked, and started again
            reply = probe(cfg)  # waits in the hub while the supervisor starts the worker
            assert isinstance(reply, p.ToolsReport), reply
            assert "git" in {t.name for t in reply.tools}
            running = quality(cfg)
            assert running.state in ("ready", "busy") and psutil.pid_exists(running.pid)
            again = wait_for(lambda: (w := quality(cfg)).state == "parked" and w, 30,
                             what=f"quality parked again (round {round_})")
            assert again.pid is None and again.restarts == 0
            assert not psutil.pid_exists(running.pid) or \
                psutil.Process(running.pid).status() == "zombie"
