"""``sessiond serve --http HOST:PORT``: the same MCP tools over MCP's streamable HTTP transport.

One process serves many clients at once (each an MCP session of its own over ``/mcp``). A bearer
token (``http_token_file``, written by ``sessiond keys token``) is required whenever the server
binds beyond loopback and checked whenever one is configured: a request without it, or with
another, gets 401 before it reaches MCP, and is logged with the client's address. The token is
compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from starlette.middleware import Middleware

from shared.config import Config, is_loopback
from shared.errors import ConfigError
from shared.logs import LimitedWarnings

log = logging.getLogger("sessiond.gateway.http")
refusals = LimitedWarnings(log)  # a flood of bad requests must not fill the disk

MCP_PATH = "/mcp"
MIN_TOKEN_CHARS = 24


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:8765), got {text!r}")
    return host, int(port)


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the HTTP token file {path}: {exc}") from exc
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(f"the HTTP token in {path} must be one word of at least "
                          f"{MIN_TOKEN_CHARS} characters (`sessiond keys token` writes one)")
    return token


def token_for(cfg: Config, host: str) -> str | None:
    """The token the server at ``host`` requires, or None (loopback without a token file)."""
    if cfg.http_token_file:
        return read_token(cfg.http_token_file)
    if not is_loopback(host):
        raise ConfigError(f"refusing to serve MCP over HTTP on {host} without a bearer token: "
                          "anyone who reaches the port could read and delete memories; run "
                          "`sessiond keys token` and set http_token_file "
                          "(SESSIOND_HTTP_TOKEN_FILE), or bind 127.0.0.1")
    return None


class BearerToken:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan: not a request
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self.token):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("unknown", 0)
        refusals.warning("refused an HTTP request from %s:%s to %s: %s", client[0], client[1],
                         scope.get("path", "?"), "wrong token" if given else "no bearer token")
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"),
            (b"www-authenticate", b'Bearer realm="sessiond"')]})
        await send({"type": "http.response.body",
                    "body": b'{"error": "unauthorized: a valid bearer token is required"}'})


async def serve_http(cfg: Config, host: str, port: int, *, dashboard: bool = False) -> None:
    """Serve the gateway's tools over HTTP until SIGTERM/SIGINT (uvicorn handles both); with
    ``dashboard``, the web dashboard too, on the same port behind the same token."""
    from gateway.server import build_server

    token = token_for(cfg, host)
    middleware = [Middleware(BearerToken, token=token)] if token else []
    mcp = build_server(cfg)
    log.info("serving MCP over HTTP on %s:%d%s (%s)%s", host, port, MCP_PATH,
             "bearer token required" if token else "loopback, no token",
             ", the dashboard at /" if dashboard else "")
    if dashboard:
        import uvicorn

        from webui.server import beside_mcp, listen

        sock = listen(host, port)
        app = beside_mcp(cfg, mcp.http_app(path=MCP_PATH, transport="http",
                                           middleware=middleware), MCP_PATH, host,
                         sock.getsockname()[1], token)
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                               lifespan="on", timeout_graceful_shutdown=2))
        await server.serve(sockets=[sock])
        return
    await mcp.run_http_async(
        show_banner=False, transport="http", host=host, port=port, path=MCP_PATH,
        middleware=middleware, uvicorn_config={"log_config": None})
