"""The automatic reflection of a checkpoint: when the quality score moved by at least
``quality_threshold`` points since the previous checkpoint (``quality.threshold``), or when the
checkpoint asked for one (``checkpoint.created`` with ``reflect``), a ``reflection`` memory
says how far it moved, which signals moved it, and what is still open. It is stored with the
session's id, so the session's memories (and its handoff) list it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway import events as ev
from gateway import session_texts as texts

if TYPE_CHECKING:
    from gateway.sessions import Sessions

TAGS = ["quality", "checkpoint-reflection"]


def register(events: ev.Events, sessions: Sessions) -> None:
    async def on_threshold(event: ev.Event) -> None:
        delta = event.data["delta"]
        await _reflect(sessions, event, f"moved by {abs(delta):.1f} points, at least the "
                                        f"threshold of {sessions.cfg.quality_threshold:g}")

    async def on_checkpoint(event: ev.Event) -> None:
        if event.data["reflect"] and not event.data["crossed"]:
            await _reflect(sessions, event, "asked for at the checkpoint")

    events.on(ev.QUALITY_THRESHOLD, on_threshold)
    events.on(ev.CHECKPOINT_CREATED, on_checkpoint)


async def _reflect(sessions: Sessions, event: ev.Event, why: str) -> None:
    d = event.data
    cur = d["session"]
    content = texts.quality_reflection(
        cur.project, cur.id, d["number"], d["previous"], d["score"], d["delta"], why,
        d["note"], texts.moves(d["before"], d["report"]), d["report"])
    stored = await sessions.remember("reflection", content, cur.project, cur.id, TAGS, {
        "score": d["score"], "previous": d["previous"], "delta": d["delta"],
        "checkpoint": d["number"]})
    event.results["reflection_id"] = stored.id
    event.results["reflection"] = why
