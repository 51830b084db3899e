"""Supersession: a memory that restates an older one of the same project with a different fact
("we moved the PDF renderer from wkhtmltopdf to WeasyPrint") supersedes it.

Looked for after a memory's vector is stored (``MemoryStore.set_embeddings`` queues it; the
store works through the queue while idle, ``Linker``): its nearest memories in the same project
whose cosine reaches ``MIN_COS`` are candidates, and a candidate pair is
linked, the newer superseding the older, when the newer text says that something changed
("switched to", "replaced", "moved off", "no longer", "instead of", "X -> Y", ...). Memories
written at the same moment never supersede each other. On the evaluation's data this finds 9 of
its 19 labelled updates, and links about 36 other same-project pairs on one subject, some of
them updates nobody labelled: a link is evidence, not truth, which is why its effect on the
ranking is small. Search then prefers the newest of a chain: a superseded memory
loses ``ranking.SUPERSEDED_PENALTY`` of its score and shows ``superseded_by``; the newer shows
``supersedes``. The link is a preference, not a deletion: a question that matches the older
memory clearly better still finds it first.

The comparison is one matrix product per project, batch of waiting memories and block of the
project's memories (at most ``MAX_COMPARE``, the most recent).
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


class Linker:
    """Looks for the supersession candidates of newly embedded memories a slice at a time, so the
    store can do it while idle: one slice compares up to ``BATCH`` waiting memories of one project
    with ``BLOCK`` of that project's memories (~1-3 ms). At 100k memories in 50 projects, doing a
    batch of 128 at once took ~60 ms of the store's only thread, with store requests waiting."""

    BATCH = 256
    BLOCK = 4096

    def __init__(self) -> None:
        self._waiting: dict[int, list[int]] = {}  # project code -> rows, in order
        self._job: _Job | None = None

    @property
    def pending(self) -> int:
        return sum(len(r) for r in self._waiting.values()) + (len(self._job.rows)
                                                              if self._job else 0)

    def add(self, cat, rows: list[int]) -> None:
        for row in rows:
            self._waiting.setdefault(int(cat.project[row]), []).append(row)

    def step(self, cat, vectors) -> list[tuple[int, int, float]]:
        """Do one slice; returns the candidate pairs of a job that finished (else [])."""
        if self._job is None:
            if not self._waiting:
                return []
            project, rows = next(iter(self._waiting.items()))
            take, rest = rows[: self.BATCH], rows[self.BATCH:]
            if rest:
                self._waiting[project] = rest
            else:
                del self._waiting[project]
            self._job = _Job.start(cat, vectors, project, take)
        job = self._job
        if job.step(vectors, self.BLOCK):
            self._job = None
            return job.pairs(cat)
        return []


@dataclass(slots=True)
class _Job:
    """Candidates of some waiting rows of one project, compared block by block with that
    project's memories (by row number, so the vector matrix may move between slices)."""

    rows: list[int]
    queries: np.ndarray  # their vectors
    others: np.ndarray  # rows of the project to compare with
    done: int
    hits: list[tuple[int, int, float]]

    @classmethod
    def start(cls, cat, vectors, project: int, rows: list[int]) -> _Job:
        alive = [r for r in rows if cat.alive[r] and vectors.vector(r) is not None]
        n = len(cat)
        same = np.flatnonzero(cat.alive[:n] & cat.embedded[:n] & (cat.project[:n] == project))
        queries = (np.stack([vectors.vector(r) for r in alive]) if alive
                   else np.empty((0, vectors.dim), dtype=np.float32))
        return cls(alive, queries, same[-MAX_COMPARE:], 0, [])

    def step(self, vectors, block: int) -> bool:
        """Compare with the next block; True when every block is done."""
        if not self.rows or self.done >= len(self.others):
            return True
        part = self.others[self.done: self.done + block]
        self.done += len(part)
        present, mat = vectors.whole.exact.gather(part)
        part = part[present]
        if len(part):
            sims = self.queries @ mat.T
            for i, j in zip(*np.nonzero(sims >= MIN_COS), strict=True):
                if part[j] != self.rows[i]:
                    self.hits.append((self.rows[i], int(part[j]), float(sims[i, j])))
        return self.done >= len(self.others)

    def pairs(self, cat) -> list[tuple[int, int, float]]:
        """The best ``MAX_LINKS_PER_MEMORY`` candidates of each row that is still alive."""
        by_row: dict[int, list[tuple[int, int, float]]] = {}
        for hit in self.hits:
            by_row.setdefault(hit[0], []).append(hit)
        out = []
        for row, hits in by_row.items():
            if cat.alive[row]:
                hits.sort(key=lambda h: -h[2])
                out += [h for h in hits if cat.alive[h[1]]][:MAX_LINKS_PER_MEMORY]
        return out


def links(cat, pairs: list[tuple[int, int, float]], text_of) -> list[Link]:
    """The candidate pairs with enough evidence, oriented newer -> older; ``text_of(row)`` gives
    a row's content (for the change cue of the newer one)."""
    out: dict[tuple[int, int], Link] = {}
    cue: dict[int, bool] = {}  # each newer memory's text is scanned once, whatever its pairs
    for a, b, cos in pairs:
        ta, tb = int(cat.created_us[a]), int(cat.created_us[b])
        if ta == tb:
            continue
        newer, older = (a, b) if ta > tb else (b, a)
        if newer not in cue:
            cue[newer] = change_cue(text_of(newer))
        if cue[newer]:
            out[(newer, older)] = Link(newer, older, round(cos, 4))
    return list(out.values())
