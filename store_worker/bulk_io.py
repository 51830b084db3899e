"""Export and import as jobs the store runs in slices, so a big one never stalls other requests.

The store has one database thread. A job does a slice of its work (about ``SLICE_S``), then the
worker puts its next slice at the back of the thread's queue: every request that arrived meanwhile
runs first. One job runs at a time.

**Export** reads the memories through ``MemoryStore.export_reader``: one read-only transaction on
a connection of its own, so the file holds the store exactly as it was when the export started,
whatever is written or deleted between slices. The lines go to a hidden temporary file next to
the target, created with mode 0600 (never readable by others, not even for a moment); at the end
it is synced and put in place in one step, so a reader never sees half a file. Without
``overwrite`` it is linked into place, which fails if a file of that name appeared meanwhile:
nothing is ever replaced unless asked. A failed or abandoned export removes its temporary file.

**Import** first reads and validates the whole file (JSON, then every row as the store would
write it), a slice at a time, writing nothing: an invalid line anywhere imports nothing and says
which line. Then it writes the records in slices of one transaction each (``WRITE_SLICE_S``). The
choice, against one transaction held open across the slices: that would need a second connection
whose uncommitted rows the store's dedup cannot see, so content stored by someone else during the
import could collide at commit and wedge the journal (the UNIQUE (project, content_hash) index).
So a crash (or the deadline) in the middle of the writing leaves the slices committed so far:
whole rows, each searchable, and never reported as done: the caller gets an error, not a count.
Running the import again finishes it, since rows already present are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from pathlib import Path
from typing import Protocol

from shared import protocol as p
from shared.errors import BadRequest
from store_worker.memory_store import MemoryStore
from store_worker.records import InvalidInput, Record, record_from_item
from store_worker.storage.rows import ExportReader

SLICE_S = 0.01  # work per slice before queued requests get their turn
EXPORT_CHUNK = 256  # rows per fetch within a slice
# An import transaction costs ~10 ms whatever its size (the dedup query, the commit) plus ~80 us
# per new memory (terms, insert, indexes) or a few us per one already present: its size is
# adjusted after each so that it takes about WRITE_SLICE_S.
WRITE_SLICE_S = 0.02
WRITE_ROWS = (50, 250, 2000)  # least, first, most records per import transaction
MAX_LINE_BYTES = 4 * 1024 * 1024  # an exported row is at most ~0.7 MB, even all escapes


class Job(Protocol):
    what: str  # "export" or "import"

    def step(self) -> p.ReplyBody | None:
        """Do one slice; the reply when done, else None (run again later)."""

    def abort(self, why: str) -> str:
        """Stop for good and clean up; returns what the caller should be told."""


class ExportJob:
    what = "export"

    def __init__(self, store: MemoryStore, target: Path, project: str | None,
                 overwrite: bool) -> None:
        self.target, self.overwrite, self.count = target, overwrite, 0
        self.reader: ExportReader | None = None
        self.read_all = False
        self.tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.tmp, flags, 0o600)
        except OSError as exc:
            raise BadRequest(f"cannot write {target}: {exc}") from exc
        self.file = os.fdopen(fd, "w", encoding="utf-8")
        try:
            self.reader = store.export_reader(project)
        except BaseException:
            self._discard()
            raise

    def step(self) -> p.Count | None:
        assert self.reader is not None
        end = time.monotonic() + SLICE_S
        try:
            if self.read_all:  # the sync can take tens of ms: a slice of its own
                self._place()
                return p.Count(count=self.count, path=str(self.target))
            while time.monotonic() < end and not self.read_all:
                rows = self.reader.fetch(EXPORT_CHUNK)
                self.file.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
                self.count += len(rows)
                self.read_all = len(rows) < EXPORT_CHUNK
        except OSError as exc:
            self._discard()
            raise BadRequest(f"cannot write {self.target}: {exc}") from exc
        except BaseException:
            self._discard()
            raise
        return None

    def _place(self) -> None:
        assert self.reader is not None
        self.reader.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        try:
            if self.overwrite:
                os.replace(self.tmp, self.target)
            else:
                _link_new(self.tmp, self.target)
        finally:
            self.tmp.unlink(missing_ok=True)
        _sync_dir(self.target.parent)

    def abort(self, why: str) -> str:
        self._discard()
        return f"export to {self.target} stopped ({why}); nothing was written there"

    def _discard(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def _link_new(tmp: Path, target: Path) -> None:
    """Give ``tmp``'s file the name ``target``, failing if that name exists (atomically where the
    file system has hard links)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise BadRequest(f"{target} appeared while exporting; it was left alone (pass "
                         "overwrite=true to replace it)") from None
    except OSError:  # no hard links here (some FUSE and network file systems)
        if target.exists() or target.is_symlink():
            raise BadRequest(f"{target} appeared while exporting; it was left alone") from None
        os.replace(tmp, target)


def _sync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # not supported here: the file itself is synced
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename itself is done
    finally:
        os.close(fd)


class ImportJob:
    what = "import"

    def __init__(self, store: MemoryStore, path: Path) -> None:
        self.store, self.path = store, path
        try:
            self.file = open(path, "rb")  # noqa: SIM115 - closed when read, or by abort
        except OSError as exc:
            raise BadRequest(f"cannot read {path}: {exc}") from exc
        self.line = 0
        self.recs: list[tuple] = []  # validated records, packed (see _pack)
        self.done = 0  # records written (added or skipped)
        self.rows = WRITE_ROWS[1]  # in the next transaction
        self.added = self.skipped = 0
        self.taken: set[str] = set()

    def step(self) -> p.Count | None:
        if not self.file.closed:
            self._read_slice()
            return None
        t0 = time.monotonic()
        part = [_unpack(t) for t in self.recs[self.done:self.done + self.rows]]
        added, skipped = self.store.import_records(part, self.taken)
        self.added, self.skipped = self.added + added, self.skipped + skipped
        self.done += len(part)
        if self.done < len(self.recs):
            took = max(time.monotonic() - t0, 1e-4)
            least, _, most = WRITE_ROWS
            self.rows = min(most, max(least, int(len(part) * WRITE_SLICE_S / took)))
            return None
        self.recs = []
        return p.Count(count=self.added, skipped=self.skipped, path=str(self.path))

    def _read_slice(self) -> None:
        """Parse and validate lines for about ``SLICE_S``; close the file at its end."""
        end = time.monotonic() + SLICE_S
        try:
            while time.monotonic() < end:
                raw = self.file.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    self.file.close()
                    return
                self.line += 1
                if len(raw) > MAX_LINE_BYTES:
                    raise BadRequest(f"{self._where()}: longer than {MAX_LINE_BYTES} bytes; "
                                     "not a line of an export")
                if raw.strip():
                    self.recs.append(_pack(self._record(raw)))
        except OSError as exc:
            self.file.close()
            raise BadRequest(f"cannot read {self.path}: {exc}") from exc
        except BaseException:
            self.file.close()
            raise

    def _record(self, raw: bytes) -> Record:
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{self._where()}: not valid UTF-8: {exc}") from None
        except json.JSONDecodeError as exc:
            raise BadRequest(f"{self._where()}: not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise BadRequest(f"{self._where()}: each line must be a JSON object")
        try:
            return record_from_item(row, importing=True)
        except InvalidInput as exc:
            raise BadRequest(f"{self._where()}: {exc}") from None

    def _where(self) -> str:
        return f"{self.path}:{self.line}"


# A validated record waits for its slice as a tuple of strings, numbers and tuples: once the
# garbage collector has seen such a tuple it stops tracking it, so 100k waiting records do not
# make every full collection (a pause of the whole DB thread) walk them: 25-35 ms at 50k records
# held as ``Record`` objects.
_FIELDS = tuple(f.name for f in dataclasses.fields(Record))


def _pack(rec: Record) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in map(rec.__getattribute__, _FIELDS))


def _unpack(packed: tuple) -> Record:
    return Record(*(list(v) if isinstance(v, tuple) else v for v in packed))

    def abort(self, why: str) -> str:
        if not self.file.closed:
            self.file.close()
            return f"import of {self.path} stopped ({why}) while reading it; nothing was imported"
        self.recs = []
        return (f"import of {self.path} stopped ({why}) after {self.added} memories were added; "
                "run it again to add the rest (memories already present are skipped)")
