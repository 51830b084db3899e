"""The worker side of the hub protocol, shared by the store, embed and quality workers.

The main thread owns the DEALER socket: it registers (``Ready``), exchanges heartbeats, hands
each delivered request to the worker's compute thread and sends replies back. The compute thread
runs the service's code, so a long batch never stops heartbeats. If the hub goes silent the
worker reconnects with backoff (Paranoid Pirate); if the supervisor that started it dies, it exits.

A service subclasses ``Worker`` and implements ``handle`` (one request) or overrides ``submit``
and ``compute_loop`` (the embed worker batches).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

import zmq

from shared import heap, silence
from shared import protocol as p
from shared.config import Config
from shared.curve import client_keys, handshake_refusal
from shared.errors import BadRequest, ServiceError
from shared.liveness import write_alive
from shared.transport import dealer, endpoints

log = logging.getLogger("sessiond.worker")

RECONNECT_MAX_S = 2.0
LATENCY_WINDOW = 512  # the requests whose latency the heartbeat's percentiles describe


@dataclass
class Delivery:
    client: bytes
    header: p.RequestHeader
    body: p.RequestBody | None  # None when the body could not be decoded
    error: str = ""


class Worker:
    service: str = ""
    capacity: int = 1

    def __init__(self, cfg: Config, *, exit_with_parent: bool = True,
                 liveness: bool = False) -> None:
        self.cfg = cfg
        self._curve = client_keys(cfg, "worker")  # None: no CURVE (the local default)
        self._liveness = liveness  # started alone: keep a liveness file for health checks
        self._monitor: zmq.Socket | None = None
        self.started = time.monotonic()
        self.inbox: queue.Queue[Delivery | None] = queue.Queue()
        self._outbox: queue.SimpleQueue[tuple[bytes, int, p.ReplyBody]] = queue.SimpleQueue()
        # expect_silence -> IO thread: (seconds, set once the hub has been told)
        self._quiet: queue.SimpleQueue[tuple[float, threading.Event]] = queue.SimpleQueue()
        self._serving = threading.Event()  # the IO loop runs: heartbeats are being sent
        self._stopping = threading.Event()
        self._parent = os.getppid() if exit_with_parent else None
        self._ctx = zmq.Context.instance()
        self._wake_addr = f"inproc://wake-{id(self)}"
        self._wakers = threading.local()  # one PUSH socket per replying thread
        self.inflight = 0
        # IO thread only: when each request in hand arrived, and the latency (arrival to reply
        # sent, seconds) of the last LATENCY_WINDOW requests, for the heartbeat's stats.
        self._arrived: dict[tuple[bytes, int], float] = {}
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.replied = 0

    # ------------------------------------------------------ service hooks
    def setup(self) -> None:
        """Load what the service needs (model, database). Runs before registering."""

    def teardown(self) -> None:
        """Release resources; runs on the compute thread after the last request."""

    def handle(self, body: p.RequestBody) -> p.ReplyBody:
        raise BadRequest(f"{self.service} does not handle {type(body).__name__}")

    def stats(self) -> p.Stats:
        """Counters sent with every heartbeat (shown by the status tool)."""
        return {}

    def stopping(self) -> None:
        """Called on the IO thread as soon as the worker stops taking requests (before it waits
        ``stop_grace_s`` for the ones in hand): a service with long jobs cuts them short here,
        so they end, clean up and answer before the supervisor's grace runs out."""

    def own_stats(self) -> p.Stats:
        """What every worker reports besides its service's counters: latency percentiles (from
        a request's arrival to its reply, over the last ``LATENCY_WINDOW`` requests), requests
        answered, resident memory. Runs on the IO thread, which owns these numbers."""
        out: p.Stats = {"requests_answered": self.replied,
                        "rss_bytes": heap.resident_bytes()}
        if self._latencies:
            ms = sorted(self._latencies)
            last = len(ms) - 1
            for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
                out[f"latency_{name}_ms"] = round(ms[round(q * last)] * 1000, 3)
            out["latency_max_ms"] = round(ms[-1] * 1000, 3)
            out["latency_window"] = len(ms)
        return out

    def pong(self) -> p.Pong:
        return p.Pong(service=self.service, pid=os.getpid(),
                      uptime_s=time.monotonic() - self.started)

    # -------------------------------------------------- compute side
    def submit(self, delivery: Delivery) -> None:
        """Called on the IO thread for each delivered request."""
        self.inbox.put(delivery)

    def compute_loop(self) -> None:
        while (delivery := self.inbox.get()) is not None:
            self.finish(delivery, self.answer(delivery))
        self.teardown()
        self.close_waker()

    def close_waker(self) -> None:
        wake = getattr(self._wakers, "sock", None)
        if wake is not None:
            wake.close(0)

    def answer(self, delivery: Delivery) -> p.ReplyBody:
        """Run one request through ``handle`` and turn failures into typed error replies."""
        if delivery.body is None:
            return p.Error(code="bad_request", message=delivery.error)
        if time.time() > delivery.header.deadline:
            return p.Error(code="timeout", message="deadline passed before work started")
        try:
            if isinstance(delivery.body, p.Ping):
                return self.pong()
            return self.handle(delivery.body)
        except ServiceError as exc:
            return p.Error(code=exc.code, message=exc.message)
        except Exception as exc:
            log.exception("%s failed on %s", self.service, type(delivery.body).__name__)
            return p.Error(code="internal", message=f"{type(exc).__name__}: {exc}")

    def finish(self, delivery: Delivery, reply: p.ReplyBody) -> None:
        """Queue a reply for the IO thread (callable from any thread) and wake it."""
        self._outbox.put((delivery.client, delivery.header.id, reply))
        self._wake_io()

    def _wake_io(self) -> None:
        """Wake the IO thread (from any thread) to look at its outbox and silences."""
        wake = getattr(self._wakers, "sock", None)
        if wake is None:
            wake = self._wakers.sock = self._ctx.socket(zmq.PUSH)
            wake.setsockopt(zmq.LINGER, 0)
            wake.connect(self._wake_addr)
        try:
            wake.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # a wake-up is already queued; the IO thread drains the whole outbox

    def expect_silence(self, seconds: float) -> None:
        """From any thread, before a call that may keep the IO thread from running for up to
        ``seconds``: tell the hub (``Heartbeat.quiet_s``), so that it does not purge this busy
        worker, and wait (at most 1 s) until that heartbeat is sent."""
        if not self._serving.is_set():
            return  # not registered yet: nobody expects heartbeats
        told = threading.Event()
        self._quiet.put((seconds, told))
        self._wake_io()
        told.wait(timeout=1.0)

    def _send_quiet(self, sock: zmq.Socket) -> float:
        """On the IO thread: announce each silence asked for; returns the longest (0: none)."""
        longest = 0.0
        while True:
            try:
                seconds, told = self._quiet.get_nowait()
            except queue.Empty:
                return longest
            beat = p.Heartbeat(inflight=self.inflight, stats={**self.stats(), **self.own_stats()},
                               quiet_s=seconds)
            try:
                sock.send(p.encoder.encode(beat), zmq.NOBLOCK)
            except zmq.Again:
                log.warning("could not announce %.1fs of silence to the hub", seconds)
            told.set()
            longest = max(longest, seconds)

    # -------------------------------------------------- IO side
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT, a hub ``Disconnect`` at shutdown, or parent death."""
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        self.setup()
        wake = self._ctx.socket(zmq.PULL)
        wake.bind(self._wake_addr)
        compute = threading.Thread(target=self.compute_loop, name=f"{self.service}-compute")
        compute.start()
        silence.set_announcer(self.expect_silence)
        try:
            self._serve(wake)
        finally:
            silence.set_announcer(None)
            self._serving.clear()
            self.inbox.put(None)
            compute.join(timeout=self.cfg.stop_grace_s + 5)
            wake.close(0)
        return 0

    def _serve(self, wake: zmq.Socket) -> None:
        ep = endpoints(self.cfg).workers
        interval = self.cfg.heartbeat_interval_s
        reconnect_delay = interval
        poller = zmq.Poller()
        # From here a silence announced is sent, right after Ready (which _connect queues).
        self._serving.set()
        sock = self._connect(ep, poller)
        hub_expiry = time.monotonic() + self.cfg.heartbeat_expiry_s
        next_beat = next_alive = 0.0
        hub_seen = None
        poller.register(wake, zmq.POLLIN)
        while not self._stopping.is_set():
            events = dict(poller.poll(int(interval * 1000)))
            if wake in events:
                while wake.poll(0):
                    wake.recv()
            self._flush_replies(sock)
            now = time.monotonic()
            quiet = self._send_quiet(sock)
            if quiet:  # nor is the hub's silence judged while this process may not run
                hub_expiry = max(hub_expiry, now + quiet + self.cfg.heartbeat_expiry_s)
            if self._monitor is not None and self._monitor in events:
                self._on_monitor(ep)
            if self._liveness and now >= next_alive:
                next_alive = now + 1.0
                seen = None if hub_seen is None else round(now - hub_seen, 2)
                write_alive(self.cfg, self.service, {
                    "service": self.service, "hub": ep, "hub_seen_age_s": seen,
                    "hub_expiry_s": 2 * self.cfg.heartbeat_expiry_s})
            if sock in events:
                hub_seen = now
                hub_expiry = max(hub_expiry, now + self.cfg.heartbeat_expiry_s)
                reconnect_delay = interval
                if not self._on_hub_frames(sock):
                    # Hub asked us to re-register (it restarted or is stopping).
                    if self._parent_gone():
                        break
                    sock = self._reconnect(poller, sock, ep)
                    continue
            if now >= next_beat:
                next_beat = now + interval
                beat = p.Heartbeat(inflight=self.inflight,
                                   stats={**self.stats(), **self.own_stats()})
                sock.send(p.encoder.encode(beat), zmq.NOBLOCK)
            if self._parent_gone():
                log.warning("supervisor is gone; exiting")
                break
            if now > hub_expiry:
                log.warning("hub silent; reconnecting in %.2fs", reconnect_delay)
                time.sleep(reconnect_delay)
                reconnect_delay = min(reconnect_delay * 2, RECONNECT_MAX_S)
                sock = self._reconnect(poller, sock, ep)
                hub_expiry = time.monotonic() + self.cfg.heartbeat_expiry_s
        self._shutdown(sock, poller)

    def _connect(self, ep: str, poller: zmq.Poller) -> zmq.Socket:
        identity = f"{self.service}-{os.getpid()}-{os.urandom(2).hex()}".encode()
        # Queue Ready until the hub is there; a send then never blocks (nor SIGTERM with it).
        sock = dealer(self._ctx, ep, identity, curve=self._curve, immediate=False)
        if self._curve is not None:  # to say so when the hub refuses this worker's key
            self._monitor = sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            poller.register(self._monitor, zmq.POLLIN)
        ready = p.Ready(service=self.service, pid=os.getpid(), capacity=self.capacity,
                        host=socket.gethostname())
        try:
            sock.send(p.encoder.encode(ready), zmq.NOBLOCK)
        except zmq.Again:  # no pipe to queue on (a refused handshake can take it away): the
            # hub stays silent, and the reconnect after its expiry sends Ready again
            log.warning("could not queue Ready for the hub at %s; retrying after a reconnect", ep)
        poller.register(sock, zmq.POLLIN)
        return sock

    def _on_monitor(self, ep: str) -> None:
        from zmq.utils.monitor import parse_monitor_message  # with CURVE only: it imports asyncio

        while True:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            why = handshake_refusal(event)
            if why:
                log.error("cannot register with the hub at %s: %s", ep, why)

    def _close_socket(self, poller: zmq.Poller, sock: zmq.Socket) -> None:
        poller.unregister(sock)
        if self._monitor is not None:
            poller.unregister(self._monitor)
            sock.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
        sock.close(0)

    def _reconnect(self, poller: zmq.Poller, sock: zmq.Socket, ep: str) -> zmq.Socket:
        self._close_socket(poller, sock)
        return self._connect(ep, poller)

    def _on_hub_frames(self, sock: zmq.Socket) -> bool:
        """Handle everything waiting; False when the hub told us to disconnect."""
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return True
            try:
                control = p.hub_control_decoder.decode(frames[0])
            except p.DecodeErrors as exc:
                log.warning("dropped malformed frame from hub: %s", exc)
                continue
            match control:
                case p.Deliver(client=client) if len(frames) == 3:
                    self._accept(client, frames[1], frames[2])
                case p.Deliver():
                    log.warning("dropped a Deliver of %d frames (a request is 3)", len(frames))
                case p.Disconnect(reason=reason):
                    log.info("hub says disconnect: %s", reason)
                    return False
                case _:
                    pass  # heartbeat: liveness already refreshed

    def _accept(self, client: bytes, header_raw: bytes, body_raw: bytes) -> None:
        try:
            header = p.request_header_decoder.decode(header_raw)
        except p.DecodeErrors as exc:
            log.warning("dropped request with a malformed header: %s", exc)
            return
        try:
            body: p.RequestBody | None = p.request_body_decoder.decode(body_raw)
            error = ""
        except p.DecodeErrors as exc:
            body, error = None, f"malformed request: {exc}"
        self.inflight += 1
        self._arrived[(client, header.id)] = time.monotonic()
        self.submit(Delivery(client, header, body, error))

    def _flush_replies(self, sock: zmq.Socket) -> None:
        while True:
            try:
                client, request_id, reply = self._outbox.get_nowait()
            except queue.Empty:
                return
            self.inflight -= 1
            arrived = self._arrived.pop((client, request_id), None)
            if arrived is not None:
                self._latencies.append(time.monotonic() - arrived)
            self.replied += 1
            sock.send_multipart([
                p.encoder.encode(p.Reply(client=client)),
                p.encoder.encode(p.ReplyHeader(request_id)),
                p.encoder.encode(reply),
            ])

    def _parent_gone(self) -> bool:
        return self._parent is not None and os.getppid() != self._parent

    def _shutdown(self, sock: zmq.Socket, poller: zmq.Poller) -> None:
        """Stop intake, let the compute thread finish what it holds, send those replies."""
        self.stopping()
        try:
            sock.send(p.encoder.encode(p.Disconnect(reason="worker stopping")), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        deadline = time.monotonic() + self.cfg.stop_grace_s
        while self.inflight > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
            self._flush_replies(sock)
        self._close_socket(poller, sock)
