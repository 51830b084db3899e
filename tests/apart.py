"""Helpers for the tests of the stack apart (CURVE, the HTTP gateway, the compose topology)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import zmq
import zmq.auth
from conftest import REPO

from shared.curve import ClientKeys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_keys(keys_dir: Path) -> Path:
    """``sessiond keys init KEYS_DIR`` as a user runs it."""
    out = subprocess.run([sys.executable, "-m", "sessiond", "keys", "init", str(keys_dir)],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
                         env={k: v for k, v in os.environ.items()
                              if not k.startswith("SESSIOND_")})
    assert out.returncode == 0, out.stderr
    return keys_dir


def keys_of(keys_dir: Path, role: str) -> ClientKeys:
    """A process's CURVE keys as ``shared.curve.client_keys`` would load them."""
    hub, _ = zmq.auth.load_certificate(keys_dir / "hub.key")
    public, secret = zmq.auth.load_certificate(keys_dir / f"{role}.key_secret")
    return ClientKeys(hub, public, secret)


def stranger_keys(keys_dir: Path) -> ClientKeys:
    """Keys that know the hub's public key but are on no allow list."""
    hub, _ = zmq.auth.load_certificate(keys_dir / "hub.key")
    public, secret = zmq.curve_keypair()
    return ClientKeys(hub, public, secret)


class Proc:
    """A sessiond process started by a test, its output in a file (never a pipe that fills)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], out_dir: Path) -> None:
        self.name = name
        self.out = out_dir / f"{name}.out"
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "sessiond", *args], env=env,
                                         cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            return None


def wait_file_text(path: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            content = path.read_text(errors="replace")
        except OSError:
            content = ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path} after {timeout}s")


def http_client(url: str, token: str | None, timeout: float = 60):
    """A real MCP client over streamable HTTP."""
    from fastmcp import Client
    from fastmcp.client.transports import StreamableHttpTransport

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client(StreamableHttpTransport(url, headers=headers), timeout=timeout,
                  init_timeout=30)
