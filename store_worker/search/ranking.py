"""Fusion of the keyword and vector candidate lists, and time decay.

Reciprocal rank fusion: ``rrf(d) = sum over lists of 1 / (K + rank(d))`` (K = 60; rank from 1,
equal scores share the better rank, so ties stay ties for decay to break),
divided by its largest possible value ``n_lists / (K + 1)`` (first in every list), so the fused
score is in 0..1 and means the same whatever the query: 1.0 is "first in every list", 0.5 in
hybrid mode is "first in one list, absent from the other". An empty list (nothing embedded yet,
or no keyword match at all) does not count in ``n_lists``. Then, with decay on,
``score = rrf * 0.5 ** (age_days / half_life_days)`` (a future ``created_at`` counts as age 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RRF_K = 60
_US_PER_DAY = 86_400 * 1_000_000


@dataclass(slots=True)
class Candidate:
    row: int
    score: float
    rrf: float
    decay: float


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based competition ranks of ``scores`` sorted best first (equal scores, equal rank)."""
    if len(scores) == 0:
        return np.empty(0, dtype=np.int64)
    new_group = np.concatenate(([True], scores[1:] != scores[:-1]))
    first = np.flatnonzero(new_group)
    return (first[np.cumsum(new_group) - 1] + 1).astype(np.int64)


def fuse(
    ranked: Sequence[tuple[np.ndarray, np.ndarray]],
    created_us: np.ndarray,
    *,
    now_us: int,
    decay: bool,
    half_life_days: float,
    min_score: float,
    tie_key: Sequence[str],
) -> list[Candidate]:
    """Fused, decayed candidates with ``score >= min_score``, best first (ties by ``tie_key``).
    ``ranked`` holds ``(rows, scores)`` lists, each sorted best first."""
    if not ranked:
        return []
    fused: dict[int, float] = {}
    for rows, scores in ranked:
        for row, rank in zip(rows.tolist(), ranks(scores).tolist(), strict=True):
            fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank)
    if not fused:
        return []
    best = sum(1 for rows, _ in ranked if len(rows)) / (RRF_K + 1)
    rows = np.fromiter(fused.keys(), dtype=np.int64, count=len(fused))
    rrf = np.fromiter(fused.values(), dtype=np.float64, count=len(fused)) / best
    if decay:
        age_days = np.maximum(now_us - created_us[rows], 0) / _US_PER_DAY
        factor = np.power(0.5, age_days / half_life_days)
    else:
        factor = np.ones(len(rows))
    score = rrf * factor
    out = [
        Candidate(int(r), float(s), float(f), float(d))
        for r, s, f, d in zip(rows.tolist(), score.tolist(), rrf.tolist(), factor.tolist(),
                              strict=True)
        if s >= min_score
    ]
    out.sort(key=lambda c: (-c.score, tie_key[c.row]))
    return out
