"""The store's session messages (service ``store``); ``shared.protocol`` re-exports them and puts
them in its ``RequestBody`` / ``ReplyBody`` unions.

A session is one working session of a coding assistant on one project: the gateway that started
it opens it, records its checkpoints and closes it; the store keeps every session (schema v5:
``sessions``, ``session_checkpoints``), so any gateway, or ``sessiond status`` in a terminal,
sees the open ones. Every request is one transaction, committed before the reply, and every
reply is a ``SessionList``.

===================  ====================================================================
request              what the store does
===================  ====================================================================
``OpenSession``      ends ``abandon`` (sessions whose gateway is gone), records a new one
``RecordCheckpoint`` appends a checkpoint (score, change, commit, memory) to a session
``CloseSession``     ends a session with its final score and handoff file
``SessionQuery``     sessions by id, project root or openness, newest first
===================  ====================================================================
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

MAX_SESSIONS_LISTED = 100
MAX_CHECKPOINTS_KEPT = 1000  # per session; older ones are dropped from the trend
EndReason = Literal["ended", "abandoned", "replaced"]


# ------------------------------------------------------------------ requests
class OpenSession(msgspec.Struct, tag=True):
    """Start a session; the store makes its id. ``abandon``: open sessions to end first (as
    ``abandoned``), those whose gateway the caller found gone."""
    project: str
    root: str  # the project directory, resolved
    gateway_pid: int
    start_head: str = ""  # the commit HEAD named at the start ("" without git)
    branch: str = ""
    score: float | None = None  # the quality baseline; None: could not be measured
    detected_from: str = ""  # roots | argument | cwd (kept in the session's metadata)
    abandon: list[str] = []


class RecordCheckpoint(msgspec.Struct, tag=True):
    session_id: str
    score: float | None = None
    delta: float | None = None  # change since the previous checkpoint (or the start)
    commit: str = ""  # "committed", a CommitResult skip code, "refused", "disabled", ...
    sha: str = ""
    memory_id: str = ""  # the checkpoint memory
    note: str = ""
    gateway_pid: int = 0  # the gateway checkpointing it (it may have adopted the session); 0: keep


class CloseSession(msgspec.Struct, tag=True):
    """End an open session (a session already ended is a ``bad_request``)."""
    session_id: str
    reason: EndReason = "ended"
    score: float | None = None
    handoff_path: str = ""
    summary: dict[str, Any] = {}  # kept in the session's metadata
    gateway_pid: int = 0  # the gateway ending it; 0: keep


class SessionQuery(msgspec.Struct, tag=True):
    """Sessions matching every given filter, newest first; ``project`` also counts that
    project's memories by kind (``SessionList.memory_counts``)."""
    session_id: str | None = None
    root: str | None = None
    project: str | None = None
    open_only: bool = False
    limit: int = 20
    checkpoints: bool = False  # include each session's checkpoints


# ------------------------------------------------------------------- replies
class CheckpointRecord(msgspec.Struct):
    at: str  # ISO-8601 UTC
    score: float | None
    delta: float | None
    commit: str
    sha: str
    memory_id: str
    note: str


class SessionRecord(msgspec.Struct):
    id: str
    project: str
    root: str
    gateway_pid: int | None
    started_at: str  # ISO-8601 UTC
    ended_at: str | None
    end_reason: str | None
    start_head: str
    branch: str
    start_score: float | None
    last_score: float | None  # of the last checkpoint, else the start's
    end_score: float | None
    handoff_path: str
    last_active_at: str  # the last time it was opened, checkpointed or ended
    checkpoint_count: int = 0
    checkpoints: list[CheckpointRecord] = []  # oldest first, when asked for
    memories: int = 0  # memories stored with its id
    metadata: dict[str, Any] = {}


class SessionList(msgspec.Struct, tag=True):
    items: list[SessionRecord]
    memory_counts: dict[str, int] = {}  # SessionQuery(project=...): that project's, by kind
