"""Keyword index: tokenisation, BM25, snippets.

Tokenisation keeps the identifiers people search for whole *and* split into parts::

    parse_config_v2      -> parse_config_v2, parse, config, v2
    HTTPServerError      -> httpservererror, http, server, error
    src/store/db.py      -> src/store/db.py, src, store, db.py, db, py
    ECONNREFUSED, E1234  -> econnrefused, e1234
    foo.bar, 3.14        -> foo.bar, foo, bar, 3.14, 3, 14

Everything is lowercased; a small English stop-word list and one-letter words are dropped;
terms longer than ``MAX_TERM_LEN`` are dropped (their parts are kept).

BM25 (Robertson/Sparck Jones idf in the Lucene form, never negative)::

    idf(t)     = ln(1 + (N - df + 0.5) / (df + 0.5))
    score(d,q) = sum_t idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

with k1 = 1.2, b = 0.75; ``N``, ``avgdl`` and ``df`` are over the whole corpus (every project, live
rows only), ``dl`` is the number of terms emitted for the document (``memories.doc_len``).

Where it runs: ``memory_terms`` (a view over the ``terms``/``tfs`` lists of each memory row, see
``schema``) is the durable word index, written by the same INSERT as its memory. Scoring it with
SQL (``bm25_sql``, kept as the reference and checked against in the tests) scans every term row:
45-110 ms at 100k memories (~4M term rows, measured on a plain table) on the 2-core machine,
against a 20 ms budget for the whole search. So ``TextIndex`` holds the same postings in memory
(CSR arrays loaded at open plus per-term append buffers) and scores with numpy, touching only the
postings of the query terms (~1-4 ms at 100k).
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from store_worker.indexes import packed

K1 = 1.2
B = 0.75
MAX_TERM_LEN = 64
SAMPLE_FROM_ROWS_PER_K = 256  # top_k samples for a floor above this many rows per row asked
MAX_QUERY_TERMS = 32

_COMPOUND = re.compile(r"\w+(?:[./\\:\-]+\w+)*")
_PATH_SPLIT = re.compile(r"[/\\]+")
_DOT_SPLIT = re.compile(r"[.:\-]+")
_CAMEL_HUMP = re.compile(r"[a-z]{2}[A-Z]")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z0-9]+")

STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "had",
    "has", "have", "he", "her", "his", "i", "if", "in", "into", "is", "it", "its", "me", "my",
    "no", "not", "of", "on", "or", "our", "she", "so", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "to", "was", "we", "were", "what",
    "when", "which", "who", "will", "with", "would", "you", "your",
})

# Dropped from queries only (documents keep them): the words a question is built from, which
# say nothing about what it asks. Memories rarely contain "how" or "did", so their idf is high
# and a memory that happens to contain one would outscore the answer on a paraphrase.
QUERY_STOPWORDS = STOPWORDS | frozenset({
    "how", "why", "where", "whats", "do", "does", "did", "doing", "done", "can", "could",
    "should", "shall", "may", "might", "must", "any", "anything", "anyone", "some", "something",
    "every", "each", "one", "ones", "own", "about", "again", "also", "just", "only", "ever",
    "there", "here", "very", "really", "thing", "things", "stuff", "know", "remember", "recall",
    "tell", "please", "us", "im", "ive", "weve", "were", "youre", "whatever",
    "is", "am", "much", "many", "other", "else", "way", "ways", "kind", "sort", "bit",
})


def _keep(term: str) -> bool:
    if len(term) > MAX_TERM_LEN or term in STOPWORDS:
        return False
    return len(term) > 1 or term.isdigit()


def _word_terms(word: str, out: list[str]) -> None:
    """A ``\\w+`` run: itself, its snake_case parts, and its CamelCase parts."""
    out.append(word.lower())
    parts = [p for p in word.split("_") if p] if "_" in word else [word]
    if len(parts) > 1:
        out.extend(p.lower() for p in parts)
    for part in parts:
        if part.isascii() and not (part.islower() or part.isupper()):  # mixed case: CamelCase
            camel = _CAMEL.findall(part)
            if len(camel) > 1:
                out.extend(c.lower() for c in camel)


def tokens(text: str) -> list[str]:
    """All index terms of ``text`` in order, with repeats (the input of term frequencies)."""
    out: list[str] = []
    for m in _COMPOUND.finditer(text):
        compound = m.group()
        if compound.isalnum():  # fast path: a plain word or number
            _word_terms(compound, out)
            continue
        if not compound.replace("_", "").isalnum():
            out.append(compound.lower())
        components = _PATH_SPLIT.split(compound)
        for comp in components:
            if not comp:
                continue
            words = [w for w in _DOT_SPLIT.split(comp) if w]
            if len(components) > 1 and len(words) > 1:
                out.append(comp.lower())
            for w in words:
                _word_terms(w, out)
    return [t for t in out if _keep(t)]


def _identifier_shaped(compound: str, flag: bool) -> bool:
    """Whether a compound looks like something a program would name rather than a word of
    prose: joined by ``_ . / \\ :``, letters with digits (``v2``, ``BILL-482``), a number of 3+
    digits, camelCase with a real hump (``parseConfig``, ``DuckDB``; not ``iPhone``), a long
    ALLCAPS name (``ECONNREFUSED``; not ``URL`` or ``CLI``), or a command-line flag."""
    if flag or any(c in compound for c in "_./\\:"):
        return True
    letters = sum(c.isalpha() for c in compound)
    digits = sum(c.isdigit() for c in compound)
    if digits and (letters or digits >= 3):
        return True
    if compound.isascii() and _CAMEL_HUMP.search(compound):
        return True
    return letters >= 5 and compound.isupper()


def identifier_terms(text: str) -> set[str]:
    """The index terms of ``text`` that come from identifier-shaped words: names with digits,
    underscores, dots, slashes or colons, camelCase, ALLCAPS, command-line flags (``--dry-run``)
    and anything in backticks. A match on one of these is evidence a paraphrase cannot fake."""
    out: set[str] = set()
    in_ticks = False
    pos = 0
    for m in _COMPOUND.finditer(text):
        in_ticks ^= text.count("`", pos, m.start()) % 2 == 1
        pos = m.start()
        flag = text[max(0, m.start() - 1): m.start()] == "-"
        if in_ticks or _identifier_shaped(m.group(), flag):
            parts = tokens(m.group())
            out.update(parts[:1])  # the whole compound
            out.update(t for t in parts[1:] if _identifier_shaped(t, False))
    return out


def term_frequencies(text: str) -> tuple[list[str], list[int], int]:
    """``(terms, tfs, doc_len)`` for writing the term rows of one document."""
    toks = tokens(text)
    counts = Counter(toks)
    return list(counts.keys()), list(counts.values()), len(toks)


def query_terms(query: str) -> list[str]:
    """Distinct terms of a query (question words dropped, ``QUERY_STOPWORDS``), in first-seen
    order, at most ``MAX_QUERY_TERMS``."""
    terms = [t for t in dict.fromkeys(tokens(query)) if t not in QUERY_STOPWORDS]
    return terms[:MAX_QUERY_TERMS]


def bm25_sql(filter_sql: str) -> str:
    """The reference BM25 top-k statement over ``memory_terms`` (see the module doc for why the
    store scores in memory instead). Parameters, in order (``bm25_params``): terms (VARCHAR[]), N,
    avgdl, then the parameters of ``filter_sql`` (a condition on alias ``m``), then the limit.

    Returns rows ``(memory_id, score)`` best first.
    """
    return f"""
        WITH q AS (SELECT DISTINCT unnest(?::VARCHAR[]) AS term),
        hits AS (
            SELECT t.term, t.memory_id, t.tf FROM memory_terms t SEMI JOIN q USING (term)
        ),
        df AS (
            SELECT term, ln(1 + (?::DOUBLE - count(*) + 0.5) / (count(*) + 0.5)) AS idf
            FROM hits GROUP BY term
        ),
        scored AS (
            SELECT h.memory_id,
                   sum(df.idf * h.tf * {K1 + 1}
                       / (h.tf + {K1} * (1 - {B} + {B} * m.doc_len / greatest(?::DOUBLE, 1.0))))
                       AS score
            FROM hits h JOIN df USING (term) JOIN memories m ON m.id = h.memory_id
            WHERE {filter_sql}
            GROUP BY h.memory_id
        )
        SELECT memory_id, score FROM scored ORDER BY score DESC, memory_id LIMIT ?
    """


def bm25_params(terms: list[str], n_docs: int, avgdl: float, filter_params: list[Any],
                limit: int) -> list[Any]:
    return [terms, n_docs, avgdl, *filter_params, limit]


class TextIndex:
    """Postings ``term -> (row numbers, term frequencies)`` over catalogue rows, in memory.

    Loaded once from ``memory_terms`` as CSR arrays, then grown per added memory in append buffers.
    Deleted rows stay in the postings and are masked out by the caller's ``alive`` mask.
    """

    def __init__(self) -> None:
        self._tid: dict[str, int] = {}
        self._ptr = np.zeros(1, dtype=np.int64)
        self._rows = np.empty(0, dtype=np.int32)
        self._tf = np.empty(0, dtype=np.float32)
        self._extra_rows: dict[int, array] = {}
        self._extra_tf: dict[int, array] = {}

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def __len__(self) -> int:
        """Distinct terms."""
        return len(self._tid)

    def load(self, terms: list[str], tids: np.ndarray, rows: np.ndarray, tfs: np.ndarray) -> None:
        """Replace the contents. ``tids`` index ``terms`` and must be sorted ascending."""
        self.clear()
        self._tid = {t: i for i, t in enumerate(terms)}
        counts = np.bincount(np.asarray(tids, dtype=np.int64), minlength=len(terms))
        self._ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self._rows = np.ascontiguousarray(rows, dtype=np.int32)
        self._tf = np.ascontiguousarray(tfs, dtype=np.float32)

    def state(self) -> dict[str, np.ndarray]:
        """The postings as one CSR (append buffers merged in), for ``snapshot``."""
        terms = sorted(self._tid, key=self._tid.__getitem__)
        n_base = len(self._ptr) - 1
        base_tids = np.repeat(np.arange(n_base, dtype=np.int64), np.diff(self._ptr))
        extra = sorted(self._extra_rows)
        extra_tids = np.repeat(np.asarray(extra, dtype=np.int64),
                               [len(self._extra_rows[t]) for t in extra])
        tids = np.concatenate((base_tids, extra_tids))
        rows = np.concatenate([self._rows, *(np.frombuffer(self._extra_rows[t], dtype=np.int32)
                                             for t in extra)])
        tfs = np.concatenate([self._tf, *(np.frombuffer(self._extra_tf[t], dtype=np.float32)
                                          for t in extra)])
        order = np.argsort(tids, kind="stable")  # base postings stay ahead of later additions
        counts = np.bincount(tids, minlength=len(terms))
        return {**packed.pack(terms, "text_terms"),
                "text_ptr": np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
                "text_rows": rows[order], "text_tf": tfs[order]}

    @classmethod
    def from_state(cls, st: dict[str, np.ndarray]) -> TextIndex:
        index = cls()
        terms = packed.unpack(st, "text_terms")
        index._tid = dict(zip(terms, range(len(terms)), strict=True))
        index._ptr = st["text_ptr"].astype(np.int64)
        index._rows = np.ascontiguousarray(st["text_rows"], dtype=np.int32)
        index._tf = np.ascontiguousarray(st["text_tf"], dtype=np.float32)
        return index

    def add(self, row: int, terms: list[str], tfs: list[int]) -> None:
        for term, tf in zip(terms, tfs, strict=True):
            tid = self._tid.get(term)
            if tid is None:
                tid = self._tid[term] = len(self._tid)
            buf = self._extra_rows.get(tid)
            if buf is None:
                buf = self._extra_rows[tid] = array("i")
                self._extra_tf[tid] = array("f")
            buf.append(row)
            self._extra_tf[tid].append(tf)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        tid = self._tid.get(term)
        if tid is None:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float32)
        if tid + 1 < len(self._ptr):
            lo, hi = self._ptr[tid], self._ptr[tid + 1]
            rows, tfs = self._rows[lo:hi], self._tf[lo:hi]
        else:
            rows, tfs = np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float32)
        extra = self._extra_rows.get(tid)
        if extra:
            rows = np.concatenate((rows, np.frombuffer(extra, dtype=np.int32)))
            tfs = np.concatenate((tfs, np.frombuffer(self._extra_tf[tid], dtype=np.float32)))
        return rows, tfs

    def scores(
        self, terms: list[str], alive: np.ndarray, doc_len: np.ndarray, avgdl: float
    ) -> TextScores:
        """BM25 of ``terms`` over every row, and their idfs (see ``TextScores``).

        The work is a few float32 passes over each term's postings, in place where it can be
        (a common term has hundreds of thousands at 1M memories): with the length part folded
        into ``dl * c2 + c1`` and no per-term liveness filter while no row is deleted, the
        scoring took 3.5 ms at the median instead of 4.6 on the 1M load-matrix store."""
        n_rows = len(alive)
        out = np.zeros(n_rows, dtype=np.float32)
        n_docs = int(np.count_nonzero(alive))
        every_row_alive = n_docs == n_rows
        idfs: dict[str, float] = {}
        c1 = np.float32(K1 * (1.0 - B))  # k1 * (1 - b + b * dl / avgdl) = dl * c2 + c1
        c2 = np.float32(K1 * B / max(avgdl, 1.0))
        for term in terms:
            rows, tfs = self.postings(term)
            if len(rows) == 0:
                continue
            if every_row_alive:
                df = len(rows)
            else:
                live = alive[rows]
                df = int(np.count_nonzero(live))
                if df == 0:
                    continue
                rows, tfs = rows[live], tfs[live]
            idf = float(np.log1p((n_docs - df + 0.5) / (df + 0.5)))
            denom = doc_len[rows]  # a fresh array (fancy indexing), so it is ours to change
            denom *= c2
            denom += c1
            denom += tfs
            part = tfs * np.float32(idf * (K1 + 1.0))
            part /= denom
            out[rows] += part  # each row once per term's postings
            idfs[term] = idf
        return TextScores(out, idfs, n_docs)


@dataclass(slots=True)
class TextScores:
    """What the text index says about one query, over every row number.

    ``bm25``: the BM25 score (0 where no term matches). ``idf``: each query term that occurs in
    the corpus, with its idf. ``n_docs``: live rows."""

    bm25: np.ndarray
    idf: dict[str, float]
    n_docs: int

    @property
    def idf_total(self) -> float:
        return sum(self.idf.values())

    @property
    def by_idf(self) -> list[str]:
        """The query terms found in the corpus, most informative (rarest) first."""
        return sorted(self.idf, key=lambda t: (-self.idf[t], t))


def top_k(scores: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best rows with a positive score inside ``allowed``, best first (ties by row).

    Over many rows a floor is taken first: the ``k``-th best of an evenly spaced sample of the
    allowed rows. At least ``k`` rows reach it, so the ``k`` best are among the rows that do (a
    few thousand, not the ~170k a common query term scores at 1M memories): 0.7 ms at the
    median instead of 2.9 there, with the same result."""
    s = scores[: len(allowed)]
    if len(s) > SAMPLE_FROM_ROWS_PER_K * k:
        step = max(1, int(len(s) / np.sqrt(k * len(s))))  # a sample of ~sqrt(k * n) rows
        sample = s[::step][allowed[::step]]
        sample = sample[sample > 0]
        if len(sample) >= k:
            floor = np.partition(sample, len(sample) - k)[len(sample) - k]
            return _best(np.flatnonzero(s >= floor), s, allowed, k)
    return _best(np.flatnonzero(s > 0), s, allowed, k)


def _best(rows: np.ndarray, s: np.ndarray, allowed: np.ndarray,
          k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best allowed ``rows`` of ``s``, best first, ties by row."""
    rows = rows[allowed[rows]]
    vals = s[rows]
    if len(rows) > k:  # keep the k-th best value and above (its ties included), then sort
        keep = vals >= np.partition(vals, len(vals) - k)[len(vals) - k]
        rows, vals = rows[keep], vals[keep]
    order = np.lexsort((rows, -vals))[:k]
    return rows[order], vals[order]


def best_term_position(content: str, terms: list[str]) -> int:
    """Offset in ``content`` of the first occurrence of the first of ``terms`` (which the caller
    orders most-informative first) that occurs in it, preferring whole-word occurrences; -1 if
    none does."""
    low = content.lower()
    for term in terms:
        first = pos = low.find(term)
        while pos >= 0:
            end = pos + len(term)
            if ((pos == 0 or not low[pos - 1].isalnum())
                    and (end == len(low) or not low[end].isalnum())):
                return pos
            pos = low.find(term, pos + 1)
        if first >= 0:
            return first
    return -1


def snippet(content: str, terms: list[str], width: int = 200) -> str:
    """About ``width`` characters of ``content`` around the best matching term."""
    text = " ".join(content.split())
    if len(text) <= width:
        return text
    pos = best_term_position(text, terms)
    if pos < 0:
        start = 0
    else:
        start = max(0, pos - width // 3)
        if start > 0:
            space = text.find(" ", start, pos)
            start = space + 1 if space >= 0 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", start + width // 2, end)
        end = space if space > 0 else end
    out = text[start:end]
    return ("…" if start > 0 else "") + out + ("…" if end < len(text) else "")
