"""Tools that search memory. Every search ranks by relevance (meaning and keywords, see the
README's "How search ranks") unless the embedding pool is down, in which case it runs on
keywords and the result's ``note`` says so. What a memory mentions (file paths, errors) was
found when it was stored, so those searches are lookups over every memory, paged, not filters
over the top hits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Annotated

from fastmcp import FastMCP
from pydantic import Field

from gateway.described import tool
from gateway.results import (
    MemoriesResult,
    MemoryHit,
    SearchResult,
    full_memory,
    hit,
    search_result,
)
from shared import protocol as p
from shared.limits import (
    MAX_ERROR_TYPE_LEN,
    MAX_FILE_PATH_LEN,
    MAX_ID_LEN,
    MAX_KIND_LEN,
    MAX_OFFSET,
    MAX_PROJECT_LEN,
    MAX_QUERY_CHARS,
    MAX_RESULTS,
    MAX_SESSION_ID_LEN,
    MAX_TAG_LEN,
    MAX_TAGS,
    MAX_TIME_EXPRESSION_LEN,
)

READ_ONLY = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}

Query = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS,
                             description="What to look for.")]
Limit = Annotated[int, Field(ge=1, le=MAX_RESULTS, description="How many results.")]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET, description="Results to skip (paging).")]
MinScore = Annotated[float, Field(ge=0.0, le=1.0, description=(
    "Drop results scoring below this (the score is a relevance in 0..1: about 0.5 and up is a "
    "strong match, under 0.05 a weak one)."))]
ProjectFilter = Annotated[str | None, Field(max_length=MAX_PROJECT_LEN, description=(
    "Only this project's memories; all projects when omitted."))]
Kinds = Annotated[list[Annotated[str, Field(max_length=MAX_KIND_LEN)]] | None, Field(
    max_length=16, description="Only these kinds (reflection, conversation, ...).")]
Tags = Annotated[list[Annotated[str, Field(max_length=MAX_TAG_LEN)]] | None, Field(
    max_length=MAX_TAGS, description="Only memories with any of these tags.")]
Decay = Annotated[bool | None, Field(description=(
    "Time preference. Omitted: rank by relevance; age only breaks near-ties, and the question's "
    "own words steer it (\"now\", \"latest\" favour the newest memory on the subject; "
    "\"last week\" favours that week). true: multiply by a half-life decay (favour recent). "
    "false: no time preference at all."))]
SessionFilter = Annotated[str | None, Field(max_length=MAX_SESSION_ID_LEN, description=(
    "Only memories stored in this session (an id from start or status); \"current\": this "
    "window's open session."))]
HalfLife = Annotated[float | None, Field(gt=0, le=36_500, description=(
    "Half-life in days of decay=true (default: the server's decay_half_life_days, 30)."))]


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
    @tool(mcp, annotations=READ_ONLY)
    async def quick_search(query: Query, project: ProjectFilter = None, limit: Limit = 5,
                           min_score: MinScore = 0.0,
                           session_id: SessionFilter = None) -> SearchResult:
        """Search past conversations and reflections by meaning and keywords."""
        reply, note = await gw.search(query, projects=_projects(project), limit=limit,
                                      min_score=min_score,
                                      session_id=gw.sessions.resolve_id(session_id))
        return search_result(query, reply, note)

    @tool(mcp, annotations=READ_ONLY)
    async def reflect_on_past(
        query: Query, limit: Limit = 10, min_score: MinScore = 0.0,
        project: ProjectFilter = None, decay: Decay = None, half_life_days: HalfLife = None,
        kinds: Kinds = None, tags: Tags = None, session_id: SessionFilter = None,
    ) -> SearchResult:
        """Search memory in depth, with filters; each result shows its score parts
        (relevance, vector, keyword, bm25, recency) and supersession links."""
        reply, note = await gw.search(query, projects=_projects(project), limit=limit,
                                      min_score=min_score, decay=decay,
                                      half_life_days=half_life_days, kinds=kinds, tags_any=tags,
                                      session_id=gw.sessions.resolve_id(session_id))
        return search_result(query, reply, note)

    @tool(mcp, annotations=READ_ONLY)
    async def get_more_results(
        query: Query, offset: Offset = 10, limit: Limit = 10, project: ProjectFilter = None,
        min_score: MinScore = 0.0, decay: Decay = None, half_life_days: HalfLife = None,
        kinds: Kinds = None, tags: Tags = None, session_id: SessionFilter = None,
    ) -> SearchResult:
        """The next page of a search: results from `offset` on. Pass the same filters as the
        first search (project, kinds, tags, decay, min_score, session_id) to page through the
        same list."""
        reply, note = await gw.search(query, projects=_projects(project), limit=limit,
                                      offset=offset, min_score=min_score, decay=decay,
                                      half_life_days=half_life_days, kinds=kinds, tags_any=tags,
                                      session_id=gw.sessions.resolve_id(session_id))
        return search_result(query, reply, note, offset=offset)

    @tool(mcp, annotations=READ_ONLY)
    async def get_memory(
        ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]],
                       Field(min_length=1, max_length=MAX_RESULTS, description=(
                           "Memory ids (from search results)."))],
    ) -> MemoriesResult:
        """Memories by id with their full content (search results show the first 2,000
        characters)."""
        reply = await gw.call(p.SERVICE_STORE, p.GetMemories(ids=list(dict.fromkeys(ids))))
        found = [full_memory(m) for m in reply.items]
        have = {m.id for m in found}
        return MemoriesResult(memories=found, missing=[i for i in ids if i not in have])

    @tool(mcp, annotations=READ_ONLY)
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

    @tool(mcp, annotations=READ_ONLY)
    async def search_by_file(
        file_path: Annotated[str, Field(min_length=1, max_length=MAX_FILE_PATH_LEN, description=(
            "A path or file name; `src/app.py` also finds mentions of `/repo/src/app.py`."))],
        limit: Limit = 10, offset: Offset = 0, project: ProjectFilter = None,
    ) -> SearchResult:
        """Every memory that names a file, newest first, paged (total_candidates says how
        many there are)."""
        reply, note = await gw.search("", projects=_projects(project), limit=limit,
                                      offset=offset, file_path=file_path, order="newest")
        return search_result(file_path, reply, note, offset=offset)

    @tool(mcp, annotations=READ_ONLY)
    async def search_by_concept(
        concept: Query, include_files: bool = True, limit: Limit = 10,
        project: ProjectFilter = None,
    ) -> SearchResult:
        """Memories about a concept (by meaning), plus the files they mention."""
        reply, note = await gw.search(concept, projects=_projects(project), limit=limit)
        files = None
        if include_files:
            found = Counter(f for h in reply.hits for f in h.memory.files)
            files = [f for f, _ in found.most_common(20)]
        return search_result(concept, reply, note, files=files)

    @tool(mcp, annotations=READ_ONLY)
    async def search_errors(
        query: Annotated[str | None, Field(max_length=MAX_QUERY_CHARS, description=(
            "What the error was about; omitted: the newest errors first."))] = None,
        error_type: Annotated[str | None, Field(max_length=MAX_ERROR_TYPE_LEN, description=(
            "Only errors naming this, e.g. TypeError, ECONNREFUSED, segfault"))] = None,
        limit: Limit = 10, offset: Offset = 0, project: ProjectFilter = None,
    ) -> SearchResult:
        """Past errors and how they were handled: memories about an exception, a failure, a
        traceback or an errno, optionally naming one error type, optionally about a topic."""
        text = query or ""
        reply, note = await gw.search(
            text, projects=_projects(project), limit=limit, offset=offset, errors_only=True,
            must_contain=error_type or None, order="relevance" if text.strip() else "newest")
        return search_result(text, reply, note, offset=offset)

    @tool(mcp, annotations=READ_ONLY)
    async def search_temporal(
        time_expression: Annotated[str, Field(
            min_length=1, max_length=MAX_TIME_EXPRESSION_LEN, description=(
            "e.g. today, yesterday, last week, past 3 days, since 2026-01-01"))],
        query: Annotated[str | None, Field(max_length=MAX_QUERY_CHARS, description=(
            "What about; omitted: every memory of the period, newest first."))] = None,
        limit: Limit = 20, offset: Offset = 0, project: ProjectFilter = None,
    ) -> SearchResult:
        """Memories from a time range given in words (in your time zone), optionally about a
        topic."""
        reply, note = await gw.search(query or "", projects=_projects(project), limit=limit,
                                      offset=offset, time_expression=time_expression)
        return search_result(query or "", reply, note, offset=offset)

    @tool(mcp, annotations=READ_ONLY)
    async def search_across_projects(
        query: Query,
        current_project: Annotated[str, Field(min_length=1, max_length=MAX_PROJECT_LEN)],
        limit: Limit = 10,
    ) -> SearchResult:
        """Search the current project and every project linked to it with
        add_project_dependency."""
        deps = await gw.call(p.SERVICE_STORE, p.ListDependencies(project=current_project))
        linked = {current_project} | {d.target for d in deps.items} | {d.source for d in deps.items}
        reply, note = await gw.search(query, projects=sorted(linked), limit=limit)
        note = (note + "; " if note else "") + f"projects searched: {', '.join(sorted(linked))}"
        return search_result(query, reply, note)
