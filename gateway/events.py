"""Session events inside one gateway: a small registry of handlers (the seed's EventManager).

The session manager emits an event at each step of a session; whatever should follow from it
registers a handler instead of being wired into the step:

=======================  ===============================  ===================================
event                    emitted when                     handlers here
=======================  ===============================  ===================================
``session.started``      ``start`` recorded a session      (none built in)
``checkpoint.created``   ``checkpoint`` stored its memory   a reflection when one was asked for
``quality.threshold``    the score moved by at least        the automatic reflection
                         ``quality_threshold`` points
``session.ended``        ``end`` closed a session           the handoff file
=======================  ===============================  ===================================

Handlers are async callables taking the ``Event``; they run in registration order, and what
they produce goes into ``event.results`` under a name of their choosing (the tools report it).
A handler that fails does not stop the others or the tool: its error is logged and kept in
``event.errors`` (``handler name: message``), which the tool reports too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("sessiond.gateway.events")

SESSION_STARTED = "session.started"
CHECKPOINT_CREATED = "checkpoint.created"
QUALITY_THRESHOLD = "quality.threshold"
SESSION_ENDED = "session.ended"
EVENTS = (SESSION_STARTED, CHECKPOINT_CREATED, QUALITY_THRESHOLD, SESSION_ENDED)


@dataclass
class Event:
    name: str
    data: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


Handler = Callable[[Event], Awaitable[None]]


class Events:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {name: [] for name in EVENTS}

    def on(self, name: str, handler: Handler) -> None:
        """Run ``handler`` at every ``name`` event (one of ``EVENTS``)."""
        if name not in self._handlers:
            raise ValueError(f"unknown event {name!r}; events: {', '.join(EVENTS)}")
        self._handlers[name].append(handler)

    def handlers(self, name: str) -> list[Handler]:
        return list(self._handlers.get(name, ()))

    async def emit(self, name: str, **data: Any) -> Event:
        """Run the handlers of ``name`` one after the other; returns the event with what they
        made and the errors of those that failed."""
        event = Event(name, data)
        for handler in self.handlers(name):
            label = getattr(handler, "__name__", repr(handler))
            try:
                await handler(event)
            except Exception as exc:  # reported: kept in event.errors, and logged
                log.exception("%s handler %s failed", name, label)
                event.errors.append(f"{label}: {exc}")
        return event
