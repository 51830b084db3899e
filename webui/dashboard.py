"""What every page of the dashboard shares: a gateway to the stack, the templates, the time zone,
the questions awaiting an answer, and how a failure of the stack becomes a page.

The dashboard is a gateway like any other (``gateway.server.Gateway``): it finds the stack
through the data dir (starting one if none runs), sends its requests through the hub, keeps the
stack from idling out while it runs, and asks the permission checker before a delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from fastmcp.exceptions import ToolError
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.server import Gateway
from shared import protocol as p
from shared.config import Config, zone_of
from shared.errors import ServiceError, StackError
from shared.version import VERSION
from webui.deletion import PendingDeletes
from webui.render import make_env

log = logging.getLogger("sessiond.ui")

FACETS_TTL_S = 10.0  # how long the filter choices (projects, kinds) are reused
NAV = (("memories", "/memories", "Memories"), ("projects", "/projects", "Projects"),
       ("sessions", "/sessions", "Sessions"), ("stack", "/stack", "Stack"))
STATUS_OF_CODE = {"bad_request": 400, "not_found": 404}


class Dashboard:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.gw = Gateway(cfg)
        self.tz = zone_of(cfg.timezone)
        self.env = make_env(self.tz)
        self.pid = os.getpid()
        self._facets: tuple[float, dict[str, Any]] | None = None
        self.deletes = PendingDeletes()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        log.info("dashboard %d up for %s", self.pid, self.cfg.home)
        starting = asyncio.create_task(self._start_stack())
        beat = asyncio.create_task(self.gw.keepalive())
        try:
            yield
        finally:
            beat.cancel()
            starting.cancel()
            self.gw.client.close()

    async def _start_stack(self) -> None:
        try:
            await self.gw.ensure_stack()
        except StackError as exc:  # every page says so too, and tries again
            log.error("could not start the stack: %s", exc)

    # ---------------------------------------------------------------- requests
    async def store(self, body: p.RequestBody, *, timeout_s: float | None = None,
                    idempotent: bool = True) -> Any:
        return await self.gw.call(p.SERVICE_STORE, body, timeout_s=timeout_s,
                                  idempotent=idempotent)

    async def facets(self) -> dict[str, Any]:
        """Projects and kinds with their counts, for the filters (reused for a few seconds)."""
        now = time.monotonic()
        if self._facets is not None and now - self._facets[0] < FACETS_TTL_S:
            return self._facets[1]
        reply = await self.store(p.ProjectOverview(weeks=0, top_tags=0))
        self._facets = (now, reply.data)
        return reply.data

    def forget_facets(self) -> None:
        self._facets = None

    # ---------------------------------------------------------------- pages
    def render(self, request: Request, template: str, *, status: int = 200,
               **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(
            request=request, csrf=getattr(request.state, "csrf", ""), nav=NAV,
            version=VERSION, data_dir=self.cfg.home, **context)
        return HTMLResponse(html, status_code=status)

    def failure(self, request: Request, exc: ToolError) -> HTMLResponse:
        """The page for a request the stack could not answer."""
        cause = exc.__cause__
        status = STATUS_OF_CODE.get(cause.code, 503) if isinstance(cause, ServiceError) else 503
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return self.render(request, "error.html", status=status, title="Not answered",
                           message=str(exc), active="")
