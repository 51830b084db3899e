"""The labelled retrieval evaluation (``bench/retrieval_eval.py``), run at the defaults on the
whole data set with the real model and the real store: a ranking change that loses quality
fails here. The floors sit just under the figures measured when they were set (README, "How
search ranks"); raise them when the ranking gets better, never lower them to make a change pass.
"""

from __future__ import annotations

from bench.retrieval_data import load, problems
from bench.retrieval_eval import MODES, evaluate

# category -> (R@1, R@5, MRR@10) floors for the default ranking
FLOORS = {
    "all": (0.65, 0.82, 0.72),
    "paraphrase": (0.26, 0.55, 0.40),
    "identifier": (1.00, 1.00, 1.00),
    "code": (0.95, 1.00, 0.97),
    "error": (0.88, 0.94, 0.92),
    "update": (0.55, 0.83, 0.68),
    "temporal": (0.66, 0.91, 0.80),
    "cross_project": (0.41, 0.66, 0.54),
}


def test_the_data_is_valid():
    ds = load()
    assert problems(ds) == []
    assert len(ds.memories) >= 300 and len(ds.questions) >= 120
    assert len({m.project for m in ds.memories}) >= 10


def test_search_at_its_defaults_keeps_its_quality(tmp_path):
    ds = load()
    modes = {m: MODES[m] for m in ("default", "cosine only", "BM25 only")}
    reports, _ = evaluate(ds, modes, db_dir=tmp_path)
    rows = {r.mode: r.rows() for r in reports}
    got = rows["default"]
    below = {cat: (round(got[cat]["r1"], 3), round(got[cat]["r5"], 3), round(got[cat]["mrr"], 3))
             for cat, (r1, r5, mrr) in FLOORS.items()
             if got[cat]["r1"] < r1 or got[cat]["r5"] < r5 or got[cat]["mrr"] < mrr}
    assert below == {}, f"below the floors {FLOORS}: {below}"
    # the fusion beats each of its parts
    assert got["all"]["mrr"] > rows["cosine only"]["all"]["mrr"] + 0.02
    assert got["all"]["mrr"] > rows["BM25 only"]["all"]["mrr"] + 0.1
