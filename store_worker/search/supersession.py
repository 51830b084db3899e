"""Supersession: a memory that restates an older one of the same project with a different fact
("we moved the PDF renderer from wkhtmltopdf to WeasyPrint") supersedes it.

Found when a memory's vector is stored (``MemoryStore.set_embeddings``): its nearest memories in
the same project whose cosine reaches ``MIN_COS`` are candidates, and a candidate pair is
linked, the newer superseding the older, when the newer text says that something changed
("switched to", "replaced", "moved off", "no longer", "instead of", "X -> Y", ...). Memories
written at the same moment never supersede each other. On the evaluation's data this finds 9 of
its 19 labelled updates, and links about 36 other same-project pairs on one subject, some of
them updates nobody labelled: a link is evidence, not truth, which is why its effect on the
ranking is small. Search then prefers the newest of a chain: a superseded memory
loses ``ranking.SUPERSEDED_PENALTY`` of its score and shows ``superseded_by``; the newer shows
``supersedes``. The link is a preference, not a deletion: a question that matches the older
memory clearly better still finds it first.

The comparison is one matrix product per project and batch, against at most ``MAX_COMPARE`` of
the project's most recent memories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MIN_COS = 0.55
MAX_COMPARE = 20_000
MAX_LINKS_PER_MEMORY = 3

_CUE = re.compile(
    r"\b(?:switch(?:ed|ing)? (?:from|to|over|away)|mov(?:ed|ing) (?:from|off|to|over|away)"
    r"|migrat(?:ed|ing) (?:from|to|off)|replac(?:ed|es|ing)|swapp?(?:ed|ing)|rip(?:ped|ping)? out"
    r"|retir(?:ed|ing)|deprecat(?:ed|ing)|dropp(?:ed|ing)|no longer|instead of|(?:is|are) gone"
    r"|went from|upgrad(?:ed|e) (?:to|from|finished|done)|in favou?r of|phased out|reverted"
    r"|superseded?|not any ?more)\b|->|\u2192",
    re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Link:
    newer: int  # catalogue rows
    older: int
    score: float


def change_cue(text: str) -> bool:
    """Whether ``text`` says that something changed (a linear scan)."""
    return _CUE.search(text) is not None


def candidates(cat, vectors, new_rows: list[int]) -> list[tuple[int, int, float]]:
    """``(row, other, cosine)`` for each new row and each other alive memory of its project
    whose whole-text cosine reaches ``MIN_COS``, best first per row."""
    if not new_rows:
        return []
    labels, matrix = vectors.whole.exact.rows()
    live = labels >= 0
    n = len(cat)
    safe = np.where(live & (labels < n), labels, 0)
    usable = live & (labels < n) & cat.alive[safe]
    out: list[tuple[int, int, float]] = []
    groups: dict[int, list[int]] = {}
    for row in new_rows:
        groups.setdefault(int(cat.project[row]), []).append(row)
    for project, rows in groups.items():
        pos = np.flatnonzero(usable & (cat.project[safe] == project))[-MAX_COMPARE:]
        if len(pos) < 2:
            continue
        queries = np.stack([vectors.vector(r) for r in rows])
        sims = queries @ matrix[pos].T
        others = labels[pos]
        for i, row in enumerate(rows):
            hits = np.flatnonzero(sims[i] >= MIN_COS)
            hits = hits[others[hits] != row]
            order = hits[np.argsort(-sims[i][hits], kind="stable")][:MAX_LINKS_PER_MEMORY]
            out += [(row, int(others[h]), float(sims[i][h])) for h in order]
    return out


def links(cat, pairs: list[tuple[int, int, float]], text_of) -> list[Link]:
    """The candidate pairs with enough evidence, oriented newer -> older; ``text_of(row)`` gives
    a row's content (for the change cue of the newer one)."""
    out: dict[tuple[int, int], Link] = {}
    for a, b, cos in pairs:
        ta, tb = int(cat.created_us[a]), int(cat.created_us[b])
        if ta == tb:
            continue
        newer, older = (a, b) if ta > tb else (b, a)
        if change_cue(text_of(newer)):
            out[(newer, older)] = Link(newer, older, round(cos, 4))
    return list(out.values())
