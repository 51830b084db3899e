"""Versioned DuckDB schema of the store, migrated at open.

Choices recorded here:

* Timestamps are ``TIMESTAMPTZ``; the store's connection sets ``TimeZone='UTC'`` so DuckDB hands
  back aware ``datetime`` objects in UTC and renders UTC in SQL.
* ``memories.id`` is a 32-hex-digit UUIDv7-style id (48-bit millisecond time + random), so ids
  sort by creation time.
* The word index ``memory_terms(term, memory_id, tf)`` is a view over two list columns of the
  memory row itself (``terms``, ``tfs``: one entry per distinct term), so a memory and its term rows
  are written by one INSERT, atomically. A separate term table needed BEGIN + a second INSERT +
  COMMIT per add: ~1 ms more (+40%) on the 2-core machine. The store scores BM25 from an in-memory
  copy of these postings (see ``text_index``), so nothing scans the view on the hot path.
* Embeddings live in ``memory_embeddings(id, embedding FLOAT[384])``, one row per embedded
  memory, rather than in a nullable column of ``memories``: DuckDB updates a list/array column by
  rewriting the whole row (content, tags, term lists), which measured ~0.6 ms per row against
  ~0.1 ms per row for inserting into the side table. A memory without a row there is "pending".
* ``memories.doc_len`` (terms emitted for the row by ``text_index.tokens``) is the only BM25
  statistic stored; ``N`` and ``avgdl`` are derived from it (``count(*)``, ``avg(doc_len)``) and
  ``df`` from ``memory_terms``.
* What search filters on is derived from the content at store time and kept in the row:
  ``files`` (paths the content names) and ``is_error`` (``search.mentions``), so "every memory
  that mentions src/app.py" is a lookup, not a scan of the top hits.
* A long memory is also embedded in overlapping chunks (``indexes.chunks``): one row per chunk
  in ``memory_chunks(id, chunk, start, stop, embedding)``, the character span it covers beside
  its vector; ``memories.n_chunks`` says how many it has.
* ``memory_links(newer, older, kind, score)`` records that a memory supersedes an older one
  (kind ``supersedes``; ``score`` is the evidence, see ``search.supersession``).
* ``project_dependencies`` accepts projects that have no memories: a dependency can be recorded
  before the other project has stored anything.
* Permissions (schema v4, ``store_worker.permissions_store``): ``permission_grants`` holds every
  grant ever made, an active one has no ``ended_at`` (ended: ``end_reason`` revoked, expired or
  replaced); ``permission_decisions`` is the log of every decision, numbered in order by a
  sequence (the newest ``KEPT_DECISIONS`` are kept).
* Sessions (schema v5, ``store_worker.sessions_store``): the v1 ``sessions`` table gains what a
  working session records (the gateway's pid, the commit HEAD named at the start, the scores at
  start, last checkpoint and end, why it ended, its handoff file); ``working_dir`` holds the
  project's resolved root. ``session_checkpoints`` holds each checkpoint, numbered per session.
  A memory's session is its ``session_id`` column (there since v1).
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

SCHEMA_VERSION = 5
EMBEDDING_DIM = 384
DEPENDENCY_TYPES = ("related", "continuation", "reference", "uses", "extends", "shares_code")

_V1 = [
    """
    CREATE TABLE memories (
        id           TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        content      TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        project      TEXT NOT NULL,
        tags         TEXT[] NOT NULL,
        session_id   TEXT,
        created_at   TIMESTAMPTZ NOT NULL,
        metadata     JSON NOT NULL,
        doc_len      INTEGER NOT NULL,
        terms        TEXT[] NOT NULL,
        tfs          INTEGER[] NOT NULL,
        UNIQUE (project, content_hash)
    )
    """,
    f"""
    CREATE TABLE memory_embeddings (
        id        TEXT PRIMARY KEY,
        embedding FLOAT[{EMBEDDING_DIM}] NOT NULL
    )
    """,
    """
    CREATE VIEW memory_terms AS
    SELECT unnest(terms) AS term, id AS memory_id, unnest(tfs) AS tf FROM memories
    """,
    """
    CREATE TABLE project_dependencies (
        source      TEXT NOT NULL,
        target      TEXT NOT NULL,
        type        TEXT NOT NULL CHECK (type IN ({types})),
        description TEXT NOT NULL DEFAULT '',
        created_at  TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (source, target, type)
    )
    """.format(types=", ".join(f"'{t}'" for t in DEPENDENCY_TYPES)),
    """
    CREATE TABLE sessions (
        id          TEXT PRIMARY KEY,
        project     TEXT,
        working_dir TEXT,
        started_at  TIMESTAMPTZ NOT NULL,
        ended_at    TIMESTAMPTZ,
        metadata    JSON
    )
    """,
]

# The token of the index snapshot written at the last clean close (``snapshot``): present only
# while nothing has been written since.
_V2 = ["CREATE TABLE index_snapshot (token TEXT NOT NULL)"]



def _backfill_mentions(con: duckdb.DuckDBPyConnection) -> None:
    """Derive ``files``, ``is_error`` and ``n_chunks`` of the rows written before version 3,
    page by page."""
    from store_worker.indexes import chunks
    from store_worker.search.mentions import files_mentioned, is_error

    last = ""
    while True:
        page = con.execute("SELECT id, content FROM memories WHERE id > ? ORDER BY id LIMIT 2000",
                           [last]).fetchall()
        if not page:
            return
        changed = [(i, files_mentioned(c), is_error(c), chunks.count(c)) for i, c in page]
        changed = [row for row in changed if row[1] or row[2] or row[3]]
        if changed:
            con.execute(
                "UPDATE memories SET files = u.files, is_error = u.is_error, n_chunks = u.n"
                " FROM (SELECT unnest(?::VARCHAR[]) AS id, unnest(?::VARCHAR[][]) AS files,"
                " unnest(?::BOOLEAN[]) AS is_error, unnest(?::SMALLINT[]) AS n) u"
                " WHERE memories.id = u.id",
                [[r[0] for r in changed], [r[1] for r in changed], [r[2] for r in changed],
                 [r[3] for r in changed]])
        last = page[-1][0]


_V3: list[str | Callable[[duckdb.DuckDBPyConnection], None]] = [
    "ALTER TABLE memories ADD COLUMN files TEXT[] NOT NULL DEFAULT []",
    "ALTER TABLE memories ADD COLUMN is_error BOOLEAN NOT NULL DEFAULT false",
    "ALTER TABLE memories ADD COLUMN n_chunks SMALLINT NOT NULL DEFAULT 0",
    f"""
    CREATE TABLE memory_chunks (
        id        TEXT NOT NULL,
        chunk     INTEGER NOT NULL,
        start     INTEGER NOT NULL,
        stop      INTEGER NOT NULL,
        embedding FLOAT[{EMBEDDING_DIM}] NOT NULL,
        PRIMARY KEY (id, chunk)
    )
    """,
    """
    CREATE TABLE memory_links (
        newer      TEXT NOT NULL,
        older      TEXT NOT NULL,
        kind       TEXT NOT NULL,
        score      FLOAT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (newer, older, kind)
    )
    """,
    _backfill_mentions,
]

_V4 = [
    "CREATE SEQUENCE permission_grant_ids",
    """
    CREATE TABLE permission_grants (
        id          BIGINT PRIMARY KEY DEFAULT nextval('permission_grant_ids'),
        operation   TEXT NOT NULL,
        level       TEXT NOT NULL,
        via         TEXT NOT NULL,
        granted_at  TIMESTAMPTZ NOT NULL,
        expires_at  TIMESTAMPTZ NOT NULL,
        gateway_pid INTEGER NOT NULL,
        ended_at    TIMESTAMPTZ,
        end_reason  TEXT
    )
    """,
    "CREATE SEQUENCE permission_decision_ids",
    """
    CREATE TABLE permission_decisions (
        id          BIGINT PRIMARY KEY DEFAULT nextval('permission_decision_ids'),
        decided_at  TIMESTAMPTZ NOT NULL,
        decision    TEXT NOT NULL,
        operation   TEXT NOT NULL,
        level       TEXT,
        detail      TEXT NOT NULL,
        gateway_pid INTEGER
    )
    """,
]

_V5 = [
    "ALTER TABLE sessions ADD COLUMN gateway_pid INTEGER",
    "ALTER TABLE sessions ADD COLUMN start_head TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE sessions ADD COLUMN branch TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE sessions ADD COLUMN start_score DOUBLE",
    "ALTER TABLE sessions ADD COLUMN last_score DOUBLE",
    "ALTER TABLE sessions ADD COLUMN end_score DOUBLE",
    "ALTER TABLE sessions ADD COLUMN end_reason TEXT",
    "ALTER TABLE sessions ADD COLUMN handoff_path TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE sessions ADD COLUMN last_active_at TIMESTAMPTZ",
    """
    CREATE TABLE session_checkpoints (
        session_id TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        made_at    TIMESTAMPTZ NOT NULL,
        score      DOUBLE,
        delta      DOUBLE,
        commit_state TEXT NOT NULL,
        sha        TEXT NOT NULL,
        memory_id  TEXT NOT NULL,
        note       TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    )
    """,
]

# Index i holds the steps (SQL, or a function of the connection) that bring the schema from
# version i to version i + 1.
MIGRATIONS: list[list] = [_V1, _V2, _V3, _V4, _V5]


class SchemaError(RuntimeError):
    """The database file was written by a newer version of the store."""


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT max(version) FROM schema_version").fetchall()
    return int(row[0][0] or 0)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; each step is one transaction. Returns the version."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    version = current_version(con)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"database schema version {version} is newer than this store supports "
            f"({SCHEMA_VERSION}); upgrade sessiond"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN")
        try:
            for step in MIGRATIONS[target - 1]:
                if callable(step):
                    step(con)
                else:
                    con.execute(step)
            con.execute("INSERT INTO schema_version (version) VALUES (?)", [target])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION
