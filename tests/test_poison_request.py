"""Poison requests: a request whose handling kills its worker is delivered at most twice, then
answered with an error that names it, and the service goes on serving everything else.

Real processes: a real hub (in this process, as in the supervisor) and worker processes built on
``shared.worker.Worker`` that really die on one body (tests/helpers/poison_worker.py)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from conftest import REPO, wait_for

from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.errors import ServiceError, Unavailable
from shared.hub import Hub
from shared.transport import endpoints

WORKER = REPO / "tests" / "helpers" / "poison_worker.py"


@pytest.fixture
def hub(env):
    cfg = load_config()
    eps = endpoints(cfg)
    # Expiry 1 s: a dead worker is noticed by its missed heartbeats, as in the real stack.
    h = Hub(zmq.Context.instance(), eps, heartbeat_interval_s=0.1, heartbeat_expiry_s=1.0,
            local_handler=lambda body: p.Pong(service="hub", pid=os.getpid(), uptime_s=0.0))
    thread = threading.Thread(target=h.run, daemon=True)
    thread.start()
    yield h, eps
    h.commands.put(("stop", None))
    thread.join(5)


@pytest.fixture
def workers(hub, env, tmp_path):
    """Start n poison workers registered with the hub; yields (start, log file)."""
    h, _ = hub
    log_file = tmp_path / "deliveries.log"
    log_file.touch()
    procs: list[subprocess.Popen] = []
    worker_env = {**env, "SESSIOND_HEARTBEAT_INTERVAL_S": "0.1"}

    def start(n: int) -> list[int]:
        new = [subprocess.Popen([sys.executable, str(WORKER), str(log_file)], env=worker_env,
                                cwd=REPO, stdin=subprocess.DEVNULL) for _ in range(n)]
        procs.extend(new)
        wait_for(lambda: all(w.pid in h.worker_table() for w in new), 30,
                 what="workers registered")
        return [w.pid for w in new]

    yield start, log_file
    for proc in procs:
        proc.kill()
        proc.wait(5)


def handled(log_file: Path) -> list[tuple[int, str]]:
    lines = log_file.read_text().splitlines()
    return [(int(pid), text) for pid, text in (line.split(" ", 1) for line in lines)]


def test_a_request_that_kills_its_worker_twice_is_not_sent_again(hub, workers):
    _, eps = hub
    start, log_file = workers
    pids = start(3)

    async def scenario():
        client = HubClient(eps.clients)
        try:
            t0 = time.monotonic()
            # Idempotent and retried on "unavailable", as the gateway sends everything.
            with pytest.raises(ServiceError) as caught:
                await client.request(p.SERVICE_QUALITY, p.Embed(texts=["poison"]),
                                     timeout_s=60, idempotent=True, retry_unavailable=True)
            elapsed = time.monotonic() - t0
            # The worker left serves other requests.
            ok = await client.request(p.SERVICE_QUALITY, p.Embed(texts=["harmless"]),
                                      timeout_s=10, idempotent=True, retry_unavailable=True)
            await asyncio.sleep(2.5)  # past two heartbeat expiries: nothing re-sends it later
            ping = await client.request(p.SERVICE_QUALITY, p.Ping(), timeout_s=10)
            return caught.value, elapsed, ok, ping
        finally:
            client.close()

    error, elapsed, ok, ping = asyncio.run(scenario())
    assert not isinstance(error, Unavailable), error  # an answer, not "try again"
    message = error.message
    assert "quality" in message and "Embed" in message, message
    assert re.search(r"request \d+", message), message
    assert elapsed < 30, f"the error came only after {elapsed:.1f}s"
    poisoned = [pid for pid, text in handled(log_file) if text == "poison"]
    assert len(poisoned) == 2 and len(set(poisoned)) == 2, handled(log_file)
    survivor = (set(pids) - set(poisoned)).pop()
    assert isinstance(ok, p.Pong) and ok.pid == survivor
    assert isinstance(ping, p.Pong) and ping.pid == survivor
    assert (survivor, "harmless") in handled(log_file)


def test_a_non_idempotent_request_that_kills_its_worker_is_not_sent_again(hub, workers):
    _, eps = hub
    start, log_file = workers
    pids = start(2)

    async def scenario():
        client = HubClient(eps.clients)
        try:
            with pytest.raises(ServiceError) as caught:
                # retry_unavailable as the gateway does: the client must not re-send it either.
                await client.request(p.SERVICE_QUALITY, p.Embed(texts=["poison"]),
                                     timeout_s=30, idempotent=False, retry_unavailable=True)
            ok = await client.request(p.SERVICE_QUALITY, p.Embed(texts=["harmless"]),
                                      timeout_s=10, retry_unavailable=True)
            return caught.value, ok
        finally:
            client.close()

    error, ok = asyncio.run(scenario())
    assert not isinstance(error, Unavailable), error
    assert "quality" in error.message and "Embed" in error.message, error.message
    assert "not idempotent" in error.message, error.message
    poisoned = [pid for pid, text in handled(log_file) if text == "poison"]
    assert len(poisoned) == 1, handled(log_file)
    assert isinstance(ok, p.Pong) and ok.pid == (set(pids) - set(poisoned)).pop()
