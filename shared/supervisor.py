"""The supervisor (``sessiond stack``): owns the hub, starts and restarts the workers, stops all.

One stack per data dir, enforced by an flock held for the supervisor's lifetime. Children run in
their own process groups with stdout/stderr in log files, so nothing reaches a stdio channel and
a terminal's Ctrl+C reaches only the supervisor, which then stops everything in order:
stop intake -> drain in-flight requests -> stop embed and quality workers -> stop the store (it
checkpoints DuckDB on SIGTERM) -> exit 0. They stay in the supervisor's session, not sessions
of their own: Linux (with ``sched_autogroup``) schedules each session as one group, sharing the
cores fairly between groups whatever the nice values inside them, so an embed worker in a
session of its own took a core's share from the store in spite of its bulk lanes' lower
priority, and a store ack waited ~3 ms for a core while a backfill ran (``bench/busy_latency``:
p50 5.1-7.5 ms; 3.5-4.3 ms in one group). If the hub thread dies, no request can reach a worker:
the supervisor stops the workers (the store still checkpoints) and exits with ``CRASHED``, and
the next gateway call starts a new stack.

``sessiond hub`` is the same code without children (``spawn_workers=False``): the broker alone,
which workers started elsewhere (``sessiond worker``) join over TCP; it never idles out, and
``status`` lists whatever workers registered.

The embed pool scales with demand: ``embed_workers_at_rest`` workers run always; the others
("parked" while stopped) start when the embed service has had ``SCALE_UP_DEMAND`` requests in
hand or queued for ``SCALE_UP_AFTER_S`` (the store's filler backfilling an import keeps several
128-text requests there; a query is answered in milliseconds), and stop again after
``embed_park_after_s`` with none. Each parked worker is ~150 MB of RSS not held at rest.
(By default there is one embed worker: it spreads a backlog over its own bulk lanes.)

The quality worker runs on demand too (``quality_park_after_s`` > 0): parked at the start, it
is started when the hub holds a request for it (the hub queues requests of an on-demand service
while it has no worker) and parked again after ``quality_park_after_s`` without one: ~30 MB
not held while no session, checkpoint or quality tool runs.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from shared import protocol as p
from shared.config import Config, to_environ
from shared.curve import server_keys
from shared.errors import ConfigError
from shared.exitcodes import ExitCode
from shared.hub import Hub, WorkerRef
from shared.liveness import write_alive
from shared.transport import bind_endpoints
from shared.version import VERSION

log = logging.getLogger("sessiond.supervisor")

STARTUP_TIMEOUT_S = 30.0  # a worker that has not registered by then is killed and restarted
STABLE_AFTER_S = 10.0  # a worker that ran this long resets its restart backoff
STORE_STOP_S = 60.0  # a large store writes its index snapshot as it stops (100k ~0.5 s,
# 220k ~4 s, 1M 15-17 s on a loaded 2-core machine); killed sooner, the next open rebuilds (~60 s)
SCALE_UP_DEMAND = 2  # embed requests in hand or queued ...
SCALE_UP_AFTER_S = 0.5  # ... for this long: start the parked embed workers
# An embed worker's lanes are threads, and glibc gives each thread that allocates a heap arena of
# its own, whose freed memory malloc_trim could not give back: after a 1,000-text import a worker
# stayed at ~150 MB instead of ~115. With one arena it goes back (measured in process: 112-113
# MB after the trim against 113-133) and its lanes embed as fast (134 texts/s either way).
# Applies unless the environment sets it.
EMBED_ENV = {"MALLOC_ARENA_MAX": "1"}


@dataclass
class Child:
    name: str
    service: str
    module: str
    env: dict[str, str] = field(default_factory=dict)  # the environment's defaults for it
    proc: subprocess.Popen | None = None
    restarts: int = 0
    failures: int = 0  # consecutive quick deaths, drives the backoff
    started_at: float = 0.0
    registered_at: float | None = None
    next_start_at: float = 0.0
    log_file: Path | None = field(default=None, repr=False)
    on_demand: bool = False  # an embed worker beyond those that run at rest
    wanted: bool = True  # False: parked (stopped on purpose, not restarted)
    parking: bool = False  # sent SIGTERM to park it; its exit is not a crash, even if wanted again

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


class Supervisor:
    def __init__(self, cfg: Config, *, spawn_workers: bool = True) -> None:
        self.cfg = cfg
        self.started = time.monotonic()
        self.spawn_workers = spawn_workers
        self.children: list[Child] = []
        if spawn_workers:
            self.children.append(Child("store", p.SERVICE_STORE, "store_worker"))
            at_rest = min(cfg.embed_workers, cfg.embed_workers_at_rest)
            self.children += [Child(f"embed-{i}", p.SERVICE_EMBED, "embed_worker", EMBED_ENV,
                                    on_demand=i >= at_rest, wanted=i < at_rest)
                              for i in range(cfg.embed_workers)]
            on_demand = cfg.quality_park_after_s > 0
            self.children.append(Child("quality", p.SERVICE_QUALITY, "quality_worker",
                                       on_demand=on_demand, wanted=not on_demand))
        self.host = socket.gethostname()
        self._next_alive = 0.0
        self.stop_reason = ""
        self.crashed = False  # a part of the supervisor itself failed: stop and exit non-zero
        self.hub: Hub | None = None
        self._lock_fd: int | None = None
        self._demand_since: float | None = None  # embed demand high since (monotonic)
        self._quiet_since: float | None = None  # no embed request in hand since
        self._quality_used_at = 0.0  # a quality request was last in hand or queued (monotonic)

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if not self._take_lock():
            log.error("another stack already owns %s", self.cfg.home)
            return ExitCode.ALREADY_RUNNING
        ctx = zmq.Context.instance()
        eps = bind_endpoints(self.cfg)
        try:
            self.hub = Hub(ctx, eps, heartbeat_interval_s=self.cfg.heartbeat_interval_s,
                           heartbeat_expiry_s=self.cfg.heartbeat_expiry_s,
                           local_handler=self._hub_request, curve=server_keys(self.cfg),
                           on_demand=frozenset(c.service for c in self.children
                                               if c.service == p.SERVICE_QUALITY
                                               and c.on_demand))
        except ConfigError as exc:
            log.error("cannot start the hub: %s", exc)
            return ExitCode.CONFIG
        except zmq.ZMQError as exc:
            log.error("cannot listen on %s / %s: %s", eps.clients, eps.workers, exc)
            return ExitCode.CONFIG
        hub_thread = threading.Thread(target=self._run_hub, name="hub", daemon=True)
        hub_thread.start()
        self._write_stack_file(eps.clients, eps.workers)
        log.info("%s %s up (pid %d), hub at %s (workers at %s)%s",
                 "stack" if self.spawn_workers else "hub", VERSION, os.getpid(), eps.clients,
                 eps.workers, " with CURVE" if self.hub.auth else "")
        try:
            while not self.stop_reason:
                if not hub_thread.is_alive():
                    self.crashed = True
                    self.stop_reason = "the hub thread died"
                    break
                self._supervise()
                time.sleep(0.05)
            log.log(logging.ERROR if self.crashed else logging.INFO,
                    "stopping: %s", self.stop_reason)
            self._shutdown()
        finally:
            self.hub.commands.put(("stop", None))
            hub_thread.join(timeout=2)
            self._stack_file().unlink(missing_ok=True)
        log.info("stack stopped")
        return ExitCode.CRASHED if self.crashed else ExitCode.OK

    def _run_hub(self) -> None:
        try:
            self.hub.run()
        except BaseException:
            log.exception("the hub thread died")
            raise

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_reason = self.stop_reason or signal.Signals(signum).name

    def _take_lock(self) -> bool:
        fd = os.open(self.cfg.run_dir / "supervisor.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd  # held (and released by the kernel) for the life of this process
        return True

    def _stack_file(self) -> Path:
        return self.cfg.run_dir / "stack.json"

    def _write_stack_file(self, clients: str, workers: str) -> None:
        info = {"pid": os.getpid(), "version": VERSION, "started_at": time.time(),
                "clients": clients, "workers": workers}
        tmp = self._stack_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        tmp.replace(self._stack_file())

    # ------------------------------------------------------------ children
    def _local_workers(self) -> dict[int, WorkerRef]:
        """pid -> registered worker on this host (a pid elsewhere may repeat one of ours)."""
        return {w.pid: w for w in self.hub.registered() if w.host in ("", self.host)}

    def _supervise(self) -> None:
        now = time.monotonic()
        if now >= self._next_alive:
            self._next_alive = now + 1.0
            write_alive(self.cfg, "hub", {"workers": len(self.hub.registered())})
        registered = self._local_workers()
        self._scale_embed(now)
        self._scale_quality(now)
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                self._on_exit(child, now)
            if child.proc is None:
                if child.wanted and now >= child.next_start_at:
                    self._spawn(child)
                continue
            if child.proc.pid in registered:
                child.registered_at = now
            elif self._silent(child, now):
                log.warning("%s (pid %d) is silent; killing it", child.name, child.proc.pid)
                child.proc.kill()
        idle = now - self.hub.last_client_activity
        if self.spawn_workers and idle > self.cfg.idle_timeout_s:  # a hub alone never idles out
            self.stop_reason = f"idle for {idle:.0f}s with no gateway traffic"

    def _scale_embed(self, now: float) -> None:
        """Start the parked embed workers while a backlog is there; park them when it is gone."""
        extra = [c for c in self.children if c.on_demand and c.service == p.SERVICE_EMBED]
        if not extra:
            return
        demand = self.hub.service_load(p.SERVICE_EMBED)
        self._demand_since = (self._demand_since or now) if demand >= SCALE_UP_DEMAND else None
        self._quiet_since = (self._quiet_since or now) if demand == 0 else None
        if self._demand_since is not None and now - self._demand_since >= SCALE_UP_AFTER_S:
            for child in extra:
                if not child.wanted:
                    log.info("embed demand %d for %.1fs: starting %s", demand,
                             now - self._demand_since, child.name)
                    child.wanted, child.next_start_at = True, now
        elif (self._quiet_since is not None
              and now - self._quiet_since >= self.cfg.embed_park_after_s):
            for child in extra:
                if child.wanted:
                    log.info("no embed demand for %.0fs: parking %s", now - self._quiet_since,
                             child.name)
                    child.wanted = False
                    if child.pid is not None:
                        child.parking = True
                        child.proc.send_signal(signal.SIGTERM)

    def _scale_quality(self, now: float) -> None:
        """Start the parked quality worker when a request waits for it; park it when it has
        had none for ``quality_park_after_s``."""
        child = next((c for c in self.children
                      if c.on_demand and c.service == p.SERVICE_QUALITY), None)
        if child is None:
            return
        if self.hub.service_load(p.SERVICE_QUALITY):
            self._quality_used_at = now
            if not child.wanted:
                log.info("a quality request waits: starting %s", child.name)
                child.wanted, child.next_start_at = True, now
        elif (child.wanted and child.pid is not None and child.registered_at is not None
              and now - max(self._quality_used_at, child.started_at)
              >= self.cfg.quality_park_after_s):
            log.info("no quality request for %.0fs: parking %s",
                     now - max(self._quality_used_at, child.started_at), child.name)
            child.wanted, child.parking = False, True
            child.proc.send_signal(signal.SIGTERM)

    def _silent(self, child: Child, now: float) -> bool:
        if child.registered_at is None:
            return now - child.started_at > STARTUP_TIMEOUT_S
        return now - child.registered_at > 2 * self.cfg.heartbeat_expiry_s

    def _spawn(self, child: Child) -> None:
        child.log_file = self.cfg.log_dir / f"{child.name}.out"
        with open(child.log_file, "ab") as out:
            child.proc = subprocess.Popen(
                [sys.executable, "-m", child.module, "--name", child.name],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env={**child.env, **os.environ, **to_environ(self.cfg)},
                process_group=0, close_fds=True,  # not a session: see the module's docstring
            )
        child.started_at = time.monotonic()
        child.registered_at = None
        log.info("started %s (pid %d)", child.name, child.proc.pid)

    def _on_exit(self, child: Child, now: float) -> None:
        code = child.proc.returncode
        pid = child.proc.pid
        self.hub.commands.put(("purge_pid", pid))
        child.proc = None
        if not child.wanted or child.parking:
            # Parked; if demand came back while it stopped, it starts again at once.
            log.info("%s (pid %d) parked (exit code %s)", child.name, pid, code)
            child.parking = False
            child.next_start_at = now
            return
        child.restarts += 1
        child.failures = 0 if now - child.started_at > STABLE_AFTER_S else child.failures + 1
        delay = min(self.cfg.restart_backoff_s * 2 ** max(0, child.failures - 1),
                    self.cfg.restart_backoff_max_s)
        child.next_start_at = now + delay
        log.warning("%s (pid %d) exited with %s; restart #%d in %.2fs",
                    child.name, pid, code, child.restarts, delay)

    # ------------------------------------------------------------ status
    def _hub_request(self, body: p.RequestBody) -> p.ReplyBody:
        """Requests addressed to service "hub"; runs on the hub thread."""
        match body:
            case p.Ping():
                return p.Pong(service=p.SERVICE_HUB, pid=os.getpid(),
                              uptime_s=time.monotonic() - self.started)
            case p.StackStatus():
                return self.stack_info()
            case _:
                return p.Error(code="bad_request", message=f"hub does not handle {type(body).__name__}")

    def stack_info(self) -> p.StackInfo:
        hub = self.hub
        table = self._local_workers()
        workers = []
        for child in list(self.children):
            pid = child.pid
            if pid is None:
                state = ("stopped" if self.stop_reason else
                         "parked" if not child.wanted else "restarting")
                age, inflight = None, 0
            elif pid in table:
                ref = table[pid]
                age, inflight = time.monotonic() - ref.last_seen, len(ref.inflight)
                state = "busy" if inflight else "ready"
            else:
                state, age, inflight = "starting", None, 0
            workers.append(p.WorkerInfo(
                name=child.name, service=child.service, pid=pid, state=state,
                restarts=child.restarts, last_heartbeat_age_s=age, inflight=inflight,
                stats=table[pid].stats if pid in table else {}))
        ours = {c.pid for c in self.children}
        for ref in hub.registered():  # workers that joined from elsewhere
            if ref.pid in table and ref.pid in ours:
                continue
            name = ref.identity.decode(errors="replace") + (f"@{ref.host}" if ref.host else "")
            workers.append(p.WorkerInfo(
                name=name, service=ref.service, pid=ref.pid,
                state="busy" if ref.inflight else "ready", restarts=0,
                last_heartbeat_age_s=time.monotonic() - ref.last_seen,
                inflight=len(ref.inflight), stats=ref.stats))
        c = hub.counters
        return p.StackInfo(
            pid=os.getpid(), version=VERSION, uptime_s=time.monotonic() - self.started,
            transport=self.cfg.transport, workers=workers, queued=hub.queued_count(),
            requests_total=c.requests_total, requests_failed=c.requests_failed,
            requests_timed_out=c.requests_timed_out, malformed_dropped=c.malformed_dropped,
            gateways=hub.attached_gateways(),
            idle_timeout_s=self.cfg.idle_timeout_s if self.spawn_workers else 0.0,
            idle_s=time.monotonic() - hub.last_client_activity, auth_refused=hub.auth_refused(),
        )

    # ------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        hub = self.hub
        if not self.crashed:  # a dead hub neither takes commands nor drains
            self._step("stop intake", lambda: hub.commands.put(("stop_intake", None)))
            self._step("drain", self._drain)
        others = [c for c in self.children if c.service != p.SERVICE_STORE]
        stores = [c for c in self.children if c.service == p.SERVICE_STORE]
        self._step("stop workers", lambda: self._stop_children(others, self.cfg.stop_grace_s))
        self._step("stop store", lambda: self._stop_children(stores, STORE_STOP_S))

    def _step(self, name: str, action) -> None:
        t0 = time.monotonic()
        result = action()
        c = self.hub.counters
        log.info("shutdown step %-12s %6.0f ms  %s  requests run=%d failed=%d timed_out=%d",
                 name, (time.monotonic() - t0) * 1000, result or "",
                 c.requests_total, c.requests_failed, c.requests_timed_out)

    def _drain(self) -> str:
        deadline = time.monotonic() + self.cfg.drain_grace_s
        while time.monotonic() < deadline:
            left = self.hub.inflight_count() + self.hub.queued_count()
            if left == 0:
                return "drained"
            time.sleep(0.02)
        return f"{self.hub.inflight_count() + self.hub.queued_count()} request(s) abandoned"

    def _stop_children(self, children: list[Child], grace: float) -> str:
        live = [c for c in children if c.pid is not None]
        for child in live:
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        killed = 0
        for child in live:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
                killed += 1
        codes = ",".join(f"{c.name}={c.proc.returncode}" for c in live)
        return f"exit codes {codes or 'none'}; killed {killed}"
