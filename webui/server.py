"""``sessiond ui``: serve the dashboard with uvicorn until interrupted.

The address is printed on stdout once the socket listens (``sessiond ui --port 0`` picks a free
port, and the printed address says which); ``--open`` opens it in the default browser. Beyond
loopback the printed address carries the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import webbrowser

import uvicorn

from shared.config import Config
from shared.exitcodes import ExitCode
from webui.app import build_app
from webui.security import Access, is_loopback, ui_token

log = logging.getLogger("sessiond.ui")


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections whose
    # socket says TCP; with proto 0 every response written in two parts (head, then body) waited
    # ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def address(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(cfg: Config, host: str, port: int, open_browser: bool,
          require_token: bool = False) -> int:
    token = ui_token(cfg) if require_token or not is_loopback(host) else None
    try:
        sock = listen(host, port)
    except OSError as exc:
        print(f"sessiond: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    port = sock.getsockname()[1]
    access = Access(host=host, port=port, token=token)
    app = build_app(cfg, access)
    url = address(host, port, token)
    print(f"sessiond dashboard: {url}", flush=True)
    if token:
        print(f"  every request needs this token (kept in {cfg.home}/ui-token)"
              + ("" if is_loopback(host) else "; plain HTTP: use it on a network you trust"),
              flush=True)
    log.info("serving the dashboard on %s:%d (token %s)", host, port,
             "required" if token else "not required on loopback")
    if open_browser:
        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=3))
    asyncio.run(server.serve(sockets=[sock]))
    return ExitCode.OK


def beside_mcp(cfg: Config, mcp_app, mcp_path: str, host: str, port: int, token: str | None):
    """One ASGI app for ``sessiond serve --http ... --ui``: MCP at ``mcp_path`` (behind its own
    middleware), the dashboard everywhere else, behind the same token (a browser gives it once
    as ``?token=``, then carries the cookie). Both apps' lifespans run in the outer one."""
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route

    ui_app = build_app(cfg, Access(host=host, port=port, token=token))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        async with mcp_app.router.lifespan_context(mcp_app), \
                ui_app.router.lifespan_context(ui_app):
            yield

    return Starlette(routes=[Route(mcp_path, endpoint=mcp_app), Mount("/", app=ui_app)],
                     lifespan=lifespan)
