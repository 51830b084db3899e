"""The store's vectors: one per memory (the whole text) plus one per chunk of a long memory.

Two ``AcceleratedIndex``es, each exact with an HNSW accelerator from ``ann_min_rows`` vectors:
``whole`` labelled by catalogue row, ``chunks`` labelled by a chunk slot, with ``chunk_row`` and
``chunk_no`` telling which memory and which of its chunks a slot holds. A memory's vector score
is the best cosine over its whole vector and its chunks (``search``, ``cosines``), and the
result says which one won (-1: the whole memory), so the snippet can show that chunk.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from store_worker.indexes.accelerated_index import ANN_MIN_ROWS, AcceleratedIndex

CHUNK_OVERSAMPLE = 3  # chunk hits asked per memory wanted (several chunks of one memory)


class MemoryVectors:
    def __init__(self, dim: int, capacity: int = 1024, *,
                 ann_min_rows: int = ANN_MIN_ROWS) -> None:
        self.dim = dim
        self.whole = AcceleratedIndex(dim, capacity, ann_min_rows=ann_min_rows)
        self.chunks = AcceleratedIndex(dim, 1024, ann_min_rows=ann_min_rows)
        self.chunk_row = np.full(1024, -1, dtype=np.int64)
        self.chunk_no = np.zeros(1024, dtype=np.int32)
        self.n_slots = 0
        self._slots: dict[int, list[int]] = {}  # row -> its chunk slots

    # ------------------------------------------------------------ reading
    def __len__(self) -> int:
        """Memories with a whole vector."""
        return len(self.whole)

    @property
    def chunk_count(self) -> int:
        return len(self.chunks)

    @property
    def kind(self) -> str:
        return self.whole.kind

    @property
    def ann_build_s(self) -> float | None:
        return self.whole.ann_build_s

    @property
    def ann_error(self) -> str:
        return self.whole.ann_error or self.chunks.ann_error

    @property
    def ann_failures(self) -> int:
        return self.whole.ann_failures + self.chunks.ann_failures

    def chunks_of(self, row: int) -> list[int]:
        """Chunk numbers stored for ``row``."""
        return [int(self.chunk_no[s]) for s in self._slots.get(row, ())]

    def vector(self, row: int) -> np.ndarray | None:
        return self.whole.vector(row)

    def cosines(self, rows: np.ndarray, q: np.ndarray, *,
                chunks: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """For each row: the best cosine over its whole vector and (unless ``chunks`` is
        false) its chunks (NaN: no vector), and which chunk gave it (-1: the whole memory)."""
        q = np.asarray(q, dtype=np.float32)
        best = self.whole.exact.dots(rows, q)
        which = np.full(len(rows), -1, dtype=np.int32)
        if not chunks:
            return best, which
        owner = [(i, slot) for i, row in enumerate(rows.tolist())
                 for slot in self._slots.get(row, ())]
        if not owner:
            return best, which
        idx = np.fromiter((i for i, _ in owner), dtype=np.int64, count=len(owner))
        slots = np.fromiter((s for _, s in owner), dtype=np.int64, count=len(owner))
        scores = self.chunks.exact.dots(slots, q)
        for i, slot, score in zip(idx.tolist(), slots.tolist(), scores.tolist(), strict=True):
            if not math.isnan(score) and not score <= best[i]:  # better (best may be NaN)
                best[i], which[i] = score, int(self.chunk_no[slot])
        return best, which

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None = None, *,
               chunks: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows with the best cosine (whole or chunk), best first, with that cosine."""
        rows, scores = self.whole.search(q, k, allowed)
        if len(self.chunks) == 0 or not chunks:
            return rows, scores
        slot_allowed = None
        if allowed is not None:
            owner = self.chunk_row[: self.n_slots]
            slot_allowed = np.zeros(self.n_slots, dtype=bool)
            live = owner >= 0
            slot_allowed[live] = allowed[np.minimum(owner[live], len(allowed) - 1)] & (
                owner[live] < len(allowed))
        slots, cscores = self.chunks.search(q, k * CHUNK_OVERSAMPLE, slot_allowed)
        best: dict[int, float] = dict(zip(rows.tolist(), scores.tolist(), strict=True))
        for row, score in zip(self.chunk_row[slots].tolist(), cscores.tolist(), strict=True):
            if score > best.get(row, -np.inf):
                best[row] = score
        merged = sorted(best.items(), key=lambda rs: (-rs[1], rs[0]))[:k]
        return (np.fromiter((r for r, _ in merged), dtype=np.int64, count=len(merged)),
                np.fromiter((s for _, s in merged), dtype=np.float32, count=len(merged)))

    # ------------------------------------------------------------ writing
    def add(self, rows: np.ndarray, vectors: np.ndarray, *, build: bool = True) -> None:
        """Whole-memory vectors of ``rows`` (insert or replace)."""
        self.whole.add(rows, vectors, build=build)

    def add_chunks(self, rows: np.ndarray, numbers: np.ndarray, vectors: np.ndarray, *,
                   build: bool = True) -> None:
        """Chunk vectors: chunk ``numbers[i]`` of ``rows[i]`` (a chunk stored again replaces
        the earlier vector)."""
        rows = np.asarray(rows, dtype=np.int64)
        numbers = np.asarray(numbers, dtype=np.int32)
        slots = np.empty(len(rows), dtype=np.int64)
        for i, (row, no) in enumerate(zip(rows.tolist(), numbers.tolist(), strict=True)):
            have = self._slots.setdefault(row, [])
            slot = next((s for s in have if self.chunk_no[s] == no), None)
            if slot is None:
                slot = self._new_slot(row, no)
                have.append(slot)
            slots[i] = slot
        self.chunks.add(slots, vectors, build=build)

    def _new_slot(self, row: int, no: int) -> int:
        if self.n_slots == len(self.chunk_row):
            grow = len(self.chunk_row)
            self.chunk_row = np.concatenate((self.chunk_row, np.full(grow, -1, dtype=np.int64)))
            self.chunk_no = np.concatenate((self.chunk_no, np.zeros(grow, dtype=np.int32)))
        slot = self.n_slots
        self.chunk_row[slot], self.chunk_no[slot] = row, no
        self.n_slots += 1
        return slot

    def remove(self, rows: np.ndarray) -> None:
        """Forget the whole vectors and chunks of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        self.whole.remove(rows)
        gone = [s for row in rows.tolist() for s in self._slots.pop(row, ())]
        if gone:
            slots = np.asarray(gone, dtype=np.int64)
            self.chunks.remove(slots)
            self.chunk_row[slots] = -1

    # ---------------------------------------------------- the ANN builds
    def maybe_build(self) -> None:
        self.whole.maybe_build()
        self.chunks.maybe_build()

    def close(self) -> None:
        """Stop the ANN builds (see ``AcceleratedIndex.close``)."""
        self.whole.close()
        self.chunks.close()

    def wait_ready(self, timeout_s: float) -> bool:
        ok = self.whole.wait_ready(timeout_s)
        self.chunks.wait_ready(timeout_s)
        return ok

    # ------------------------------------------------------------ snapshot
    def state(self) -> dict[str, np.ndarray]:
        chunk_state = {f"chunk_{k}": v for k, v in self.chunks.state().items()}
        return {**self.whole.state(), **chunk_state,
                "chunk_row": self.chunk_row[: self.n_slots],
                "chunk_no": self.chunk_no[: self.n_slots]}

    @classmethod
    def from_state(cls, dim: int, st: dict[str, np.ndarray], **kw: Any) -> MemoryVectors:
        index = cls(dim, **kw)
        index.whole = AcceleratedIndex.from_state(dim, st, **kw)
        index.chunks = AcceleratedIndex.from_state(
            dim, {k.removeprefix("chunk_"): v for k, v in st.items()
                  if k.startswith("chunk_vec_")}, **kw)
        n = len(st["chunk_row"])
        index.chunk_row = np.full(max(1024, n + n // 4), -1, dtype=np.int64)
        index.chunk_no = np.zeros(len(index.chunk_row), dtype=np.int32)
        index.chunk_row[:n], index.chunk_no[:n] = st["chunk_row"], st["chunk_no"]
        index.n_slots = n
        for slot in np.flatnonzero(index.chunk_row[:n] >= 0).tolist():
            index._slots.setdefault(int(index.chunk_row[slot]), []).append(slot)
        return index

    def save_ann(self, path: Path) -> bool:
        """Save the approximate indexes that are ready (the chunks' beside ``path``); True when
        either was saved."""
        chunks_saved = self.chunks.save_ann(_chunk_ann_path(path))
        return self.whole.save_ann(path) or chunks_saved

    def load_ann(self, path: Path) -> None:
        """Use the approximate indexes saved with the snapshot; build those that are missing
        (if the index is large enough)."""
        for index, file in ((self.whole, path), (self.chunks, _chunk_ann_path(path))):
            if file.exists():
                index.load_ann(file)
            else:
                index.maybe_build()


def _chunk_ann_path(path: Path) -> Path:
    """``<snapshot>.<token>.ann`` -> ``<snapshot>.<token>.chunks.ann``."""
    return path.with_suffix(".chunks.ann")
