"""Tools that search memory. Every search is hybrid (BM25 + vector, time-decayed) unless the
embedding pool is down, in which case it runs on keywords and the result's ``note`` says so."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Annotated

from fastmcp import FastMCP
from pydantic import Field

from gateway.results import MemoryHit, SearchResult, hit, search_result
from shared import protocol as p

READ_ONLY = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}

Query = Annotated[str, Field(min_length=1, max_length=2000, description="What to look for.")]
Limit = Annotated[int, Field(ge=1, le=100, description="How many results.")]
MinScore = Annotated[float, Field(ge=0.0, le=1.0, description="Drop results scoring below.")]
ProjectFilter = Annotated[str | None, Field(max_length=200, description=(
    "Only this project's memories; all projects when omitted."))]

FILE_RE = re.compile(r"(?:[\w.-]+/)*[\w-]+\.[A-Za-z0-9]{1,8}\b")
ERROR_RE = re.compile(r"\b\w*(?:Error|Exception)\b|Traceback|\bE[A-Z]{3,}\b|\bfail(?:ed|ure)?\b"
                      r"|\berror\b|\bpanic\b|\bsegfault\b", re.IGNORECASE)


@dataclass
class SearchSummary:
    query: str
    mode: str
    note: str
    count: int
    projects: dict[str, int]
    top_tags: dict[str, int]
    earliest: str | None
    latest: str | None
    top: list[MemoryHit]


def _projects(project: str | None) -> list[str] | None:
    return [project] if project else None


def register(mcp: FastMCP, gw) -> None:
    @mcp.tool(annotations=READ_ONLY)
    async def quick_search(query: Query, project: ProjectFilter = None, limit: Limit = 5,
                           min_score: MinScore = 0.0) -> SearchResult:
        """Search past conversations and reflections by meaning and keywords."""
        reply, note = await gw.search(query, projects=_projects(project), limit=limit,
                                      min_score=min_score)
        return search_result(query, reply, note)

    @mcp.tool(annotations=READ_ONLY)
    async def reflect_on_past(
        query: Query, limit: Limit = 10, min_score: MinScore = 0.0,
        project: ProjectFilter = None,
        decay: Annotated[bool, Field(description="Favour recent memories.")] = True,
        kinds: Annotated[list[Annotated[str, Field(max_length=32)]] | None, Field(
            max_length=16, description="Only these kinds (reflection, conversation, ...).")] = None,
        tags: Annotated[list[Annotated[str, Field(max_length=64)]] | None, Field(
            max_length=32, description="Only memories with any of these tags.")] = None,
    ) -> SearchResult:
        """Search memory in depth; each result shows its score parts (bm25, vector, decay)."""
        reply, note = await gw.search(query, projects=_projects(project), limit=limit,
                                      min_score=min_score, decay=decay, kinds=kinds,
                                      tags_any=tags)
        return search_result(query, reply, note)

    @mcp.tool(annotations=READ_ONLY)
    async def get_more_results(query: Query,
                               offset: Annotated[int, Field(ge=0, le=10_000)] = 10,
                               limit: Limit = 10, project: ProjectFilter = None) -> SearchResult:
        """The next page of a search: results from `offset` on."""
        reply, note = await gw.search(query, projects=_projects(project), limit=limit,
                                      offset=offset)
        return search_result(query, reply, note, offset=offset)

    @mcp.tool(annotations=READ_ONLY)
    async def search_summary(query: Query, project: ProjectFilter = None) -> SearchSummary:
        """An overview of what memory holds on a topic: how many, which projects, top tags,
        time span, and the best few snippets."""
        reply, note = await gw.search(query, projects=_projects(project), limit=50,
                                      min_score=0.05)
        hits = [hit(h) for h in reply.hits]
        times = sorted(h.created_at for h in hits)
        return SearchSummary(
            query=query, mode=reply.mode, note=note, count=len(hits),
            projects=dict(Counter(h.project for h in hits).most_common()),
            top_tags=dict(Counter(t for h in hits for t in h.tags).most_common(10)),
            earliest=times[0] if times else None, latest=times[-1] if times else None,
            top=hits[:5])

    @mcp.tool(annotations=READ_ONLY)
    async def search_by_file(
        file_path: Annotated[str, Field(min_length=1, max_length=1024)],
        limit: Limit = 10, project: ProjectFilter = None,
    ) -> SearchResult:
        """Memories that mention a file (by path or file name)."""
        name = file_path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
        reply, note = await gw.search(file_path, projects=_projects(project), limit=100,
                                      decay=False)
        reply.hits = [h for h in reply.hits if name in h.memory.content.lower()][:limit]
        return search_result(file_path, reply, note)

    @mcp.tool(annotations=READ_ONLY)
    async def search_by_concept(
        concept: Query, include_files: bool = True, limit: Limit = 10,
        project: ProjectFilter = None,
    ) -> SearchResult:
        """Memories about a concept (by meaning), plus the files they mention."""
        reply, note = await gw.search(concept, projects=_projects(project), limit=limit)
        files = None
        if include_files:
            found = Counter(f for h in reply.hits for f in FILE_RE.findall(h.memory.content))
            files = [f for f, _ in found.most_common(20)]
        return search_result(concept, reply, note, files=files)

    @mcp.tool(annotations=READ_ONLY)
    async def search_errors(
        query: Annotated[str | None, Field(max_length=2000)] = None,
        error_type: Annotated[str | None, Field(max_length=200, description=(
            "e.g. TypeError, ECONNREFUSED, segfault"))] = None,
        limit: Limit = 10, project: ProjectFilter = None,
    ) -> SearchResult:
        """Past errors and how they were handled: memories that mention errors, failures or
        tracebacks, optionally of one type or about a topic."""
        text = " ".join(x for x in (error_type, query) if x) or "error exception traceback failed"
        reply, note = await gw.search(text, projects=_projects(project), limit=100)
        wanted = error_type.lower() if error_type else None
        reply.hits = [h for h in reply.hits if ERROR_RE.search(h.memory.content)
                      and (wanted is None or wanted in h.memory.content.lower())][:limit]
        return search_result(text, reply, note)

    @mcp.tool(annotations=READ_ONLY)
    async def search_temporal(
        time_expression: Annotated[str, Field(min_length=1, max_length=200, description=(
            "e.g. today, yesterday, last week, past 3 days, since 2026-01-01"))],
        query: Annotated[str | None, Field(max_length=2000)] = None,
        limit: Limit = 20, project: ProjectFilter = None,
    ) -> SearchResult:
        """Memories from a time range given in words, optionally about a topic."""
        reply, note = await gw.search(query or "", projects=_projects(project), limit=limit,
                                      time_expression=time_expression)
        return search_result(query or "", reply, note)

    @mcp.tool(annotations=READ_ONLY)
    async def search_across_projects(
        query: Query,
        current_project: Annotated[str, Field(min_length=1, max_length=200)],
        limit: Limit = 10,
    ) -> SearchResult:
        """Search the current project and every project linked to it with
        add_project_dependency."""
        deps = await gw.call(p.SERVICE_STORE, p.ListDependencies(project=current_project))
        linked = {current_project} | {d.target for d in deps.items} | {d.source for d in deps.items}
        reply, note = await gw.search(query, projects=sorted(linked), limit=limit)
        note = (note + "; " if note else "") + f"projects searched: {', '.join(sorted(linked))}"
        return search_result(query, reply, note)
