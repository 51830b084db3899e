"""The write-ahead journal: what makes a single store durable before DuckDB has the row.

A DuckDB commit of one memory costs 1.2-1.9 ms on the 2-core machine (the statement, then the
WAL write and its sync); appending the same record to this file and ``fdatasync``-ing it costs
about 0.2 ms. So a single ``add`` writes the record here, syncs, and is acknowledged; the
``MemoryStore`` writes journaled records into the table afterwards, many in one transaction
(``flush``, run when the store is idle and before any read of the table), then empties the
journal. At open, records still in the journal (the process died before a flush) are written
into the table first; a record whose id is already there is skipped, so replay is idempotent.

File format: a sequence of records, each ``length (u32, little-endian) | crc32 of the payload
(u32) | payload`` where the payload is a msgpack array of the ``Record`` fields. A process killed
mid-append leaves a short or corrupt last record; it was never acknowledged, and reading stops
there. Only the store worker opens this file, as it alone opens the database.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import msgspec

from shared.errors import StorageError
from store_worker.records import Record

log = logging.getLogger("sessiond.store.journal")

_HEAD = struct.Struct("<II")
# fdatasync skips the metadata a plain fsync also writes; macOS has no fdatasync.
_sync_data = getattr(os, "fdatasync", os.fsync)
MAX_RECORD_BYTES = 4 * 1024 * 1024  # a record is at most ~120 KB; more means corruption

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(
    tuple[str, str, str, str, str, list[str], str | None, datetime, str])


def encode(rec: Record) -> bytes:
    payload = _encoder.encode((rec.id, rec.kind, rec.content, rec.content_hash, rec.project,
                               rec.tags, rec.session_id, rec.created_at, rec.metadata))
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> Record:
    rid, kind, content, chash, project, tags, session_id, created_at, metadata = (
        _decoder.decode(payload))
    return Record.derive(rid, kind, content, chash, project, tags, session_id, created_at,
                         metadata, [])


Writer = Callable[[int, bytes], int]  # os.write's signature


class Journal:
    """The journal file of one store. ``write`` is how records reach the file (``os.write``);
    the fault tests pass one that fails as a full disk does."""

    def __init__(self, path: str | os.PathLike[str], write: Writer = os.write) -> None:
        self.path = Path(path)
        self._write = write
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self._fd).st_size

    def append(self, rec: Record) -> None:
        """Write one record and sync it to the disk: durable when this returns. Raises
        ``StorageError`` (the file left as it was) if the disk refuses it."""
        data = encode(rec)
        try:
            written = self._write(self._fd, data)
            if written != len(data):  # a short write to a regular file means the disk is full
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
            _sync_data(self._fd)
        except OSError as exc:
            # Cut off whatever part got written, or a later record would sit behind a torn one.
            os.ftruncate(self._fd, self.size)
            reason = exc.strerror or str(exc)
            log.error("could not append to the journal %s: %s", self.path, reason)
            raise StorageError(f"could not write the journal {self.path}: {reason}; nothing "
                               "was stored") from exc
        self.size += len(data)

    def records(self) -> Iterator[Record]:
        """The complete records in the file, in order; stops at a torn or corrupt tail."""
        with open(self.path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + _HEAD.size <= len(data):
            length, crc = _HEAD.unpack_from(data, pos)
            payload = data[pos + _HEAD.size : pos + _HEAD.size + length]
            if length > MAX_RECORD_BYTES or len(payload) < length or zlib.crc32(payload) != crc:
                log.warning("journal %s: ignoring %d bytes of a torn or corrupt tail at %d",
                            self.path, len(data) - pos, pos)
                return
            try:
                yield decode(payload)
            except msgspec.DecodeError as exc:
                log.warning("journal %s: undecodable record at %d (%s); stopping", self.path,
                            pos, exc)
                return
            pos += _HEAD.size + length

    def reset(self) -> None:
        """Empty the journal (its records are in the table) and sync that, so a deleted memory
        can never come back from an old journal."""
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self.size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
