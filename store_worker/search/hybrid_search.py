"""Search over the store's in-memory indexes: candidates from BM25 and the vectors, scored by
``ranking``, filtered, paged.

The candidates are the best ``depth`` rows of each list inside the filters (BM25 over every
allowed row; cosine over every allowed whole-memory and chunk vector), and each candidate gets
both scores whichever list brought it. Without any query (no keyword and no vector), or with
``order="newest"``, the allowed rows are listed newest first: "what happened last week",
"every memory naming src/app.py". Only the rows of the page asked for are read back
(``MemoryStore.fetch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Literal

import numpy as np

from store_worker.indexes import chunks
from store_worker.indexes.text_index import (
    TextScores,
    identifier_terms,
    query_terms,
    snippet,
    top_k,
)
from store_worker.records import (
    InvalidInput,
    SearchResult,
    check_project,
    check_vector,
    epoch_us,
    str_list,
    to_utc,
)
from store_worker.search import intent, ranking
from store_worker.storage.schema import EMBEDDING_DIM as DIM

if TYPE_CHECKING:
    from store_worker.memory_store import MemoryStore

MAX_QUERY_CHARS = 10_000
MAX_LIMIT = 1000
FUSIONS = ("relevance", "rrf", "vector", "keyword")
# A query of at most this many words that is not a question is a keyword search: all its terms
# count as distinctive (``ranking``'s ident), as identifier-shaped ones always do.
KEYWORD_QUERY_WORDS = 3
_QUESTION_WORDS = frozenset({"what", "whats", "what's", "how", "why", "where", "when", "which",
                             "who", "do", "does", "did", "is", "are", "was", "were", "can",
                             "should", "could", "would", "will", "any"})
Order = Literal["relevance", "newest"]


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
    errors_only: bool = False,
    file_path: str | None = None,
    must_contain: str | None = None,
    session_id: str | None = None,
    limit: int = 10,
    offset: int = 0,
    min_score: float = 0.0,
    order: Order = "relevance",
    decay: bool | None = None,
    half_life_days: float = 30.0,
    fusion: str = "relevance",
    chunks: bool = True,
    now: datetime | str | None = None,
    tz: tzinfo | None = None,
) -> SearchResult:
    """Search memories. Filters combine with AND (``project`` and ``projects`` are one list;
    ``since`` inclusive, ``until`` exclusive; ``errors_only``: memories about an error;
    ``file_path``: memories naming that file; ``must_contain``: memories holding every word of
    it; ``session_id``: memories stored in that session). ``decay``: None (default) = a bounded recency prior plus the question's own time cues,
    True = multiply by ``0.5 ** (age / half_life_days)``, False = no time preference at all.
    ``fusion`` other than "relevance", and ``chunks=False`` (whole-memory vectors only), are
    for comparison (``ranking``, ``bench/retrieval_eval.py``). ``total_candidates``
    counts the results at or above ``min_score`` (in relevance order: among the candidates,
    each list holding ``max(100, 4 * (offset + limit))``)."""
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
    if fusion not in FUSIONS:
        raise InvalidInput(f"fusion must be one of {', '.join(FUSIONS)}")
    if order not in ("relevance", "newest"):
        raise InvalidInput("order must be relevance or newest")
    names = str_list(projects, "projects")
    if project is not None:
        names = [check_project(project), *(names or [])]
    qvec = check_vector(query_vector, DIM) if query_vector is not None else None
    cat = store.catalog
    n = len(cat)
    now_dt = to_utc(now, "now") if now is not None else datetime.now(UTC)
    now_us = epoch_us(now_dt)
    allowed = cat.mask(
        names, str_list(kinds, "kinds"), str_list(tags_any, "tags_any"),
        str_list(tags_all, "tags_all"),
        epoch_us(to_utc(since, "since")) if since is not None else None,
        epoch_us(to_utc(until, "until")) if until is not None else None,
        session_id=_session(session_id),
    )
    if errors_only:
        allowed &= cat.is_error[:n]
    if file_path is not None:
        naming = np.zeros(n, dtype=bool)
        naming[cat.rows_naming(file_path)] = True
        allowed &= naming
    if must_contain:
        allowed &= _containing(store, must_contain, n)

    asked = intent.read(query, now_dt, tz or UTC)
    text = _without(query, asked.period_words)
    terms = query_terms(text)
    if order == "newest" or (not terms and qvec is None):
        return _newest(store, allowed, limit, offset, now_us)

    depth = max(100, 4 * (offset + limit))
    idents = identifier_terms(text)
    if is_keyword_query(text):  # "wkhtmltopdf", "celery broker": the words are the point
        idents |= set(terms)
    found = candidates(store, terms, qvec, allowed, depth, fusion, idents, chunks=chunks)
    rows, cosine, keyword = found.rows, found.cosine, found.keyword
    created = cat.created_us[rows]
    if fusion == "relevance":
        z = ranking.logit(cosine, keyword, found.ident)
        rel = ranking.sigmoid(z)
        in_period = None
        if asked.has_period:
            in_period = ((created >= epoch_us(asked.since))
                         & (created <= epoch_us(asked.until))).astype(np.float64)
        superseded = cat.superseded_by[rows] >= 0
        subject = _subject_sim(store, rows, z) if asked.current else None
        final, rec = ranking.score(
            z, created, now_us=now_us, superseded=superseded, current=asked.current,
            subject_sim=subject, in_period=in_period, decay=decay,
            half_life_days=float(half_life_days))
    else:
        rel = (ranking.fuse_rrf(found.lists, rows) if fusion == "rrf"
               else np.nan_to_num(cosine, nan=0.0) if fusion == "vector" else keyword)
        rec = ranking.recency(created, now_us, float(half_life_days))
        final = rel * rec if decay is True else rel.astype(np.float64)
    scored = ranking.Scored(rows, final, rel, cosine, keyword, rec)
    keep = scored.order(cat.ids)
    keep = keep[scored.score[keep] >= float(min_score)]
    page = keep[offset: offset + limit]
    hits = _hits(store, scored, page, found.chunk, found.text.bm25, found.text.by_idf or terms)
    return SearchResult(hits, "hybrid" if qvec is not None else "keyword", len(keep))


@dataclass(slots=True)
class Candidates:
    """The rows worth scoring for one query, with what the scores are made of."""

    rows: np.ndarray
    cosine: np.ndarray  # best of whole and chunk vectors; NaN: none yet
    chunk: np.ndarray  # which chunk gave it (-1: the whole memory)
    keyword: np.ndarray  # ranking.keyword_match
    ident: np.ndarray  # share of the query's idf in identifier-shaped terms the row holds
    text: TextScores
    lists: list[tuple[np.ndarray, np.ndarray]]  # the (rows, scores) lists they came from


def candidates(store: MemoryStore, terms: list[str], qvec: np.ndarray | None,
               allowed: np.ndarray, depth: int, fusion: str = "relevance",
               idents: set[str] | frozenset[str] = frozenset(), *,
               chunks: bool = True) -> Candidates:
    """The best ``depth`` allowed rows by BM25 and by cosine (as ``fusion`` asks), each with
    every score part whichever list brought it."""
    cat = store.catalog
    n = len(cat)
    text = store.text_index.scores(terms, cat.alive[:n], cat.doc_len[:n], cat.avgdl)
    lists = []
    if fusion != "vector":
        lists.append(top_k(text.bm25, allowed, depth))
    if qvec is not None and fusion != "keyword":
        lists.append(store.vectors.search(qvec, depth, allowed, chunks=chunks))
    rows = (np.unique(np.concatenate([r for r, _ in lists])) if lists
            else np.empty(0)).astype(np.int64)
    if qvec is not None:
        cosine, chunk = store.vectors.cosines(rows, qvec, chunks=chunks)
    else:
        cosine = np.full(len(rows), np.nan, dtype=np.float32)
        chunk = np.full(len(rows), -1, dtype=np.int32)
    keyword = ranking.keyword_match(text.bm25[rows], text.idf_total)
    ident = _cover(store, text, rows, idents)
    return Candidates(rows, cosine, chunk, keyword, ident, text, lists)


def _subject_sim(store: MemoryStore, rows: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Cosine of each candidate near the best one (within ``CURRENT_MARGIN``) to the best one,
    by their whole-memory vectors; NaN for the rest and where a vector is missing."""
    out = np.full(len(rows), np.nan)
    if len(rows) == 0:
        return out
    top = store.vectors.vector(int(rows[np.argmax(z)]))
    if top is None:
        return out
    for i in np.flatnonzero(z >= z.max() - ranking.CURRENT_MARGIN).tolist():
        vec = store.vectors.vector(int(rows[i]))
        if vec is not None:
            out[i] = float(vec @ top)
    return out


def _session(session_id: str | None) -> str | None:
    if session_id is not None and not isinstance(session_id, str):
        raise InvalidInput("session_id must be a string")
    return session_id or None


def is_keyword_query(text: str) -> bool:
    """A few words typed as a search ("wkhtmltopdf", "celery broker"), not a question
    ("where are sessions stored?")."""
    words = text.split()
    return (0 < len(words) <= KEYWORD_QUERY_WORDS and "?" not in text
            and words[0].lower().strip("'\"`") not in _QUESTION_WORDS)


def _without(query: str, words: str) -> str:
    return query.replace(words, " ") if words else query


def _containing(store: MemoryStore, text: str, n: int) -> np.ndarray:
    """Rows holding every term of ``text`` (as the tokeniser splits it)."""
    mask = store.catalog.alive[:n].copy()
    terms = query_terms(text)
    if not terms:
        raise InvalidInput(f"nothing to look for in {text!r}")
    for term in terms:
        rows, _ = store.text_index.postings(term)
        has = np.zeros(n, dtype=bool)
        has[rows[rows < n]] = True
        mask &= has
    return mask


def _cover(store: MemoryStore, text: TextScores, rows: np.ndarray,
           chosen_terms: set[str] | frozenset[str]) -> np.ndarray:
    """Per candidate: the idf of the ``chosen_terms`` of the query that it holds, as a share of
    the idf of all the query's terms found in the corpus."""
    out = np.zeros(len(rows), dtype=np.float64)
    chosen = {t: idf for t, idf in text.idf.items() if t in chosen_terms}
    if len(rows) == 0 or not chosen:
        return out
    marks = np.zeros(max(len(store.catalog), int(rows.max()) + 1), dtype=bool)
    for term, idf in chosen.items():  # vectorised: a common term has ~10^5 postings at 1M
        posting_rows, _ = store.text_index.postings(term)
        if len(posting_rows):
            marks[:] = False
            marks[posting_rows] = True
            out[marks[rows]] += idf
    return out / text.idf_total


def _newest(store: MemoryStore, allowed: np.ndarray, limit: int, offset: int,
            now_us: int) -> SearchResult:
    cat = store.catalog
    rows = np.flatnonzero(allowed)
    order = np.lexsort((rows, -cat.created_us[rows]))
    page = rows[order][offset: offset + limit]
    rec = ranking.recency(cat.created_us[page], now_us, ranking.RECENCY_HALF_LIFE_DAYS)
    found = store.fetch([cat.ids[r] for r in page.tolist()]) if len(page) else {}
    hits = []
    for r, f in zip(page.tolist(), rec.tolist(), strict=True):
        hit = found[cat.ids[r]]
        hit["snippet"] = snippet(hit["content"], [])
        hit["score"] = f
        hit["parts"] = {"bm25": 0.0, "vector": None, "keyword": 0.0, "relevance": 0.0,
                        "recency": f, "chunk": -1}
        _links(store, r, hit)
        hits.append(hit)
    return SearchResult(hits, "recent", len(rows))


def _hits(store: MemoryStore, scored: ranking.Scored, page: np.ndarray, chunk: np.ndarray,
          bm25: np.ndarray, snippet_terms: list[str]) -> list[dict]:
    cat = store.catalog
    rows = scored.rows[page]
    found = store.fetch([cat.ids[r] for r in rows.tolist()]) if len(rows) else {}
    hits = []
    for i, row in zip(page.tolist(), rows.tolist(), strict=True):
        hit = found[cat.ids[row]]
        content = hit["content"]
        which = int(chunk[i])
        if which >= 0:  # the best vector was a chunk: show that part
            parts = chunks.spans(content)
            if which < len(parts):
                a, b = parts[which]
                hit["snippet"] = snippet(content[a:b], snippet_terms)
        if "snippet" not in hit:
            hit["snippet"] = snippet(content, snippet_terms)
        cos = scored.cosine[i]
        hit["score"] = float(scored.score[i])
        hit["parts"] = {
            "bm25": float(bm25[row]),
            "vector": None if np.isnan(cos) else float(cos),
            "keyword": float(scored.keyword[i]),
            "relevance": float(scored.relevance[i]),
            "recency": float(scored.recency[i]),
            "chunk": which,
        }
        _links(store, row, hit)
        hits.append(hit)
    return hits


def _links(store: MemoryStore, row: int, hit: dict) -> None:
    """The supersession links of a hit: which memory supersedes it, which it supersedes."""
    cat = store.catalog
    newer = int(cat.superseded_by[row])
    hit["superseded_by"] = cat.ids[newer] if newer >= 0 and cat.alive[newer] else None
    hit["supersedes"] = [cat.ids[r] for r in cat.supersedes(row)]
    hit["files"] = list(cat.files.get(row, ()))
