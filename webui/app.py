"""The dashboard's web application: its routes, the guard in front of them (``security``), and
how errors become pages."""

from __future__ import annotations

import logging

from fastmcp.exceptions import ToolError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from shared.config import Config
from webui import deletion, memories, projects, sessions, stack
from webui.dashboard import Dashboard
from webui.security import Access, CsrfError, Guard

log = logging.getLogger("sessiond.ui")


async def home(_request: Request) -> Response:
    return RedirectResponse("/memories", status_code=307)


def build_app(cfg: Config, access: Access) -> Starlette:
    ui = Dashboard(cfg)

    async def stack_failed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ToolError)
        return ui.failure(request, exc)

    async def csrf_failed(request: Request, exc: Exception) -> Response:
        log.warning("refused a POST to %s: %s", request.url.path, exc)
        return ui.render(request, "error.html", status=403, title="Form expired",
                         message=f"{exc}. Go back, reload the page and try again; nothing "
                                 "was changed.", active="")

    routes = [
        Route("/", home),
        Route("/memories", memories.listing),
        Route("/memories/export", memories.export),
        Route("/memories/delete", deletion.ask, methods=["POST"]),
        Route("/memories/delete/answer", deletion.answer, methods=["POST"]),
        Route("/memories/{memory_id}", memories.detail),
        Route("/projects", projects.overview),
        Route("/projects/{name:path}", projects.detail),
        Route("/sessions", sessions.listing),
        Route("/sessions/{session_id}", sessions.detail),
        Route("/stack", stack.page),
        Mount("/static", StaticFiles(packages=[("webui", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=ui.lifespan,
                    exception_handlers={ToolError: stack_failed, CsrfError: csrf_failed})
    app.add_middleware(Guard, access=access)
    app.state.ui = ui
    return app
