"""Batch planning for the embedding model (pure functions, no model needed).

A transformer call costs roughly ``batch_size * padded_length`` token-slots (plus an
attention term that grows with the square of the length), and every text in a batch is
padded to the batch's longest. So texts are sorted by token length and cut into runs whose
padded size stays under a token budget: short texts go in large batches, long ones in small
batches, and a text of more than half the budget runs alone.

The defaults were picked by measurement on the 2-core development machine
(``uv run python -m bench.embed_raw --sweep``: tokenise+plan+model+pool, sentences/s, best
of 3 interleaved rounds; sets: 2000 short texts of ~12.6 tokens, 500 medium of ~63, the
202-text reference corpus of mixed lengths, and its 45 texts over 128 tokens). Another
engineer's tests and benchmarks were running at the same time, so the 2-thread numbers are
noisy (medians were as low as half the best); the 1-thread ones are within ~5%:

    budget    max_batch | short 1t / 2t | medium 1t / 2t | corpus 1t / 2t | long 1t / 2t
    256       32        |  291 / 504    |  59 /  93      |  44 / 65       |  14.2 / 23.6
    512       32        |  309 / 547    |  61 / 107      |  44 / 64       |  14.0 / 23.6
    1024      32        |  297 / 514    |  60 /  99      |  42 / 70       |  13.6 / 22.8
    2048      32        |  306 / 516    |  58 / 104      |  39 / 65       |  12.7 / 22.6
    1024      64        |  314 / 552    |  60 /  86      |  41 / 52       |  13.8 / 24.0
    unbounded 32        |  314 / 484    |  55 /  76      |  30 / 38       |  10.6 / 19.3
    one text at a time  |  184 / 204    |  54 /  77      |  40 / 63       |  13.6 / 24.0

512 padded tokens with at most 32 texts had the best 1-thread median on every set (short
303, medium 60, corpus 43, long 13.6) and was within noise of the best at 2 threads. An
unbounded budget (batches of 32 long texts) is ~30% slower on the mixed corpus, and
onnxruntime's memory arena keeps its peak: after the corpus the process held ~1.0 GB RSS
instead of ~0.3 GB with this budget.

Measured again with the model the worker runs now (``fast_model``: MatMulNBits, int8 tables),
1 thread, best / median of 3 interleaved rounds, sentences/s (2026-11-30, nothing else running):

    budget | short        | medium      | corpus      | long
    256    | 382.9 / 379  | 73.2 / 72.5 | 51.2 / 51.2 | 16.4 / 16.0
    384    | 383.2 / 382  | 73.8 / 73.1 | 49.9 / 49.6 | 16.0 / 15.8
    512    | 386.7 / 382  | 72.2 / 72.1 | 39.6 / 39.5 | 11.7 / 11.7

so the budget is now 256 padded tokens: texts of up to 8 tokens run 32 at a time, ~60-token
texts 4 at a time and a text of more than 128 tokens alone. Mixed and long texts run ~30-40%
faster, the rest the same, and a bulk lane's working set is smaller: embedding ~60-token texts
in chunks of 128, one lane's process held 138 MB at the median (max 140) against 147 (max
166), two lanes 167 (max 168) against 182 (max 204).
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_MAX_TOKENS_PER_BATCH = 256
DEFAULT_MAX_BATCH = 32


def sort_by_length(lengths: Sequence[int]) -> list[int]:
    """Indices of ``lengths`` ordered by length, ties kept in input order."""
    return sorted(range(len(lengths)), key=lengths.__getitem__)


def plan_batches(
    lengths: Sequence[int],
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> list[list[int]]:
    """Group text indices into batches for the model.

    ``lengths[i]`` is the token count of text ``i`` (after truncation, with the special
    tokens). Returns a list of index lists that together cover every index exactly once.
    Indices are ordered by ascending length across and within batches, and each batch
    satisfies ``len(batch) <= max_batch`` and ``len(batch) * max(length in batch) <=
    max_tokens_per_batch``, except that a single text longer than the budget forms a
    batch of its own.
    """
    if max_tokens_per_batch < 1:
        raise ValueError("max_tokens_per_batch must be >= 1")
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1")
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sort_by_length(lengths):
        # Sorted ascending, so this text is the longest of the batch if it joins.
        padded = (len(current) + 1) * max(lengths[index], 1)
        if current and (len(current) >= max_batch or padded > max_tokens_per_batch):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
