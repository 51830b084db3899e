"""Scoring search candidates: a relevance in 0..1 from the cosine and the keyword match, then a
recency prior that only reorders near-ties, and what the question asks about time.

**Relevance** is a logistic blend, fitted on the labelled evaluation (``bench/fit_ranking.py``
prints the fit; ``bench/retrieval_eval.py`` measures the result)::

    keyword   = min(1, bm25 / idf_total)     # share of the query's information matched
    ident     = idf of the query's identifier-shaped terms the memory holds / idf_total
    relevance = sigmoid(W_COS * cos + W_KW * keyword + W_IDENT * ident + BIAS)

``idf_total`` sums the idf of the query terms found in the corpus, so ``keyword`` is 1 for a
memory holding every informative query term once at average length, whatever the query.
``ident`` is the keyword evidence a paraphrase cannot fake: the query's words shaped like
something a program names (``parse_config_v2``, ``BILL-482``, ``src/app.py``, ``ECONNREFUSED``,
``--dry-run``, ``DuckDB``; see ``text_index.identifier_terms``), and every term of a keyword
search (a few words that are not a question: ``hybrid_search.is_keyword_query``). Its weight is what lets an exact
identifier win over a closer paraphrase, while plain words shared with the wrong memory
("database", "job", "retry") barely count: on the evaluation's paraphrases they were noise (the
fit gives ``keyword`` almost no weight once ``ident`` is there, and a share of rare plain words
none; 0.3 of a logit for a full keyword match keeps near-ties on the side of the words). The
scale is absolute (the same cosine and match give the same relevance in any query), so
``min_score`` is a relevance a user can set: ~0.5 and up is a strong match, under 0.05 a weak
one. A memory with no
vector yet (still pending, or the embedding pool is down) counts a cosine estimated from its
keyword match (``COS_UNKNOWN`` to ``COS_UNKNOWN + COS_PER_KEYWORD``), so keyword-only search
still ranks by keywords.

**Time** adjusts the relevance's logit ``z``, so a shift means the same at any level of relevance
(a fixed amount off a score in 0..1 would swamp the differences among weak matches):

* recency is a prior, not a multiplier: ``z -= RECENCY_LOGIT * (1 - 0.5 ** (age_days /
  RECENCY_HALF_LIFE_DAYS))``: a year-old memory loses at most ``RECENCY_LOGIT`` (what a cosine
  0.004 lower costs), so age only breaks near-ties and never pushes a clearly relevant memory
  below an irrelevant one (on the evaluation, any stronger prior cost paraphrase answers, which
  are as often old as new);
* when the question asks for the current state (``intent``), a later memory on the subject of
  the best match overtakes it: each candidate newer than the best match and within
  ``CURRENT_MARGIN`` of its logit gains up to ``CURRENT_LOGIT``, in proportion to how close its
  own vector is to the best match's (nothing at cosine ``SUBJECT_COS``, all of it from
  ``SUBJECT_FULL``: a restatement of the same subject). "What do we use now for PDFs?" matches
  "we render PDFs with wkhtmltopdf" best; the later "replaced wkhtmltopdf with WeasyPrint" is
  close to it and wins;
* a memory another one supersedes (``supersession``) loses ``SUPERSEDED_LOGIT`` (at most a
  near-tie's worth: links are evidence, not truth);
* a period named in the question ("last week") adds ``PERIOD_LOGIT`` to memories written in it.

The score is ``sigmoid`` of the adjusted logit, in 0..1. ``decay=True`` instead applies the old
multiplicative decay ``relevance * 0.5 ** (age / half_life_days)`` (for "what was I doing
lately" browsing); ``decay=False`` turns every time preference off.

The other fusions (``fuse_rrf``, single lists) are kept for comparison in the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

US_PER_DAY = 86_400 * 1_000_000

# relevance (fitted: bench/fit_ranking.py)
W_COS = 12.0
W_KW = 0.3
W_IDENT = 10.5
BIAS = -8.2
# A memory without a vector yet (just stored, or the embedding pool is down) gets a cosine
# estimated from its keyword match: COS_UNKNOWN for none, COS_UNKNOWN + COS_PER_KEYWORD for all.
COS_UNKNOWN = 0.25
COS_PER_KEYWORD = 0.3

# time (logit units; tuned on the evaluation's update and temporal questions)
RECENCY_LOGIT = 0.05
RECENCY_HALF_LIFE_DAYS = 90.0
CURRENT_MARGIN = 3.0
SUBJECT_COS = 0.4
SUBJECT_FULL = 0.75
CURRENT_LOGIT = 3.0
SUPERSEDED_LOGIT = 0.15
PERIOD_LOGIT = 2.5


@dataclass(slots=True)
class Scored:
    """Candidates (catalogue rows) with their score parts, as parallel arrays."""

    rows: np.ndarray
    score: np.ndarray
    relevance: np.ndarray
    cosine: np.ndarray  # NaN: no vector
    keyword: np.ndarray
    recency: np.ndarray  # 0..1, 1 = now

    def order(self, tie_key: Sequence[str]) -> np.ndarray:
        """Positions best first; ties by ``tie_key`` of the row (the memory id)."""
        keys = [tie_key[r] for r in self.rows.tolist()]
        return np.asarray(sorted(range(len(keys)), key=lambda i: (-self.score[i], keys[i])),
                          dtype=np.int64)


def keyword_match(bm25: np.ndarray, idf_total: float) -> np.ndarray:
    if idf_total <= 0:
        return np.zeros(len(bm25), dtype=np.float64)
    return np.minimum(1.0, bm25.astype(np.float64) / idf_total)


def logit(cosine: np.ndarray, keyword: np.ndarray, ident: np.ndarray) -> np.ndarray:
    """The relevance's logit (see the module doc)."""
    cos = np.where(np.isnan(cosine), COS_UNKNOWN + COS_PER_KEYWORD * keyword,
                   cosine).astype(np.float64)
    return W_COS * cos + W_KW * keyword + W_IDENT * ident + BIAS


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def recency(created_us: np.ndarray, now_us: int, half_life_days: float) -> np.ndarray:
    age_days = np.maximum(now_us - created_us, 0) / US_PER_DAY
    return np.power(0.5, age_days / half_life_days)


def score(
    z: np.ndarray,
    created_us: np.ndarray,
    *,
    now_us: int,
    superseded: np.ndarray,
    current: bool,
    subject_sim: np.ndarray | None,
    in_period: np.ndarray | None,
    decay: bool | None,
    half_life_days: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The final score of each candidate (0..1) and the recency factor shown with it.
    ``subject_sim``: each candidate's cosine to the best candidate (NaN where unknown), needed
    when ``current``. ``decay``: None = the time preferences above, True = the old
    multiplicative decay with ``half_life_days``, False = none."""
    if decay is True:
        factor = recency(created_us, now_us, half_life_days)
        return sigmoid(z) * factor, factor
    rec = recency(created_us, now_us, RECENCY_HALF_LIFE_DAYS)
    if decay is False:
        return sigmoid(z), rec
    out = z - RECENCY_LOGIT * (1.0 - rec)
    if current and len(z) and subject_sim is not None:
        top = int(np.argmax(z))
        newer = (created_us > created_us[top]) & (z >= z[top] - CURRENT_MARGIN)
        on_subject = np.clip((np.nan_to_num(subject_sim) - SUBJECT_COS)
                             / (SUBJECT_FULL - SUBJECT_COS), 0.0, 1.0)
        out += np.where(newer, CURRENT_LOGIT * on_subject, 0.0)
    out -= np.where(superseded, SUPERSEDED_LOGIT, 0.0)
    if in_period is not None:
        out += PERIOD_LOGIT * in_period
    return sigmoid(out), rec


# ------------------------------------------------------------------ for comparison
RRF_K = 60


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based competition ranks of ``scores`` sorted best first (equal scores, equal rank)."""
    if len(scores) == 0:
        return np.empty(0, dtype=np.int64)
    new_group = np.concatenate(([True], scores[1:] != scores[:-1]))
    first = np.flatnonzero(new_group)
    return (first[np.cumsum(new_group) - 1] + 1).astype(np.int64)


def fuse_rrf(ranked: Sequence[tuple[np.ndarray, np.ndarray]], rows: np.ndarray) -> np.ndarray:
    """Reciprocal rank fusion (K = 60) of ``(rows, scores)`` lists sorted best first, for
    ``rows``, normalised so 1.0 is "first in every non-empty list"."""
    fused: dict[int, float] = {}
    for list_rows, scores in ranked:
        for row, rank in zip(list_rows.tolist(), ranks(scores).tolist(), strict=True):
            fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank)
    best = max(1, sum(1 for r, _ in ranked if len(r))) / (RRF_K + 1)
    return np.asarray([fused.get(r, 0.0) / best for r in rows.tolist()], dtype=np.float64)
