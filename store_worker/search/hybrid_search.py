"""Hybrid search over the store's in-memory indexes: BM25 and cosine, fused, decayed, paged.

The candidates come from the text index (BM25 over every row the filters allow) and, given a
query vector, the vector index; ``ranking.fuse`` merges them by reciprocal rank and applies the
time decay. Only the rows of the page asked for are read back (``MemoryStore.fetch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from store_worker.indexes.text_index import query_terms, snippet, top_k
from store_worker.records import (
    InvalidInput,
    SearchResult,
    check_project,
    check_vector,
    epoch_us,
    str_list,
    to_utc,
)
from store_worker.search import ranking
from store_worker.storage.schema import EMBEDDING_DIM as DIM

if TYPE_CHECKING:
    from store_worker.memory_store import MemoryStore

MAX_QUERY_CHARS = 10_000
MAX_LIMIT = 1000


def search(
    store: MemoryStore,
    query: str,
    *,
    query_vector: np.ndarray | None = None,
    project: str | None = None,
    projects: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    tags_any: Sequence[str] | None = None,
    tags_all: Sequence[str] | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int = 10,
    offset: int = 0,
    min_score: float = 0.0,
    decay: bool = True,
    half_life_days: float = 30.0,
    now: datetime | str | None = None,
) -> SearchResult:
    """Hybrid (BM25 + cosine, fused by RRF, see ``ranking``) or, without ``query_vector``,
    keyword-only search. Filters combine with AND (``project`` and ``projects`` are one list);
    ``since`` is inclusive, ``until`` exclusive. ``total_candidates`` counts the fused
    candidates at or above ``min_score`` (each list holds ``max(100, 4 * (offset + limit))``)."""
    if not isinstance(query, str) or len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query must be a string of at most {MAX_QUERY_CHARS} characters")
    if not (isinstance(limit, int) and 1 <= limit <= MAX_LIMIT):
        raise InvalidInput(f"limit must be an integer in 1..{MAX_LIMIT}")
    if not (isinstance(offset, int) and offset >= 0):
        raise InvalidInput("offset must be a non-negative integer")
    if not 0.0 <= float(min_score) <= 1.0:
        raise InvalidInput("min_score must be in 0..1")
    if not float(half_life_days) > 0:
        raise InvalidInput("half_life_days must be positive")
    names = str_list(projects, "projects")
    if project is not None:
        names = [check_project(project), *(names or [])]
    qvec = check_vector(query_vector, DIM) if query_vector is not None else None
    cat = store.catalog
    n = len(cat)
    allowed = cat.mask(
        names, str_list(kinds, "kinds"), str_list(tags_any, "tags_any"),
        str_list(tags_all, "tags_all"),
        epoch_us(to_utc(since, "since")) if since is not None else None,
        epoch_us(to_utc(until, "until")) if until is not None else None,
    )
    now_us = epoch_us(to_utc(now, "now") if now is not None else datetime.now(UTC))
    depth = max(100, 4 * (offset + limit))
    terms = query_terms(query)
    bm25, by_idf = store.text_index.scores(terms, cat.alive[:n], cat.doc_len[:n], cat.avgdl)
    ranked = [top_k(bm25, allowed, depth)]
    if qvec is not None:
        ranked.append(store.vector_index.search(qvec, depth, allowed))
    cands = ranking.fuse(
        ranked, cat.created_us, now_us=now_us, decay=decay,
        half_life_days=float(half_life_days), min_score=float(min_score), tie_key=cat.ids,
    )
    page = cands[offset : offset + limit]
    found = store.fetch([cat.ids[c.row] for c in page]) if page else {}
    hits = []
    for c in page:
        hit = found[cat.ids[c.row]]
        vec = store.vector_index.vector(c.row) if qvec is not None else None
        hit["snippet"] = snippet(hit["content"], by_idf or terms)
        hit["score"] = c.score
        hit["parts"] = {
            "bm25": float(bm25[c.row]),
            "vector": float(vec @ qvec) if vec is not None else None,
            "rrf": c.rrf,
            "decay": c.decay,
        }
        hits.append(hit)
    return SearchResult(hits, "hybrid" if qvec is not None else "keyword", len(cands))
