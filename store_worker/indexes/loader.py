"""Rebuild the in-memory catalogue, text index and vectors from the database at open."""

from __future__ import annotations

import duckdb
import numpy as np

from store_worker.indexes.accelerated_index import ANN_MIN_ROWS
from store_worker.indexes.catalog import Catalog
from store_worker.indexes.memory_vectors import MemoryVectors
from store_worker.indexes.text_index import TextIndex
from store_worker.storage.schema import EMBEDDING_DIM

# Row numbers are positions in id order: every query below numbers rows that way.


def _column(result: dict[str, np.ndarray], name: str) -> np.ndarray:
    col = result[name]
    return col.filled() if isinstance(col, np.ma.MaskedArray) else col


def load_catalog(con: duckdb.DuckDBPyConnection) -> Catalog:
    cat = Catalog()
    res = con.execute(
        "SELECT m.id, m.project, m.kind, epoch_us(m.created_at) AS us, m.doc_len, m.tags,"
        " m.content_hash, m.is_error, m.n_chunks, m.files, m.session_id,"
        " e.id IS NOT NULL AS embedded"
        " FROM memories m LEFT JOIN (SELECT id FROM memory_embeddings) e USING (id) ORDER BY m.id"
    ).fetchnumpy()
    if len(res["id"]) == 0:
        return cat
    cat.append(
        _column(res, "id").tolist(),
        _column(res, "project").tolist(),
        _column(res, "kind").tolist(),
        _column(res, "us").astype(np.int64),
        _column(res, "doc_len").astype(np.int64),
        [list(t) for t in _column(res, "tags").tolist()],
        _column(res, "content_hash").tolist(),
        _column(res, "embedded").astype(bool),
        is_error=_column(res, "is_error").astype(bool),
        n_chunks=_column(res, "n_chunks").astype(np.int16),
        files=[list(f) for f in _column(res, "files").tolist()],
        sessions=_column(res, "session_id").tolist(),
    )
    for newer, older in con.execute(
            "SELECT newer, older FROM memory_links WHERE kind = 'supersedes'"
            " ORDER BY created_at").fetchall():
        n_row, o_row = cat.row_of.get(newer), cat.row_of.get(older)
        if n_row is not None and o_row is not None:
            cat.supersede(n_row, o_row)
    return cat


def load_text_index(con: duckdb.DuckDBPyConnection) -> TextIndex:
    index = TextIndex()
    terms = [r[0] for r in con.execute(
        "SELECT DISTINCT term FROM memory_terms ORDER BY term").fetchall()]
    if not terms:
        return index
    res = con.execute(
        """
        WITH d AS (SELECT term, (row_number() OVER (ORDER BY term)) - 1 AS tid
                   FROM (SELECT DISTINCT term FROM memory_terms)),
             r AS (SELECT (row_number() OVER (ORDER BY id)) - 1 AS row, terms, tfs FROM memories),
             t AS (SELECT row, unnest(terms) AS term, unnest(tfs) AS tf FROM r)
        SELECT d.tid, t.row, t.tf FROM t JOIN d USING (term) ORDER BY d.tid
        """
    ).fetchnumpy()
    index.load(terms, _column(res, "tid"), _column(res, "row"), _column(res, "tf"))
    return index


def _pages(con: duckdb.DuckDBPyConnection, table: str, columns: str, page: int = 50_000):
    """``table`` read in rowid ranges (no sort; bounded memory per page)."""
    top = con.execute(f"SELECT max(rowid) FROM {table}").fetchall()[0][0]
    for lo in range(0, -1 if top is None else top + 1, page):
        yield con.execute(f"SELECT {columns} FROM {table} WHERE rowid >= ? AND rowid < ?",
                          [lo, lo + page]).fetchnumpy()


def load_vectors(con: duckdb.DuckDBPyConnection, cat: Catalog,
                 ann_min_rows: int = ANN_MIN_ROWS) -> MemoryVectors:
    """Whole-memory vectors from ``memory_embeddings``, chunk vectors from ``memory_chunks``
    (vectors of deleted memories, if any, are ignored); marks the rows whose chunks are all
    there."""
    expected = int(np.count_nonzero(cat.embedded))
    index = MemoryVectors(EMBEDDING_DIM, capacity=max(1024, expected + expected // 4),
                          ann_min_rows=ann_min_rows)
    for res in _pages(con, "memory_embeddings", "id, embedding"):
        where = [cat.row_of.get(i, -1) for i in _column(res, "id").tolist()]
        keep = [k for k, r in enumerate(where) if r >= 0]  # -1: an orphan vector, ignored
        if keep:
            embeddings = _column(res, "embedding")
            index.add(np.asarray([where[k] for k in keep], dtype=np.int64),
                      np.stack([embeddings[k] for k in keep]).astype(np.float32), build=False)
    for res in _pages(con, "memory_chunks", "id, chunk, embedding"):
        where = [cat.row_of.get(i, -1) for i in _column(res, "id").tolist()]
        keep = [k for k, r in enumerate(where) if r >= 0]
        if keep:
            embeddings, numbers = _column(res, "embedding"), _column(res, "chunk")
            index.add_chunks(np.asarray([where[k] for k in keep], dtype=np.int64),
                             numbers[keep].astype(np.int32),
                             np.stack([embeddings[k] for k in keep]).astype(np.float32),
                             build=False)
    for row in np.flatnonzero(cat.n_chunks[: len(cat)] > 0).tolist():
        cat.chunks_done[row] = len(index.chunks_of(row)) >= cat.n_chunks[row]
    index.maybe_build()
    return index


def load_all(con: duckdb.DuckDBPyConnection, ann_min_rows: int = ANN_MIN_ROWS,
             ) -> tuple[Catalog, TextIndex, MemoryVectors]:
    """All three, read in one transaction so they agree."""
    con.execute("BEGIN")
    try:
        cat = load_catalog(con)
        text = load_text_index(con)
        vectors = load_vectors(con, cat, ann_min_rows)
    finally:
        con.execute("COMMIT")
    return cat, text, vectors
