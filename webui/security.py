"""Who may use the dashboard, and how its pages and forms are protected.

* **Loopback by default.** Bound to 127.0.0.1 (or ::1), the dashboard serves whoever reaches
  it, like the terminal commands: the person at this machine is the user (``--require-token``
  asks for the token there too, for a machine shared with other users). Any other address
  needs the token: ``Authorization: Bearer <token>``, or ``?token=<token>`` once (the server
  then sets an HttpOnly, SameSite=Strict cookie and drops the token from the address). Tokens
  are compared in constant time; a wrong or missing one gets 401.
* **Host header.** On loopback, a request must name the dashboard as 127.0.0.1, localhost or
  [::1] with its port. A page of another site whose name was made to resolve to 127.0.0.1 (DNS
  rebinding) would otherwise be same-origin with the dashboard and could read it.
* **CSRF.** Every state-changing request is a POST carrying a form field ``csrf`` equal to an
  HMAC, under a per-process secret, of this browser's ``sessiond_ui_csrf`` cookie (HttpOnly,
  SameSite=Strict). Another site can neither read the cookie nor compute the HMAC (another
  local web app could *set* a cookie for 127.0.0.1, cookies ignore ports, but not sign one).
  A POST whose ``Origin`` or ``Sec-Fetch-Site`` says another site is refused before that.
* **Escaping.** Templates autoescape; charts escape every label; markdown is rendered with raw
  HTML off. The Content-Security-Policy allows scripts and styles from the dashboard's own
  files only (no inline script, no inline style), so even an escaping mistake could not run
  a stored ``<script>``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from shared.config import Config

log = logging.getLogger("sessiond.ui")

TOKEN_COOKIE = "sessiond_ui_token"
CSRF_COOKIE = "sessiond_ui_csrf"
CSRF_FIELD = "csrf"
TOKEN_FILE = "ui-token"
MAX_FORM_FIELDS = 1200  # a selection of up to 1000 memories, and the rest of the form

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with its
    # own form posts, and the same-site check would refuse them
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # pages hold memories: no copy in any cache (static: no-cache)
}


class CsrfError(Exception):
    """A state-changing request without a valid CSRF token."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def ui_token(cfg: Config) -> str:
    """The dashboard's token (``<data dir>/ui-token``, mode 0600), made on first use."""
    path = Path(cfg.home) / TOKEN_FILE
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        token = ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(token + "\n")
    return token


@dataclass
class Access:
    """How this dashboard is reached: its address, and its token when beyond loopback."""
    host: str
    port: int
    token: str | None = None  # required on every request when set
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def allowed_hosts(self) -> set[str] | None:
        """Host headers accepted (None: any, the token guards a non-loopback bind)."""
        if not is_loopback(self.host):
            return None
        names = {"127.0.0.1", "localhost", "[::1]"}
        hosts = {f"{name}:{self.port}" for name in names}
        if self.port == 80:
            hosts |= names
        return hosts

    def csrf_token(self, cookie: str) -> str:
        return hmac.new(self.secret, cookie.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        return (self.token is not None and given is not None
                and hmac.compare_digest(given.encode(), self.token.encode()))


async def checked_form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token is checked (``CsrfError`` if it is not valid)."""
    form = await request.form(max_fields=MAX_FORM_FIELDS)
    given = form.get(CSRF_FIELD)
    expected = getattr(request.state, "csrf", "")
    if (not request.state.csrf_cookie_known or not isinstance(given, str)
            or not hmac.compare_digest(given.encode(), expected.encode())):
        raise CsrfError("the form's security token is missing or out of date")
    return form


class Guard(BaseHTTPMiddleware):
    """Host check, token, CSRF cookie and the security headers, on every request."""

    def __init__(self, app, access: Access) -> None:
        super().__init__(app)
        self.access = access

    async def dispatch(self, request: Request, call_next) -> Response:
        access = self.access
        allowed = access.allowed_hosts()
        if allowed is not None and request.headers.get("host", "") not in allowed:
            log.warning("refused a request for Host %r", request.headers.get("host"))
            return _secure(PlainTextResponse(
                "This dashboard answers only as 127.0.0.1, localhost or [::1] with its port.",
                status_code=421))
        if access.token is not None:
            refused = self._authenticate(request)
            if refused is not None:
                return _secure(refused)
        if request.method not in ("GET", "HEAD", "POST"):
            return _secure(PlainTextResponse("method not allowed", status_code=405))
        if request.method == "POST" and not _same_site(request):
            log.warning("refused a cross-site POST to %s", request.url.path)
            return _secure(PlainTextResponse("cross-site request refused", status_code=403))
        cookie = request.cookies.get(CSRF_COOKIE, "")
        known = 32 <= len(cookie) <= 128
        if not known:
            cookie = secrets.token_urlsafe(32)
        request.state.csrf_cookie_known = known
        request.state.csrf = access.csrf_token(cookie)
        response = await call_next(request)
        if not known:
            response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict", path="/")
        return _secure(response, static=request.url.path.startswith("/static/"))

    def _authenticate(self, request: Request) -> Response | None:
        """None when the request carries the token; else the refusal (or, for a token in the
        address, the redirect that moves it into a cookie)."""
        access = self.access
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and access.token_ok(header[7:].strip()):
            return None
        if access.token_ok(request.cookies.get(TOKEN_COOKIE)):
            return None
        if access.token_ok(request.query_params.get("token")):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(TOKEN_COOKIE, access.token or "", httponly=True,
                                samesite="strict", path="/")
            return response
        log.warning("refused a request without a valid token from %s",
                    request.client.host if request.client else "?")
        return PlainTextResponse("A token is required: open the address `sessiond ui` printed "
                                 "(it carries ?token=...).", status_code=401)


def _same_site(request: Request) -> bool:
    """False when the browser says the request comes from another site. Clients that send
    neither header (curl, old browsers) still need the CSRF token."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == request.headers.get("host", "")


def _secure(response: Response, static: bool = False) -> Response:
    if static:  # the package's own CSS and JS: kept by the browser, revalidated by ETag
        response.headers["Cache-Control"] = "no-cache"
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
