"""Tokenisation, snippets and the in-memory postings."""

from __future__ import annotations

import numpy as np
import pytest

from store_worker.indexes.text_index import (
    TextIndex,
    query_terms,
    snippet,
    term_frequencies,
    tokens,
    top_k,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("parse_config_v2 failed", ["parse_config_v2", "parse", "config", "v2", "failed"]),
        ("HTTPServerError", ["httpservererror", "http", "server", "error"]),
        ("getHTTPResponseCode", ["gethttpresponsecode", "get", "http", "response", "code"]),
        ("src/store/db.py", ["src/store/db.py", "src", "store", "db.py", "db", "py"]),
        ("ECONNREFUSED E1234", ["econnrefused", "e1234"]),
        ("foo.bar 3.14", ["foo.bar", "foo", "bar", "3.14", "3", "14"]),
        ("std::vector a-b-c", ["std::vector", "std", "vector", "a-b-c"]),
        ("The cat is on the mat.", ["cat", "mat"]),
        ("x 7 é", ["7"]),
        ("naïve café", ["naïve", "café"]),
    ],
)
def test_tokens(text, expected):
    assert tokens(text) == expected


def test_term_frequencies_and_query_terms():
    terms, tfs, dl = term_frequencies("retry the retry loop")
    assert dict(zip(terms, tfs, strict=True)) == {"retry": 2, "loop": 1}
    assert dl == 3
    assert query_terms("Retry retry LOOP the") == ["retry", "loop"]
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == 32
    assert tokens("a" * 65) == []  # too long to be a term


def test_snippet_centres_on_the_best_term():
    text = "start " + "pad " * 100 + "the ECONNREFUSED error " + "end " * 100
    out = snippet(text, ["econnrefused"])
    assert "ECONNREFUSED" in out and out.startswith("…") and out.endswith("…")
    assert len(out) <= 202
    assert snippet("short text", ["x"]) == "short text"
    assert snippet("a  b\n\nc", []) == "a b c"
    assert snippet("word " * 100, ["missing"]).startswith("word word")


def test_postings_from_load_and_add_agree():
    loaded, grown = TextIndex(), TextIndex()
    loaded.load(["alpha", "beta"], np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([2, 1, 3]))
    grown.add(0, ["alpha"], [2])
    grown.add(1, ["alpha", "beta"], [1, 3])
    loaded.add(2, ["beta", "gamma"], [1, 1])
    grown.add(2, ["beta", "gamma"], [1, 1])
    for term in ["alpha", "beta", "gamma", "nope"]:
        a, b = loaded.postings(term), grown.postings(term)
        assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
    alive = np.array([True, False, True])
    found = loaded.scores(["beta", "alpha"], alive, np.ones(3, np.float32), 1.0)
    scores, by_idf = found.bm25, found.by_idf
    assert scores[1] == 0  # a dead row never scores
    assert scores[0] > 0 and scores[2] > 0
    assert by_idf == ["alpha", "beta"]  # both df 1 among live rows: stable by term


def _top_k_by_sorting(scores: np.ndarray, allowed: np.ndarray, k: int):
    rows = [r for r in range(len(allowed)) if allowed[r] and scores[r] > 0]
    rows.sort(key=lambda r: (-scores[r], r))
    return rows[:k]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 10, 100])
def test_top_k_equals_sorting_everything(seed, k):
    """Over many rows top_k narrows to a sampled floor first; the result must be what sorting
    every allowed row gives: the same rows, ties broken by row. Scores on a coarse grid make
    ties; most rows score 0 (no query term), as in a real query."""
    rng = np.random.default_rng(seed)
    n = 300_000
    scores = np.zeros(n, dtype=np.float32)
    hit = rng.random(n) < (0.3 if seed % 2 else 0.002)  # common terms, or rare ones only
    scores[hit] = np.round(rng.gamma(2.0, 1.0, int(hit.sum())), 1).astype(np.float32)
    allowed = rng.random(n) < (1.0 if seed < 3 else 0.2)  # no filter, or a narrow one
    rows, vals = top_k(scores, allowed, k)
    expected = _top_k_by_sorting(scores, allowed, k)
    assert rows.tolist() == expected
    assert vals.tolist() == scores[expected].tolist()
