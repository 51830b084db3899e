"""The store's vector index: exact, with an approximate (HNSW) index as an accelerator for
large stores.

``ExactIndex`` scans every vector: ~5-6 ms at 100k memories over two threads, ten times that at
1M. From ``ann_min_rows`` vectors on, an ``AnnIndex`` is built next to it in a background thread
(the exact scan serves until it is ready) and kept up to date with every add and remove. A search
then asks the ANN for a few times more candidates than it needs, keeps those the filter mask
allows, rescores them exactly from the exact index's matrix and returns the best; when too few
candidates survive the mask, or the mask allows only a small share of the rows (then scanning
just those rows is cheap), it runs the exact scan instead. The exact index stays the truth: the
ANN only proposes candidates.

The ANN is saved next to the index snapshot and loaded with it (``state``/``from_state`` and
``save_ann``/``load_ann``), in the background like a build (at 1M memories the file is ~800 MB:
the exact scan serves the first seconds after an open instead of the open waiting); if that
fails it is rebuilt. A build stopped by a close is not lost: what it had added (with the changes
made meanwhile) is saved as a partial index, and the next open's load adds only the vectors it
lacks, so a build that takes longer than one session (one thread over 1M vectors: ~20 minutes)
still completes over several. A build that fails is
logged and tried again later (``BUILD_ATTEMPTS`` in all, the waits doubling from
``BUILD_RETRY_S``); the exact scan serves meanwhile, and for good if every attempt fails.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from store_worker.indexes.ann_index import AnnIndex, AnnIndexError
from store_worker.indexes.vector_index import SUBSET_FRACTION, ExactIndex

log = logging.getLogger("sessiond.store.vectors")

ANN_MIN_ROWS = 200_000  # below this the exact scan costs <= ~12 ms on the 2-core machine
OVERSAMPLE = 2  # ANN candidates asked per result needed (before the mask): recall@100 is the
# same in the top 200 as in the top 400 at 100k and 500k (ann_index), and 400 cost 3x 100 at 1M
MAX_CANDIDATES = 1600  # beyond ~1.6k candidates the HNSW search costs as much as the exact scan
BUILD_ATTEMPTS = 4  # builds tried before the exact scan serves alone for good
BUILD_RETRY_S = 30.0  # wait before the second attempt; doubled before each later one
BUILD_BATCH = 8192  # vectors added between two looks at a stop request (~2 s on one core)


class AcceleratedIndex:
    def __init__(self, dim: int, capacity: int = 1024, *,
                 ann_min_rows: int = ANN_MIN_ROWS) -> None:
        self.dim = dim
        self.exact = ExactIndex(dim, capacity)
        self.ann_min_rows = ann_min_rows
        self._ann: AnnIndex | None = None
        self._lock = threading.Lock()  # guards _ann, _building, _retry and _pending
        self._building: threading.Thread | None = None
        self._retry: threading.Timer | None = None  # the next attempt after a failed build
        self._pending: list[tuple[str, np.ndarray, np.ndarray | None]] = []
        self.ann_build_s: float | None = None
        self.ann_error = ""  # why the last build failed ("" once one succeeded)
        self.ann_failures = 0  # failed builds
        self.ann_loaded_rows = 0  # vectors the ANN loaded from a file held (a build resumed)
        self._partial: AnnIndex | None = None  # what a build stopped by the close had added
        self._stop = threading.Event()  # closing: no build starts, a running one stops

    @property
    def kind(self) -> str:
        if self._ann is not None:
            return f"exact+{self._ann.kind}"
        if self._building:
            return "exact (approximate index loading or building)"
        return "exact (approximate index build failed, retrying)" if self._retry else "exact"

    def __len__(self) -> int:
        return len(self.exact)

    # --------------------------------------------------------------- writes
    def add(self, labels: np.ndarray, vectors: np.ndarray, *, build: bool = True) -> None:
        """Insert or replace rows; ``build=False`` (loading) does not start an ANN build."""
        self.exact.add(labels, vectors)
        with self._lock:
            if self._building is not None:
                self._pending.append(("add", np.asarray(labels, dtype=np.int64).copy(),
                                      np.asarray(vectors, dtype=np.float32).copy()))
            elif self._ann is not None:
                self._ann.add(np.asarray(labels, dtype=np.int64),
                              np.asarray(vectors, dtype=np.float32))
        if build:
            self.maybe_build()

    def remove(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        with self._lock:
            self.exact.remove(labels)
            if self._building is not None:
                self._pending.append(("remove", labels.copy(), None))
            elif self._ann is not None:
                self._ann.remove(labels)

    # ------------------------------------------------------------ the build
    def maybe_build(self) -> None:
        """Start building the ANN if the index is large enough and has none (retries after a
        failed build are the retry timer's)."""
        if (self._ann is None and self._building is None and self.ann_failures == 0
                and len(self.exact) >= self.ann_min_rows):
            self.start_build()

    def start_build(self, saved: Path | None = None) -> None:
        """Build the ANN from the current vectors in a background thread, starting from the
        one ``saved`` in a file (complete or partial) if given."""
        with self._lock:
            if self._building is not None or self._stop.is_set():
                return
            labels, matrix = self.exact.rows()  # a copy of the labels, a view of the matrix
            self.exact.compaction_allowed = False  # the view must keep its rows in place
            self._building = threading.Thread(target=self._build, args=(labels, matrix, saved),
                                              name="ann-build", daemon=True)
            self._building.start()

    def _start(self, saved: Path | None, capacity: int) -> AnnIndex:
        """The ANN a build starts from: the saved one if it can be read, else an empty one."""
        if saved is not None:
            try:
                ann = AnnIndex.load(saved, self.dim, threads=1)
            except AnnIndexError as exc:
                log.warning("approximate index %s not usable (%s); rebuilding it", saved, exc)
            else:
                self.ann_loaded_rows = len(ann)
                return ann
        # One thread: a build at 200k takes about a minute and must not starve the searches,
        # stores and embeddings running meanwhile on a 2-core machine.
        return AnnIndex(self.dim, capacity=capacity, threads=1)

    def _build(self, labels: np.ndarray, matrix: np.ndarray, saved: Path | None = None) -> None:
        t0 = time.monotonic()
        try:
            ann = self._start(saved, len(labels) + len(labels) // 4)
            live = np.flatnonzero(labels >= 0)
            if len(ann):  # resuming: only what the saved index lacks
                live = live[~ann.contains(labels[live])]
            for lo in range(0, len(live), BUILD_BATCH):
                if self._stop.is_set():  # closing: keep what was added for the snapshot
                    self._build_stopped(ann)
                    return
                rows = live[lo:lo + BUILD_BATCH]
                ann.add(labels[rows], matrix[rows])
        except Exception as exc:  # noqa: BLE001 - any failure is logged and retried later
            self._build_failed(exc)
            return
        with self._lock:
            self._catch_up(ann)
            self._ann = ann
            self._building = None
            self.exact.compaction_allowed = True
            self.ann_build_s = round(time.monotonic() - t0, 2)
            self.ann_error = ""
        log.info("approximate index (%s) ready over %d vectors in %.1f s (%d loaded from its "
                 "file, the rest added)", ann.kind, len(ann), self.ann_build_s,
                 self.ann_loaded_rows)

    def _catch_up(self, ann: AnnIndex) -> None:
        """Apply to ``ann`` what changed while it was built, in order (with the lock held)."""
        for op, op_labels, op_vectors in self._pending:
            if op == "add":
                ann.add(op_labels, op_vectors)
            else:
                ann.remove(op_labels)
        self._pending.clear()

    def _build_stopped(self, ann: AnnIndex) -> None:
        with self._lock:
            self._building = None
            self._catch_up(ann)
            self._partial = ann if len(ann) else None
            self.exact.compaction_allowed = True
        log.info("approximate index build stopped (the index is closing) at %d of %d vectors",
                 len(ann), len(self.exact))

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop a running build (between two batches) and any pending retry, and wait for it:
        a build thread inside the C++ library must not outlive the store (at interpreter exit
        that aborts the process)."""
        self._stop.set()
        with self._lock:
            retry, self._retry = self._retry, None
            thread = self._building
        if retry is not None:
            retry.cancel()
        if thread is not None:
            thread.join(timeout_s)

    def _build_failed(self, exc: BaseException) -> None:
        with self._lock:
            self.ann_failures += 1
            self.ann_error = f"{type(exc).__name__}: {exc}"
            self._building = None
            self._pending.clear()
            self.exact.compaction_allowed = True
            if self.ann_failures >= BUILD_ATTEMPTS:
                log.error("approximate index build failed (%d of %d attempts); exact search only "
                          "from now on: %s", self.ann_failures, BUILD_ATTEMPTS, self.ann_error)
                return
            delay = BUILD_RETRY_S * 2 ** (self.ann_failures - 1)
            log.error("approximate index build failed (%d of %d attempts); exact search "
                      "meanwhile, next attempt in %.0f s: %s", self.ann_failures, BUILD_ATTEMPTS,
                      delay, self.ann_error)
            self._retry = threading.Timer(delay, self._retry_build)
            self._retry.daemon = True
            self._retry.start()

    def _retry_build(self) -> None:
        with self._lock:
            self._retry = None
            due = self._ann is None and self._building is None
        if due and len(self.exact) >= self.ann_min_rows:
            self.start_build()

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait for a running build (tests, benchmarks); True when the ANN is in use."""
        thread = self._building
        if thread is not None:
            thread.join(timeout_s)
        return self._ann is not None

    # --------------------------------------------------------------- search
    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        ann = self._ann
        if ann is None or k <= 0:
            return self.exact.search(query, k, allowed)
        q = np.asarray(query, dtype=np.float32).reshape(self.dim)
        share = 1.0
        if allowed is not None:
            share = float(np.count_nonzero(allowed)) / max(1, len(allowed))
            if share < SUBSET_FRACTION:
                return self.exact.search(q, k, allowed)
        want = math.ceil(k * OVERSAMPLE / share)
        if want > MAX_CANDIDATES:
            return self.exact.search(q, k, allowed)
        cand, _ = ann.search(q, want)  # AnnIndex locks itself
        found = self.exact.rescore(cand, q, allowed)
        if found is None or len(found[0]) < min(k, len(self.exact)):
            return self.exact.search(q, k, allowed)  # too few survived the mask
        return found[0][:k], found[1][:k]

    def vector(self, label: int) -> np.ndarray | None:
        return self.exact.vector(label)

    # ------------------------------------------------------------- snapshot
    def state(self) -> dict[str, np.ndarray]:
        return self.exact.state()

    @classmethod
    def from_state(cls, dim: int, st: dict[str, np.ndarray], **kw: Any) -> AcceleratedIndex:
        index = cls(dim, **kw)
        index.exact = ExactIndex.from_state(dim, st)
        return index

    def save_ann(self, path: Path) -> bool:
        """Save the ANN if there is one ready, or what a stopped build had added; True when
        saved."""
        with self._lock:
            ann = self._ann or self._partial
            if ann is None:
                return False
            ann.save(path)
        return True

    def load_ann(self, path: Path) -> None:
        """Load a saved ANN (from the same snapshot) in the background and add what it lacks;
        if it cannot be read, build one."""
        self.start_build(saved=path)
