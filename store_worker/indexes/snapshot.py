"""A snapshot of the in-memory indexes, written at a clean close and read at the next open.

Rebuilding the indexes from the tables takes ~2.7 s at 100k memories on the 2-core machine
(catalogue 0.5 s, BM25 postings 1.2 s, vectors 1.0 s), and ten times that at 1M. Reading them
back as arrays takes a fraction of it. The snapshot (``<db>.index.npz``, uncompressed) is only
used when the table cannot have changed since it was written:

- at a clean close the store writes the file (temp file, then rename), then commits a fresh
  random token to ``index_snapshot`` in the database, and the file carries the same token;
- at open, before anything is written, the store reads the token, deletes it (committed), and
  loads the snapshot only if the file's token matches and the journal replay wrote nothing.

So after a crash, or after a run that wrote anything, the tokens differ and the indexes are
rebuilt from the tables, which remain the truth. A file that cannot be read is rebuilt from too.
"""

from __future__ import annotations

import logging
import os
import uuid
import zipfile
from pathlib import Path

import duckdb
import numpy as np

from store_worker.indexes import loader
from store_worker.indexes.accelerated_index import ANN_MIN_ROWS
from store_worker.indexes.catalog import Catalog
from store_worker.indexes.memory_vectors import MemoryVectors
from store_worker.indexes.text_index import TextIndex
from store_worker.storage.schema import EMBEDDING_DIM

log = logging.getLogger("sessiond.store.snapshot")

# 2: the catalogue's content keys are stable digests (format 1 saved per-process hash() values).
# 3: chunk vectors, and the catalogue's files, error flags, chunk counts and supersession links.
# 4: the catalogue's session of each row (search and stats filter by session).
FORMAT = 4
# Below this many rows the rebuild is fast enough (~0.5 s at 20k) not to spend disk on it.
MIN_ROWS = 20_000


def path_for(db_path: Path) -> Path:
    return Path(f"{db_path}.index.npz")


def ann_path_for(path: Path, token: str) -> Path:
    """The approximate vector index saved with the snapshot of ``token`` (its own file)."""
    return path.with_name(f"{path.name}.{token[:16]}.ann")


def save(path: Path, token: str, cat: Catalog, text: TextIndex,
         vectors: MemoryVectors) -> None:
    """Write the snapshot for ``token`` (atomically: a reader sees the old file or the new),
    with the approximate vector index, if there is one, in a file named for the token."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ann = ann_path_for(path, token)
    try:
        has_ann = vectors.save_ann(ann)
        arrays = {"format": np.array([FORMAT]), "token": np.array([token]),
                  "has_ann": np.array([has_ann]), **cat.state(), **text.state(),
                  **vectors.state()}
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for mine in path.parent.glob(f"{ann.stem}.*"):
            mine.unlink(missing_ok=True)
        raise
    for old in path.parent.glob(f"{path.name}.*.ann"):  # older snapshots' (chunk) ANN files
        if not old.name.startswith(f"{ann.stem}."):
            old.unlink(missing_ok=True)


def load(path: Path, token: str, ann_min_rows: int = ANN_MIN_ROWS,
         ) -> tuple[Catalog, TextIndex, MemoryVectors] | None:
    """The indexes in the snapshot if it was written for ``token``; None otherwise."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"][0]) != FORMAT or str(z["token"][0]) != token:
                log.info("index snapshot %s is stale; rebuilding from the tables", path)
                return None
            st = {name: z[name] for name in z.files}
            has_ann = bool(st["has_ann"][0])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("index snapshot %s unreadable (%s); rebuilding from the tables", path, exc)
        return None
    vectors = MemoryVectors.from_state(EMBEDDING_DIM, st, ann_min_rows=ann_min_rows)
    if has_ann:
        vectors.load_ann(ann_path_for(path, token))
    else:
        vectors.maybe_build()
    return Catalog.from_state(st), TextIndex.from_state(st), vectors


def remove_temp_files(path: Path) -> None:
    """Remove temp files a writer killed in mid-save left behind."""
    for pattern in (f".{path.name}.*.tmp", f"{path.name}.*.ann.*.tmp"):
        for stale in path.parent.glob(pattern):
            stale.unlink(missing_ok=True)


def discard(path: Path) -> None:
    """Remove the snapshot, its approximate index and any temp file."""
    path.unlink(missing_ok=True)
    for ann in path.parent.glob(f"{path.name}.*.ann"):
        ann.unlink(missing_ok=True)
    remove_temp_files(path)


def open_indexes(con: duckdb.DuckDBPyConnection, db_path: Path, may_use: bool,
                 ann_min_rows: int = ANN_MIN_ROWS) -> tuple[tuple, str]:
    """At open, before any write: the indexes from the snapshot if its token is the one the
    database holds and ``may_use`` (nothing was written meanwhile), else from the tables; and
    which it was. The token is deleted (committed) either way, so any later write makes the
    snapshot stale."""
    found = con.execute("SELECT token FROM index_snapshot").fetchall()
    if found:
        con.execute("DELETE FROM index_snapshot")
    path = path_for(db_path)
    remove_temp_files(path)
    if found and may_use:
        indexes = load(path, found[0][0], ann_min_rows)
        if indexes is not None:
            return indexes, "snapshot"
    return loader.load_all(con, ann_min_rows), "tables"


def write_at_close(con: duckdb.DuckDBPyConnection, db_path: Path, cat: Catalog,
                   text: TextIndex, vectors: MemoryVectors, *, keep: bool) -> None:
    """At a clean close, after the last write: write the snapshot, then commit its token
    (``keep`` false, for small stores: remove any old snapshot instead)."""
    path = path_for(db_path)
    if not keep:
        discard(path)
        return
    token = uuid.uuid4().hex
    try:
        save(path, token, cat, text, vectors)
    except OSError as exc:
        log.warning("no index snapshot written (%s); the next open rebuilds", exc)
        return
    con.execute("INSERT INTO index_snapshot VALUES (?)", [token])
