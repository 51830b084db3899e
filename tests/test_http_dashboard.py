"""``sessiond serve --http HOST:PORT --ui``: the dashboard on the HTTP gateway's own port, behind
its bearer token, beside MCP at ``/mcp``.

A real stack, a real ``sessiond serve --http --ui`` process, a real MCP client over HTTP and
plain HTTP requests as a browser makes them (the token given once in the address, then its
cookie).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import os
import subprocess
import sys
import urllib.error
import urllib.request

from apart import Proc, free_port, http_client
from conftest import REPO, base_env, private_stack, wait_for

SECRET_TEXT = "The <script>alert('sd')</script> release checklist lives in docs/release.md"


def get(opener, url: str) -> tuple[int, str]:
    try:
        with opener.open(url, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_the_dashboard_shares_the_http_gateways_port_and_token(tmp_path):
    token = "t0ken-" + os.urandom(16).hex()
    token_file = tmp_path / "http.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    with private_stack() as (env, home):
        port = free_port()
        gateway = Proc("gateway-http-ui", ["serve", "--http", f"127.0.0.1:{port}", "--ui"],
                       {**env, "SESSIOND_HTTP_TOKEN_FILE": str(token_file)}, home.parent)
        base = f"http://127.0.0.1:{port}"
        plain = urllib.request.build_opener()
        try:
            wait_for(lambda: _answers(plain, f"{base}/memories"), 60, what="the HTTP gateway")

            async def through_mcp():
                async with http_client(f"{base}/mcp", token) as client:
                    stored = await client.call_tool("store_reflection", {
                        "content": SECRET_TEXT, "project": "webshop", "tags": ["release"]})
                    found = await client.call_tool("quick_search", {
                        "query": "where is the release checklist", "project": "webshop"})
                    return stored.structured_content, found.structured_content

            stored, found = asyncio.run(through_mcp())
            assert found["results"][0]["id"] == stored["id"]

            # without the token: neither the dashboard nor MCP answers
            assert get(plain, f"{base}/memories")[0] == 401
            assert get(plain, f"{base}/memories?token=wrong-{token}")[0] == 401
            assert get(plain, f"{base}/mcp")[0] == 401

            # a browser: the token once in the address, then its cookie
            browser = urllib.request.build_opener(
                urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
            status, page = get(browser, f"{base}/memories?token={token}&q=release+checklist")
            assert status == 200, page
            assert "&lt;script&gt;alert(" in page and "docs/release.md" in page  # as text
            assert "<script>alert" not in page
            status, page = get(browser, f"{base}/memories/{stored['id']}")
            assert status == 200 and "docs/release.md" in page
            assert get(browser, f"{base}/stack")[0] == 200
        finally:
            assert gateway.stop() == 0, gateway.output()


def _answers(opener, url: str) -> bool:
    try:
        return get(opener, url)[0] == 401
    except OSError:  # not listening yet
        return False


def test_ui_without_http_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sessiond", "serve", "--ui"],
                          env=base_env(tmp_path), cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done
    assert "--http HOST:PORT" in done.stderr
    assert done.stdout == ""
