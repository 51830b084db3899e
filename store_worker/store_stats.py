"""What ``reflection_stats`` reports about the store: counts by kind and project, embedding
progress (chunks included), supersession links, index state, sizes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from store_worker.storage import schema

if TYPE_CHECKING:
    from store_worker.memory_store import MemoryStore


def stats(store: MemoryStore) -> dict[str, Any]:
    con, cat, vectors = store.con, store.catalog, store.vectors

    def one(sql: str) -> int:
        return con.execute(sql).fetchall()[0][0]

    def counts(column: str) -> dict[str, int]:
        return dict(con.execute(
            f"SELECT {column}, count(*) FROM memories GROUP BY ALL ORDER BY 1").fetchall())

    n = len(cat)
    alive = cat.alive[:n]
    wal = Path(f"{store.path}.wal")
    return {
        "memories": one("SELECT count(*) FROM memories"),
        "by_kind": counts("kind"),
        "by_project": counts("project"),
        "embedded": one("SELECT count(*) FROM memory_embeddings SEMI JOIN memories USING (id)"),
        # memories whose whole vector or some chunk vector is still missing
        "pending_embeddings": cat.pending_count(),
        "chunks": {
            "memories_chunked": int(np.count_nonzero(alive & (cat.n_chunks[:n] > 0))),
            "chunks_expected": int(np.sum(cat.n_chunks[:n][alive], dtype=np.int64)),
            "chunks_embedded": one("SELECT count(*) FROM memory_chunks"),
        },
        "supersessions": one("SELECT count(*) FROM memory_links WHERE kind = 'supersedes'"),
        "supersession_checks_waiting": store.linker.pending,
        "dependencies": one("SELECT count(*) FROM project_dependencies"),
        "distinct_terms": len(store.text_index),
        "vector_index": {"kind": vectors.kind, "vectors": len(vectors),
                         "chunk_vectors": vectors.chunk_count,
                         "ann_build_s": vectors.ann_build_s, "ann_error": vectors.ann_error,
                         "ann_failures": vectors.ann_failures},
        "row_cache": store.row_cache.stats(),
        "indexes_loaded": store.load_info,
        "db_bytes": store.path.stat().st_size if store.path.exists() else 0,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        "schema_version": schema.current_version(con),
    }
