"""Start a real stack in a throw-away data dir for a benchmark, and summarise latencies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from shared import protocol as p
from shared.client import HubClient
from shared.config import Config, load_config
from shared.errors import ServiceError
from shared.transport import endpoints

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in samples_s)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"p50_ms": round(q[49], 3), "p95_ms": round(q[94], 3), "n": len(ms)}


def stack_env(home: Path, **settings: object) -> dict[str, str]:
    """This process's environment minus any ``SESSIOND_*``, plus the data dir and settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env["SESSIOND_HOME"] = str(home)
    env.update({f"SESSIOND_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@dataclass
class RunningStack:
    cfg: Config
    env: dict[str, str]  # the stack's environment: give it to a gateway to reach this stack
    proc: subprocess.Popen
    cold_start_s: float  # from spawning ``sessiond stack`` until every worker is ready
    ready_s: dict[str, float]  # per worker (and "hub"): first seen ready, s after the spawn


@contextlib.contextmanager
def running_stack(home: Path | None = None, *, ready_timeout_s: float = 60, **settings: object):
    """Like :func:`stack`, but yields a :class:`RunningStack` (with the cold start time).

    With ``home``, the stack serves that existing data dir (e.g. a pre-populated
    ``memory.duckdb``), which is left in place afterwards; without, a temp dir is made and removed.
    """
    own = home is None
    home = Path(tempfile.mkdtemp(prefix="sd-bench-")) if own else Path(home)
    env = stack_env(home, **settings)
    cfg = load_config(env)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sessiond", "stack"], env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True)  # as a gateway starts it (stack_control)
    try:
        ready = asyncio.run(wait_ready(cfg, ready_timeout_s, started=t0, proc=proc))
        yield RunningStack(cfg, env, proc, ready["all"], ready)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        if own:
            shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def stack(home: Path | None = None, **settings: object):
    """A foreground stack with ``SESSIOND_<KEY>=value`` settings; yields its Config.

    In a temp data dir removed afterwards, or in ``home`` (kept) if given."""
    with running_stack(home, **settings) as running:
        yield running.cfg


async def wait_ready(cfg: Config, timeout_s: float = 60, *, started: float | None = None,
                     proc: subprocess.Popen | None = None) -> dict[str, float]:
    """Wait until every worker of the stack is ready. Returns when the hub and each worker were
    first seen ready ("all": every one), in seconds since ``started`` (a ``perf_counter`` time;
    default: now). Polls every 50 ms; gives up early if ``proc`` (the stack) exits."""
    started = time.perf_counter() if started is None else started
    client = HubClient(endpoints(cfg).clients)
    deadline = time.monotonic() + timeout_s
    seen: dict[str, float] = {}
    try:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the stack exited with code {proc.returncode}; "
                                   f"see {cfg.log_dir}")
            try:
                info = await client.request(p.SERVICE_HUB, p.StackStatus(), timeout_s=1)
            except ServiceError:
                info = None  # not up yet; keep polling until the deadline
            if info is not None:
                now = time.perf_counter() - started
                seen.setdefault("hub", now)
                for w in info.workers:
                    if w.state in ("ready", "busy"):
                        seen.setdefault(w.name, now)
                if all(w.state in ("ready", "parked") for w in info.workers):
                    seen["all"] = now
                    return seen
            await asyncio.sleep(0.05)
        raise RuntimeError("stack did not become ready")
    finally:
        client.close()
