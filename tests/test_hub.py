"""The hub with real ZeroMQ sockets: routing, unavailable, deadlines, malformed input, retries."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
import zmq

from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.errors import Internal, Timeout, Unavailable
from shared.hub import Hub
from shared.transport import dealer, endpoints


def _running_hub(on_demand: frozenset[str] = frozenset()):
    """A hub on this test's endpoints in a thread; yields (hub, endpoints), then stops it."""
    eps = endpoints(load_config())
    h = Hub(zmq.Context.instance(), eps, heartbeat_interval_s=0.1, heartbeat_expiry_s=0.4,
            local_handler=lambda body: p.Pong(service="hub", pid=os.getpid(), uptime_s=0.0),
            on_demand=on_demand)
    thread = threading.Thread(target=h.run, daemon=True)
    thread.start()
    yield h, eps
    h.commands.put(("stop", None))
    thread.join(5)


@pytest.fixture
def hub(env):
    yield from _running_hub()


@pytest.fixture
def on_demand_hub(env):
    """A hub whose "quality" service is started on demand: its requests wait for a worker."""
    yield from _running_hub(frozenset({"quality"}))


class FakeWorker:
    """A hand-driven worker socket: registers, then answers only when told to."""

    def __init__(self, eps, service: str, capacity: int = 1) -> None:
        self.sock = dealer(zmq.Context.instance(), eps.workers)
        self.sock.setsockopt(zmq.IMMEDIATE, 0)
        self.sock.send(p.encoder.encode(p.Ready(service=service, pid=os.getpid(), capacity=capacity)))

    def receive(self, timeout_ms: int = 2000):
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            if self.sock.poll(50):
                frames = self.sock.recv_multipart()
                control = p.hub_control_decoder.decode(frames[0])
                if isinstance(control, p.Deliver):
                    return control.client, p.request_header_decoder.decode(frames[1])
        return None

    def reply(self, client: bytes, request_id: int, body: p.ReplyBody) -> None:
        self.sock.send_multipart([p.encoder.encode(p.Reply(client=client)),
                                  p.encoder.encode(p.ReplyHeader(request_id)),
                                  p.encoder.encode(body)])

    def close(self) -> None:
        self.sock.close(0)


def pong(service: str) -> p.Pong:
    return p.Pong(service=service, pid=os.getpid(), uptime_s=0.0)


def test_no_worker_means_unavailable_at_once(hub):
    _, eps = hub

    async def scenario():
        client = HubClient(eps.clients)
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="no live store worker"):
            await client.request("store", p.Ping(), timeout_s=5)
        client.close()
        return time.monotonic() - t0

    assert asyncio.run(scenario()) < 0.5


def test_a_request_for_an_on_demand_service_waits_for_its_worker(on_demand_hub):
    h, eps = on_demand_hub

    async def scenario():
        client = HubClient(eps.clients)
        try:
            asking = asyncio.ensure_future(client.request("quality", p.Ping(), timeout_s=10))
            await asyncio.sleep(0.3)  # no worker: it waits, where the supervisor can see it
            assert not asking.done() and h.service_load("quality") == 1
            worker = FakeWorker(eps, "quality")  # as the supervisor's worker comes up
            client_id, header = await asyncio.to_thread(worker.receive)
            worker.reply(client_id, header.id, pong("quality"))
            assert (await asyncio.wait_for(asking, 5)).service == "quality"
            worker.close()
            with pytest.raises(Unavailable, match="no live store worker"):  # not on demand
                await client.request("store", p.Ping(), timeout_s=5)
        finally:
            client.close()

    asyncio.run(scenario())


def test_a_waiting_on_demand_request_fails_when_the_stack_stops(on_demand_hub):
    h, eps = on_demand_hub

    async def scenario():
        client = HubClient(eps.clients)
        try:
            asking = asyncio.ensure_future(client.request("quality", p.Ping(), timeout_s=30))
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            h.commands.put(("stop_intake", None))  # no worker will be started for it now
            with pytest.raises(Unavailable, match="shutting down"):
                await asking
            return time.monotonic() - t0
        finally:
            client.close()

    assert asyncio.run(scenario()) < 1.0


def test_a_worker_that_announced_silence_is_not_purged_before_it_ends(hub):
    h, eps = hub  # heartbeat expiry 0.4 s
    worker = FakeWorker(eps, "quality")
    wait = time.monotonic() + 2
    while not h.registered() and time.monotonic() < wait:
        time.sleep(0.02)
    worker.sock.send(p.encoder.encode(p.Heartbeat(quiet_s=1.5)))  # then nothing at all
    time.sleep(1.0)  # 2.5 expiries of silence
    assert [w.service for w in h.registered()] == ["quality"]
    time.sleep(1.0)  # the announced 1.5 s are over
    assert h.registered() == []
    worker.close()


def test_unreachable_hub_is_unavailable_not_a_hang(env, tmp_path):
    async def scenario():
        client = HubClient(f"ipc://{tmp_path}/nobody.sock")
        t0 = time.monotonic()
        with pytest.raises(Unavailable):
            await client.request("hub", p.Ping(), timeout_s=0.5)
        client.close()
        return time.monotonic() - t0

    assert asyncio.run(scenario()) < 1.5


def test_silent_worker_means_timeout_within_deadline(hub):
    _, eps = hub
    worker = FakeWorker(eps, "quality")
    time.sleep(0.1)

    async def scenario():
        client = HubClient(eps.clients)
        t0 = time.monotonic()
        with pytest.raises(Timeout):
            await client.request("quality", p.Ping(), timeout_s=0.3)
        client.close()
        return time.monotonic() - t0

    elapsed = asyncio.run(scenario())
    worker.close()
    assert 0.25 < elapsed < 1.0


def test_requests_balance_across_workers_and_replies_route_back(hub):
    _, eps = hub
    workers = [FakeWorker(eps, "embed", capacity=1) for _ in range(2)]
    time.sleep(0.1)

    def serve(worker, served):
        while (got := worker.receive(1000)) is not None:
            served.append(got[1].id)
            worker.reply(got[0], got[1].id, pong("embed"))

    served = [[], []]
    threads = [threading.Thread(target=serve, args=(w, s)) for w, s in zip(workers, served)]
    for t in threads:
        t.start()

    async def scenario():
        client = HubClient(eps.clients)
        replies = await asyncio.gather(*(client.request("embed", p.Ping(), timeout_s=5)
                                         for _ in range(20)))
        client.close()
        return replies

    replies = asyncio.run(scenario())
    for t in threads:
        t.join()
    for w in workers:
        w.close()
    assert len(replies) == 20 and all(isinstance(r, p.Pong) for r in replies)
    assert sorted(served[0] + served[1]) == sorted(set(served[0] + served[1]))
    assert served[0] and served[1], "both workers should get work"


def test_idempotent_request_moves_to_another_worker_when_one_dies(hub):
    _, eps = hub
    dying = FakeWorker(eps, "embed")
    time.sleep(0.1)

    async def scenario():
        client = HubClient(eps.clients)
        task = asyncio.ensure_future(client.request("embed", p.Ping(), timeout_s=5, idempotent=True))
        got = await asyncio.to_thread(dying.receive)
        assert got is not None
        survivor = FakeWorker(eps, "embed")
        await asyncio.sleep(0.1)
        dying.close()  # never answers: the hub purges it after missed heartbeats
        again = await asyncio.to_thread(survivor.receive, 3000)
        assert again is not None and again[1].id == got[1].id
        survivor.reply(again[0], again[1].id, pong("embed"))
        reply = await task
        survivor.close()
        client.close()
        return reply

    assert isinstance(asyncio.run(scenario()), p.Pong)


def test_non_idempotent_request_fails_and_is_not_retried_when_its_worker_dies(hub):
    h, eps = hub
    dying = FakeWorker(eps, "store")
    time.sleep(0.1)

    async def scenario():
        client = HubClient(eps.clients)
        task = asyncio.ensure_future(client.request("store", p.Ping(), timeout_s=5,
                                                    retry_unavailable=True))
        assert await asyncio.to_thread(dying.receive) is not None
        h.commands.put(("purge_pid", os.getpid()))  # what the supervisor does on SIGCHLD
        # Not "unavailable" (which clients retry): it may have taken effect already.
        with pytest.raises(Internal, match=r"Ping \(request \d+\).*not idempotent"):
            await task
        dying.close()
        client.close()

    asyncio.run(scenario())


def test_malformed_frames_are_dropped_and_hub_keeps_serving(hub):
    h, eps = hub
    ctx = zmq.Context.instance()
    junk = [[b"\xff\x00garbage"], [b"a", b"b", b"c", b"d"], [b"\xc1", b"\xc1"],
            [p.encoder.encode(p.RequestHeader(1, "store", time.time() + 5)), b"\xc1"]]
    for endpoint in (eps.clients, eps.workers):
        s = dealer(ctx, endpoint)
        s.setsockopt(zmq.IMMEDIATE, 0)
        for frames in junk:
            s.send_multipart(frames)
        time.sleep(0.2)
        s.close(0)

    async def scenario():
        client = HubClient(eps.clients)
        reply = await client.request("hub", p.Ping(), timeout_s=2)
        client.close()
        return reply

    assert isinstance(asyncio.run(scenario()), p.Pong)
    assert h.counters.malformed_dropped >= 5


def test_client_recovers_when_its_reader_dies(hub):
    _, eps = hub
    worker = FakeWorker(eps, "quality")  # takes a request and never answers it

    async def scenario():
        client = HubClient(eps.clients)
        try:
            assert isinstance(await client.request("hub", p.Ping(), timeout_s=2), p.Pong)
            waiting = asyncio.ensure_future(client.request("quality", p.Ping(), timeout_s=30))
            assert await asyncio.to_thread(worker.receive) is not None
            # Fault injection: nothing from outside makes the reader task die, so break it the
            # way a failing socket would: close the socket it reads, under it.
            client._sock.close(0)
            t0 = time.monotonic()
            with pytest.raises(Unavailable, match="outcome is unknown"):
                await waiting  # failed at once, not at its 30 s deadline
            assert time.monotonic() - t0 < 5
            # The next request gets a new connection and a new reader.
            for _ in range(3):
                assert isinstance(await client.request("hub", p.Ping(), timeout_s=2), p.Pong)
        finally:
            client.close()
            worker.close()

    asyncio.run(scenario())


def test_undecodable_replies_are_dropped_and_the_client_keeps_reading(hub):
    """msgspec raises UnicodeDecodeError (invalid UTF-8 in a string) and RecursionError (a
    value nested too deep), not only its DecodeError: either once stopped the client's reader,
    failing every request it waited for."""
    _, eps = hub
    worker = FakeWorker(eps, "quality", capacity=3)
    deep = b"\x81\xa4type\xa5Error\x91" + b"\x91" * 100_000 + b"\x01"
    bad_utf8 = p.encoder.encode(p.Error(code="internal", message="\u00e9"))[:-1] + b"\xff"

    async def scenario():
        client = HubClient(eps.clients)
        try:
            asks = [asyncio.ensure_future(client.request("quality", p.Ping(), timeout_s=t))
                    for t in (1, 1, 10)]
            got = [await asyncio.to_thread(worker.receive) for _ in asks]
            for (who, head), body in zip(got[:2], (deep, bad_utf8), strict=True):
                worker.sock.send_multipart([p.encoder.encode(p.Reply(client=who)),
                                            p.encoder.encode(p.ReplyHeader(head.id)), body])
            await asyncio.sleep(0.2)
            worker.reply(got[2][0], got[2][1].id, pong("quality"))
            return await asyncio.gather(*asks, return_exceptions=True)
        finally:
            client.close()
            worker.close()

    first, second, third = asyncio.run(scenario())
    assert isinstance(first, Timeout) and isinstance(second, Timeout)  # dropped, not answered
    assert isinstance(third, p.Pong)  # the reader outlived both


def test_requests_in_flight_fail_at_once_when_the_hub_goes_away(hub):
    """Their replies can never come once the hub is gone (a new one knows nothing of them):
    they fail with ReplyLost when the connection drops, not at their deadlines (ten minutes
    for an import; the fault suite saw an import wait out its client's timeout after the
    supervisor was killed, and every gateway wait 10 s before starting a new stack)."""
    h, eps = hub
    worker = FakeWorker(eps, "quality")  # takes the request and never answers

    async def scenario():
        client = HubClient(eps.clients)
        try:
            waiting = asyncio.ensure_future(client.request("quality", p.Ping(), timeout_s=60,
                                                           idempotent=True))
            assert await asyncio.to_thread(worker.receive) is not None
            t0 = time.monotonic()
            h.commands.put(("stop", None))  # the hub closes its sockets, as a dying one does
            with pytest.raises(Unavailable, match="outcome is unknown"):
                await waiting
            return time.monotonic() - t0
        finally:
            client.close()
            worker.close()

    assert asyncio.run(scenario()) < 5
