"""The quality/git worker: project health, quality score, checkpoint commits (its own issue).

Until those jobs exist it runs one real job, ``ProbeTools``: which of the tools they will need
are on PATH, with their versions. The health check runs it."""

from __future__ import annotations

from quality_worker.tools import probe_tools
from shared import protocol as p
from shared.errors import BadRequest
from shared.worker import Worker


class QualityWorker(Worker):
    service = p.SERVICE_QUALITY
    capacity = 2

    def handle(self, body: p.RequestBody) -> p.ReplyBody:
        match body:
            case p.ProbeTools():
                # Run in the data dir: not a project whose config files the tools would read.
                return p.ToolsReport(tools=probe_tools(cwd=self.cfg.home))
        raise BadRequest(f"quality does not handle {type(body).__name__}")
