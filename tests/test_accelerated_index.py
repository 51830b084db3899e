"""The vector index with its approximate accelerator: built in the background past a size,
kept up to date, answers like the exact scan, saved and loaded with the index snapshot."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, wait_for

from store_worker.indexes import accelerated_index, snapshot
from store_worker.indexes.accelerated_index import AcceleratedIndex
from store_worker.indexes.ann_index import AnnIndex, AnnIndexError
from store_worker.indexes.vector_index import ExactIndex, normalise
from store_worker.memory_store import MemoryStore

DIM = 384


def clustered(n: int, seed: int = 0, centres: int = 50, rank: int = 16) -> np.ndarray:
    """Unit vectors in clusters (a centre, a low-rank spread of its own, a little noise), so
    that nearest neighbours mean something, as with sentence embeddings."""
    rng = np.random.default_rng(seed)
    c = normalise(rng.standard_normal((centres, DIM)))
    basis = rng.standard_normal((centres, rank, DIM)) / np.sqrt(DIM)
    which = rng.integers(0, centres, n)
    spread = np.einsum("nr,nrd->nd", rng.standard_normal((n, rank)), basis[which])
    return normalise(c[which] + 0.25 * spread + 0.035 * rng.standard_normal((n, DIM)))


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return len(set(a.tolist()) & set(b.tolist())) / max(1, len(b))


@pytest.fixture(scope="module")
def everything() -> np.ndarray:
    return clustered(6040)


@pytest.fixture(scope="module")
def data(everything) -> np.ndarray:
    return everything[:6000]


def built(vectors: np.ndarray, min_rows: int = 2000) -> AcceleratedIndex:
    index = AcceleratedIndex(DIM, ann_min_rows=min_rows)
    index.add(np.arange(len(vectors)), vectors)
    assert index.wait_ready(60), index.ann_error
    return index


def test_small_indexes_stay_exact(data):
    index = AcceleratedIndex(DIM, ann_min_rows=10_000)
    index.add(np.arange(len(data)), data)
    assert index.kind == "exact" and not index.wait_ready(0)


def test_past_the_threshold_it_builds_and_answers_like_the_exact_scan(data, everything):
    index = built(data)
    assert index.kind.startswith("exact+")
    exact = ExactIndex(DIM)
    exact.add(np.arange(len(data)), data)
    queries = everything[6000:]  # from the same clusters, not among the data
    recalls = []
    for q in queries:
        got_labels, got_scores = index.search(q, 100)
        want_labels, _ = exact.search(q, 100)
        recalls.append(overlap(got_labels, want_labels))
        assert np.allclose(got_scores, data[got_labels] @ q, atol=1e-5)  # rescored exactly
        assert np.all(np.diff(got_scores) <= 0)
    assert np.mean(recalls) >= 0.97, np.mean(recalls)


def test_changes_during_and_after_the_build_are_applied(data):
    index = AcceleratedIndex(DIM, ann_min_rows=2000)
    index.add(np.arange(3000), data[:3000])  # starts the build
    index.add(np.arange(3000, 4000), data[3000:4000])  # while it runs
    index.remove(np.arange(0, 100))
    assert index.wait_ready(60), index.ann_error
    index.add(np.array([5000]), data[4500:4501])  # after it
    index.remove(np.array([200]))
    for label, row in ((3500, 3500), (5000, 4500)):
        assert index.search(data[row], 1)[0].tolist() == [label]
    found = np.concatenate([index.search(data[i], 10)[0] for i in (0, 50, 200)])
    assert not set(found.tolist()) & (set(range(100)) | {200})


def test_masks_are_respected_and_small_masks_use_the_exact_scan(data):
    index = built(data)
    exact = ExactIndex(DIM)
    exact.add(np.arange(len(data)), data)
    rng = np.random.default_rng(3)
    q = data[17]
    for share in (0.9, 0.5, 0.05):
        allowed = rng.random(len(data)) < share
        labels, _ = index.search(q, 50, allowed)
        assert allowed[labels].all()
        want, _ = exact.search(q, 50, allowed)
        if share < 0.3:
            assert labels.tolist() == want.tolist()
        else:
            assert overlap(labels, want) >= 0.9


def test_snapshot_carries_the_approximate_index(tmp_path, data):
    db = tmp_path / "m.duckdb"
    n = 2500
    with MemoryStore(db, snapshot_min_rows=0, ann_min_rows=2000) as s:
        s.add_many({"kind": "note", "content": f"memory number {i}", "project": "p"}
                   for i in range(n))
        ids = [i for i, _ in s.pending_embeddings(n)]
        s.set_embeddings(ids, data[:n])
        assert s.vectors.wait_ready(60)
        want = [h["id"] for h in s.search("memory", query_vector=data[7], limit=10).hits]
    assert list(tmp_path.glob("m.duckdb.index.npz.*.ann"))
    with MemoryStore(db, snapshot_min_rows=0, ann_min_rows=2000) as s:
        assert s.load_info["source"] == "snapshot"
        assert s.vectors.wait_ready(60)
        assert s.vectors.whole.ann_loaded_rows == n  # loaded whole, not rebuilt
        assert [h["id"] for h in s.search("memory", query_vector=data[7], limit=10).hits] == want
    snapshot.path_for(db).unlink()
    with MemoryStore(db, snapshot_min_rows=0, ann_min_rows=2000) as s:  # rebuilt from tables
        assert s.vectors.wait_ready(60)
        assert s.stats()["vector_index"]["ann_build_s"] is not None


class FlakyAnn(AnnIndex):
    """Fault injection: a healthy machine never makes usearch fail short of running out of
    memory, so the first ``fail`` builds raise as a failed build would."""

    fail = 1
    builds = 0

    def add(self, labels, vectors):
        if len(labels) > 1:  # the bulk add of a build (updates add one row at a time here)
            type(self).builds += 1
            if type(self).builds <= type(self).fail:
                raise AnnIndexError("injected build failure")
        super().add(labels, vectors)


@pytest.fixture
def flaky(monkeypatch):
    monkeypatch.setattr(accelerated_index, "AnnIndex", FlakyAnn)
    monkeypatch.setattr(accelerated_index, "BUILD_RETRY_S", 0.05, raising=False)
    monkeypatch.setattr(FlakyAnn, "builds", 0)
    return FlakyAnn


def test_a_failed_build_is_retried_while_the_exact_scan_serves(data, flaky):
    index = AcceleratedIndex(DIM, ann_min_rows=2000)
    exact = ExactIndex(DIM)
    exact.add(np.arange(3000), data[:3000])
    index.add(np.arange(3000), data[:3000])  # the first build fails
    assert index.search(data[5], 10)[0].tolist() == exact.search(data[5], 10)[0].tolist()
    wait_for(lambda: index.kind.startswith("exact+"), 60, what="the retried build")
    assert flaky.builds == 2 and index.ann_failures == 1 and index.ann_error == ""
    assert index.search(data[5], 1)[0].tolist() == [5]


def test_a_build_that_keeps_failing_is_given_up_after_a_few_tries(data, flaky):
    flaky.fail = 100
    index = AcceleratedIndex(DIM, ann_min_rows=2000)
    index.add(np.arange(3000), data[:3000])
    wait_for(lambda: index.ann_failures >= accelerated_index.BUILD_ATTEMPTS, 30,
             what="every attempt")
    time.sleep(0.5)  # longer than every retry wait together: no further attempt is made
    index.add(np.array([4000]), data[3000:3001])  # nor does a later add start one
    time.sleep(0.2)
    assert flaky.builds == accelerated_index.BUILD_ATTEMPTS
    assert index.kind == "exact" and "injected build failure" in index.ann_error
    assert index.search(data[3000], 1)[0].tolist() == [4000]


def test_chunk_vectors_get_their_own_approximate_index(tmp_path, data):
    """Long memories add several vectors each: past ann_min_rows chunk vectors the chunk index
    builds its own HNSW accelerator, searches find memories through it, and the snapshot keeps
    it."""
    db = tmp_path / "m.duckdb"
    long = " ".join(f"w{i}" for i in range(266))  # 268 words with the prefix: 5 chunks
    n = 600
    with MemoryStore(db, snapshot_min_rows=0, ann_min_rows=2000) as s:
        s.add_many({"kind": "conversation", "content": f"conversation {i}: {long}",
                    "project": "p"} for i in range(n))
        items = s.pending_embeddings(10 * n)
        assert len(items) == 6 * n
        s.set_embeddings([k for k, _ in items], data[: len(items)])
        assert s.vectors.chunk_count == 5 * n and len(s.vectors) == n
        s.vectors.wait_ready(60)
        assert s.vectors.chunks.kind.startswith("exact+")  # 3000 chunk vectors: accelerated
        assert not s.vectors.whole.kind.startswith("exact+")  # 600 whole ones: exact only
        key, _ = items[9]  # a chunk of the second memory (items: whole, 5 chunks, whole, ...)
        assert "#" in key
        hit = s.search("conversation", query_vector=data[9], limit=1).hits[0]
        assert hit["id"] == key.split("#")[0] and hit["parts"]["chunk"] == int(key.split("#")[1])
    assert list(tmp_path.glob("m.duckdb.index.npz.*.chunks.ann"))
    with MemoryStore(db, snapshot_min_rows=0, ann_min_rows=2000) as s:
        assert s.load_info["source"] == "snapshot"
        s.vectors.wait_ready(60)
        assert s.vectors.chunks.ann_loaded_rows == 5 * n  # loaded with the snapshot
        hit = s.search("conversation", query_vector=data[9], limit=1).hits[0]
        assert hit["id"] == key.split("#")[0]


BUILD_THEN_EXIT = """
import sys, time
import numpy as np
from store_worker.indexes.accelerated_index import AcceleratedIndex
index = AcceleratedIndex(384, 1024, ann_min_rows=1000)
v = np.random.default_rng(1).standard_normal((40000, 384), dtype=np.float32)
index.add(np.arange(40000), v / np.linalg.norm(v, axis=1, keepdims=True))
time.sleep(0.3)
assert "building" in index.kind, index.kind
index.close()
assert index.kind == "exact", index.kind
index.add(np.arange(40000, 40010), v[:10])  # no build starts once closed
assert index.kind == "exact", index.kind
print("closed", flush=True)
"""


def test_closing_stops_a_running_build_and_the_process_exits_cleanly():
    """A store closed while its HNSW build runs (a stack stopped minutes after opening a large
    store): the build stops between two batches and the process exits 0. Before, the build's
    thread was still inside the C++ library at interpreter exit, which aborted the process
    ("terminate called without an active exception", exit code 134)."""
    done = subprocess.run([sys.executable, "-c", BUILD_THEN_EXIT], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "closed"
    assert "terminate called" not in done.stderr


class SlowAnn(AnnIndex):
    """A build slowed down (a sleep per batch) so that a close lands in the middle of it, as it
    does with 1M vectors on one thread (~20 minutes)."""

    batches = 0

    def add(self, labels, vectors):
        if len(labels) > 1:
            type(self).batches += 1
            time.sleep(0.05)
        super().add(labels, vectors)


def test_a_build_stopped_by_the_close_is_resumed_by_the_next_open(tmp_path, data, everything,
                                                                  monkeypatch):
    db = tmp_path / "m.duckdb"
    n = 6000
    monkeypatch.setattr(accelerated_index, "BUILD_BATCH", 256)
    monkeypatch.setattr(accelerated_index, "AnnIndex", SlowAnn)
    monkeypatch.setattr(SlowAnn, "batches", 0)
    with MemoryStore(db, snapshot_min_rows=0, ann_min_rows=2000) as s:
        s.add_many({"kind": "note", "content": f"memory number {i}", "project": "p"}
                   for i in range(n + 1))
        ids = [i for i, _ in s.pending_embeddings(n + 1)]
        s.set_embeddings(ids[:n], data[:n])
        wait_for(lambda: SlowAnn.batches >= 2, 60, what="the build's first batches")
        s.set_embeddings(ids[n:], everything[n:n + 1])  # while it builds: kept in the partial
        want = [h["id"] for h in s.search("memory", query_vector=data[5], limit=5).hits]
    assert list(tmp_path.glob("m.duckdb.index.npz.*.ann"))  # the partial index was saved
    monkeypatch.setattr(accelerated_index, "AnnIndex", AnnIndex)
    with MemoryStore(db, snapshot_min_rows=0, ann_min_rows=2000) as s:
        assert s.load_info["source"] == "snapshot"
        assert s.vectors.wait_ready(60)
        loaded = s.vectors.whole.ann_loaded_rows
        assert 0 < loaded < n  # resumed from the partial index, not started again
        assert len(s.vectors.whole._ann) == n + 1
        assert [h["id"] for h in s.search("memory", query_vector=data[5], limit=5).hits] == want
        assert s.vectors.whole._ann.contains(np.array([s.catalog.row_of[ids[n]]])).all()
