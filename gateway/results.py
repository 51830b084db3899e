"""Typed tool results (structured MCP output) and their construction from wire replies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import protocol as p

CONTENT_CAP = 2000  # characters of a memory returned by search; the rest via its id


@dataclass
class StoreResult:
    id: str
    duplicate: bool
    project: str
    redacted: list[str]
    message: str
    session_id: str | None = None  # the session it was stored in


@dataclass
class ScoreParts:
    """Why a memory ranked where it did (see the README's "How search ranks")."""

    relevance: float  # from meaning and keywords, 0..1, before any time preference
    vector: float | None  # cosine to the query (the best chunk of a long memory)
    keyword: float  # share of the query's information the memory matches, 0..1
    bm25: float  # the raw BM25 score
    recency: float  # 1 now, 0.5 after a half-life (the explicit decay's factor when it is on)
    chunk: int  # which chunk of a long memory matched best; -1 the whole memory


@dataclass
class MemoryHit:
    id: str
    kind: str
    project: str
    tags: list[str]
    created_at: str
    session_id: str | None
    content: str
    truncated: bool
    snippet: str
    score: float
    parts: ScoreParts
    metadata: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # file paths the memory names
    supersedes: list[str] = field(default_factory=list)  # older memories it restates
    superseded_by: str | None = None  # a newer memory that restates it with a new fact


@dataclass
class SearchResult:
    query: str
    mode: str  # hybrid | keyword (embedding pool down) | recent (no query: newest first)
    note: str
    total_candidates: int  # results at or above min_score (for recent: every match)
    offset: int
    results: list[MemoryHit]
    since: str | None = None
    until: str | None = None
    files: list[str] | None = None


def hit(h: p.Hit) -> MemoryHit:
    m = h.memory
    return MemoryHit(
        id=m.id, kind=m.kind, project=m.project, tags=m.tags, created_at=m.created_at,
        session_id=m.session_id, content=m.content[:CONTENT_CAP],
        truncated=len(m.content) > CONTENT_CAP, snippet=h.snippet, score=round(h.score, 6),
        parts=ScoreParts(relevance=round(h.relevance, 6),
                         vector=None if h.vector is None else round(h.vector, 4),
                         keyword=round(h.keyword, 4), bm25=round(h.bm25, 4),
                         recency=round(h.decay, 4), chunk=h.chunk),
        metadata=m.metadata, files=m.files, supersedes=h.supersedes,
        superseded_by=h.superseded_by)


@dataclass
class FullMemory:
    """A memory with all of its content (``get_memory``)."""

    id: str
    kind: str
    project: str
    tags: list[str]
    created_at: str
    session_id: str | None
    content: str
    metadata: dict[str, Any]


@dataclass
class MemoriesResult:
    memories: list[FullMemory]
    missing: list[str]  # ids asked for that no memory has


def full_memory(m: p.Memory) -> FullMemory:
    return FullMemory(id=m.id, kind=m.kind, project=m.project, tags=m.tags,
                      created_at=m.created_at, session_id=m.session_id, content=m.content,
                      metadata=m.metadata)


def search_result(query: str, reply: p.SearchHits, note: str, offset: int = 0,
                  files: list[str] | None = None) -> SearchResult:
    return SearchResult(query=query, mode=reply.mode, note=note,
                        total_candidates=reply.total_candidates, offset=offset,
                        results=[hit(h) for h in reply.hits], since=reply.since,
                        until=reply.until, files=files)
