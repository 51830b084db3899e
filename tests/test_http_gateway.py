"""``sessiond serve --http``: the same tools over MCP's streamable HTTP transport, a bearer
token checked before anything reaches MCP, many clients at once through one gateway.

A real stack (local, ipc), a real ``sessiond serve --http`` process, real MCP clients over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from apart import Proc, free_port, http_client, wait_file_text
from conftest import REPO, base_env, call, private_stack, wait_for

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "test", "version": "0"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """A raw MCP initialize POST: its status and headers."""
    request = urllib.request.Request(url, data=json.dumps(INITIALIZE).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}


@pytest.fixture(scope="module")
def http_gateway(tmp_path_factory):
    token = "t0ken-" + os.urandom(16).hex()
    token_file = tmp_path_factory.mktemp("token") / "http.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    with private_stack() as (env, home):
        port = free_port()
        gw_env = {**env, "SESSIOND_HTTP_TOKEN_FILE": str(token_file)}
        gateway = Proc("gateway-http", ["serve", "--http", f"127.0.0.1:{port}"], gw_env,
                       home.parent)
        url = f"http://127.0.0.1:{port}/mcp"

        def answers():
            try:
                return post(url, HEADERS)[0] == 401
            except OSError:  # not listening yet
                return False

        try:
            wait_for(answers, 60, what="the HTTP gateway")
            yield url, token, home
        finally:
            code = gateway.stop()
            assert code == 0, gateway.output()


@pytest.mark.parametrize("authorization, logged", [
    (None, "no bearer token"),
    ("Bearer wrong-token-of-some-length-000000", "wrong token"),
    ("Basic dXNlcjpwYXNz", "wrong token"),
])
def test_a_missing_or_wrong_token_gets_401_and_is_logged(http_gateway, authorization, logged):
    url, _, home = http_gateway
    headers = {**HEADERS, **({"Authorization": authorization} if authorization else {})}
    status, reply_headers = post(url, headers)
    assert status == 401
    assert reply_headers["www-authenticate"].startswith("Bearer")
    assert "mcp-session-id" not in reply_headers  # it never reached MCP
    wait_file_text(home / "logs" / "gateway-http.log",
                   "refused an HTTP request from 127.0.0.1:", 10)
    assert logged in (home / "logs" / "gateway-http.log").read_text()


def test_the_token_lets_a_client_store_and_search(http_gateway):
    url, token, _ = http_gateway

    async def scenario():
        async with http_client(url, token) as client:
            names = {t.name for t in await client.list_tools()}
            assert {"store_reflection", "quick_search", "health_check"} <= names
            stored = await call(client, "store_reflection", {
                "content": "The HTTP gateway checks a bearer token with hmac.compare_digest",
                "tags": ["http"]})
            found = await call(client, "quick_search", {"query": "compare_digest bearer"})
            return stored, found

    stored, found = asyncio.run(scenario())
    assert stored["id"] in [r["id"] for r in found["results"]]


def test_one_gateway_serves_many_clients_at_once(http_gateway):
    url, token, _ = http_gateway
    clients = 6

    async def one(i: int) -> tuple[str, list[str], int]:
        async with http_client(url, token) as client:
            stored = await call(client, "store_reflection", {
                "content": f"concurrent client number {i} keeps marker zq{i}x{i}"})
            found = await call(client, "quick_search", {"query": f"zq{i}x{i}"})
            ping = await call(client, "ping")
            return stored["id"], [r["id"] for r in found["results"]], ping["gateway_pid"]

    async def scenario():
        return await asyncio.gather(*(one(i) for i in range(clients)))

    results = asyncio.run(scenario())
    assert len(results) == clients
    for memory_id, found, _ in results:
        assert memory_id in found
    assert len({pid for _, _, pid in results}) == 1  # one gateway process served them all


def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path):
    env = base_env(tmp_path / "home")
    out = subprocess.run([sys.executable, "-m", "sessiond", "serve", "--http",
                          f"0.0.0.0:{free_port()}"], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert out.returncode == 3
    assert "refusing to serve MCP over HTTP on 0.0.0.0 without a bearer token" in out.stderr
    assert "sessiond keys token" in out.stderr
