"""The memory pages: the searchable, filterable list (and its results alone, for
search-as-you-type), one memory with its links and neighbours, and the export of a view."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from fastmcp.exceptions import ToolError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shared import protocol as p
from shared.errors import BadRequest
from webui.filters import DEFAULT_PER_PAGE, ID_RE, PER_PAGE, MemoryView, pages

NEIGHBOURS = 8
EXPORT_PAGE = 500  # memories per request while exporting
EXPORT_QUERY_MAX = 5000  # results of a search exported at most (a filter alone: all)
NOTICES = {"deleted", "cancelled", "refused", "none"}


def _ui(request: Request):
    return request.app.state.ui


def _bad_request(exc: ToolError) -> str | None:
    """The message of a ``bad_request`` from the store (a filter it refused), else None."""
    return exc.__cause__.message if isinstance(exc.__cause__, BadRequest) else None


async def listing(request: Request) -> Response:
    ui = _ui(request)
    view = MemoryView.from_params(request.query_params)
    partial = request.query_params.get("partial") == "1"
    errors = list(view.errors)
    reply, note, took_ms = None, "", 0.0
    if not errors:
        t0 = time.perf_counter()
        try:
            reply, note = await ui.gw.search(view.q, limit=view.per_page, offset=view.offset,
                                             **view.search_fields(ui.tz))
        except ToolError as exc:
            message = _bad_request(exc)
            if message is None:
                raise
            errors.append(message)
        took_ms = (time.perf_counter() - t0) * 1000
    context: dict[str, Any] = {
        "view": view, "reply": reply, "note": note, "errors": errors, "took_ms": took_ms,
        "pages": pages(view, reply.total_candidates) if reply else [],
        "now": datetime.now(UTC)}
    status = 400 if errors else 200
    if partial:
        return ui.render(request, "_results.html", status=status, **context)
    facets = await ui.facets()
    notice = {k: v for k, v in request.query_params.items() if k in NOTICES}
    return ui.render(request, "memories.html", status=status, title="Memories",
                     active="memories", facets=facets, per_page_choices=PER_PAGE,
                     default_per_page=DEFAULT_PER_PAGE,
                     notice=notice, **context)


async def detail(request: Request) -> Response:
    ui = _ui(request)
    memory_id = request.path_params["memory_id"]
    if not ID_RE.fullmatch(memory_id):
        return ui.render(request, "error.html", status=404, title="No such memory",
                         message="A memory id is 1-64 letters, digits, _ or -.", active="")
    found = await ui.store(p.GetMemories(ids=[memory_id]))
    if not found.items:
        return ui.render(request, "error.html", status=404, title="No such memory",
                         message=f"There is no memory {memory_id} (it may have been deleted).",
                         active="memories")
    memory: p.Memory = found.items[0]
    linked_ids = [*memory.supersedes, *([memory.superseded_by] if memory.superseded_by else [])]
    linked = {}
    if linked_ids:
        linked = {m.id: m for m in (await ui.store(p.GetMemories(ids=linked_ids))).items}
    near = await ui.store(p.Neighbours(id=memory_id, limit=NEIGHBOURS))
    return ui.render(request, "memory.html", title=f"Memory {memory_id}", active="memories",
                     memory=memory, linked=linked, near=near, now=datetime.now(UTC))


async def export(request: Request) -> Response:
    """The memories of the current view as JSONL (one memory a line, the format of
    ``export_memories``, so ``import_memories`` takes it back). Without a query: every memory
    the filters allow, as of when the export began; with one: its results, best first."""
    ui = _ui(request)
    view = MemoryView.from_params(request.query_params)
    if view.errors:
        return ui.render(request, "error.html", status=400, title="Cannot export",
                         message="; ".join(view.errors), active="memories")
    fields = view.search_fields(ui.tz)
    started = datetime.now(UTC)
    if not view.q:  # rows stored meanwhile would shift the pages: leave them out
        fields["until"] = min(fields.get("until", started.isoformat()), started.isoformat(),
                              key=datetime.fromisoformat)
    # The first page is asked before the response starts, so a refused filter is a page.
    try:
        first, _ = await ui.gw.search(view.q, limit=EXPORT_PAGE, offset=0, **fields)
    except ToolError as exc:
        message = _bad_request(exc)
        if message is None:
            raise
        return ui.render(request, "error.html", status=400, title="Cannot export",
                         message=message, active="memories")

    async def lines():
        reply, offset = first, 0
        while True:
            for h in reply.hits:
                yield json.dumps(_export_row(h.memory), ensure_ascii=False) + "\n"
            offset += len(reply.hits)
            if len(reply.hits) < EXPORT_PAGE or (view.q and offset >= EXPORT_QUERY_MAX):
                return
            reply, _ = await ui.gw.search(view.q, limit=EXPORT_PAGE, offset=offset, **fields)

    name = f"sessiond-{started.strftime('%Y%m%d-%H%M%S')}.jsonl"
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="{name}"'})


def _export_row(m: p.Memory) -> dict[str, Any]:
    return {"id": m.id, "kind": m.kind, "content": m.content, "project": m.project,
            "tags": m.tags, "session_id": m.session_id, "created_at": m.created_at,
            "metadata": m.metadata}
