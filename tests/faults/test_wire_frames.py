"""Corrupt, truncated and foreign frames on the wire: dropped and logged, no process dies.

Raw pyzmq sockets send them to the real hub's client endpoint and worker endpoint (the hub
counts them in ``malformed_dropped``), and to a real worker process. Workers listen on nothing
(they connect out to the hub), so the worker is reached the only way anything reaches it: the
test binds the worker endpoint of a data dir of its own, as a hub would, and starts a real
``python -m quality_worker`` there.

The protocol has no version number: messages evolve only by adding fields with defaults, so a
newer peer's extra fields are read (and ignored) by an older one, as the first case below shows.
What an older peer cannot read is a frame of another protocol or of an unknown message type:
Majordomo's own ``MDPC01`` / ``MDPW01`` frames, a map where an array is expected, a tag that does
not exist (``ReadyV2``). Those are what "a frame from an unknown protocol version" means here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import pytest
import zmq
from conftest import base_env, kill_stack_processes, private_stack, wait_for

from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.errors import BadRequest
from shared.transport import dealer, endpoints, router

from .support import REPO, alive

pytestmark = pytest.mark.faults

enc = msgspec.msgpack.encode


def nested(depth: int) -> bytes:
    """A Remember body whose metadata nests ``depth`` arrays: msgspec gives up decoding it."""
    head = {"type": "Remember", "kind": "note", "content": "x", "project": "p"}
    return enc(head)[:1].replace(b"\x84", b"\x85") + enc(head)[1:] + enc("metadata") + \
        b"\x81" + enc("a") + b"\x91" * depth + b"\x01"


def header(service: str, request_id: int = 1, **extra) -> bytes:
    return p.encoder.encode(p.RequestHeader(request_id, service, time.time() + 5, **extra))


# To the hub's client endpoint (a DEALER: the hub sees [identity, *frames]).
CLIENT_JUNK = {
    "garbage": [b"\xff\x00garbage"],
    "empty frame": [b""],
    "four frames": [b"a", b"b", b"c", b"d"],
    "Majordomo client frames": [b"MDPC01", b"store", b"\x01"],
    "truncated header": [header("hub")[:-3], enc(p.Ping())],
    "header as a map": [enc({"id": 1, "service": "hub", "deadline": 1e12}), enc(p.Ping())],
    "header of wrong types": [enc(["x", 5, "soon"]), enc(p.Ping())],
    "truncated body to the hub": [header("hub"), enc(p.Ping())[:-1]],
    "unknown message type to the hub": [header("hub"), enc({"type": "PingV2"})],
    "invalid msgpack": [b"\xc1\xc1", b"\xc1"],
    "invalid UTF-8 in a string": [header("hub"), enc({"type": "Pi\u00e9"})[:-1] + b"\xff"],
    "a body nested too deep for the hub": [header("hub"), nested(100_000)],
}

# To the hub's worker endpoint, from a socket that never registered.
WORKER_JUNK = {
    "garbage": [b"\xff\x00garbage"],
    "empty frame": [b""],
    "Majordomo worker frames": [b"MDPW01", b"\x01", b"store"],
    "Ready of an unknown version": [enc({"type": "ReadyV2", "service": "store", "pid": 1})],
    "Ready for an unknown service": [enc(p.Ready(service="nope", pid=1))],
    "Ready with wrong types": [enc({"type": "Ready", "service": 5, "pid": "x"})],
    "truncated Ready": [enc(p.Ready(service="store", pid=1))[:-2]],
    "control as an array": [enc(["Ready", "store", 1])],
}

# From a registered worker socket (a fake "quality" worker): broken replies.
REGISTERED_JUNK = {
    "Reply without its frames": [enc(p.Reply(client=b"x"))],
    "Reply with an extra frame": [enc(p.Reply(client=b"x")), enc(p.ReplyHeader(1)), b"", b""],
    "Reply with a bad header": [enc(p.Reply(client=b"x")), b"\xc1", enc(p.Pong("q", 1, 0.0))],
    "Heartbeat of wrong types": [enc({"type": "Heartbeat", "inflight": "many"})],
}


@pytest.fixture(scope="module")
def stack_env():
    # The quality worker running from the start: every worker is checked for a crash.
    with private_stack(SESSIOND_QUALITY_PARK_AFTER_S="0") as env_home:
        yield env_home


def _send_all(endpoint: str, cases: dict[str, list[bytes]], identity: bytes | None = None):
    sock = dealer(zmq.Context.instance(), endpoint, identity)
    sock.setsockopt(zmq.IMMEDIATE, 0)
    try:
        for frames in cases.values():
            sock.send_multipart(frames)
        time.sleep(0.3)
    finally:
        sock.close(0)


async def _status(client: HubClient) -> p.StackInfo:
    info = await client.request(p.SERVICE_HUB, p.StackStatus(), timeout_s=5)
    assert isinstance(info, p.StackInfo)
    return info


async def _wait_ready(client: HubClient) -> p.StackInfo:
    deadline = time.monotonic() + 30
    while True:
        info = await _status(client)
        if all(w.state == "ready" for w in info.workers):
            return info
        assert time.monotonic() < deadline, info.workers
        await asyncio.sleep(0.05)


def test_bad_frames_to_the_hub_are_dropped_counted_and_logged(stack_env):
    env, home = stack_env
    eps = endpoints(load_config(env))

    async def scenario():
        client = HubClient(eps.clients)
        try:
            before = await _wait_ready(client)
            # A newer peer's header carries fields this one does not know: it is read.
            future = msgspec.msgpack.encode([7, "hub", time.time() + 5, False, "Ping", 2, "x"])
            raw = dealer(zmq.Context.instance(), eps.clients)
            raw.setsockopt(zmq.IMMEDIATE, 0)
            raw.send_multipart([future, enc(p.Ping())])
            assert raw.poll(5000), "no answer to a header with extra fields"
            answer = p.reply_body_decoder.decode(raw.recv_multipart()[1])
            raw.close(0)
            assert isinstance(answer, p.Pong)

            await asyncio.to_thread(_send_all, eps.clients, CLIENT_JUNK)
            await asyncio.to_thread(_send_all, eps.workers, WORKER_JUNK)
            fake = await asyncio.to_thread(_registered_fake_worker, eps.workers)
            # A body the store cannot read passes the hub (it reads headers only) and is
            # answered by the store with a readable error.
            with pytest.raises(BadRequest, match="malformed request"):
                await client.request(p.SERVICE_STORE, _Undecodable(), timeout_s=5)
            after = await _status(client)
            probe = await client.request(p.SERVICE_QUALITY, p.ProbeTools(), timeout_s=10,
                                         idempotent=True, retry_unavailable=True)
            stats = await client.request(p.SERVICE_STORE, p.StoreStats(), timeout_s=10)
            return before, after, fake, probe, stats
        finally:
            client.close()

    before, after, fake_sock, probe, stats = asyncio.run(scenario())
    fake_sock.close(0)
    expected = len(CLIENT_JUNK) + len(WORKER_JUNK) + len(REGISTERED_JUNK)
    dropped = after.malformed_dropped - before.malformed_dropped
    assert dropped >= expected - 1, (dropped, expected)  # "empty frame" may count as garbage
    assert after.pid == before.pid
    assert [(w.name, w.pid, w.restarts) for w in after.workers] == \
           [(w.name, w.pid, w.restarts) for w in before.workers]
    assert isinstance(probe, p.ToolsReport) and isinstance(stats, p.StoreInfo)
    log = (home / "logs" / "stack.log").read_text()
    assert log.count("dropped malformed message") >= dropped
    assert "worker offers unknown service 'nope'" in log


class _Undecodable(msgspec.Struct, tag="RememberV9"):
    """A request body of a message type no sessiond version has."""
    content: str = "from the future"


def _registered_fake_worker(endpoint: str) -> zmq.Socket:
    """Register a worker socket for "quality" and send broken replies from it. The socket is
    returned unclosed (closing it makes the hub purge it after its heartbeats stop)."""
    sock = dealer(zmq.Context.instance(), endpoint, b"fake-quality")
    sock.setsockopt(zmq.IMMEDIATE, 0)
    sock.send(enc(p.Ready(service="quality", pid=os.getpid(), capacity=1)))
    time.sleep(0.2)
    for frames in REGISTERED_JUNK.values():
        sock.send_multipart(frames)
    sock.send(enc(p.Disconnect(reason="test done")))
    time.sleep(0.3)
    return sock


# ------------------------------------------------------------------ a worker behind a fake hub
class FakeHub:
    """The test's side of a worker connection: a ROUTER bound where the worker connects."""

    def __init__(self, endpoint: str) -> None:
        self.sock = router(zmq.Context.instance(), endpoint)
        self.identity: bytes | None = None

    def registered(self, timeout: float = 30) -> p.Ready:
        """Wait for the worker's Ready (heartbeats on the way are skipped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.poll(100):
                identity, control, *_ = self.sock.recv_multipart()
                msg = p.worker_control_decoder.decode(control)
                if isinstance(msg, p.Ready):
                    self.identity = identity
                    return msg
        raise AssertionError("the worker never registered")

    def send(self, *frames: bytes) -> None:
        assert self.identity is not None
        self.sock.send_multipart([self.identity, *frames])

    def replies(self, count: int, timeout: float = 10) -> dict[int, p.ReplyBody]:
        """The next ``count`` replies by request id, heartbeating the worker meanwhile."""
        out: dict[int, p.ReplyBody] = {}
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            self.send(enc(p.Heartbeat()))
            if self.sock.poll(100):
                identity, control, *rest = self.sock.recv_multipart()
                msg = p.worker_control_decoder.decode(control)
                if isinstance(msg, p.Reply) and identity == self.identity:
                    rid = p.reply_header_decoder.decode(rest[0]).id
                    out[rid] = p.reply_body_decoder.decode(rest[1])
                elif isinstance(msg, p.Ready):  # it reconnected: a new identity
                    self.identity = identity
        return out

    def close(self) -> None:
        self.sock.close(0)


def deliver(request_id: int, body: bytes, head: bytes | None = None) -> list[bytes]:
    head = head if head is not None else header("quality", request_id)
    return [enc(p.Deliver(client=b"test-client")), head, body]


def test_bad_frames_to_a_worker_are_dropped_and_logged():
    home = Path(tempfile.mkdtemp(prefix="sd-"))
    env = {**base_env(home), "SESSIOND_HEARTBEAT_INTERVAL_S": "0.1"}
    hub = FakeHub(endpoints(load_config(env)).workers)
    worker = subprocess.Popen([sys.executable, "-m", "quality_worker", "--name", "quality"],
                              env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = hub.registered()
        assert ready.service == "quality" and ready.pid == worker.pid
        junk = [
            [b"\xff\x00garbage"],
            [b""],
            [b"MDPW01", b"\x02", b"quality"],  # a Majordomo worker command
            [enc({"type": "DeliverV2", "client": b"x"}), header("quality"), enc(p.ProbeTools())],
            [enc(p.Deliver(client=b"x"))],  # without its request frames
            [enc(p.Deliver(client=b"x")), header("quality"), enc(p.Ping()), b"extra"],
            deliver(2, enc(p.Ping()), head=b"\xc1"),  # a header that is not msgpack
            deliver(3, enc(p.Ping()), head=header("quality", 3)[:-4]),  # truncated header
        ]
        for frames in junk:
            hub.send(*frames)
        hub.send(*deliver(10, b"\xc1\xc1"))  # a body that is not msgpack
        hub.send(*deliver(11, enc({"type": "ProbeToolsV2"})))  # a body of an unknown type
        hub.send(*deliver(12, enc(p.Ping())[:-1] + b"\xc1"))  # a corrupt body
        hub.send(*deliver(13, enc(p.Embed(texts=["x"]))))  # a body meant for another service
        hub.send(*deliver(14, nested(100_000)))  # nested too deep to decode
        hub.send(*deliver(15, enc(p.Ping())))  # and then a good request
        got = hub.replies(6)
        assert sorted(got) == [10, 11, 12, 13, 14, 15], got
        for rid in (10, 11, 12, 13, 14):
            assert isinstance(got[rid], p.Error) and got[rid].code == "bad_request", got[rid]
            assert got[rid].message
        assert isinstance(got[15], p.Pong) and got[15].pid == worker.pid
        assert worker.poll() is None and alive(worker.pid)
        log = (home / "logs" / "quality.log").read_text()
        assert log.count("dropped malformed frame from hub") >= 4, log
        assert log.count("dropped request with a malformed header") == 2, log
        assert "dropped a Deliver" in log, log
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
        hub.close()
        kill_stack_processes(home)
    wait_for(lambda: worker.poll() is not None, 5, what="worker exit")
