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

Large arrays (``MAPPED_BYTES`` and up: the vectors, the BM25 postings, the ids) are not in the
``.npz`` but in ``.npy`` files beside it named for the token (``<snapshot>.<token>.<name>.npy``),
mapped copy-on-write at open instead of read: at 1M memories reading the 2.2 GB ``.npz`` took
~7.5 s and copying it into the indexes ~5 s more, while mapping takes milliseconds and the pages
come in as searches touch them. The vector matrices are written with room to grow (a quarter
more rows, a sparse tail of zeros on disk), so the index uses the mapping as its matrix until it
outgrows it. Files are never changed once written (a new close writes new files under a new
token), so a private mapping cannot see another writer's bytes.
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
# 5: large arrays in their own mapped .npy files.
FORMAT = 5
MAPPED_BYTES = 1 << 20  # arrays this large go to their own mapped file
GROWABLE = ("vec_matrix", "chunk_vec_matrix")  # written with room for a quarter more rows
# Below this many rows the rebuild is fast enough (~0.5 s at 20k) not to spend disk on it.
MIN_ROWS = 20_000


def path_for(db_path: Path) -> Path:
    return Path(f"{db_path}.index.npz")


def array_path_for(path: Path, token: str, name: str) -> Path:
    """The mapped file of array ``name`` in the snapshot of ``token``."""
    return path.with_name(f"{path.name}.{token[:16]}.{name}.npy")


def _write_array(target: Path, name: str, array: np.ndarray) -> None:
    """Write ``array`` as an ``.npy`` file, fsynced (a growable matrix gets a tail of zero rows,
    left as a hole in the file). Plain writes, not a mapping: a full disk is then an OSError
    (the snapshot is skipped), not a SIGBUS that kills the store."""
    rows = len(array)
    shape = (rows + rows // 4 + 1, *array.shape[1:]) if name in GROWABLE else array.shape
    header = {**np.lib.format.header_data_from_array_1_0(array), "shape": shape,
              "fortran_order": False}
    with open(target, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        start = f.tell()
        step = max(1, (64 << 20) // max(1, array[:1].nbytes))  # ~64 MB at a time
        f.writelines(np.ascontiguousarray(array[lo:lo + step]).tobytes()
                     for lo in range(0, rows, step))
        f.truncate(start + int(np.prod(shape)) * array.dtype.itemsize)
        f.flush()
        os.fsync(f.fileno())


def ann_path_for(path: Path, token: str) -> Path:
    """The approximate vector index saved with the snapshot of ``token`` (its own file)."""
    return path.with_name(f"{path.name}.{token[:16]}.ann")


def save(path: Path, token: str, cat: Catalog, text: TextIndex,
         vectors: MemoryVectors) -> None:
    """Write the snapshot for ``token`` (atomically: a reader sees the old ``.npz`` or the new,
    and the new one is renamed into place only after every file it names is written), with the
    large arrays and the approximate vector index, if there is one, in files named for the
    token."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mine = f"{path.name}.{token[:16]}."
    try:
        has_ann = vectors.save_ann(ann_path_for(path, token))
        arrays = {**cat.state(), **text.state(), **vectors.state()}
        mapped = sorted(name for name, a in arrays.items()
                        if a.nbytes >= MAPPED_BYTES or name in GROWABLE)
        for name in mapped:
            _write_array(array_path_for(path, token, name), name, arrays.pop(name))
        arrays.update({"format": np.array([FORMAT]), "token": np.array([token]),
                       "has_ann": np.array([has_ann]),
                       "mapped": np.array(mapped or [""], dtype="U")[: len(mapped)]})
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # durable before its token is committed
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for written in path.parent.glob(f"{mine}*"):
            written.unlink(missing_ok=True)
        raise
    _remove_files_of_others(path, token)  # older snapshots' arrays and ANN files


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
        for name in st.pop("mapped").tolist():
            st[name] = np.load(array_path_for(path, token, name), mmap_mode="c",
                               allow_pickle=False)
        cat, text = Catalog.from_state(st), TextIndex.from_state(st)
        vectors = MemoryVectors.from_state(EMBEDDING_DIM, st, ann_min_rows=ann_min_rows)
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as exc:
        log.warning("index snapshot %s unreadable (%s: %s); rebuilding from the tables", path,
                    type(exc).__name__, exc)
        return None
    if has_ann:
        vectors.load_ann(ann_path_for(path, token))
    else:
        vectors.maybe_build()
    return cat, text, vectors


def remove_temp_files(path: Path) -> None:
    """Remove temp files a writer killed in mid-save left behind."""
    for pattern in (f".{path.name}.*.tmp", f"{path.name}.*.ann.*.tmp"):
        for stale in path.parent.glob(pattern):
            stale.unlink(missing_ok=True)


def _remove_files_of_others(path: Path, token: str) -> None:
    """Remove the arrays and ANN files beside ``path`` that belong to another token."""
    mine = f"{path.name}.{token[:16]}."
    for other in path.parent.glob(f"{path.name}.*"):
        if not other.name.startswith(mine):
            other.unlink(missing_ok=True)


def discard(path: Path) -> None:
    """Remove the snapshot, its arrays, its approximate index and any temp file."""
    path.unlink(missing_ok=True)
    for mine in path.parent.glob(f"{path.name}.*"):
        mine.unlink(missing_ok=True)
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
            _remove_files_of_others(path, found[0][0])  # left by a save that failed
            return indexes, "snapshot"
    discard(path)  # it can never be used again: its token is gone
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
