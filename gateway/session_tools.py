"""The session tools: ``start`` (alias ``init``), ``checkpoint``, ``end`` and ``status``. Thin:
the work is in ``sessions`` (the manager) and ``session_status``; the results are the
dataclasses of ``session_results``."""

from __future__ import annotations

from typing import Annotated

from fastmcp import Context, FastMCP
from pydantic import Field

from gateway import session_results as res
from gateway import session_status
from gateway.described import tool

MAX_DIR_LEN = 4096
MAX_MESSAGE_LEN = 2000

WorkingDirectory = Annotated[str | None, Field(max_length=MAX_DIR_LEN, description=(
    "The project's directory (absolute, or relative to the client's first root). Omitted: "
    "the client's MCP root when it offers roots, else the server's working directory; for "
    "checkpoint, end and status, this window's open session."))]
Message = Annotated[str, Field(max_length=MAX_MESSAGE_LEN, description=(
    "What this checkpoint is about; goes into the checkpoint memory and the commit message."))]

SESSION = {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False,
           "openWorldHint": False}
READ_ONLY = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}


def register(mcp: FastMCP, gw) -> None:
    sessions = gw.sessions

    async def start_session(ctx: Context, working_directory: WorkingDirectory = None,
                            ) -> res.StartResult:
        """Start a working session on a project: records it, measures the project's quality
        (0-100, with reasons and recommendations), and returns the last session's handoff and
        what memory knows about the project (counts, the last session and its memories, the
        newest and the most relevant memories). Call it when work on a project begins."""
        return await sessions.start(ctx, working_directory)

    tool(mcp, start_session, name="start", annotations=SESSION)
    tool(mcp, start_session, name="init", annotations=SESSION,
         description="Alias of start: start a working session on a project.")

    @tool(mcp, annotations=SESSION)
    async def checkpoint(
        ctx: Context, working_directory: WorkingDirectory = None, message: Message = "",
        reflect: Annotated[bool, Field(description=(
            "Also store a reflection on the quality change (one is made anyway when the "
            "score moved by the configured threshold, 10 points by default)."))] = False,
    ) -> res.CheckpointResult:
        """Checkpoint the session: the quality score and its change since the last checkpoint,
        stored as a checkpoint memory of the session; a git commit of the tracked changes
        (with the score in its message; needs the user's git_commit permission, and can be
        turned off); untracked files are never committed unless configured."""
        return await sessions.checkpoint(ctx, working_directory, message, reflect)

    @tool(mcp, annotations=SESSION)
    async def end(ctx: Context, working_directory: WorkingDirectory = None) -> res.EndResult:
        """End the session: the final score, a summary (duration, checkpoints and the score
        trend, memories stored, files changed and commits since the start, open
        recommendations), written as a markdown handoff file under sessiond's data dir (its
        path is returned); the next start of this project reads it."""
        return await sessions.end(ctx, working_directory)

    @tool(mcp, annotations=READ_ONLY)
    async def status(ctx: Context,
                     working_directory: WorkingDirectory = None) -> res.SessionStatus:
        """This window's session, the project (last score, git state), the sessions open in
        every window, and the stack's state under `stack` (each worker's pid, state,
        restarts, heartbeat age, request counters)."""
        return await session_status.status(sessions, ctx, working_directory)
