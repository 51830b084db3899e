"""LRU of query vectors (float32 bytes, as they travel), kept in the gateway so a repeated search skips the round trip.

all-MiniLM-L6-v2's tokenizer lower-cases and splits on whitespace, so lower-casing and collapsing
whitespace give the same tokens and the same vector: that is the normalised key, with the model
id beside it so a model change never serves a stale vector.
"""

from __future__ import annotations

from collections import OrderedDict


class QueryCache:
    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self.model_id = ""  # learnt from the pool's replies
        self.entries: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def normalise(text: str) -> str:
        return " ".join(text.split()).lower()

    def get(self, text: str) -> bytes | None:
        key = (self.model_id, self.normalise(text))
        vec = self.entries.get(key)
        if vec is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return vec

    def put(self, text: str, model_id: str, vec: bytes) -> None:
        self.model_id = model_id
        key = (model_id, self.normalise(text))
        self.entries[key] = vec
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def stats(self) -> dict[str, float | int]:
        total = self.hits + self.misses
        return {"size": len(self.entries), "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / total, 4) if total else 0.0}
