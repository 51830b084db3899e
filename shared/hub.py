"""The hub: a Majordomo-style broker between clients (gateways, the store) and workers.

Workers register for a service with ``Ready`` and a capacity; the hub hands each request to the
ready worker of that service with the fewest requests in hand, least recently used first, so the
embed pool load-balances. Heartbeats go both ways; a worker silent for ``heartbeat_expiry_s`` is
purged and its idempotent in-flight requests go to another worker, once: a request in hand at two
workers' deaths may be what kills them (a poison request), so it is answered with an error that
names it and never sent again. A non-idempotent request in hand at a death is answered with an
error at once (it may or may not have taken effect). Neither error is ``unavailable``, which
clients retry.
A service with no worker at all answers ``unavailable`` at once, except a service started on
demand (``on_demand``: the supervisor starts its worker when it sees a request waiting), whose
requests wait in its queue; a queued request whose deadline passes answers ``timeout``.
Undecodable frames are logged and dropped.

The hub runs in its own thread of the supervisor process and owns its two sockets; other
threads talk to it only through ``commands`` (a thread-safe queue) and read its counters.
With CURVE keys its endpoints accept only the peers its ZAP authenticator allows (``shared.curve``:
workers and clients in separate domains); if the authenticator's thread dies the hub stops.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import zmq

from shared import protocol as p
from shared.curve import HandshakeWatch, ServerKeys
from shared.transport import Endpoints, router

if TYPE_CHECKING:
    from shared.zap import HubAuthenticator

log = logging.getLogger("sessiond.hub")

# Deliveries of one idempotent request: re-sent once after its worker died, never after a second.
MAX_DELIVERIES = 2
MAX_QUIET_S = 60.0  # the longest silence a worker may announce (Heartbeat.quiet_s)


@dataclass
class Pending:
    client: bytes
    header: p.RequestHeader
    header_raw: bytes
    body_raw: bytes
    deliveries: int = 0

    def describe(self) -> str:
        """How errors and logs name the request: service, type (from the header) and id."""
        h = self.header
        return f"{h.service} request {h.kind or '(type unknown)'} (request {h.id})"


@dataclass
class WorkerRef:
    identity: bytes
    service: str
    pid: int
    capacity: int
    host: str
    expiry: float  # monotonic time after which it is presumed dead
    last_seen: float
    last_used: float = 0.0
    quiet_until: float = 0.0  # it said it may be silent until then (Heartbeat.quiet_s)
    stats: p.Stats = field(default_factory=dict)
    inflight: dict[tuple[bytes, int], Pending] = field(default_factory=dict)


@dataclass
class Counters:
    requests_total: int = 0
    requests_failed: int = 0
    requests_timed_out: int = 0
    malformed_dropped: int = 0


class Hub:
    def __init__(
        self,
        ctx: zmq.Context,
        endpoints: Endpoints,
        *,
        heartbeat_interval_s: float,
        heartbeat_expiry_s: float,
        local_handler: Callable[[p.RequestBody], p.ReplyBody],
        curve: ServerKeys | None = None,
        on_demand: frozenset[str] = frozenset(),
    ) -> None:
        self.auth: HubAuthenticator | None = None
        self.watches: list[HandshakeWatch] = []
        if curve is not None:  # the ZAP handler answers before the first peer can connect
            from shared.zap import HubAuthenticator  # only with CURVE: see shared.zap

            self.auth = HubAuthenticator(ctx, curve)
            self.auth.start()
        try:
            self.frontend = router(ctx, endpoints.clients, curve, "clients")
            self.backend = router(ctx, endpoints.workers, curve, "workers")
        except zmq.ZMQError:
            if self.auth is not None:
                self.auth.stop()
            raise
        if curve is not None:
            self.watches = [HandshakeWatch(self.frontend, "clients"),
                            HandshakeWatch(self.backend, "workers")]
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_expiry_s = heartbeat_expiry_s
        self.local_handler = local_handler
        self.on_demand = on_demand  # services whose requests wait for a worker to be started
        self.workers: dict[bytes, WorkerRef] = {}
        self.queues: dict[str, deque[Pending]] = {}
        self.counters = Counters()
        self.commands: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self.intake_open = True
        self.last_client_activity = time.monotonic()
        self.gateways: dict[bytes, float] = {}  # client identity -> last seen (monotonic)
        self._running = True
        self._next_heartbeat = 0.0

    # ------------------------------------------------------------ queries
    def inflight_count(self) -> int:
        return sum(len(w.inflight) for w in list(self.workers.values()))

    def queued_count(self) -> int:
        return sum(len(q) for q in list(self.queues.values()))

    def service_load(self, service: str) -> int:
        """Requests of ``service`` in its workers' hands or queued (a snapshot)."""
        held = sum(len(w.inflight) for w in list(self.workers.values()) if w.service == service)
        return held + len(self.queues.get(service, ()))

    def worker_table(self) -> dict[int, WorkerRef]:
        """pid -> registered worker (a snapshot; read-only outside the hub thread)."""
        return {w.pid: w for w in list(self.workers.values())}

    def registered(self) -> list[WorkerRef]:
        """Every registered worker, wherever it runs (a snapshot)."""
        return list(self.workers.values())

    def auth_refused(self) -> int:
        """Peers refused by CURVE/ZAP on either endpoint."""
        if self.auth is None:
            return 0
        return self.auth.refused + sum(w.refused for w in self.watches)

    def attached_gateways(self, window_s: float = 90.0) -> int:
        now = time.monotonic()
        return sum(1 for seen in list(self.gateways.values()) if now - seen <= window_s)

    # ------------------------------------------------------------ main loop
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.frontend, zmq.POLLIN)
        poller.register(self.backend, zmq.POLLIN)
        for watch in self.watches:
            poller.register(watch.socket, zmq.POLLIN)
        timeout_ms = max(10, int(self.heartbeat_interval_s * 1000 / 2))
        try:
            while self._running:
                events = dict(poller.poll(timeout_ms))
                if self.backend in events:
                    self._drain(self.backend, self._on_worker_frames)
                if self.frontend in events:
                    self._drain(self.frontend, self._on_client_frames)
                for watch in self.watches:
                    if watch.socket in events:
                        watch.read()
                self._run_commands()
                self._tick()
        finally:
            self._close()

    def _close(self) -> None:
        for watch in self.watches:
            watch.close()
        self.frontend.close(0)
        self.backend.close(0)
        if self.auth is not None:
            self.auth.stop()

    def _drain(self, sock: zmq.Socket, handler: Callable[[list[bytes]], None]) -> None:
        for _ in range(1000):  # bounded so one busy socket cannot starve the other
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            try:
                handler(frames)
            except (*p.DecodeErrors, ValueError, IndexError) as exc:
                self.counters.malformed_dropped += 1
                log.warning("dropped malformed message (%d frames): %s", len(frames), exc)

    def _run_commands(self) -> None:
        while True:
            try:
                name, arg = self.commands.get_nowait()
            except queue.Empty:
                return
            if name == "stop_intake":
                self.intake_open = False
                for service in self.on_demand:  # no worker will be started for these now
                    if not any(w.service == service for w in self.workers.values()):
                        for pending in self.queues.pop(service, deque()):
                            self._fail(pending.client, pending.header.id, "unavailable",
                                       "the stack is shutting down")
            elif name == "purge_pid":
                for w in [w for w in self.workers.values() if w.pid == arg]:
                    self._purge(w, "process exited")
            elif name == "stop":
                for w in list(self.workers.values()):
                    self._send_worker(w.identity, p.Disconnect(reason="hub stopping"))
                self._running = False

    # ------------------------------------------------------------ clients
    def _on_client_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 3:
            raise ValueError(f"expected [identity, header, body], got {len(frames)} frames")
        client, header_raw, body_raw = frames
        header = p.request_header_decoder.decode(header_raw)
        now = time.monotonic()
        self.last_client_activity = now
        self.gateways[client] = now
        self.counters.requests_total += 1
        if header.service == p.SERVICE_HUB:
            self._reply(client, header.id, self._local(p.request_body_decoder.decode(body_raw)))
            return
        if not self.intake_open:
            self._fail(client, header.id, "unavailable", "the stack is shutting down")
            return
        if header.service not in p.WORKER_SERVICES:
            self._fail(client, header.id, "bad_request", f"unknown service {header.service!r}")
            return
        pending = Pending(client, header, header_raw, body_raw)
        if (header.service not in self.on_demand
                and not any(w.service == header.service for w in self.workers.values())):
            self._fail(client, header.id, "unavailable", f"no live {header.service} worker")
            return
        self.queues.setdefault(header.service, deque()).append(pending)
        self._dispatch(header.service)

    def _local(self, body: p.RequestBody) -> p.ReplyBody:
        """A request to the hub itself; a bug in answering it must not stop the hub."""
        try:
            return self.local_handler(body)
        except Exception as exc:
            log.exception("hub failed to answer %s", type(body).__name__)
            return p.Error(code="internal", message=f"{type(exc).__name__}: {exc}")

    def _reply(self, client: bytes, request_id: int, body: p.ReplyBody) -> None:
        header = p.encoder.encode(p.ReplyHeader(request_id))
        self.frontend.send_multipart([client, header, p.encoder.encode(body)])

    def _fail(self, client: bytes, request_id: int, code: p.ErrorCode, message: str) -> None:
        if code == "timeout":
            self.counters.requests_timed_out += 1
        else:
            self.counters.requests_failed += 1
        self._reply(client, request_id, p.Error(code=code, message=message))

    # ------------------------------------------------------------ workers
    def _on_worker_frames(self, frames: list[bytes]) -> None:
        identity, control_raw, *rest = frames
        msg = p.worker_control_decoder.decode(control_raw)
        now = time.monotonic()
        worker = self.workers.get(identity)
        if worker is not None:
            worker.expiry = now + self.heartbeat_expiry_s
            worker.last_seen = now
        match msg:
            case p.Ready(service=service, pid=pid, capacity=capacity, host=host):
                if service not in p.WORKER_SERVICES:
                    raise ValueError(f"worker offers unknown service {service!r}")
                if worker is not None:
                    self._purge(worker, "re-registered")
                self.workers[identity] = WorkerRef(
                    identity, service, pid, max(1, capacity), host,
                    expiry=now + self.heartbeat_expiry_s, last_seen=now,
                )
                log.info("worker %s ready for %s (pid %d%s)", identity.decode(errors="replace"),
                         service, pid, f" on {host}" if host else "")
                self._dispatch(service)
            case p.Reply(client=client) if worker is not None:
                header_raw, body_raw = rest
                header = p.reply_header_decoder.decode(header_raw)
                if worker.inflight.pop((client, header.id), None) is not None:
                    self.frontend.send_multipart([client, header_raw, body_raw])
                self._dispatch(worker.service)
            case p.Heartbeat(stats=stats, quiet_s=quiet_s) if worker is not None:
                worker.stats = stats
                if quiet_s > 0:  # bounded: a worker cannot ask to be trusted for ever
                    worker.quiet_until = now + min(quiet_s, MAX_QUIET_S)
            case p.Disconnect(reason=reason) if worker is not None:
                self._purge(worker, f"disconnected: {reason}")
            case _:
                # Unknown sender (e.g. this hub restarted): make it register again.
                self._send_worker(identity, p.Disconnect(reason="not registered"))

    def _send_worker(self, identity: bytes, control: p.HubControl, *extra: bytes) -> None:
        self.backend.send_multipart([identity, p.encoder.encode(control), *extra])

    def _dispatch(self, service: str) -> None:
        q = self.queues.get(service)
        now_wall = time.time()
        while q:
            free = [w for w in self.workers.values()
                    if w.service == service and len(w.inflight) < w.capacity]
            if not free:
                return
            pending = q.popleft()
            if pending.header.deadline < now_wall:
                self._fail(pending.client, pending.header.id, "timeout", "deadline passed in queue")
                continue
            worker = min(free, key=lambda w: (len(w.inflight), w.last_used))
            worker.last_used = time.monotonic()
            pending.deliveries += 1
            worker.inflight[(pending.client, pending.header.id)] = pending
            self._send_worker(worker.identity, p.Deliver(client=pending.client),
                              pending.header_raw, pending.body_raw)

    def _purge(self, worker: WorkerRef, why: str) -> None:
        self.workers.pop(worker.identity, None)
        log.warning("worker %s (%s, pid %d) purged: %s; %d request(s) in hand",
                    worker.identity.decode(errors="replace"), worker.service, worker.pid, why,
                    len(worker.inflight))
        retry: list[Pending] = []
        for pending in worker.inflight.values():
            if pending.header.idempotent and pending.deliveries < MAX_DELIVERIES:
                retry.append(pending)
                continue
            if pending.header.idempotent:
                log.error("%s was in hand at %d %s workers that were lost; not sending it again",
                          pending.describe(), pending.deliveries, worker.service)
                message = (f"{pending.describe()} was in hand at {pending.deliveries} "
                           f"{worker.service} workers that were lost (the last: {why}); it is "
                           "not sent again, as it may be what kills them")
            else:
                message = (f"the {worker.service} worker was lost ({why}) while handling "
                           f"{pending.describe()}; it is not re-sent because it is not "
                           "idempotent, and it may or may not have taken effect")
            # Not "unavailable": clients retry that, and this request must not run again.
            self._fail(pending.client, pending.header.id, "internal", message)
        worker.inflight.clear()
        if retry:
            q = self.queues.setdefault(worker.service, deque())
            q.extendleft(reversed(retry))
        if (worker.service not in self.on_demand
                and not any(w.service == worker.service for w in self.workers.values())):
            # Nobody left to serve what is queued: fail fast rather than hang.
            for pending in self.queues.pop(worker.service, deque()):
                self._fail(pending.client, pending.header.id, "unavailable",
                           f"no live {worker.service} worker")
        else:
            self._dispatch(worker.service)

    # ------------------------------------------------------------ timers
    def _tick(self) -> None:
        if self.auth is not None and not self.auth.is_alive():
            raise RuntimeError("the ZAP authenticator's thread died: no peer can be let in")
        now = time.monotonic()
        for worker in [w for w in self.workers.values() if max(w.expiry, w.quiet_until) < now]:
            self._purge(worker, "missed heartbeats")
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_interval_s
            for identity in list(self.workers):
                self._send_worker(identity, p.Heartbeat())
            self._expire_queued()

    def _expire_queued(self) -> None:
        now_wall = time.time()
        for service, q in self.queues.items():
            keep = deque()
            absent = not any(w.service == service for w in self.workers.values())
            why = f" (no {service} worker came up)" if absent else ""
            for pending in q:
                if pending.header.deadline < now_wall:
                    self._fail(pending.client, pending.header.id, "timeout",
                               "deadline passed in queue" + why)
                else:
                    keep.append(pending)
            q.clear()
            q.extend(keep)
