"""The store's side of embedding: what still needs a vector, and storing the vectors that come
back (``MemoryStore.pending_embeddings`` / ``set_embeddings`` delegate here).

Work items are keyed: a memory id for its whole text, ``<id>#<n>`` for chunk ``n`` of a long
memory (``indexes.chunks``). The embed filler passes the keys through untouched. A memory is
fully embedded when its whole vector and every chunk vector are stored; only then does it stop
counting as pending. A memory that got its whole vector waits for its supersession check
(``search.supersession``), which ``link_superseded`` does a slice at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from store_worker.indexes import chunks
from store_worker.indexes.vector_index import normalise
from store_worker.records import InvalidInput
from store_worker.search import supersession
from store_worker.storage import rows
from store_worker.storage.rows import IDS
from store_worker.storage.schema import EMBEDDING_DIM as DIM

if TYPE_CHECKING:
    from store_worker.memory_store import MemoryStore

log = logging.getLogger("sessiond.store.embed")


def pending(store: MemoryStore, limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` (key, text) work items of memories not fully embedded, oldest first:
    the whole text if its vector is missing, then each chunk not stored yet."""
    cat = store.catalog
    todo = cat.pending_rows(max(0, int(limit)))
    if len(todo) == 0:
        return []
    ids = [cat.ids[r] for r in todo.tolist()]
    content = dict(store.con.execute(
        f"SELECT id, content FROM memories WHERE id IN {IDS}", [ids]).fetchall())
    out: list[tuple[str, str]] = []
    for row, rid in zip(todo.tolist(), ids, strict=True):
        text = content.get(rid)
        if text is None:
            continue
        if not cat.embedded[row]:
            out.append((rid, text))
        if cat.n_chunks[row]:
            have = set(store.vectors.chunks_of(row))
            out += [(chunks.chunk_key(rid, k), text[a:b])
                    for k, (a, b) in enumerate(chunks.spans(text)) if k not in have]
        if len(out) >= limit:
            break
    return out[:limit]


def store_vectors(store: MemoryStore, keys: Sequence[str], vectors: np.ndarray) -> int:
    """Store vectors (L2-normalised) for work-item ``keys``, replacing earlier ones; keys of
    memories no longer present are skipped. Returns how many vectors were stored."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape != (len(keys), DIM):
        raise InvalidInput(f"vectors must have shape ({len(keys)}, {DIM}), not {vectors.shape}")
    if not np.all(np.isfinite(vectors)):
        raise InvalidInput("vectors contain NaN or infinity")
    cat = store.catalog
    whole: dict[str, int] = {}  # id -> index in keys (the last vector of a key wins)
    parts: dict[tuple[str, int], int] = {}
    for k, key in enumerate(keys):
        rid, chunk = chunks.parse_key(key)
        if cat.row_of.get(rid) is None:
            continue
        if chunk is None:
            whole[rid] = k
        else:
            parts[(rid, chunk)] = k
    if not whole and not parts:
        return 0
    unit = normalise(vectors)
    new_rows = _store_whole(store, whole, unit)
    _store_chunks(store, parts, unit)
    if new_rows:
        store.linker.add(store.catalog, new_rows)  # checked for supersession when idle
    return len(whole) + len(parts)


def _store_whole(store: MemoryStore, whole: dict[str, int], unit: np.ndarray) -> list[int]:
    if not whole:
        return []
    cat = store.catalog
    ids = list(whole)
    labels = np.asarray([cat.row_of[i] for i in ids], dtype=np.int64)
    replace = [i for i, lab in zip(ids, labels.tolist(), strict=True) if cat.embedded[lab]]
    vecs = unit[[whole[i] for i in ids]]
    store.transaction(lambda con: rows.write_embeddings(con, ids, vecs, replace))
    store.vectors.add(labels, vecs)
    fresh = [int(r) for r in labels.tolist() if not cat.embedded[r]]
    cat.embedded[labels] = True
    return fresh


def _store_chunks(store: MemoryStore, parts: dict[tuple[str, int], int],
                  unit: np.ndarray) -> None:
    if not parts:
        return
    cat = store.catalog
    ids = sorted({rid for rid, _ in parts})
    content = dict(store.con.execute(
        f"SELECT id, content FROM memories WHERE id IN {IDS}", [ids]).fetchall())
    keep = []
    for (rid, chunk), k in parts.items():
        spans = chunks.spans(content.get(rid, ""))
        if chunk < len(spans):  # a stale key (content changed?) is dropped
            keep.append((rid, chunk, spans[chunk], k))
    if not keep:
        return
    vecs = unit[[k for *_, k in keep]]
    store.transaction(lambda con: rows.write_chunk_vectors(
        con, [r for r, *_ in keep], [c for _, c, *_ in keep], [s for _, _, s, _ in keep], vecs))
    labels = np.asarray([cat.row_of[r] for r, *_ in keep], dtype=np.int64)
    store.vectors.add_chunks(labels, np.asarray([c for _, c, *_ in keep]), vecs)
    for row in set(labels.tolist()):
        cat.chunks_done[row] = len(store.vectors.chunks_of(row)) >= cat.n_chunks[row]


def link_superseded(store: MemoryStore, budget_s: float | None = None) -> int:
    """Work through the memories waiting for their supersession check (``supersession.Linker``)
    until none is left or ``budget_s`` has passed; record the links found. Returns how many
    memories still wait."""
    cat, linker = store.catalog, store.linker
    deadline = None if budget_s is None else time.monotonic() + budget_s
    while linker.pending and (deadline is None or time.monotonic() < deadline):
        pairs = linker.step(cat, store.vectors)
        if pairs:
            _record(store, pairs)
    return linker.pending


def _record(store: MemoryStore, pairs: list[tuple[int, int, float]]) -> None:
    cat = store.catalog
    involved = sorted({r for a, b, _ in pairs for r in (a, b)})
    found = store.fetch([cat.ids[r] for r in involved])
    links = supersession.links(cat, pairs, lambda r: found[cat.ids[r]]["content"])
    if not links:
        return
    now = datetime.now(UTC)
    store.transaction(lambda con: con.execute(
        "INSERT OR REPLACE INTO memory_links SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),"
        " 'supersedes', unnest(?::FLOAT[]), ?",
        [[cat.ids[x.newer] for x in links], [cat.ids[x.older] for x in links],
         [x.score for x in links], now]))
    for x in sorted(links, key=lambda x: cat.created_us[x.newer]):
        current = cat.superseded_by[x.older]
        if current < 0 or cat.created_us[x.newer] >= cat.created_us[current]:
            cat.supersede(x.newer, x.older)
    log.debug("%d supersession links recorded", len(links))
