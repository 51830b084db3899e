"""The quality/git worker: project health, quality score, checkpoint commits (its own issue)."""

from __future__ import annotations

from shared import protocol as p
from shared.worker import Worker


class QualityWorker(Worker):
    service = p.SERVICE_QUALITY
    capacity = 2
