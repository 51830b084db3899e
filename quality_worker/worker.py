"""The quality/git worker: project assessment, git state and checkpoint commits (service
``quality``; the messages are in ``shared/protocol_quality.py``).

Requests run on ``capacity`` threads at once, so a ping or the health check's tool probe is
answered while an assessment or a commit with slow hooks runs; every git and tool process is
bounded (``procs``). A job never outlives its caller: its time budget is cut to the request's
deadline, so a commit is not made after the caller has stopped waiting for the answer.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

from quality_worker import git as gitmod
from quality_worker import procs
from quality_worker.assess import assess
from quality_worker.commit import checkpoint_commit
from quality_worker.message import checkpoint_message
from quality_worker.tools import probe_tools
from shared import protocol as p
from shared.config import make_private_dir, zone_of
from shared.errors import BadRequest, Timeout
from shared.paths import check_project_dir
from shared.worker import Delivery, Worker

REPLY_MARGIN_S = 0.3  # kept back from the caller's deadline to send the answer
MIN_COMMIT_TIMEOUT_S = 1.0


class QualityWorker(Worker):
    service = p.SERVICE_QUALITY
    capacity = 4

    def setup(self) -> None:
        self.cache_home = self.cfg.home_path / "cache"
        make_private_dir(self.cache_home)
        self.zone = zone_of(self.cfg.timezone)
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._job = threading.local()

    def stopping(self) -> None:
        procs.stop_all()  # jobs end now (a commit releases index.lock) and answer

    def stats(self) -> p.Stats:
        with self._counts_lock:
            return dict(self.counts)

    # ------------------------------------------------------------ threads
    def compute_loop(self) -> None:
        helpers = [threading.Thread(target=self._serve_jobs, name=f"quality-job-{i}",
                                    daemon=True) for i in range(1, self.capacity)]
        for thread in helpers:
            thread.start()
        self._serve_jobs()
        for thread in helpers:
            thread.join()
        self.teardown()

    def _serve_jobs(self) -> None:
        while (delivery := self.inbox.get()) is not None:
            self.finish(delivery, self.answer(delivery))
        self.inbox.put(None)  # the stop reaches every job thread
        self.close_waker()

    def answer(self, delivery: Delivery) -> p.ReplyBody:
        self._job.deadline = delivery.header.deadline
        kind = type(delivery.body).__name__ if delivery.body is not None else "malformed"
        reply = super().answer(delivery)
        with self._counts_lock:
            self.counts[kind] += 1
            if isinstance(reply, p.Error):
                self.counts[f"{kind}_errors"] += 1
        return reply

    def _time_left(self, wanted: float) -> float:
        """``wanted`` seconds, or less if the caller's deadline comes first."""
        left = getattr(self._job, "deadline", float("inf")) - time.time() - REPLY_MARGIN_S
        if left <= 0:
            raise Timeout("the request's deadline leaves no time for the job")
        return min(wanted, left)

    # ------------------------------------------------------------- jobs
    def handle(self, body: p.RequestBody) -> p.ReplyBody:
        match body:
            case p.ProbeTools():
                # Run in the data dir: not a project whose config files the tools would read.
                return p.ToolsReport(tools=probe_tools(cwd=self.cfg.home_path))
            case p.AssessQuality():
                root = check_project_dir(self.cfg, body.path)
                budget = self._time_left(_seconds(body.budget_s, "budget_s"))
                return assess(root, _with_budget(body, budget), self.cache_home)
            case p.GitStatus():
                return self._git_status(body)
            case p.CheckpointCommit():
                return self._checkpoint(body)
        raise BadRequest(f"quality does not handle {type(body).__name__}")

    def _git_status(self, body: p.GitStatus) -> p.GitState:
        root = check_project_dir(self.cfg, body.path)
        limit = self._time_left(gitmod.READ_TIMEOUT_S * 3)
        try:
            git = gitmod.Git(root, time.monotonic() + limit)
            return git.state(git.repo(), since=body.since)
        except gitmod.GitUnusable as exc:
            if exc.code == "timeout":
                raise Timeout(exc.message) from None
            raise BadRequest(exc.message) from None

    def _checkpoint(self, body: p.CheckpointCommit) -> p.CommitResult:
        root = check_project_dir(self.cfg, body.path)
        timeout = self._time_left(min(max(_seconds(body.timeout_s, "timeout_s"),
                                          MIN_COMMIT_TIMEOUT_S), p.MAX_COMMIT_TIMEOUT_S))
        report, made = body.report, None
        if report is None:
            request = p.AssessQuality(path=str(root), permissions=body.permissions,
                                      budget_s=min(p.ASSESS_BUDGET_S, timeout / 2))
            report = made = assess(root, request, self.cache_home)
            timeout = self._time_left(timeout - report.elapsed_ms / 1000)
        message = checkpoint_message(body.project or root.name, report,
                                     session_id=body.session_id, note=body.note, zone=self.zone)
        result = checkpoint_commit(root, message, include_untracked=body.include_untracked,
                                   timeout_s=timeout)
        result.report = made
        return result


def _seconds(value: float, name: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise BadRequest(f"{name} must be a positive number of seconds (got {value})")
    return value


def _with_budget(body: p.AssessQuality, budget: float) -> p.AssessQuality:
    return p.AssessQuality(path=body.path, permissions=body.permissions, lint=body.lint,
                           budget_s=budget)
