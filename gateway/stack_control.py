"""Find, start and stop the stack that serves a data dir.

Gateways find the stack through the run dir (the hub's socket and ``run/stack.json``). If none
answers, a gateway starts one, detached into its own session so it outlives the gateway and
serves the next Claude window. A file lock makes two gateways starting at once create one stack;
the supervisor's own lifetime lock makes a second stack impossible even without it.

A gateway given a hub elsewhere (``hub_host``, ``sessiond serve --connect``) never starts one:
it waits for that hub to answer and otherwise says it does not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from shared import protocol as p
from shared.client import HubClient
from shared.config import Config, make_private_dir, to_environ
from shared.errors import ServiceError, StackError

if TYPE_CHECKING:
    import psutil  # imported where used: ~20-70 ms of a gateway's start otherwise
    from filelock import FileLock  # (and ~10 ms: only a gateway that starts a stack needs it)

log = logging.getLogger("sessiond.gateway")

START_TIMEOUT_S = 15.0


async def hub_alive(client: HubClient, timeout_s: float = 0.5) -> bool:
    try:
        await client.request(p.SERVICE_HUB, p.Ping(), timeout_s=timeout_s)
    except ServiceError:
        return False
    return True


async def ensure_stack(cfg: Config, client: HubClient) -> None:
    """Return once a stack answers for this data dir, starting one if needed."""
    if cfg.hub_host:
        if await hub_alive(client, START_TIMEOUT_S / 3):
            return
        refused = f" ({client.refused})" if client.refused else ""
        raise StackError(f"the hub at {client.endpoint} does not answer{refused}; this gateway "
                         "uses that hub and starts no stack of its own")
    if stack_runs(cfg) and await hub_alive(client, START_TIMEOUT_S / 3):
        return
    # Off the event loop (a gateway starts its stack while it answers ``initialize``): the
    # lock's import and wait, and the launcher's run (a Python start, ~0.1-0.2 s).
    lock = await asyncio.to_thread(_spawn_lock, cfg)
    try:
        if not stack_runs(cfg):
            await asyncio.to_thread(spawn_detached, cfg)
        # else another gateway started it while we waited for the lock: wait for its hub
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if await hub_alive(client):
                return
            await asyncio.sleep(0.05)
        raise StackError(f"the stack did not start; see {cfg.log_dir / 'stack.out'}")
    finally:
        lock.release()


def _spawn_lock(cfg: Config) -> FileLock:
    """The data dir's stack-starting lock, held; StackError if another holds it too long."""
    from filelock import FileLock
    from filelock import Timeout as LockTimeout

    lock = FileLock(str(cfg.run_dir / "spawn.lock"))
    try:
        lock.acquire(timeout=START_TIMEOUT_S)
    except LockTimeout as exc:
        raise StackError(f"timed out waiting for {lock.lock_file}") from exc
    return lock


# The launcher of ``spawn_detached``: a Python that imports nothing but ``subprocess`` (~20 ms;
# ``sessiond stack --detach`` before it loaded the command line and the config first, ~130 ms).
_LAUNCHER = ("import subprocess, sys\n"
             "with open(sys.argv[1], 'ab') as out:\n"
             "    subprocess.Popen([sys.executable, '-m', 'sessiond', 'stack'],\n"
             "                     stdin=subprocess.DEVNULL, stdout=out, stderr=out,\n"
             "                     start_new_session=True, close_fds=True)\n")


def spawn_detached(cfg: Config) -> None:
    """Start ``sessiond stack`` in a new session, reparented away from this process, its output
    in ``<logs>/stack.out``.

    A short-lived launcher does the final spawn and exits at once, so the stack is never this
    process's child (no zombie when it exits first) and no signal sent to us reaches it.
    """
    log.info("starting a stack for %s", cfg.home)
    env = {**os.environ, **to_environ(cfg)}
    make_private_dir(cfg.log_dir)
    subprocess.run([sys.executable, "-c", _LAUNCHER, str(cfg.log_dir / "stack.out")], env=env,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=30)


def read_stack_file(cfg: Config) -> dict | None:
    try:
        return json.loads((cfg.run_dir / "stack.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stack_runs(cfg: Config) -> bool:
    """Does a supervisor run for this data dir? Read from ``/proc`` where it can be (a gateway
    starting next to a running stack then never imports psutil), else ``stack_process``."""
    info = read_stack_file(cfg)
    if not info:
        return False
    if not os.path.isdir("/proc/self"):  # no procfs (macOS): ask psutil
        return stack_process(cfg) is not None
    try:
        pid = int(info["pid"])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False  # no such process (or not one we can read): none runs for us
    return b"stack" in args and state != b"Z"


def stack_process(cfg: Config) -> psutil.Process | None:
    """The live supervisor process for this data dir, if any."""
    import psutil

    info = read_stack_file(cfg)
    if not info:
        return None
    try:
        proc = psutil.Process(int(info["pid"]))
        if "stack" in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except (psutil.Error, KeyError, ValueError):
        return None
    return None


def stop_stack(cfg: Config, timeout_s: float = 90.0) -> bool:
    """SIGTERM the stack and wait for it (a 1M-memory store takes ~15 s to write its snapshot;
    the supervisor gives it up to ``STORE_STOP_S``); False if none was running."""
    import psutil

    proc = stack_process(cfg)
    if proc is None:
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except psutil.TimeoutExpired as exc:
        raise StackError(f"stack pid {proc.pid} did not stop within {timeout_s:.0f}s") from exc
    return True
