"""CurveZMQ on the hub's endpoints: only listed keys get in, each on its own endpoint; refusals
are logged with the peer's address; plain TCP beyond loopback is refused at start.

A real hub (shared.hub.Hub with its ZAP authenticator) on 127.0.0.1 with real sockets, keys
written by ``sessiond keys init``; the commands run as processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import subprocess
import sys
import threading
import time

import pytest
import zmq
from apart import free_port, init_keys, keys_of, stranger_keys, wait_file_text
from conftest import REPO, base_env, wait_for

from shared import curve
from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.curve import server_keys
from shared.errors import Unavailable, Unreachable
from shared.hub import Hub
from shared.logs import LimitedWarnings
from shared.transport import bind_endpoints, dealer, endpoints


@pytest.fixture
def keys(tmp_path):
    return init_keys(tmp_path / "keys")


@pytest.fixture
def curve_hub(keys, tmp_path, monkeypatch):
    # Each test gets the whole budget of refusal lines (a peer that retries uses it up).
    monkeypatch.setattr(curve, "refusals", LimitedWarnings(curve.log))
    cfg = load_config({"SESSIOND_HOME": str(tmp_path / "home"), "SESSIOND_TRANSPORT": "tcp",
                       "SESSIOND_TCP_CLIENT_PORT": str(free_port()),
                       "SESSIOND_TCP_WORKER_PORT": str(free_port()),
                       "SESSIOND_CURVE_KEYS_DIR": str(keys)})
    ctx = zmq.Context()  # its own: a context has one ZAP handler
    hub = Hub(ctx, bind_endpoints(cfg), heartbeat_interval_s=0.1, heartbeat_expiry_s=0.4,
              local_handler=lambda body: p.Pong(service="hub", pid=os.getpid(), uptime_s=0.0),
              curve=server_keys(cfg))
    died: list[BaseException] = []

    def run():
        try:
            hub.run()
        except RuntimeError as exc:  # kept for the test that kills the authenticator
            died.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield hub, endpoints(cfg), thread, died
    hub.commands.put(("stop", None))
    thread.join(5)
    ctx.term()


class FakeWorker:
    """A worker socket with the given keys (None: no CURVE) that registers for a service."""

    def __init__(self, endpoint: str, curve, service: str = "store") -> None:
        self.sock = dealer(zmq.Context.instance(), endpoint, curve=curve, immediate=False)
        # never a blocking send: after a refused handshake the socket may have no pipe left
        self.sock.setsockopt(zmq.SNDTIMEO, 2000)
        with contextlib.suppress(zmq.Again):
            self.sock.send(p.encoder.encode(p.Ready(service=service, pid=os.getpid())))

    def delivered(self, timeout_s: float) -> list[bytes] | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sock.poll(50):
                frames = self.sock.recv_multipart()
                if isinstance(p.hub_control_decoder.decode(frames[0]), p.Deliver):
                    return frames
        return None

    def close(self) -> None:
        self.sock.close(0)


def refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused a peer" in r.getMessage()]


def wait_refusal(caplog, *parts: str) -> str:
    def found():
        return next((m for m in refusals(caplog) if all(part in m for part in parts)), None)

    return wait_for(found, 10, what=f"a refusal naming {parts}")


async def ask(endpoint: str, curve, service: str = p.SERVICE_STORE, timeout_s: float = 2.0):
    client = HubClient(endpoint, curve=curve)
    try:
        return await client.request(service, p.Ping(), timeout_s=timeout_s)
    finally:
        client.close()


@pytest.mark.parametrize("who", ["a stranger's key", "a client's key"])
def test_a_worker_with_an_unknown_key_cannot_register(curve_hub, keys, caplog, who):
    caplog.set_level(logging.INFO)
    hub, eps, _, _ = curve_hub
    curve = stranger_keys(keys) if who == "a stranger's key" else keys_of(keys, "client")
    worker = FakeWorker(eps.workers, curve)
    try:
        line = wait_refusal(caplog, "127.0.0.1", "workers endpoint", "not in allowed_workers")
        assert curve.public.decode() in line
        with pytest.raises(Unavailable, match="no live store worker"):
            asyncio.run(ask(eps.clients, keys_of(keys, "client")))
        assert hub.workers == {} and hub.auth_refused() >= 1
    finally:
        worker.close()


def test_listed_keys_get_in_and_requests_flow_encrypted(curve_hub, keys):
    hub, eps, _, _ = curve_hub
    worker = FakeWorker(eps.workers, keys_of(keys, "worker"))

    async def scenario():
        wait_for(lambda: hub.workers, 10, what="the worker's registration")
        client = HubClient(eps.clients, curve=keys_of(keys, "client"))
        try:
            pending = asyncio.create_task(client.request(p.SERVICE_STORE, p.Ping(), timeout_s=10))
            frames = await asyncio.to_thread(worker.delivered, 10)
            assert frames is not None, "the allowed worker got no request"
            header = p.request_header_decoder.decode(frames[1])  # [Deliver, header, body]
            worker.sock.send_multipart([
                p.encoder.encode(p.Reply(client=p.hub_control_decoder.decode(frames[0]).client)),
                p.encoder.encode(p.ReplyHeader(header.id)),
                p.encoder.encode(p.Pong(service="store", pid=1234, uptime_s=1.0))])
            return await pending
        finally:
            client.close()

    try:
        pong = asyncio.run(scenario())
        assert isinstance(pong, p.Pong) and pong.pid == 1234
        assert hub.auth_refused() == 0
    finally:
        worker.close()


def test_a_client_without_keys_or_with_a_worker_key_gets_no_reply(curve_hub, keys, caplog):
    caplog.set_level(logging.INFO)
    hub, eps, _, _ = curve_hub
    worker = FakeWorker(eps.workers, keys_of(keys, "worker"))
    wait_for(lambda: hub.workers, 10, what="the allowed worker's registration")
    # No keys at all: a raw request, queued until a connection would take it.
    plain = dealer(zmq.Context.instance(), eps.clients, immediate=False)
    header = p.RequestHeader(id=1, service=p.SERVICE_STORE, deadline=time.time() + 30,
                             kind="Ping")
    plain.send_multipart([p.encoder.encode(header), p.encoder.encode(p.Ping())])
    try:
        assert plain.poll(1500) == 0, "a client without keys got a reply"
        wait_refusal(caplog, "clients endpoint", "CURVE")  # no keys: no CURVE
        # A worker's key on the client endpoint: refused by ZAP, and the client says why.
        with pytest.raises(Unreachable, match="refused this process's CURVE key"):
            asyncio.run(ask(eps.clients, keys_of(keys, "worker")))
        wait_refusal(caplog, "127.0.0.1", "clients endpoint", "not in allowed_clients")
        assert worker.delivered(0.5) is None, "a refused message reached the worker"
        assert hub.counters.requests_total == 0
        assert hub.auth_refused() >= 2
    finally:
        plain.close(0)
        worker.close()


def test_an_allowed_key_gets_in_without_a_restart(curve_hub, keys, caplog):
    caplog.set_level(logging.INFO)
    hub, eps, _, _ = curve_hub
    newcomer = stranger_keys(keys)
    first = FakeWorker(eps.workers, newcomer)
    wait_refusal(caplog, "workers endpoint", newcomer.public.decode())
    first.close()
    out = subprocess.run([sys.executable, "-m", "sessiond", "keys", "allow",
                          newcomer.public.decode(), "--role", "worker", "--dir", str(keys)],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "allowed" in out.stdout
    # the hub reads the allow list again when it changes: a Ready sent before it did is
    # refused, so a worker tries again with a new connection until it is in
    deadline = time.monotonic() + 20
    while not hub.workers:
        assert time.monotonic() < deadline, "the newly allowed worker never registered"
        second = FakeWorker(eps.workers, newcomer)
        try:
            wait_until = time.monotonic() + 1.0
            while not hub.workers and time.monotonic() < wait_until:
                time.sleep(0.05)
        finally:
            second.close()


def test_the_hub_stops_if_its_authenticator_dies(curve_hub):
    hub, _, thread, died = curve_hub
    hub.auth.stop()  # what a crash of the ZAP thread leaves: nobody answers ZAP requests
    thread.join(10)
    assert not thread.is_alive()
    assert died and "authenticator" in str(died[0])


def test_refusals_a_peer_can_cause_are_logged_at_a_bounded_rate(caplog):
    now = [0.0]
    limited = LimitedWarnings(logging.getLogger("sessiond.test"), limit=3, window_s=60,
                              clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="sessiond.test"):
        for i in range(10):
            limited.warning("refused peer %d", i)
        now[0] = 61.0
        limited.warning("refused peer %d", 10)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refused peer 0", "refused peer 1", "refused peer 2",
                     "7 more like the next were not logged in the last 60 s", "refused peer 10"]


def test_keys_init_writes_private_files_and_refuses_to_overwrite(keys):
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    names = sorted(f.name for f in keys.iterdir())
    assert names == sorted(["hub.key", "hub.key_secret", "worker.key", "worker.key_secret",
                            "client.key", "client.key_secret", "allowed_workers",
                            "allowed_clients", "http.token"])
    for f in keys.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert keys_of(keys, "worker").public.decode() in (keys / "allowed_workers").read_text()
    assert keys_of(keys, "client").public.decode() not in (keys / "allowed_workers").read_text()
    again = subprocess.run([sys.executable, "-m", "sessiond", "keys", "init", str(keys)],
                           cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1 and "not overwriting" in again.stderr
    bad = subprocess.run([sys.executable, "-m", "sessiond", "keys", "allow", "not-a-key",
                          "--role", "client", "--dir", str(keys)],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and "not a CURVE public key" in bad.stderr


@pytest.mark.parametrize("args, extra, message", [
    (["hub"], {"SESSIOND_TRANSPORT": "tcp", "SESSIOND_TCP_HOST": "0.0.0.0"},
     "refusing to bind tcp_host=0.0.0.0 without CURVE"),
    (["stack"], {"SESSIOND_TRANSPORT": "tcp", "SESSIOND_TCP_HOST": "10.1.2.3"},
     "refusing to bind tcp_host=10.1.2.3 without CURVE"),
    (["worker", "embed", "--connect", "tcp://10.1.2.3:47812"], {},
     "refusing to connect to the hub at 10.1.2.3 without CURVE"),
    (["serve", "--connect", "tcp://hub:47811"], {},
     "refusing to connect to the hub at hub without CURVE"),
])
def test_tcp_beyond_loopback_without_keys_is_refused_at_start(tmp_path, args, extra, message):
    env = base_env(tmp_path / "home", **extra)
    out = subprocess.run([sys.executable, "-m", "sessiond", *args], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                         check=False)
    assert out.returncode == 3, out.stderr
    assert message in out.stderr and "sessiond keys init" in out.stderr
    assert not (tmp_path / "home" / "run" / "stack.json").exists()


def test_a_worker_without_a_hub_waits_for_one_and_stops_on_sigterm(tmp_path):
    """Its registration is queued, not a send that blocks: before, a worker started before its
    hub (or after the hub went away) sat in that send and ignored SIGTERM."""
    home = tmp_path / "home"
    env = base_env(home)
    port = free_port()  # nobody listens there
    proc = subprocess.Popen([sys.executable, "-m", "sessiond", "worker", "quality", "--connect",
                             f"tcp://127.0.0.1:{port}"], env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_file_text(home / "logs" / "quality.log", "starting", 30)
        time.sleep(1.0)  # well into its first connection attempts
        health = subprocess.run([sys.executable, "-m", "sessiond", "health", "--service",
                                 "quality"], env=env, cwd=REPO, capture_output=True, text=True,
                                timeout=60, check=False)
        assert health.returncode == 1 and "has not heard from its hub" in health.stdout, \
            health.stdout + health.stderr
        proc.terminate()
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
