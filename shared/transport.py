"""Where the hub listens and how sockets are made.

Local default: ``ipc://`` sockets in the private run dir. ``transport = "tcp"`` puts the same two
endpoints on ``tcp_host``; that is the seam the TCP/CurveZMQ issue fills in (keys are refused by
config until then).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import msgspec
import zmq

from shared.config import Config, make_private_dir

# Linux caps a unix socket path at 107 bytes.
_MAX_IPC_PATH = 100


class Endpoints(msgspec.Struct, frozen=True):
    clients: str  # gateways and other clients connect here (hub ROUTER)
    workers: str  # workers connect here (hub ROUTER)


def ipc_dir(cfg: Config) -> Path:
    """The run dir, or a short private dir in /tmp when the run dir's path is too long."""
    if len(str(cfg.run_dir / "workers.sock")) <= _MAX_IPC_PATH:
        return cfg.run_dir
    digest = hashlib.sha256(str(cfg.run_dir).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"sessiond-{os.getuid()}-{digest}"
    make_private_dir(short)
    return short


def endpoints(cfg: Config) -> Endpoints:
    if cfg.transport == "tcp":
        host = cfg.tcp_host
        return Endpoints(f"tcp://{host}:{cfg.tcp_client_port}", f"tcp://{host}:{cfg.tcp_worker_port}")
    base = ipc_dir(cfg)
    return Endpoints(f"ipc://{base / 'clients.sock'}", f"ipc://{base / 'workers.sock'}")


def dealer(ctx: zmq.Context, endpoint: str, identity: bytes | None = None) -> zmq.Socket:
    """A DEALER that never lingers on close and only queues to live connections."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    sock.connect(endpoint)
    return sock


def router(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    # Replies to a vanished peer are dropped rather than blocking the hub.
    sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
    sock.bind(endpoint)
    return sock
