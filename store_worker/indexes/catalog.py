"""In-memory catalogue of the rows of ``memories``: the filter columns the search needs, by row number.

Row numbers are assigned at load (in id order, i.e. creation order) and on append, and are never
reused while the store is open: a deleted row keeps its number with ``alive`` false. Reopening the
store renumbers the rows compactly. Both in-memory indexes (text and vector) use these numbers.

It also finds a row by ``(project, content_hash)`` for dedup, without a query: DuckDB does not use
the table's multi-column UNIQUE index for a lookup (a scan: ~5 ms at 100k rows). The key
(``content_key``) is a 64-bit BLAKE2b digest of the pair, the same in every process: the index
snapshot saves these keys and a later process looks them up. (Python's ``hash()`` of a str is
salted per process: keys saved by one process never matched in the next, so a re-added memory
got a new id and its flush hit the table's UNIQUE constraint forever.) A 64-bit match is
probable, not certain, so a hit is confirmed against the row itself (``find``'s caller).
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

import numpy as np

from store_worker.indexes import packed
from store_worker.search.mentions import file_name, same_file


def content_key(project: str, content_hash: str) -> int:
    """The dedup key of ``content_hash`` in ``project``: stable across processes and runs."""
    digest = hashlib.blake2b(f"{project}\0{content_hash}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class Catalog:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self.project_codes: dict[str, int] = {}
        self.kind_codes: dict[str, int] = {}
        self.session_codes: dict[str, int] = {}  # session id -> code (-1: stored in none)
        self._tag_rows: dict[str, array] = {}
        cap = 1024
        self.project = np.zeros(cap, dtype=np.int32)
        self.kind = np.zeros(cap, dtype=np.int32)
        self.session = np.full(cap, -1, dtype=np.int32)
        self.created_us = np.zeros(cap, dtype=np.int64)
        self.doc_len = np.zeros(cap, dtype=np.float32)
        self.alive = np.zeros(cap, dtype=bool)
        self.embedded = np.zeros(cap, dtype=bool)
        self.content_key = np.zeros(cap, dtype=np.int64)
        self.is_error = np.zeros(cap, dtype=bool)
        self.n_chunks = np.zeros(cap, dtype=np.int16)  # chunks to embed besides the whole text
        self.chunks_done = np.zeros(cap, dtype=bool)  # every chunk vector is stored
        self.superseded_by = np.full(cap, -1, dtype=np.int64)  # row of the newer memory, or -1
        self._supersedes: dict[int, set[int]] = {}  # the reverse: row -> rows it supersedes
        self._row_by_content: dict[int, int] = {}
        self._file_rows: dict[str, array] = {}  # lowercased file name -> rows naming it
        self.files: dict[int, tuple[str, ...]] = {}  # row -> the file paths it names
        self.n_alive = 0
        self.total_len = 0

    _COLUMNS = ("project", "kind", "created_us", "doc_len", "alive", "embedded", "content_key",
                "is_error", "n_chunks", "chunks_done", "superseded_by", "session")
    _FILL: ClassVar[dict[str, int]] = {"superseded_by": -1, "session": -1}

    def __len__(self) -> int:
        """Row numbers handed out (dead rows included)."""
        return len(self.ids)

    @property
    def avgdl(self) -> float:
        return self.total_len / self.n_alive if self.n_alive else 0.0

    def _reserve(self, extra: int) -> None:
        need = len(self.ids) + extra
        cap = len(self.alive)
        if need <= cap:
            return
        cap = max(need, 2 * cap)
        for name in self._COLUMNS:
            old = getattr(self, name)
            new = np.full(cap, self._FILL.get(name, 0), dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    @staticmethod
    def _code(codes: dict[str, int], value: str) -> int:
        code = codes.get(value)
        if code is None:
            code = codes[value] = len(codes)
        return code

    def append(
        self,
        ids: Sequence[str],
        projects: Sequence[str],
        kinds: Sequence[str],
        created_us: Sequence[int] | np.ndarray,
        doc_lens: Sequence[int] | np.ndarray,
        tags: Iterable[Sequence[str]],
        content_hashes: Sequence[str],
        embedded: Sequence[bool] | np.ndarray | None = None,
        *,
        is_error: Sequence[bool] | np.ndarray | None = None,
        n_chunks: Sequence[int] | np.ndarray | None = None,
        files: Iterable[Sequence[str]] | None = None,
        sessions: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Add rows (all alive); returns their row numbers."""
        n = len(ids)
        keys = [content_key(p, h) for p, h in zip(projects, content_hashes, strict=True)]
        self._reserve(n)
        start = len(self.ids)
        rows = np.arange(start, start + n, dtype=np.int64)
        if n == 1:  # the common single add: scalar stores are ~10x cheaper than slice stores
            self.project[start] = self._code(self.project_codes, projects[0])
            self.kind[start] = self._code(self.kind_codes, kinds[0])
            self.created_us[start] = created_us[0]
            self.doc_len[start] = doc_lens[0]
            self.alive[start] = True
            self.embedded[start] = False if embedded is None else embedded[0]
            self.content_key[start] = keys[0]
            self.is_error[start] = False if is_error is None else is_error[0]
            self.n_chunks[start] = 0 if n_chunks is None else n_chunks[0]
            self.chunks_done[start] = self.n_chunks[start] == 0
            self.session[start] = self._session_code(sessions[0] if sessions else None)
        else:
            sl = slice(start, start + n)
            self.project[sl] = [self._code(self.project_codes, p) for p in projects]
            self.kind[sl] = [self._code(self.kind_codes, k) for k in kinds]
            self.created_us[sl] = created_us
            self.doc_len[sl] = doc_lens
            self.alive[sl] = True
            self.embedded[sl] = False if embedded is None else embedded
            self.content_key[sl] = keys
            self.is_error[sl] = False if is_error is None else is_error
            self.n_chunks[sl] = 0 if n_chunks is None else n_chunks
            self.chunks_done[sl] = self.n_chunks[sl] == 0
            self.session[sl] = ([self._session_code(s) for s in sessions] if sessions is not None
                                else -1)
        for row, paths in zip(range(start, start + n), files or (), strict=False):
            self._add_files(row, paths)
        self._row_by_content.update(zip(keys, range(start, start + n), strict=True))
        for row, row_tags in zip(range(start, start + n), tags, strict=True):
            for tag in row_tags:
                postings = self._tag_rows.get(tag)
                if postings is None:
                    postings = self._tag_rows[tag] = array("i")
                postings.append(row)
        self.ids.extend(ids)
        self.row_of.update(zip(ids, range(start, start + n), strict=True))
        self.n_alive += n
        self.total_len += int(np.sum(doc_lens, dtype=np.int64))
        return rows

    def _session_code(self, session_id: str | None) -> int:
        return -1 if session_id is None else self._code(self.session_codes, session_id)

    def _add_files(self, row: int, paths: Sequence[str]) -> None:
        if not paths:
            return
        self.files[row] = tuple(paths)
        for name in dict.fromkeys(file_name(path) for path in paths):
            postings = self._file_rows.get(name)
            if postings is None:
                postings = self._file_rows[name] = array("i")
            postings.append(row)

    def rows_naming(self, path: str) -> np.ndarray:
        """Alive rows whose content names ``path`` (see ``mentions.same_file``)."""
        postings = self._file_rows.get(file_name(path))
        if not postings:
            return np.empty(0, dtype=np.int64)
        rows = np.unique(np.frombuffer(postings, dtype=np.int32)).astype(np.int64)
        rows = rows[self.alive[rows]]
        keep = [r for r in rows.tolist() if any(same_file(f, path) for f in self.files[r])]
        return np.asarray(keep, dtype=np.int64)

    def supersede(self, newer: int, older: int) -> None:
        """Record that ``newer`` is the (newest) memory superseding ``older``."""
        before = int(self.superseded_by[older])
        if before >= 0:
            self._supersedes.get(before, set()).discard(older)
        self.superseded_by[older] = newer
        self._supersedes.setdefault(newer, set()).add(older)

    def supersedes(self, row: int) -> list[int]:
        """The alive rows ``row`` is the newest superseder of, in row order."""
        return sorted(r for r in self._supersedes.get(row, ()) if self.alive[r])

    def kill(self, ids: Iterable[str]) -> np.ndarray:
        """Mark rows deleted; returns the row numbers that were alive."""
        rows = [r for r in (self.row_of.pop(i, None) for i in ids) if r is not None]
        out = np.asarray(rows, dtype=np.int64)
        out = out[self.alive[out]]
        for row in out.tolist():
            key = int(self.content_key[row])
            if self._row_by_content.get(key) == row:
                del self._row_by_content[key]
        self.alive[out] = False
        self.embedded[out] = False
        self.chunks_done[out] = False
        for row in out.tolist():
            self.files.pop(row, None)
        # a memory whose superseder is deleted is current again
        if len(out):
            n = len(self.ids)
            orphaned = np.flatnonzero(np.isin(self.superseded_by[:n], out))
            self.superseded_by[orphaned] = -1
            for row in out.tolist():
                self._supersedes.pop(row, None)
        self.n_alive -= len(out)
        self.total_len -= int(np.sum(self.doc_len[out], dtype=np.int64))
        return out

    # ---------------------------------------------------------------- snapshot
    def state(self) -> dict[str, np.ndarray]:
        """Everything as arrays (for ``snapshot``); ``from_state`` turns it back."""
        n = len(self.ids)
        tags = sorted(self._tag_rows)
        names = sorted(self._file_rows)
        file_rows = [r for r, fs in self.files.items() for _ in fs]
        return {
            **{f"cat_{name}": getattr(self, name)[:n] for name in self._COLUMNS},
            **packed.pack(self.ids, "cat_ids"),
            "cat_project_names": np.array(list(self.project_codes), dtype="U"),
            "cat_kind_names": np.array(list(self.kind_codes), dtype="U"),
            "cat_session_names": np.array(list(self.session_codes), dtype="U"),
            "cat_tags": np.array(tags, dtype="U"),
            **_postings("cat_tag", [self._tag_rows[t] for t in tags]),
            "cat_totals": np.array([self.n_alive, self.total_len], dtype=np.int64),
            "cat_file_row": np.asarray(file_rows, dtype=np.int64),
            **packed.pack([f for fs in self.files.values() for f in fs], "cat_file_path"),
            **packed.pack(names, "cat_file_names"),
            **_postings("cat_file_name", [self._file_rows[name] for name in names]),
        }

    @classmethod
    def from_state(cls, st: dict[str, np.ndarray]) -> Catalog:
        cat = cls()
        cat.ids = packed.unpack(st, "cat_ids")
        n = len(cat.ids)
        cat._reserve(n + n // 4)
        for name in cls._COLUMNS:
            getattr(cat, name)[:n] = st[f"cat_{name}"]
        alive = np.flatnonzero(cat.alive[:n])
        if len(alive) == n:
            cat.row_of = dict(zip(cat.ids, range(n), strict=True))
        else:
            cat.row_of = dict(zip(map(cat.ids.__getitem__, alive.tolist()), alive.tolist(),
                                  strict=True))
        cat.project_codes = {p: i for i, p in enumerate(st["cat_project_names"].tolist())}
        cat.kind_codes = {k: i for i, k in enumerate(st["cat_kind_names"].tolist())}
        cat.session_codes = {s: i for i, s in enumerate(st["cat_session_names"].tolist())}
        cat._tag_rows = _unpostings("cat_tag", st["cat_tags"].tolist(), st)
        cat._row_by_content = dict(zip(cat.content_key[alive].tolist(), alive.tolist(),
                                       strict=True))
        cat.n_alive, cat.total_len = (int(x) for x in st["cat_totals"])
        rows, paths = st["cat_file_row"], packed.unpack(st, "cat_file_path")
        starts = np.flatnonzero(np.diff(rows, prepend=-1) != 0).tolist()  # a row's paths in a run
        ends = [*starts[1:], len(rows)] if starts else []
        cat.files = {row: tuple(paths[a:b]) for row, a, b in
                     zip(rows[starts].tolist(), starts, ends, strict=True)}
        cat._file_rows = _unpostings("cat_file_name", packed.unpack(st, "cat_file_names"), st)
        for older in np.flatnonzero(cat.superseded_by[:n] >= 0).tolist():
            cat._supersedes.setdefault(int(cat.superseded_by[older]), set()).add(older)
        return cat

    def find(self, project: str, content_hash: str) -> int | None:
        """The alive row that probably holds this content in this project (a 64-bit hash match:
        confirm it), or None when there is certainly none."""
        row = self._row_by_content.get(content_key(project, content_hash))
        return row if row is not None and self.alive[row] else None

    def rows_for(self, ids: Iterable[str]) -> list[int | None]:
        return [self.row_of.get(i) for i in ids]

    def tag_postings(self) -> Iterator[tuple[str, np.ndarray]]:
        """Each tag with the rows holding it (dead rows included; a row may repeat)."""
        for tag, postings in list(self._tag_rows.items()):
            yield tag, np.frombuffer(postings, dtype=np.int32).copy()

    def _tag_mask(self, tag: str) -> np.ndarray:
        mask = np.zeros(len(self.ids), dtype=bool)
        postings = self._tag_rows.get(tag)
        if postings:
            mask[np.frombuffer(postings, dtype=np.int32)] = True
        return mask

    def mask(
        self,
        projects: Sequence[str] | None = None,
        kinds: Sequence[str] | None = None,
        tags_any: Sequence[str] | None = None,
        tags_all: Sequence[str] | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        *,
        session_id: str | None = None,
    ) -> np.ndarray:
        """Boolean mask over row numbers: alive rows matching every given filter.
        ``since`` is inclusive and ``until`` exclusive (microseconds since the epoch, UTC)."""
        n = len(self.ids)
        mask = self.alive[:n].copy()
        if session_id is not None:
            mask &= self.session[:n] == self.session_codes.get(session_id, -2)
        if projects is not None:
            codes = [self.project_codes[p] for p in projects if p in self.project_codes]
            mask &= np.isin(self.project[:n], codes)
        if kinds is not None:
            codes = [self.kind_codes[k] for k in kinds if k in self.kind_codes]
            mask &= np.isin(self.kind[:n], codes)
        if since_us is not None:
            mask &= self.created_us[:n] >= since_us
        if until_us is not None:
            mask &= self.created_us[:n] < until_us
        if tags_any:
            any_mask = np.zeros(n, dtype=bool)
            for tag in tags_any:
                any_mask |= self._tag_mask(tag)
            mask &= any_mask
        for tag in tags_all or ():
            mask &= self._tag_mask(tag)
        return mask

    def count_by_kind(self, mask: np.ndarray) -> dict[str, int]:
        """How many rows of ``mask`` (over row numbers) hold each kind."""
        counts = np.bincount(self.kind[: len(mask)][mask], minlength=len(self.kind_codes))
        return {k: int(counts[c]) for k, c in sorted(self.kind_codes.items()) if counts[c]}

    def pending_rows(self, limit: int) -> np.ndarray:
        """Alive rows missing their whole vector or a chunk vector, oldest first."""
        n = len(self.ids)
        return np.flatnonzero(self.alive[:n] & ~(self.embedded[:n] & self.chunks_done[:n]))[:limit]

    def pending_count(self) -> int:
        """Alive rows missing a vector. Also read by the store's IO thread (its heartbeat) while
        the DB thread may be swapping a column for a longer copy: each column is read once and
        all are cut to a common length, so the count is at worst a moment old."""
        alive, embedded, done = self.alive, self.embedded, self.chunks_done
        n = min(len(self.ids), len(alive), len(embedded), len(done))
        return int(np.count_nonzero(alive[:n] & ~(embedded[:n] & done[:n])))


def _postings(prefix: str, lists: list[array]) -> dict[str, np.ndarray]:
    """Row lists as one CSR: ``{prefix}_ptr`` and ``{prefix}_rows``."""
    lengths = [len(rows) for rows in lists]
    return {f"{prefix}_ptr": np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))),
            f"{prefix}_rows": np.concatenate([np.frombuffer(rows, dtype=np.int32)
                                              for rows in lists]
                                             or [np.empty(0, dtype=np.int32)])}


def _unpostings(prefix: str, keys: list[str], st: dict[str, np.ndarray]) -> dict[str, array]:
    ptr, rows = st[f"{prefix}_ptr"].tolist(), st[f"{prefix}_rows"]
    return {key: array("i", rows[ptr[i]:ptr[i + 1]].tobytes()) for i, key in enumerate(keys)}
