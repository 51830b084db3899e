"""Approximate nearest-neighbour index (HNSW, via ``usearch``) that proposes candidates.

The store's exact index stays the truth: it asks this index for a few times more labels than it
needs, drops those its mask forbids and rescores the rest exactly. So what matters here is that
the true top ``k`` are among the candidates, not the order or the scores this index gives them.

Library: ``usearch`` (Unum, Apache-2.0). Chosen over ``faiss-cpu`` and ``chroma-hnswlib``:

- wheels for CPython 3.11 on manylinux x86_64 and aarch64 (glibc >= 2.28), musllinux, macOS and
  Windows; one ~2 MB wheel plus ``numkong`` (its SIMD kernels, ~2 MB) and ``tqdm``; frequent
  releases (2.26 in 2026).
- add, remove and re-add by integer key (removed slots are reused); saves to and loads from one
  file and can also ``view`` (mmap) it; vectors quantised inside the index (``i8`` here) with
  per-CPU kernels (AVX-512 VNNI, AVX2, NEON, SVE), picked at run time.
- ``faiss``' HNSW indexes cannot remove vectors and its wheel is ~30 MB with its own OpenBLAS;
  ``chroma-hnswlib`` (Chroma's fork of hnswlib) has no quantisation and no release since 0.7.6
  (2024-07).

Parameters (``DEFAULTS``): ``i8`` storage with the cosine metric (384 bytes a vector instead of
1536; its candidate recall at 4x oversampling equals ``f16``'s and it builds ~30% faster),
connectivity (M) 16, expansion_add (efConstruction) 128, expansion_search (ef) 128. A search for
``k`` candidates explores ``max(ef, k)`` nodes, so at ``k`` = 400 ef is effectively 400.
expansion_add 64 builds 1.7x faster but loses ~0.5% of the true neighbours for good (they stay
missing at any ``k``); connectivity 32 costs 22% more memory and 35% more search time for no gain
(both at 100k clustered, f16).

Measured (``uv run python -m bench.ann_recall``; 2-core AMD EPYC (Zen 4, AVX-512), 384 dims, 200
queries; recall@100 = share of the exact top 100 among the index's top 100 / 200 / 400; the exact
scan is ExactIndex's: einsum over two threads + argpartition, k = 100):

| data | rows | build, 2 threads | search k=400 p50 / p95 | recall@100 in top 100 / 200 / 400 | memory | file (save / load) | exact scan p50 / p95 |
|---|---|---|---|---|---|---|---|
| clustered | 100k | 11.5 s | 0.58 / 0.82 ms | 0.977 / 1.000 / 1.000 | 81 MiB | 51 MiB (0.11 / 0.08 s) | 4.6 / 6.6 ms |
| clustered | 500k | 126 s | 1.47 / 2.70 ms | 0.949 / 0.981 / 0.981 | 372 MiB | 254 MiB (0.46 / 0.44 s) | 27.3 / 34.1 ms |
| random | 100k | 28.3 s | 2.15 / 2.37 ms | 0.294 / 0.294 / 0.294 | 81 MiB | 51 MiB (0.10 / 0.07 s) | 5.1 / 6.6 ms |

~780 bytes a vector at 500k (384 i8 + graph + keys; usearch allocates in powers of two). At 100k,
after replacing 10% of the vectors and removing another 10%, recall stays 0.977 / 1.000 / 1.000.
At 500k: k=100 0.58 ms, k=1600 2.3 ms; adding one new vector 0.7 ms; but the first operation
after a ``remove`` (so also a replacing ``add``) costs ~9 ms (~2 ms at 100k): usearch does
O(rows) work there. The missing ~2% at 500k are unreachable, not ranked out (connectivity 24 /
expansion_add 96: 0.983 in the top 400, 0.984 in the top 800, for 35% more memory and search time);
1M rows was not measured (the build alone would take ~4-5 min on two cores).

"clustered" is 200 centres, each point its centre plus a 32-dimensional cluster-specific part
plus isotropic noise (mean cosine of a query to its nearest row 0.60, to its 100th 0.39, to a
random row 0.00: a spread like that of sentence embeddings). On uniformly random unit vectors
(intrinsic dimension 384, the worst case for any graph index: every row is about as far as every
other) recall at these settings is only ~0.3 at 100k: no HNSW setting reaches 0.98 there for
less than a brute-force scan costs. Real embeddings are not like that, but a benchmark that fills
a store with random unit vectors must not judge search quality through this index.

Concurrency: every method takes this object's lock, and usearch itself serialises calls on one
index (so two searches on one index do not run in parallel). ``search`` releases the GIL (a
Python thread spinning next to 300 searches lost no speed) and so does ``add`` (per usearch's
binding). A batch ``add`` uses ``threads`` workers (default: all cores); ``search`` one thread.
``capacity`` is only a hint: usearch grows its storage to the next power of two by itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from shared import silence

DEFAULTS: dict[str, Any] = {
    "dtype": "i8",
    "connectivity": 16,
    "expansion_add": 128,
    "expansion_search": 128,
}
_PARALLEL_ADD = 256  # from this many vectors an add uses several threads

# The file is usearch's own serialisation followed by this trailer (usearch ignores trailing
# bytes, so the file can still be handed to ``usearch.Index.restore(path, view=True)``).
_MAGIC = b"SDANN\x00\x01\x00"
_END = b"SDANNEND"
_FORMAT_VERSION = 1
_TRAILER = struct.Struct("<8sHHIIIIQQI8s")
_DTYPES = ("i8", "f16", "bf16", "f32")
_CHUNK = 8 << 20


def _usearch_index() -> Any:
    """``usearch.index.Index``, imported on first use (after the system C++ runtime).

    usearch's extension links its own copy of libstdc++ statically. Loaded first, its copies of
    the runtime's process-wide ("unique") symbols win, and a later C++ extension built against
    the system libstdc++ crashes as it initialises: ``import usearch.index`` then
    ``import onnxruntime`` is a segmentation fault (seen with usearch 2.26.6, onnxruntime 1.32).
    Loading the system libstdc++ globally before usearch makes both use the system's symbols.
    Importing here, not at module import, also keeps usearch out of stores too small for it.
    """
    global _Index
    if _Index is None:
        name = ctypes.util.find_library("stdc++")
        if name is not None:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        from usearch.index import Index

        _Index = Index
    return _Index


_Index: Any = None


class AnnIndexError(ValueError):
    """A saved index is missing, damaged or does not fit (dimension, format)."""


class AnnIndex:
    """HNSW over int64 labels of unit vectors; cosine similarity."""

    kind = "hnsw-usearch"

    def __init__(self, dim: int, capacity: int = 1024, *, dtype: str = DEFAULTS["dtype"],
                 connectivity: int = DEFAULTS["connectivity"],
                 expansion_add: int = DEFAULTS["expansion_add"],
                 expansion_search: int = DEFAULTS["expansion_search"],
                 threads: int | None = None) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}")
        self.dim = dim
        self.dtype = dtype
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        self.threads = max(1, threads or os.cpu_count() or 1)
        self.capacity_hint = capacity  # usearch grows by itself (to the next power of two)
        self._lock = threading.Lock()
        self._index = _usearch_index()(
            ndim=dim,
            # i8 needs "cos" (it normalises before quantising); the others are unit already
            metric="cos" if dtype == "i8" else "ip",
            dtype=dtype,
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )

    def __len__(self) -> int:
        return len(self._index)

    @property
    def memory_bytes(self) -> int:
        """Bytes usearch has allocated (vectors, graph, key table)."""
        return int(self._index.memory_usage)

    @property
    def capacity(self) -> int:
        return int(self._index.capacity)

    def _check_labels(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) and int(labels.min()) < 0:
            raise ValueError("labels must be >= 0")
        return labels

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace; ``vectors`` are unit-length float32 ``(n, dim)``."""
        labels = self._check_labels(labels)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(labels), self.dim):
            raise ValueError(f"expected vectors of shape ({len(labels)}, {self.dim})")
        if len(labels) == 0:
            return
        if len(np.unique(labels)) != len(labels):
            raise ValueError("duplicate labels in one add")
        keys = labels.astype(np.uint64)
        threads = self.threads if len(keys) >= _PARALLEL_ADD else 1
        with self._lock:
            if len(self._index):
                present = np.asarray(self._index.contains(keys), dtype=bool).reshape(-1)
                if present.any():  # usearch refuses a key twice: replace = remove + add
                    self._index.remove(keys[present])
            self._index.add(keys, vectors, threads=threads)

    def remove(self, labels: np.ndarray) -> None:
        """Forget labels; unknown (or negative) labels are ignored."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        labels = labels[labels >= 0]
        if len(labels) == 0:
            return
        with self._lock:
            if len(self._index):
                self._index.remove(labels.astype(np.uint64))

    def contains(self, labels: np.ndarray) -> np.ndarray:
        """Which of ``labels`` the index holds (a boolean mask)."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        out = np.zeros(len(labels), dtype=bool)
        ok = labels >= 0
        with self._lock:
            if len(self._index) and ok.any():
                found = self._index.contains(labels[ok].astype(np.uint64))
                out[ok] = np.asarray(found, dtype=bool).reshape(-1)
        return out

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` (label, approximate cosine) pairs, best first."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(self.dim)
        with self._lock:
            k = min(int(k), len(self._index))
            if k <= 0:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            found = self._index.search(q, k, threads=1)
        labels = np.asarray(found.keys, dtype=np.int64)
        scores = (1.0 - np.asarray(found.distances, dtype=np.float32)).astype(np.float32)
        return labels, scores

    # ------------------------------------------------------------------ persistence
    def save(self, path: Path) -> None:
        """Write atomically: a temporary file in the same folder, fsynced, then renamed."""
        path = Path(path)
        fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            with self._lock:
                count = len(self._index)
                self._index.save(os.fspath(tmp))
            blob_len = tmp.stat().st_size
            crc = _crc_of(tmp, blob_len)
            trailer = _TRAILER.pack(
                _MAGIC, _FORMAT_VERSION, _DTYPES.index(self.dtype), self.dim,
                self.connectivity, self.expansion_add, self.expansion_search,
                blob_len, count, crc, _END,
            )
            with open(tmp, "r+b") as f:
                f.seek(blob_len)
                f.write(trailer)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, dim: int, *, threads: int | None = None) -> AnnIndex:
        """Read a file written by ``save``; ``AnnIndexError`` if it is missing, damaged (size or
        CRC-32 of the whole usearch part) or for another dimension. The file is read twice (the
        check, then usearch's load; the second from the page cache): ~0.2 s per 100 MB."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size < _TRAILER.size:
                raise AnnIndexError(f"{path}: too short to be an index ({size} bytes)")
            with open(path, "rb") as f:
                f.seek(size - _TRAILER.size)
                fields = _TRAILER.unpack(f.read(_TRAILER.size))
        except OSError as exc:
            raise AnnIndexError(f"{path}: cannot read: {exc}") from exc
        (magic, version, dtype_code, fdim, connectivity, expansion_add, expansion_search,
         blob_len, count, crc, end) = fields
        if magic != _MAGIC or end != _END:
            raise AnnIndexError(f"{path}: not an index file (bad trailer)")
        if version != _FORMAT_VERSION:
            raise AnnIndexError(f"{path}: format version {version}, expected {_FORMAT_VERSION}")
        if fdim != dim:
            raise AnnIndexError(f"{path}: dimension {fdim}, expected {dim}")
        if dtype_code >= len(_DTYPES) or not 2 <= connectivity <= 1024:
            raise AnnIndexError(f"{path}: bad parameters in the trailer")
        if blob_len + _TRAILER.size != size:
            raise AnnIndexError(f"{path}: truncated or extended ({size} bytes, "
                                f"expected {blob_len + _TRAILER.size})")
        try:
            actual = _crc_of(path, blob_len)
        except OSError as exc:
            raise AnnIndexError(f"{path}: cannot read: {exc}") from exc
        if actual != crc:
            raise AnnIndexError(f"{path}: checksum mismatch (damaged file)")
        index = cls(dim, dtype=_DTYPES[dtype_code], connectivity=connectivity,
                    expansion_add=expansion_add, expansion_search=expansion_search,
                    threads=threads)
        try:
            meta = _usearch_index().metadata(os.fspath(path))
            if not meta or meta.get("dimensions") != dim:
                raise AnnIndexError(f"{path}: usearch header does not match")
            # usearch holds the GIL while it reads the file (~0.6 s for 530 MB on a quiet
            # machine, more on a loaded one): say so, or the hub purges this busy store.
            silence.expect_silence(2.0 + blob_len / 100e6)
            index._index.load(os.fspath(path))
        except AnnIndexError:
            raise
        except Exception as exc:  # usearch raises RuntimeError/ValueError on a bad file
            raise AnnIndexError(f"{path}: usearch could not load it: {exc}") from exc
        if len(index._index) != count or index._index.ndim != dim:
            raise AnnIndexError(f"{path}: holds {len(index._index)} vectors, expected {count}")
        # usearch keeps the search/add expansions outside its file
        index._index.expansion_add = expansion_add
        index._index.expansion_search = expansion_search
        return index


def _crc_of(path: Path, length: int) -> int:
    crc = 0
    with open(path, "rb") as f:
        remaining = length
        while remaining:
            chunk = f.read(min(_CHUNK, remaining))
            if not chunk:
                raise AnnIndexError(f"{path}: shorter than its trailer says")
            crc = zlib.crc32(chunk, crc)
            remaining -= len(chunk)
    return crc
