"""Fit the relevance blend of ``store_worker.search.ranking`` on the labelled evaluation.

    uv run python -m bench.fit_ranking [--cache FILE]

Fills a real store with the evaluation's data (as ``bench.retrieval_eval`` does) and takes each
question's candidates the way search does (``hybrid_search.candidates``: the best 50 by BM25 and
by cosine) with their features: the cosine, the keyword match, and the share of the query's
information in identifier-shaped terms the candidate holds (``ranking``). Then, for several
feature sets:

1. the ranking weights: a coordinate search maximising MRR@10 over the questions (the answer is
   the label), started from a conditional logit fit;
2. the scale: a logistic regression of "is the answer" on that weighted sum over every
   candidate, so the final ``sigmoid(w . x + b)`` is a relevance in 0..1 with the same meaning
   in every query (what ``min_score`` needs).

It prints top-1 and MRR fitted on all questions and under leave-one-writer-out cross-validation
(weights fitted on two data files' questions, tested on the third's: a fit that memorised the
data would drop there), per category, and the weights to put into ``ranking``. Time (recency,
supersession, the question's time words) is not part of relevance and not fitted here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.retrieval_data import DATA, load
from bench.retrieval_eval import fill_store

FEATURES = ("cos", "kw", "ident")
FEATURE_SETS = {
    "cos": ["cos"],
    "cos+kw": ["cos", "kw"],
    "cos+ident": ["cos", "ident"],
    "cos+kw+ident": ["cos", "kw", "ident"],
}


def collect(depth: int = 50) -> list[dict]:
    from embed_worker.model import Embedder
    from store_worker.indexes.text_index import identifier_terms, query_terms
    from store_worker.memory_store import MemoryStore
    from store_worker.search import hybrid_search, intent, ranking

    ds = load()
    embedder = Embedder.load()
    now = datetime.now(UTC)
    out = []
    with tempfile.TemporaryDirectory(prefix="sd-fit-") as tmp, \
            MemoryStore(Path(tmp) / "fit.duckdb") as store:
        id_of = fill_store(store, embedder, ds, now)
        for q in ds.questions:
            asked = intent.read(q.question, now, UTC)
            text = (q.question.replace(asked.period_words, " ") if asked.period_words
                    else q.question)
            qv = embedder.embed([q.question])[0]
            n = len(store.catalog)
            c = hybrid_search.candidates(store, query_terms(text), qv,
                                         store.catalog.alive[:n].copy(), depth,
                                         idents=identifier_terms(text))
            cos = np.where(np.isnan(c.cosine), ranking.COS_UNKNOWN, c.cosine)
            out.append({
                "X": np.stack([cos, c.keyword, c.ident], axis=1).tolist(),
                "y": [store.catalog.ids[r] == id_of[q.answer] for r in c.rows.tolist()],
                "project": q.id.split("/")[0], "category": q.category})
    return out


def writer_folds() -> list[set[str]]:
    """The projects of each data file (one writer's), for leave-one-writer-out."""
    return [{json.loads(line)["project"] for line in path.read_text().splitlines() if line}
            for path in sorted(DATA.glob("memories-*.jsonl"))]


def _arrays(groups, cols):
    idx = [FEATURES.index(c) for c in cols]
    return [(np.asarray(g["X"])[:, idx], np.asarray(g["y"], dtype=bool)) for g in groups]


def mrr(data, w) -> float:
    total = 0.0
    for X, y in data:
        if not y.any():
            continue
        s = X @ w
        rank = 1 + int(np.sum(s > s[y].max()))
        total += 1 / rank if rank <= 10 else 0.0
    return total / len(data)


def top1(data, w) -> float:
    return sum(bool(y.any() and y[np.argmax(X @ w)]) for X, y in data) / len(data)


def fit_logit(data, l2=0.01, steps=2000, lr=0.5) -> np.ndarray:
    w = np.zeros(data[0][0].shape[1])
    usable = [(X, y) for X, y in data if y.any()]
    for _ in range(steps):
        grad = np.zeros_like(w)
        for X, y in usable:
            s = X @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            grad += X[y].mean(axis=0) - p @ X
        w += lr * (grad / len(usable) - l2 * w)
    return w


def fit_weights(data) -> np.ndarray:
    """Coordinate search on MRR, the cosine weight fixed to 1 (the scale is fitted after)."""
    w = fit_logit(data)
    w = w / w[0] if w[0] > 0 else np.eye(len(w))[0]
    best = mrr(data, w)
    for step in (1.0, 0.3, 0.1, 0.03):
        improved = True
        while improved:
            improved = False
            for j in range(1, len(w)):
                for delta in (step, -step):
                    trial = w.copy()
                    trial[j] = max(0.0, trial[j] + delta)
                    value = mrr(data, trial)
                    if value > best + 1e-9:
                        w, best, improved = trial, value, True
    return w


def fit_scale(data, w, steps=3000, lr=0.5) -> tuple[float, float]:
    s = np.concatenate([X @ w for X, _ in data])
    y = np.concatenate([y for _, y in data]).astype(np.float64)
    a, b = 1.0, 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(a * s + b)))
        a += lr * np.mean((y - p) * s) * 10
        b += lr * np.mean(y - p)
    return a, b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, help="read/write the collected features here")
    args = ap.parse_args(argv)
    if args.cache and args.cache.exists():
        groups = json.loads(args.cache.read_text())
    else:
        groups = collect()
        if args.cache:
            args.cache.write_text(json.dumps(groups))
    folds = writer_folds()
    cats = sorted({g["category"] for g in groups})
    print(f"{len(groups)} questions, {sum(len(g['y']) for g in groups)} candidates, "
          f"answer among candidates for {sum(any(g['y']) for g in groups)}")
    for name, cols in FEATURE_SETS.items():
        data = _arrays(groups, cols)
        w = fit_weights(data) if len(cols) > 1 else np.ones(1)
        a, b = fit_scale(data, w)
        cv_top1 = cv_mrr = 0.0
        for fold in folds:
            train = _arrays([g for g in groups if g["project"] not in fold], cols)
            test = _arrays([g for g in groups if g["project"] in fold], cols)
            wf = fit_weights(train) if len(cols) > 1 else np.ones(1)
            cv_top1 += top1(test, wf) * len(test)
            cv_mrr += mrr(test, wf) * len(test)
        per_cat = {c: top1(_arrays([g for g in groups if g["category"] == c], cols), w)
                   for c in cats}
        weights = ", ".join(f"{f}={a * x:.2f}" for f, x in zip(cols, w, strict=True))
        print(f"\n{name}: top-1 {top1(data, w):.3f} / MRR {mrr(data, w):.3f} fitted, "
              f"{cv_top1 / len(groups):.3f} / {cv_mrr / len(groups):.3f} cross-validated\n"
              f"  relevance = sigmoid({weights}, bias={b:.2f})\n"
              "  top-1 by category: " + ", ".join(f"{c} {v:.2f}" for c, v in per_cat.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
