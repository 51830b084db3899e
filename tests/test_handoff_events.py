"""The handoff file (rendered, written, read back by the next start) and the session events'
handler registry, in process."""

from __future__ import annotations

import asyncio
import os
import stat
from datetime import UTC, datetime, timedelta

import pytest

from gateway import events as ev
from gateway import handoff
from shared.config import load_config


@pytest.fixture
def cfg(tmp_path):
    return load_config({"SESSIOND_HOME": str(tmp_path / "home")})


def summary(**fields) -> handoff.SessionSummary:
    trend = [handoff.TrendPoint("start", "t0", 70.0, None),
             handoff.TrendPoint("checkpoint 1", "t1", 80.0, 10.0, "abc123", "a | note"),
             handoff.TrendPoint("end", "t2", 82.5, 2.5)]
    memories = [handoff.MemoryLine("m1", "reflection", "2026-03-01T10:30:00+00:00",
                                   "## Summary\nnot a heading here")]
    values: dict = {
        "session_id": "01abc", "project": "shop", "root": "/work/shop", "branch": "main",
        "started_at": "2026-03-01T10:00:00+00:00", "ended_at": "2026-03-01T11:05:00+00:00",
        "duration_s": 3900.0, "start_score": 70.0, "end_score": 82.5, "trend": trend,
        "memories_total": 3, "memories": memories, "files_changed": ["src/app.py"],
        "files_changed_total": 4, "commits_since_start": 2, "start_head": "a" * 40,
        "end_head": "b" * 40,
        "recommendations": ["12 lint findings: run `ruff check --fix`", "no CI"]}
    return handoff.SessionSummary(**(values | fields))


def test_written_under_the_data_dir_and_read_back(cfg):
    s = summary()
    ended = datetime(2026, 3, 1, 11, 5, tzinfo=UTC)
    path = handoff.write(cfg, s, ended)
    assert path.is_relative_to(cfg.home_path / "handoffs")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    for section in handoff.SECTIONS:
        assert f"## {section}" in text
    assert "| checkpoint 1 | t1 | 80.0 | +10.0 | abc123 | a / note |" in text  # cells stay cells
    assert "- ... and 3 more" in text and "- ... and 2 more" in text
    assert "Worked 1 h 5 min on shop (branch main): 1 checkpoint, quality 70.0 -> 82.5 " \
           "(+12.5); 4 files changed and 2 commits since the start" in text

    got = handoff.latest(cfg, "/work/shop", "shop")
    assert got.path == str(path) and got.summary == s.paragraph()
    assert got.recommendations == s.recommendations and not got.truncated
    # a newer one wins; another directory of the same name has its own
    newer = handoff.write(cfg, summary(end_score=90.0), ended + timedelta(seconds=1))
    assert handoff.latest(cfg, "/work/shop", "shop").path == str(newer)
    assert handoff.latest(cfg, "/elsewhere/shop", "shop") is None
    assert handoff.project_dir(cfg, "/elsewhere/shop", "shop") != path.parent


def test_unknown_values_and_a_file_edited_by_hand(cfg):
    s = summary(start_score=None, commits_since_start=None, memories=[], memories_total=0,
                recommendations=[], notes=["quality not measured: the worker was down"])
    text = handoff.render(s)
    assert "quality unknown -> 82.5;" in text and "## Commits since the start: unknown" in text
    assert "## Not measured" in text and "(none)" in text
    folder = handoff.project_dir(cfg, "/work/shop", "../../shop name")
    assert folder.parent == cfg.handoff_dir and folder.name.startswith("shop-name-")
    os.makedirs(folder)
    (folder / "20990101T000000000000Z-x.md").write_text("# my own notes\nno sections\n")
    got = handoff.latest(cfg, "/work/shop", "../../shop name")
    assert got.summary == "" and got.recommendations == []
    assert got.content.startswith("# my own notes")


def test_a_failing_handler_is_reported_and_the_others_run():
    events = ev.Events()
    ran = []

    async def broken(event: ev.Event) -> None:
        raise RuntimeError("disk full")

    async def fine(event: ev.Event) -> None:
        ran.append(event.data["n"])
        event.results["path"] = "/x"

    events.on(ev.SESSION_ENDED, broken)
    events.on(ev.SESSION_ENDED, fine)
    event = asyncio.run(events.emit(ev.SESSION_ENDED, n=1))
    assert ran == [1] and event.results == {"path": "/x"}
    assert event.errors == ["broken: disk full"]
    assert asyncio.run(events.emit(ev.SESSION_STARTED)).errors == []
    with pytest.raises(ValueError, match="unknown event"):
        events.on("session.exploded", fine)
