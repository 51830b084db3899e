"""The exact in-memory vector index."""

from __future__ import annotations

import numpy as np
import pytest

from store_worker.indexes.vector_index import ExactIndex, normalise


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((n, 8)))


def test_search_add_replace_remove_and_mask():
    index = ExactIndex(8, capacity=16)
    v = vectors(50)
    index.add(np.arange(0, 100, 2), v)  # labels 0, 2, ..., 98 (growth past capacity)
    assert len(index) == 50
    labels, scores = index.search(v[7], 3)
    assert labels[0] == 14 and scores[0] == pytest.approx(1.0)
    assert np.all(np.diff(scores) <= 0)
    index.add(np.array([14]), v[8:9])  # replace
    assert len(index) == 50
    assert index.search(v[8], 2)[0].tolist()[:2] in ([14, 16], [16, 14])
    allowed = np.zeros(100, dtype=bool)
    allowed[[4, 6]] = True
    assert sorted(index.search(v[7], 10, allowed)[0].tolist()) == [4, 6]
    index.remove(np.array([4, 999]))
    assert index.search(v[7], 10, allowed)[0].tolist() == [6]
    assert index.vector(4) is None and np.allclose(index.vector(6), v[3])
    assert index.search(v[0], 0)[0].size == 0


def test_compaction_keeps_results():
    index = ExactIndex(8, capacity=3000)
    v = vectors(3000, seed=1)
    index.add(np.arange(3000), v)
    index.remove(np.arange(0, 3000, 2))  # enough holes to compact
    assert len(index) == 1500
    labels, scores = index.search(v[1001], 1)
    assert labels.tolist() == [1001] and scores[0] == pytest.approx(1.0)
    full = index.search(v[5], 1500)[0]
    assert sorted(full.tolist()) == list(range(1, 3000, 2))


def test_shape_and_duplicate_checks():
    index = ExactIndex(8)
    with pytest.raises(ValueError, match="shape"):
        index.add(np.arange(2), vectors(3))
    with pytest.raises(ValueError, match="duplicate"):
        index.add(np.array([1, 1]), vectors(2))


def test_normalise_leaves_zero_rows_alone():
    out = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_split_scan_gives_the_same_answer_as_one_thread(monkeypatch):
    from store_worker.indexes import vector_index

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((vector_index.PARALLEL_ROWS + 5001, 16)).astype(np.float32)
    index = vector_index.ExactIndex(16)
    index.add(np.arange(len(vectors)), normalise(vectors))
    query = normalise(rng.standard_normal((1, 16)).astype(np.float32))[0]
    split = index.search(query, 20)
    monkeypatch.setattr(vector_index, "PARALLEL_ROWS", 10**9)
    single = index.search(query, 20)
    assert np.array_equal(split[0], single[0])
    assert np.allclose(split[1], single[1])


@pytest.mark.parametrize("share", [0.0, 0.05, 0.5, 0.9, 1.0])
def test_search_equals_brute_force_under_any_mask(share):
    """Both paths (score the allowed subset; score all and rule the rest out) give the exact top
    k, with removed rows and labels beyond a short mask never returned."""
    rng = np.random.default_rng(int(share * 100))
    v = vectors(400, seed=3)
    index = ExactIndex(8, capacity=16)
    index.add(np.arange(400), v)
    removed = rng.choice(400, 40, replace=False)
    index.remove(removed)
    allowed = rng.random(380) < share  # labels 380..399 lie beyond the mask
    q = v[11]
    alive = np.setdiff1d(np.arange(400), removed)
    ok = alive[(alive < 380) & allowed[np.minimum(alive, 379)]]
    expect = ok[np.lexsort((ok, -(v[ok] @ q)))][:25]
    labels, scores = index.search(q, 25, allowed)
    assert labels.tolist() == expect.tolist()
    assert np.allclose(scores, v[expect] @ q, atol=1e-6)
