"""The score: fixed weights per signal, re-normalised over the signals actually measured.

``score = 100 * sum(value * weight) / sum(weight)`` over the measured signals; an unknown or
not-applicable signal is left out of both sums, so it neither helps nor hurts. Each signal's
``share`` and ``points`` say what it contributed; recommendations are the advice of the
signals that lost the most points (``share * (1 - value)``), then the advice of signals that
could not be measured but could be (a coverage report to write, a tool to install).

The weights are a judgement, written down here once (they sum to 100): what a new session most
needs to know about a project first (is it under version control, tested, linted, clean).
"""

from __future__ import annotations

from shared import protocol as p

WEIGHTS: dict[str, tuple[str, float]] = {
    # project health (52)
    "vcs": ("project", 8),
    "readme": ("project", 6),
    "tests": ("project", 10),
    "manifest": ("project", 5),
    "lockfile": ("project", 5),
    "lockfile_sync": ("project", 4),
    "ci": ("project", 6),
    "docs": ("project", 3),
    "gitignore_secrets": ("project", 5),
    # code quality (30)
    "lint": ("code", 14),
    "test_results": ("code", 6),
    "coverage": ("code", 6),
    "type_checking": ("code", 4),
    # git (12)
    "git_clean": ("git", 6),
    "git_upstream": ("git", 3),
    "git_recent": ("git", 3),
    # tools (4) and permissions (2)
    "tools": ("tools", 4),
    "permissions": ("permissions", 2),
}
CATEGORIES: tuple[p.Category, ...] = ("project", "code", "git", "tools", "permissions")
MAX_RECOMMENDATIONS = 8


def _signal(name: str, status: p.SignalStatus, value: float, detail: str,
            advice: str) -> p.Signal:
    category, weight = WEIGHTS[name]
    return p.Signal(name=name, category=category, status=status,
                    value=round(max(0.0, min(1.0, value)), 3), weight=weight,
                    detail=detail, advice=advice)


def measured(name: str, value: float, detail: str, advice: str = "") -> p.Signal:
    return _signal(name, "measured", value, detail, advice if value < 1 else "")


def unknown(name: str, detail: str, advice: str = "") -> p.Signal:
    return _signal(name, "unknown", 0.0, detail, advice)


def not_applicable(name: str, detail: str) -> p.Signal:
    return _signal(name, "not_applicable", 0.0, detail, "")


def combine(signals: list[p.Signal]) -> tuple[float, list[p.CategoryScore], list[p.Signal],
                                             list[str]]:
    """(score, categories, breakdown in WEIGHTS order, recommendations)."""
    by_name = {s.name: s for s in signals}
    missing = set(WEIGHTS) - set(by_name)
    if missing:
        raise ValueError(f"signals not assessed: {sorted(missing)}")
    breakdown = [by_name[name] for name in WEIGHTS]
    total = sum(s.weight for s in breakdown if s.status == "measured")
    for s in breakdown:
        if s.status == "measured" and total:
            s.share = round(s.weight / total, 4)
            s.points = round(s.value * s.weight / total * 100, 2)
    score = round(sum(s.value * s.weight for s in breakdown if s.status == "measured")
                  / total * 100, 1) if total else 0.0
    categories = []
    for category in CATEGORIES:
        members = [s for s in breakdown if s.category == category and s.status == "measured"]
        weight = sum(s.weight for s in members)
        categories.append(p.CategoryScore(
            name=category,
            score=round(sum(s.value * s.weight for s in members) / weight * 100, 1)
            if weight else None,
            share=round(weight / total, 4) if total else 0.0))
    return score, categories, breakdown, recommendations(breakdown)


def recommendations(breakdown: list[p.Signal]) -> list[str]:
    lost = sorted((s for s in breakdown if s.status == "measured" and s.advice),
                  key=lambda s: -(s.share * (1 - s.value)))
    later = [s for s in breakdown if s.status == "unknown" and s.advice]
    out: list[str] = []
    for s in [*lost, *later]:
        if s.advice not in out:
            out.append(s.advice)
    return out[:MAX_RECOMMENDATIONS]
