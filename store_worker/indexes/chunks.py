"""How a long memory is cut into overlapping chunks for embedding.

The model reads at most 256 tokens and averages over all of them, so one vector of a long
conversation is about everything and nothing: a detail in its middle is diluted or cut off.
A memory of more than ``MIN_WORDS`` words (about 128 tokens of prose) is therefore embedded
whole *and* in chunks of ``CHUNK_WORDS`` words (~100-128 tokens) overlapping by
``OVERLAP_WORDS``, and its vector score is the best of them. At most ``MAX_CHUNKS`` chunks
(the first ~3,800 words); the rest of a very long memory is found by its keywords.

A chunk is a character span ``(start, stop)`` of the content, cut at whitespace, so the same
content always gives the same chunks and the text of each is ``content[start:stop]``.
"""

from __future__ import annotations

import re

CHUNK_WORDS = 80
OVERLAP_WORDS = 20
MIN_WORDS = 100
MAX_CHUNKS = 64

_WORD = re.compile(r"\S+")


def spans(content: str) -> list[tuple[int, int]]:
    """The chunks of ``content`` as character spans; empty for a short memory."""
    words = [m.span() for m in _WORD.finditer(content)]
    if len(words) <= MIN_WORDS:
        return []
    out: list[tuple[int, int]] = []
    step = CHUNK_WORDS - OVERLAP_WORDS
    for first in range(0, len(words), step):
        last = min(first + CHUNK_WORDS, len(words)) - 1
        out.append((words[first][0], words[last][1]))
        if last == len(words) - 1 or len(out) == MAX_CHUNKS:
            break
    return out


def count(content: str) -> int:
    return len(spans(content))


def chunk_key(memory_id: str, chunk: int) -> str:
    """The key under which the embed filler asks for chunk ``chunk`` of a memory."""
    return f"{memory_id}#{chunk}"


def parse_key(key: str) -> tuple[str, int | None]:
    """``(memory id, chunk number or None for the whole memory)`` of a filler key."""
    memory_id, sep, chunk = key.partition("#")
    return (memory_id, int(chunk)) if sep else (memory_id, None)
