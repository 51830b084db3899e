"""An asyncio client of the hub: one DEALER socket, many requests in flight, matched by id.

A request that gets no answer by its deadline raises ``Timeout``; its late reply is dropped.
Error replies raise the matching ``ServiceError``. With ``retry_unavailable`` an ``unavailable``
answer (no live worker, e.g. during a restart) is retried with backoff until the deadline.

One task reads every reply. If it ever stops (its socket broke), the requests waiting for a reply
fail at once with ``ReplyLost`` and the next request opens a new socket with a new reader.

Another task watches the connection: when it drops (the stack died or stopped), the requests
waiting for a reply fail at once with ``ReplyLost`` too. Their replies can never come (a hub
that restarts knows nothing of them), and waiting out their deadlines (ten minutes for an
import) would only delay the retry on a new stack.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from shared import protocol as p
from shared.config import Config
from shared.curve import ClientKeys, client_keys, handshake_refusal
from shared.errors import (
    BadRequest,
    ReplyLost,
    Timeout,
    Unavailable,
    Unreachable,
    error_from_code,
)
from shared.limits import INVALID_TEXT_MARK
from shared.transport import dealer, endpoints

log = logging.getLogger("sessiond.client")

# The DEALER only queues to live connections, so a send that waits this long has no hub.
CONNECT_WAIT_S = 1.0

# ``retry_unavailable``: the first retry after this, then twice as long each time up to the cap.
# A worker that starts or restarts takes ~0.3-1 s: a request retried at most 0.1 s apart reaches
# it at most 0.1 s after it is ready (with a 0.5 s cap the first search on a stack that was
# starting waited ~0.2-0.4 s more), for ~10 tiny requests a second to the hub meanwhile.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 0.1

# The gateway's stdin marks undecodable input with this noncharacter (gateway/stdio.py).
INVALID_TEXT_MARK_UTF8 = INVALID_TEXT_MARK.encode()


WATCHED = (zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
           | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
           | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class HubClient:
    def __init__(self, endpoint: str, *, default_timeout_s: float = 10.0,
                 curve: ClientKeys | None = None) -> None:
        self.endpoint = endpoint
        self.default_timeout_s = default_timeout_s
        self.curve = curve
        self.refused = ""  # why the hub refused the last connection (CURVE), if it did
        self._ctx = zmq.asyncio.Context.instance()
        self._sock: zmq.asyncio.Socket | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[p.ReplyBody]] = {}
        self._reader: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None

    def _socket(self) -> zmq.asyncio.Socket:
        if self._sock is None or self._sock.closed or self._reader is None or self._reader.done():
            self._close_socket()
            self._sock = dealer(self._ctx, self.endpoint, curve=self.curve)
            loop = asyncio.get_running_loop()
            self._watcher = loop.create_task(self._watch(self._sock.get_monitor_socket(WATCHED)))
            self._reader = loop.create_task(self._read(self._sock))
            self._reader.add_done_callback(self._reader_stopped)
        return self._sock

    def _fail_waiting(self, why: str) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ReplyLost(
                    f"the connection to the hub broke ({why}); the request's outcome is unknown"))
        self._waiting.clear()

    async def _watch(self, monitor: zmq.asyncio.Socket) -> None:
        """Fail what waits for a reply whenever the connection to the hub drops."""
        refused_now = False
        try:
            while True:
                try:
                    event = parse_monitor_message(await monitor.recv_multipart())
                except zmq.ZMQError:
                    return  # the socket it watched was closed
                refusal = handshake_refusal(event)
                if refusal:
                    if refusal != self.refused:
                        log.error("%s: %s", self.endpoint, refusal)
                    self.refused = refusal
                    refused_now = True  # its disconnect is no hub going away: none was there
                    continue
                if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.refused = ""
                    continue
                if event["event"] == zmq.EVENT_DISCONNECTED and refused_now:
                    refused_now = False
                    continue
                if event["event"] == zmq.EVENT_DISCONNECTED and self._waiting:
                    log.warning("the connection to the hub dropped; failing %d waiting "
                                "request(s)", len(self._waiting))
                    self._fail_waiting("the hub went away")
        finally:
            monitor.close(0)

    def _reader_stopped(self, task: asyncio.Task) -> None:
        """The reader ended without ``close()``: fail what waits on it (no reply can come)."""
        if task is not self._reader:
            return  # closed or replaced on purpose
        exc = None if task.cancelled() else task.exception()
        why = "cancelled" if exc is None else f"{type(exc).__name__}: {exc}"
        log.error("the reply reader stopped (%s); failing %d waiting request(s); the next "
                  "request reconnects", why, len(self._waiting))
        self._fail_waiting(why)

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            try:
                header = p.reply_header_decoder.decode(frames[0])
                body = p.reply_body_decoder.decode(frames[1])
            except (*p.DecodeErrors, IndexError) as exc:
                log.warning("dropped malformed reply: %s", exc)
                continue
            fut = self._waiting.pop(header.id, None)
            if fut is not None and not fut.done():
                fut.set_result(body)

    async def request(
        self,
        service: str,
        body: p.RequestBody,
        *,
        timeout_s: float | None = None,
        idempotent: bool = False,
        retry_unavailable: bool = False,
    ) -> p.ReplyBody:
        timeout_s = self.default_timeout_s if timeout_s is None else timeout_s
        deadline_mono = time.monotonic() + timeout_s
        delay = RETRY_FIRST_S
        unavailable: Unavailable | None = None  # the last answer of an attempt retried
        while True:
            try:
                return await self._once(service, body, deadline_mono, idempotent)
            except Unreachable:
                raise  # no stack to wait for: the caller decides whether to start one
            except Timeout:
                # A retry sent with little time left may expire on its way (a loaded hub): the
                # service's own answer says more than "deadline passed".
                if unavailable is not None:
                    raise unavailable from None
                raise
            except Unavailable as exc:
                unavailable = exc
                left = deadline_mono - time.monotonic()
                if not retry_unavailable or left <= delay:
                    raise
                if isinstance(exc, ReplyLost) and not idempotent:
                    raise  # it may have run: only the caller can tell whether to send it again
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _once(self, service: str, body: p.RequestBody, deadline_mono: float,
                    idempotent: bool) -> p.ReplyBody:
        try:
            body_raw = p.encoder.encode(body)
        except UnicodeEncodeError as exc:  # lone surrogates: JSON can carry them, UTF-8 cannot
            raise BadRequest(f"text is not valid Unicode: {exc.reason}") from None
        if INVALID_TEXT_MARK_UTF8 in body_raw:
            raise BadRequest("text is not valid Unicode: it held invalid UTF-8 bytes or a lone "
                             "surrogate (marked U+FFFF); send UTF-8 text")
        request_id = next(self._ids)
        left = deadline_mono - time.monotonic()
        header = p.RequestHeader(id=request_id, service=service, deadline=time.time() + left,
                                 idempotent=idempotent, kind=type(body).__name__)
        fut: asyncio.Future[p.ReplyBody] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        try:
            sock = self._socket()
            try:
                await asyncio.wait_for(
                    sock.send_multipart([p.encoder.encode(header), body_raw]),
                    timeout=max(0.0, min(left, CONNECT_WAIT_S)))
            except TimeoutError:
                why = f": {self.refused}" if self.refused else ""
                raise Unreachable(f"the sessiond stack is not reachable{why}") from None
            try:
                reply = await asyncio.wait_for(fut, timeout=max(0.0, deadline_mono - time.monotonic()))
            except TimeoutError:
                raise Timeout(f"no answer from {service} within {left:.1f}s") from None
        finally:
            self._waiting.pop(request_id, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # failed by a dropped connection while we still sent: seen
        if isinstance(reply, p.Error):
            raise error_from_code(reply.code, reply.message)
        return reply

    @classmethod
    def for_config(cls, cfg: Config, *, default_timeout_s: float | None = None) -> HubClient:
        """A client of the hub this config names, with its CURVE client keys when it has some."""
        timeout = cfg.request_timeout_s if default_timeout_s is None else default_timeout_s
        return cls(endpoints(cfg).clients, default_timeout_s=timeout,
                   curve=client_keys(cfg, "client"))

    def _close_socket(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self._sock is not None:
            if not self._sock.closed:
                self._sock.disable_monitor()
            self._sock.close(0)
            self._sock = None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        self._close_socket()
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()
        self._waiting.clear()
