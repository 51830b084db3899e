"""Fixtures that start real sessiond processes in a private temp data dir."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent


def modules_after(code: str, env: dict[str, str]) -> set[str]:
    """The top-level modules a fresh interpreter holds after running ``code``."""
    report = "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    done = subprocess.run([sys.executable, "-c", code + report], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def base_env(home: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env.update({
        "SESSIOND_HOME": str(home),
        "SESSIOND_EMBED_WORKERS": "1",
        "SESSIOND_IDLE_TIMEOUT_S": "300",
        "SESSIOND_LOG_LEVEL": "DEBUG",
        "SESSIOND_IO_ROOTS": str(out_dir_of(home)),  # exports never go inside the data dir
    })
    env.update(overrides)
    return env


def out_dir_of(home: Path) -> Path:
    """The directory beside a test's data dir where its exports may go."""
    return home.with_name(home.name + "-out")


def out_dir(home: Path) -> Path:
    """``out_dir_of(home)``, created."""
    path = out_dir_of(home)
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def home():
    # Short path under /tmp: unix socket paths are capped at ~107 bytes.
    path = Path(tempfile.mkdtemp(prefix="sd-"))
    yield path
    kill_stack_processes(path)


@pytest.fixture
def env(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    e = base_env(home)
    for key in [k for k in os.environ if k.startswith("SESSIOND_")]:
        monkeypatch.delenv(key)
    for key, value in e.items():
        if key.startswith("SESSIOND_"):
            monkeypatch.setenv(key, value)
    return e


def stack_info(home: Path) -> dict | None:
    try:
        return json.loads((home / "run" / "stack.json").read_text())
    except (OSError, ValueError):
        return None


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Stack:
    """A foreground ``sessiond stack`` started by the test (so the test owns its exit code)."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.proc = subprocess.Popen([sys.executable, "-m", "sessiond", "stack"], env=env,
                                     cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: (stack_info(home) or {}).get("pid") == self.proc.pid, 15,
                 what="stack.json")

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def stack(home: Path, env: dict[str, str]):
    s = Stack(home, env)
    yield s
    s.stop()


@contextlib.contextmanager
def private_stack(**overrides: str):
    """A stack in its own temp data dir, for a module-scoped fixture; yields (env, home)."""
    home = Path(tempfile.mkdtemp(prefix="sd-"))
    env = base_env(home, **overrides)
    stack = Stack(home, env)
    try:
        yield env, home
    finally:
        stack.stop()
        kill_stack_processes(home)


def kill_stack_processes(home: Path) -> None:
    """Leave no process behind: anything whose environment names this data dir."""
    me = os.getpid()
    victims = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get("SESSIOND_HOME") == str(home):
                victims.append(proc)
        except psutil.Error:
            continue
    for proc in victims:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=5)


def gateway_client(env: dict[str, str], timeout: float = 60, **client_options):
    """A real MCP client over stdio, spawning ``sessiond serve`` with this env; options go to
    ``fastmcp.Client`` (``elicitation_handler``, ``mode="legacy"`` for the handshake era)."""
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    transport = StdioTransport(sys.executable, ["-m", "sessiond", "serve"], env=env,
                               cwd=str(REPO), keep_alive=False)
    return Client(transport, timeout=timeout, init_timeout=30, **client_options)


async def call(client, tool: str, args: dict | None = None) -> dict:
    """Call a tool and return its structured result; fail the test on a tool error."""
    result = await client.call_tool(tool, args or {}, raise_on_error=False)
    assert not result.is_error, f"{tool} failed: {result.content}"
    return result.structured_content


async def call_error(client, tool: str, args: dict | None = None) -> str:
    """Call a tool that must fail; return the error text the assistant would read."""
    result = await client.call_tool(tool, args or {}, raise_on_error=False)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def wait_embedded(client, timeout: float = 60) -> dict:
    """Wait until the store has every memory's vectors (whole and chunks); its stats then."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        stats = await call(client, "reflection_stats")
        if stats["pending_embeddings"] == 0:
            return stats
        assert time.monotonic() < deadline, f"still pending: {stats}"
        await asyncio.sleep(0.1)


async def wait_all_ready(client, timeout: float = 20) -> dict:
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        st = (await call(client, "status"))["stack"]
        if all(w["state"] in ("ready", "parked") for w in st["workers"]):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"workers not ready: {st['workers']}")
        await asyncio.sleep(0.05)
