"""The approximate (HNSW) index that proposes candidates to the exact one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from store_worker.indexes.ann_index import AnnIndex, AnnIndexError
from store_worker.indexes.vector_index import normalise

REPO = Path(__file__).resolve().parents[1]

DIM = 384


def clustered(n: int, seed: int = 0, centres: int = 50) -> np.ndarray:
    """Unit vectors around a few centres (each with its own low-rank spread), so that nearest
    neighbours mean something."""
    rng = np.random.default_rng(seed)
    c = normalise(rng.standard_normal((centres, DIM)))
    basis = rng.standard_normal((centres, 16, DIM)).astype(np.float32) / np.sqrt(DIM)
    which = rng.integers(0, centres, n)
    z = rng.standard_normal((n, 1, 16)).astype(np.float32)
    spread = (z @ basis[which])[:, 0, :]
    noise = 0.035 * rng.standard_normal((n, DIM))
    return normalise(c[which] + 0.3 * spread + noise)


def exact_top(data: np.ndarray, labels: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = data @ q
    return labels[np.argsort(-scores)[:k]]


@pytest.fixture(scope="module")
def built() -> tuple[AnnIndex, np.ndarray, np.ndarray]:
    data = clustered(8040)[:8000]  # the last 40 are the queries
    labels = np.arange(8000, dtype=np.int64) * 3 + 7  # sparse labels
    index = AnnIndex(DIM)
    index.add(labels, data)
    return index, labels, data


def test_recall_against_brute_force(built):
    index, labels, data = built
    assert len(index) == 8000
    queries = clustered(8040)[8000:]  # same centres as the data, not among it
    hits = {100: 0.0, 400: 0.0}
    for q in queries:
        truth = set(exact_top(data, labels, q, 100).tolist())
        found, scores = index.search(q, 400)
        assert len(found) == 400 and found.dtype == np.int64 and scores.dtype == np.float32
        assert np.all(np.diff(scores) <= 1e-6)  # best first
        for k in hits:
            hits[k] += len(truth & set(found[:k].tolist())) / 100 / len(queries)
    assert hits[400] >= 0.98, hits
    assert hits[100] >= 0.90, hits
    # the approximate cosine is close to the exact one
    found, scores = index.search(queries[0], 10)
    exact = data[(found - 7) // 3] @ queries[0]
    assert np.max(np.abs(exact - scores)) < 0.05


def test_replace_remove_and_growth():
    data = clustered(3000, seed=2)
    index = AnnIndex(DIM, capacity=16)
    index.add(np.arange(1000), data[:1000])
    index.add(np.arange(1000, 3000), data[1000:])  # well past the initial capacity
    assert len(index) == 3000
    assert index.capacity >= 3000
    # replace label 5 (the first-added ones too) with a fresh, distinctive vector
    fresh = clustered(3, seed=3)
    index.add(np.array([0, 5, 2999]), fresh)
    assert len(index) == 3000
    for label, v in zip([0, 5, 2999], fresh, strict=True):
        found, scores = index.search(v, 5)
        assert found[0] == label and scores[0] == pytest.approx(1.0, abs=0.02)
    found, _ = index.search(data[5], 50)  # the old vector of 5 is gone
    assert 5 not in found[:1].tolist()
    # remove: never returned again, unknown labels ignored
    gone = np.arange(0, 3000, 3)
    index.remove(np.concatenate([gone, [10**9, -1]]))
    assert len(index) == 2000
    for q in data[gone[:20]]:
        found, _ = index.search(q, 3000)
        assert not set(found.tolist()) & set(gone.tolist())
        assert len(found) <= 2000
    # removed labels can come back; a batch with a repeated label is refused
    index.add(gone[:10], data[gone[:10]])
    assert len(index) == 2010
    assert index.search(data[gone[3]], 1)[0].tolist() == [gone[3]]
    with pytest.raises(ValueError):
        index.add(np.array([1, 1]), data[:2])
    with pytest.raises(ValueError):
        index.add(np.array([1]), data[:2])


def test_empty_and_k_beyond_size():
    index = AnnIndex(DIM)
    q = clustered(1)[0]
    for k in (0, 1, 100):
        labels, scores = index.search(q, k)
        assert labels.shape == (0,) and scores.shape == (0,)
        assert labels.dtype == np.int64 and scores.dtype == np.float32
    data = clustered(30, seed=4)
    index.add(np.arange(30) + 100, data)
    labels, scores = index.search(q, 1000)
    assert sorted(labels.tolist()) == list(range(100, 130))
    index.remove(np.arange(30) + 100)
    assert len(index) == 0 and len(index.search(q, 10)[0]) == 0


def test_save_load_round_trip(built, tmp_path: Path):
    index, _, _ = built
    path = tmp_path / "ann.bin"
    index.save(path)
    assert not [p for p in tmp_path.iterdir() if p != path]  # no temporary file left
    loaded = AnnIndex.load(path, DIM)
    assert len(loaded) == len(index) and loaded.kind == index.kind
    for q in clustered(5, seed=5):
        a, sa = index.search(q, 100)
        b, sb = loaded.search(q, 100)
        assert a.tolist() == b.tolist()
        np.testing.assert_allclose(sa, sb)
    loaded.add(np.array([1]), clustered(1, seed=6))  # still mutable
    assert len(loaded) == len(index) + 1
    index.save(path)  # overwrite in place
    assert len(AnnIndex.load(path, DIM)) == len(index)


def test_bad_files_raise_quickly(built, tmp_path: Path):
    index, _, _ = built
    good = tmp_path / "good.bin"
    index.save(good)
    raw = good.read_bytes()
    cases = {
        "missing": None,
        "empty": b"",
        "garbage": b"not an index at all" * 100,
        "truncated": raw[: len(raw) // 2],
        "truncated_tail": raw[:-1],
        "flipped": raw[:1000] + bytes([raw[1000] ^ 0xFF]) + raw[1001:],
        "flipped_graph": raw[: len(raw) // 2] + b"\xff" * 64 + raw[len(raw) // 2 + 64 :],
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.bin"
        if content is not None:
            path.write_bytes(content)
        t0 = time.monotonic()
        with pytest.raises(AnnIndexError):
            AnnIndex.load(path, DIM)
        assert time.monotonic() - t0 < 2.0, name
    with pytest.raises(AnnIndexError):
        AnnIndex.load(good, DIM + 1)  # another dimension
    with pytest.raises(AnnIndexError):
        AnnIndex.load(tmp_path, DIM)  # a directory
    assert issubclass(AnnIndexError, ValueError)


def test_onnxruntime_still_loads_after_an_index_was_made():
    """usearch links libstdc++ statically; made first, it used to crash a later
    ``import onnxruntime`` (a segmentation fault). Both in one fresh process, in that order."""
    script = (
        "import numpy as np\n"
        "from store_worker.indexes.ann_index import AnnIndex\n"
        "a = AnnIndex(8); a.add(np.arange(4), np.eye(4, 8, dtype=np.float32))\n"
        "from embed_worker.model import Embedder\n"
        "print(Embedder.load(fast=False).embed(['hello']).shape)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(1, 384)"
