"""Where the hub listens and how sockets are made.

Local default: ``ipc://`` sockets in the private run dir. ``transport = "tcp"`` puts the same two
endpoints on TCP: the hub binds ``tcp_host`` (``bind_endpoints``), everyone else connects to
``hub_host`` (``endpoints``; by default this machine). With ``curve_keys_dir`` every socket uses
CurveZMQ (``shared.curve``): the hub's as servers, each in its own ZAP domain.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import msgspec
import zmq

from shared.config import Config, make_private_dir
from shared.curve import ClientKeys, ServerKeys, apply_client, apply_server

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


def _tcp(host: str, port: int) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


WILDCARDS = ("0.0.0.0", "*", "::", "")


def endpoints(cfg: Config) -> Endpoints:
    """Where this process reaches the hub."""
    if cfg.transport == "tcp":
        host = cfg.hub_host or ("127.0.0.1" if cfg.tcp_host in WILDCARDS else cfg.tcp_host)
        return Endpoints(_tcp(host, cfg.tcp_client_port), _tcp(host, cfg.tcp_worker_port))
    base = ipc_dir(cfg)
    return Endpoints(f"ipc://{base / 'clients.sock'}", f"ipc://{base / 'workers.sock'}")


def bind_endpoints(cfg: Config) -> Endpoints:
    """Where the hub listens."""
    if cfg.transport == "tcp":
        host = "*" if cfg.tcp_host in WILDCARDS else cfg.tcp_host
        return Endpoints(_tcp(host, cfg.tcp_client_port), _tcp(host, cfg.tcp_worker_port))
    return endpoints(cfg)


def dealer(ctx: zmq.Context, endpoint: str, identity: bytes | None = None,
           curve: ClientKeys | None = None, *, immediate: bool = True) -> zmq.Socket:
    """A DEALER that never lingers on close and (``immediate``) only queues to live
    connections; otherwise a send queues until the peer is there and never blocks (libzmq reads
    the option when ``connect`` runs, so it cannot be changed afterwards)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IMMEDIATE, 1 if immediate else 0)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    if curve is not None:
        apply_client(sock, curve)
    sock.connect(endpoint)
    return sock


def router(ctx: zmq.Context, endpoint: str, curve: ServerKeys | None = None,
           domain: str = "") -> zmq.Socket:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    # Replies to a vanished peer are dropped rather than blocking the hub.
    sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
    if curve is not None:
        apply_server(sock, curve, domain)
    sock.bind(endpoint)
    return sock
