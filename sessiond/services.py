"""The stack apart, one process per service (``docker-compose.yml`` runs exactly these):

  sessiond hub [--log-stderr]                 the broker alone; workers join it
  sessiond worker store|embed|quality [--connect tcp://HOST:PORT] [--log-stderr]
  sessiond serve --http HOST:PORT [--connect tcp://HOST:PORT]   MCP over streamable HTTP
  sessiond health --service NAME              this container's hub or worker is up and in touch
  sessiond health --url URL                   every component, through an HTTP gateway

``--connect`` names the hub (its worker endpoint for a worker, its client endpoint otherwise);
it is the same as setting ``hub_host`` and the port (``SESSIOND_HUB_HOST`` ...), which is how
the compose file does it. ``sessiond stack`` stays the one-command local default.
"""

from __future__ import annotations

import argparse
import signal
import sys

from shared.config import Config
from shared.errors import ConfigError
from shared.exitcodes import ExitCode
from shared.logs import setup_logging

SERVICES = ("store", "embed", "quality")
WORKER_CLASSES = {
    "store": ("store_worker.worker", "StoreWorker"),
    "embed": ("embed_worker.worker", "EmbedWorker"),
    "quality": ("quality_worker.worker", "QualityWorker"),
}


def add_commands(sub) -> None:
    hub = sub.add_parser("hub", help="run the hub alone (workers started elsewhere join it)")
    hub.add_argument("--log-stderr", action="store_true", help="also log to stderr")
    worker = sub.add_parser("worker", help="run one worker that joins a hub")
    worker.add_argument("service", choices=SERVICES)
    _connect_option(worker, "the hub's worker endpoint")
    worker.add_argument("--log-stderr", action="store_true", help="also log to stderr")


def extend_serve(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--http", metavar="HOST:PORT", help="serve MCP over streamable HTTP at "
                       "http://HOST:PORT/mcp instead of stdio (a bearer token is required "
                       "beyond loopback)")
    _connect_option(serve, "the hub's client endpoint (never start a stack)")
    serve.add_argument("--ui", action="store_true", help="with --http: also serve the web "
                       "dashboard on the same port (at /), behind the same token")
    serve.add_argument("--log-stderr", action="store_true", help="also log to stderr")


def extend_client(parser: argparse.ArgumentParser) -> None:
    """``health`` and ``call``: through a gateway over HTTP, or one using a hub elsewhere."""
    parser.add_argument("--url", help="an HTTP gateway (http://HOST:PORT/mcp) instead of a "
                        "stdio gateway started here")
    _connect_option(parser, "the hub's client endpoint, for the stdio gateway started here")


def extend_health(health: argparse.ArgumentParser) -> None:
    extend_client(health)
    health.add_argument("--service", choices=("hub", *SERVICES),
                        help="only this machine's (container's) hub or worker: up and in touch "
                        "with its hub (for a container health check; needs no keys)")


def _connect_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--connect", metavar="tcp://HOST:PORT", help=what)


def environ_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The settings ``--connect`` stands for (applied before the config is loaded, so children
    inherit them)."""
    given = getattr(args, "connect", None)
    if not given:
        return {}
    if not given.startswith("tcp://"):
        raise ConfigError(f"--connect takes tcp://HOST:PORT, got {given!r}")
    host, sep, port = given[len("tcp://"):].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--connect takes tcp://HOST:PORT, got {given!r}")
    port_field = "TCP_WORKER_PORT" if args.command == "worker" else "TCP_CLIENT_PORT"
    return {"SESSIOND_HUB_HOST": host, f"SESSIOND_{port_field}": port}


def run_hub(cfg: Config, args: argparse.Namespace) -> int:
    from shared.curve import server_keys
    from shared.supervisor import Supervisor

    try:
        server_keys(cfg)  # say what is wrong with the keys here, before logging to files
    except ConfigError as exc:
        print(f"sessiond hub: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    if cfg.hub_host:
        print("sessiond hub: hub_host names a hub to join; the hub itself binds tcp_host",
              file=sys.stderr)
        return ExitCode.CONFIG
    setup_logging(cfg, "hub", also_stderr=args.log_stderr)
    return Supervisor(cfg, spawn_workers=False).run()


def run_worker(cfg: Config, args: argparse.Namespace) -> int:
    import importlib

    from shared.runner import start_worker

    module, name = WORKER_CLASSES[args.service]
    worker_cls = getattr(importlib.import_module(module), name)
    return start_worker(cfg, worker_cls, args.service, standalone=True,
                        log_stderr=args.log_stderr)


def serve_http(cfg: Config, args: argparse.Namespace) -> int:
    from gateway.http import parse_listen, serve_http, token_for

    try:
        host, port = parse_listen(args.http)
        token_for(cfg, host)  # refuse a bind beyond loopback without a token, here and now
    except (ValueError, ConfigError) as exc:
        print(f"sessiond serve: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    setup_logging(cfg, "gateway-http", also_stderr=args.log_stderr)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler that was there before: this one, so the process exits 0 after a clean stop.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        import asyncio

        asyncio.run(serve_http(cfg, host, port, dashboard=args.ui))
    except KeyboardInterrupt:
        pass
    return ExitCode.OK


def service_health(cfg: Config, service: str) -> int:
    from shared.liveness import check_alive

    ok, reason = check_alive(cfg, service)
    print(f"{'healthy' if ok else 'unhealthy':<10} {service:<10} {reason}")
    return ExitCode.OK if ok else ExitCode.FAILED
