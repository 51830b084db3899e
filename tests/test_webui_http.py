"""The dashboard over plain HTTP (no browser): who may use it (loopback, the token, the Host
header), CSRF on the state-changing requests, escaping, headers, the export, and the errors a
bad address or a refused filter gives. A real ``sessiond ui`` against a real stack."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, call, gateway_client, private_stack
from webui_fixtures import Dashboard

SCRIPT = '<script>alert("x")</script> and <b onmouseover="alert(1)">bold</b>'


@pytest.fixture(scope="module")
def stack():
    with private_stack() as (env, _home):
        async def seed():
            async with gateway_client(env) as client:
                ids = {}
                for project, text in (("alpha", "alpha uses postgres for the orders table"),
                                      ("alpha", SCRIPT), ("beta", "beta deploys with ansible")):
                    ids[text] = (await call(client, "store_reflection", {
                        "content": text, "project": project, "tags": [project]}))["id"]
                return ids
        ids = asyncio.run(seed())
        ui = Dashboard(env)
        token_ui = Dashboard(env, "--require-token")
        try:
            yield {"env": env, "ui": ui, "token_ui": token_ui, "ids": ids}
        finally:
            ui.stop()
            token_ui.stop()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, *, data: dict | None = None, headers: dict | None = None,
          follow: bool = True) -> tuple[int, dict, str]:
    body = None if data is None else urllib.parse.urlencode(data, doseq=True).encode()
    req = urllib.request.Request(url, data=body, headers=headers or {})
    opener = urllib.request.build_opener(*(() if follow else (NoRedirect,)))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def session(ui: Dashboard, path: str = "/memories") -> tuple[str, str]:
    """A page's CSRF cookie and the form token that goes with it."""
    status, headers, html = fetch(ui.base + path)
    assert status == 200
    cookie = re.search(r"sessiond_ui_csrf=([^;]+)", headers["set-cookie"]).group(1)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)
    return cookie, token


def exists(env, memory_id: str) -> bool:
    async def ask():
        async with gateway_client(env) as client:
            return not (await call(client, "get_memory", {"ids": [memory_id]}))["missing"]
    return asyncio.run(ask())


def test_content_is_escaped_and_the_headers_forbid_inline_script(stack):
    ui, mid = stack["ui"], stack["ids"][SCRIPT]
    for path in ("/memories", "/memories?q=bold", f"/memories/{mid}"):
        status, headers, html = fetch(ui.base + path)
        assert status == 200
        assert "<script>alert" not in html and "<b onmouseover" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]


def test_every_asset_comes_from_the_package():
    """No CDN: templates and scripts name no other site, and every file they link exists."""
    root = REPO / "webui"
    for path in [*root.glob("templates/*.html"), *root.glob("static/*")]:
        text = path.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert "@import" not in text and "url(http" not in text, path
    for ref in re.findall(r'(?:src|href)="/static/([^"]+)"',
                          (root / "templates/base.html").read_text()):
        assert (root / "static" / ref).is_file(), ref


def test_a_delete_without_the_csrf_token_or_from_another_site_is_refused(stack):
    ui, env = stack["ui"], stack["env"]
    target = stack["ids"]["beta deploys with ansible"]
    cookie, token = session(ui)
    cases = [
        ({"id": target}, {"Cookie": f"sessiond_ui_csrf={cookie}"}),  # no token
        ({"id": target, "csrf": "0" * 64}, {"Cookie": f"sessiond_ui_csrf={cookie}"}),  # wrong
        ({"id": target, "csrf": token}, {}),  # a token without its cookie
        ({"id": target, "csrf": token}, {"Cookie": f"sessiond_ui_csrf={'x' * 43}"}),  # another
        ({"id": target, "csrf": token}, {"Cookie": f"sessiond_ui_csrf={cookie}",
                                         "Origin": "http://evil.example"}),
        ({"id": target, "csrf": token}, {"Cookie": f"sessiond_ui_csrf={cookie}",
                                         "Sec-Fetch-Site": "cross-site"}),
    ]
    for form, headers in cases:
        for path in ("/memories/delete", "/memories/delete/answer"):
            status, _, _ = fetch(ui.base + path, data=form, headers=headers)
            assert status == 403, (path, form, headers)
    status, _, html = fetch(ui.base + "/memories/delete", data={"id": target, "csrf": token},
                            headers={"Cookie": f"sessiond_ui_csrf={cookie}"})
    assert status == 200 and "Allow delete_memories: 1 memory by id" in html  # the question
    nonce = re.search(r'name="nonce" value="([^"]+)"', html).group(1)
    status, _, _ = fetch(ui.base + "/memories/delete/answer",
                         data={"nonce": nonce, "choice": "yes"},
                         headers={"Cookie": f"sessiond_ui_csrf={cookie}"})
    assert status == 403  # the answer needs the token too
    assert exists(env, target)
    status, headers, _ = fetch(ui.base + "/memories/delete/answer",
                               data={"nonce": nonce, "choice": "no", "csrf": token},
                               headers={"Cookie": f"sessiond_ui_csrf={cookie}"}, follow=False)
    assert status == 303 and headers["location"].endswith("cancelled=1")
    status, _, _ = fetch(ui.base + "/memories/delete/answer",
                         data={"nonce": nonce, "choice": "yes", "csrf": token},
                         headers={"Cookie": f"sessiond_ui_csrf={cookie}"})
    assert status == 409  # a question is answered once
    assert exists(env, target)
    for method in ("PUT", "DELETE"):
        req = urllib.request.Request(ui.base + "/memories", method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 405


def test_only_loopback_names_are_answered(stack):
    ui = stack["ui"]
    port = ui.base.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert fetch(ui.base + "/stack", headers={"Host": host})[0] == 200
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{int(port) + 1}"):
        status, _, _ = fetch(ui.base + "/stack", headers={"Host": host})
        assert status == 421, host  # a rebound DNS name gets nothing


def test_the_token_is_required_when_asked_for(stack):
    ui = stack["token_ui"]
    token = ui.token
    assert token and len(token) >= 32
    assert (Path(stack["env"]["SESSIOND_HOME"]) / "ui-token").stat().st_mode & 0o777 == 0o600
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "sessiond_ui_token=x"}):
        status, _, text = fetch(ui.base + "/memories", headers=headers)
        assert status == 401 and "token" in text
    assert fetch(ui.base + "/memories?token=nope")[0] == 401
    assert fetch(ui.base + "/memories", headers={"Authorization": f"Bearer {token}"})[0] == 200
    status, headers, _ = fetch(ui.base + f"/memories?q=ansible&token={token}", follow=False)
    assert status == 303 and headers["location"] == "/memories?q=ansible"  # token not kept
    assert f"sessiond_ui_token={token}" in headers["set-cookie"]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
    status, _, html = fetch(ui.base + "/memories?q=ansible",
                            headers={"Cookie": f"sessiond_ui_token={token}"})
    assert status == 200 and "beta deploys with ansible" in html


def test_the_export_is_the_filtered_view_as_importable_jsonl(stack):
    ui = stack["ui"]
    status, headers, body = fetch(ui.base + "/memories/export?project=alpha")
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in headers["content-disposition"]
    rows = [json.loads(line) for line in body.splitlines()]
    assert {r["project"] for r in rows} == {"alpha"} and len(rows) == 2
    assert set(rows[0]) == {"id", "kind", "content", "project", "tags", "session_id",
                            "created_at", "metadata"}
    assert SCRIPT in {r["content"] for r in rows}  # verbatim in the file, not HTML
    _, _, body = fetch(ui.base + "/memories/export?q=postgres+orders")
    assert json.loads(body.splitlines()[0])["content"].startswith("alpha uses postgres")


def test_bad_addresses_and_refused_filters_are_pages_that_say_why(stack):
    ui = stack["ui"]
    for path, status, text in (
            ("/memories?since=yesterday", 400, "since is not a date"),
            ("/memories?period=on+a+blue+moon", 400, "blue moon"),
            ("/memories?period=last+week&since=2026-01-01", 400, "either dates"),
            ("/memories?page=0", 400, "page must be"),
            ("/memories/export?until=13", 400, "until is not a date"),
            ("/memories/no-such-id", 404, "no memory no-such-id"),
            ("/memories/bad%20id", 404, "A memory id"),
            ("/projects/nowhere", 404, "nowhere"),
            ("/sessions/nope", 404, "no session nope"),
            ("/static/missing.js", 404, "")):
        got, _, html = fetch(ui.base + path)
        assert got == status, path
        assert text.lower() in html.lower(), (path, html[:300])


def test_a_delete_of_nothing_asks_nothing(stack):
    ui = stack["ui"]
    cookie, token = session(ui)
    jar = {"Cookie": f"sessiond_ui_csrf={cookie}"}
    for form, status, text in (({"id": "not-a-memory", "csrf": token}, 404, "Nothing to delete"),
                               ({"id": "../etc", "csrf": token}, 400, "Select 1-1000"),
                               ({"id": [f"m{i}" for i in range(1001)], "csrf": token}, 400,
                                "Select 1-1000")):
        got, _, html = fetch(ui.base + "/memories/delete", data=form, headers=jar)
        assert got == status and text in html, (form.get("id"), got)
    got, headers, _ = fetch(ui.base + "/memories/delete",
                            data={"csrf": token, "next": "//evil.example/x"}, headers=jar,
                            follow=False)
    assert got == 303 and headers["location"] == "/memories?none=1"  # never another site

    async def decisions():
        async with gateway_client(stack["env"]) as client:
            return (await call(client, "permissions", {"action": "status"}))["decisions"]
    assert not any("not-a-memory" in d["detail"] for d in asyncio.run(decisions()))


def test_the_listening_socket_lets_asyncio_turn_nagle_off():
    """asyncio sets TCP_NODELAY on accepted connections only when the socket's protocol is
    IPPROTO_TCP; with proto 0 a response written in two parts waited ~40 ms for the client's
    delayed ACK (every page over keep-alive took 44-48 ms, whatever it held)."""
    import socket

    from webui.server import listen

    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()
