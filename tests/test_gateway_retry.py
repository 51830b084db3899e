"""The gateway's one retry when the stack it talked to went away.

A call that no hub accepted at all (``Unreachable``) is sent again once a hub answers, even when
that hub was started by another gateway meanwhile. Found by the fault suite: during a stack's
SIGTERM, a gateway's store failed with "the sessiond stack is not reachable" because another
gateway's new stack answered the liveness check, so the error was taken for the real answer.
"""

from __future__ import annotations

import asyncio
import os
import threading

import zmq

from gateway import server
from shared import protocol as p
from shared.config import load_config
from shared.hub import Hub
from shared.transport import endpoints


def test_a_call_no_hub_took_is_sent_again_to_the_hub_another_gateway_started(env, monkeypatch):
    cfg = load_config()
    started: list[tuple[Hub, threading.Thread]] = []
    real_hub_alive = server.hub_alive

    async def another_gateway_starts_a_stack(client, timeout_s=0.5):
        # The fault: a stack appears between this gateway's failed send and its liveness
        # check. Timing cannot make that happen reliably, so the check starts the hub first.
        if not started:
            hub = Hub(zmq.Context.instance(), endpoints(cfg), heartbeat_interval_s=0.1,
                      heartbeat_expiry_s=1.0, local_handler=lambda body: p.Pong(
                          service="hub", pid=os.getpid(), uptime_s=0.0))
            thread = threading.Thread(target=hub.run, daemon=True)
            thread.start()
            started.append((hub, thread))
        return await real_hub_alive(client, timeout_s=2.0)

    monkeypatch.setattr(server, "hub_alive", another_gateway_starts_a_stack)
    gw = server.Gateway(cfg)

    async def scenario():
        try:
            return await gw.call(p.SERVICE_HUB, p.Ping(), timeout_s=5)
        finally:
            gw.client.close()

    try:
        reply = asyncio.run(scenario())
    finally:
        for hub, thread in started:
            hub.commands.put(("stop", None))
            thread.join(5)
    assert started, "the first send reached a hub: the fault did not happen"
    assert isinstance(reply, p.Pong)
