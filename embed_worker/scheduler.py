"""Which texts the embed worker runs next: queries first, bulk documents in bounded chunks.

Every request becomes a ``Job``. Query jobs (a search waiting on one vector) always go first;
document jobs are served oldest first, each pre-sorted by token length so consecutive slices are
of similar length and pad little. A chunk is bounded by a padded-token budget, so a query that
arrives during a 1,000-text bulk job waits for at most one chunk (~0.1-0.2 s), not the whole job.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

CHUNK_TOKEN_BUDGET = 2048  # padded tokens per chunk: ~0.15 s of model time on one core
CHUNK_MAX_TEXTS = 128


@dataclass
class Job:
    key: object  # what the caller needs to route the answer back
    texts: list[str]
    lengths: list[int]
    is_query: bool
    out: np.ndarray  # (n, dim) float32, filled as chunks complete
    order: deque[int] = field(default_factory=deque)  # indices still to run, shortest first
    done: int = 0
    failed: bool = False  # answered with an error; whatever of it is still running is dropped

    def __post_init__(self) -> None:
        if not self.order:
            self.order = deque(sorted(range(len(self.texts)), key=self.lengths.__getitem__))

    @property
    def complete(self) -> bool:
        return self.done == len(self.texts)


@dataclass
class Slice:
    job: Job
    indices: list[int]


class Scheduler:
    def __init__(self, token_budget: int = CHUNK_TOKEN_BUDGET,
                 max_texts: int = CHUNK_MAX_TEXTS) -> None:
        self.token_budget = token_budget
        self.max_texts = max_texts
        self.queries: deque[Job] = deque()
        self.documents: deque[Job] = deque()

    def add(self, job: Job) -> None:
        (self.queries if job.is_query else self.documents).append(job)

    def __bool__(self) -> bool:
        return bool(self.queries or self.documents)

    def pending_texts(self) -> int:
        return sum(len(j.order) for j in (*self.queries, *self.documents))

    def next_chunk(self) -> list[Slice]:
        """Take the next chunk of work off the queues (queries first)."""
        slices: list[Slice] = []
        count, longest = 0, 1
        source = self.queries if self.queries else self.documents
        while source:
            job = source[0]
            take: list[int] = []
            while job.order:
                i = job.order[0]
                new_longest = max(longest, job.lengths[i])
                if count and ((count + 1) * new_longest > self.token_budget
                              or count >= self.max_texts):
                    break
                take.append(job.order.popleft())
                count, longest = count + 1, new_longest
            if take:
                slices.append(Slice(job, take))
            if job.order:
                break  # chunk is full
            source.popleft()
        return slices
