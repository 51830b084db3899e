"""A bounded LRU of memory rows by id, so search results skip the table when they can.

Reading five rows back from DuckDB costs ~1 ms whatever the table's size (planning and
converting the columns, measured on the 2-core machine at 1k and 100k rows), which is a third of
a search at 1k memories. The rows a session searches for are mostly the same few hundred (its
project's recent work), so they are kept here, up to a byte budget. The cache holds only rows
that are in the table as they are there: the store puts rows in when it reads or flushes them
and drops them when it deletes them; nothing else changes a row.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

ROW_OVERHEAD_BYTES = 300  # dict, id, timestamps, tags: a rough per-row cost beyond the text


class RowCache:
    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._rows: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def _size(row: dict[str, Any]) -> int:
        metadata = row["metadata"]
        return ROW_OVERHEAD_BYTES + len(row["content"]) + (len(repr(metadata)) if metadata else 0)

    def get(self, ids: Iterable[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """(copies of the cached rows by id, the ids not cached)."""
        found: dict[str, dict[str, Any]] = {}
        missing: list[str] = []
        for i in ids:
            entry = self._rows.get(i)
            if entry is None:
                missing.append(i)
                continue
            self._rows.move_to_end(i)
            found[i] = dict(entry[0])  # callers add fields (snippet, score) to what they get
        self.hits += len(found)
        self.misses += len(missing)
        return found, missing

    def put(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            size = self._size(row)
            if size > self.max_bytes:
                continue
            old = self._rows.pop(row["id"], None)
            if old is not None:
                self.bytes -= old[1]
            self._rows[row["id"]] = (dict(row), size)
            self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, size) = self._rows.popitem(last=False)
            self.bytes -= size

    def discard(self, ids: Iterable[str]) -> None:
        for i in ids:
            old = self._rows.pop(i, None)
            if old is not None:
                self.bytes -= old[1]

    def stats(self) -> dict[str, int | float]:
        asked = self.hits + self.misses
        return {"rows": len(self._rows), "bytes": self.bytes, "hits": self.hits,
                "misses": self.misses, "hit_rate": round(self.hits / asked, 3) if asked else 0.0}
