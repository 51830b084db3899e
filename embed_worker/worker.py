"""The embed worker: all-MiniLM-L6-v2 vectors for the store (memories and queries)."""

from __future__ import annotations

from shared import protocol as p
from shared.worker import Worker


class EmbedWorker(Worker):
    service = p.SERVICE_EMBED
    capacity = 64
