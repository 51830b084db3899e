"""Tools that write or manage memory: store, delete, dependencies, stats, export/import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from gateway.described import tool
from gateway.results import StoreResult
from shared import protocol as p
from shared.errors import BadRequest
from shared.limits import (
    MAX_CONTENT_BYTES,
    MAX_DESCRIPTION_LEN,
    MAX_ID_LEN,
    MAX_METADATA_BYTES,
    MAX_PROJECT_LEN,
    MAX_SESSION_ID_LEN,
    MAX_TAG_LEN,
    MAX_TAGS,
)
from shared.paths import check_export_path

# The store checks content's size in UTF-8 bytes; no string of more characters can fit.
Content = Annotated[str, Field(min_length=1, max_length=MAX_CONTENT_BYTES, description=(
    f"The text to remember (at most {MAX_CONTENT_BYTES // 1000} KB)."))]
Project = Annotated[str | None, Field(max_length=MAX_PROJECT_LEN, description=(
    "Project name; defaults to the open session's project, else the current project (the "
    "server's working directory)."))]
ProjectName = Annotated[str, Field(min_length=1, max_length=MAX_PROJECT_LEN)]
Tags = Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_LEN)]] | None,
                 Field(max_length=MAX_TAGS, description=f"Up to {MAX_TAGS} short tags.")]
DependencyType = Literal["related", "continuation", "reference", "uses", "extends", "shares_code"]

WRITE = {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True,
         "openWorldHint": False}
READ_ONLY = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}


@dataclass
class DependencyResult:
    source: str
    target: str
    dependency_type: str
    description: str
    created_at: str
    created: bool


@dataclass
class CountResult:
    count: int
    skipped: int
    path: str
    message: str


def register(mcp: FastMCP, gw) -> None:
    async def remember(kind: str, content: str, project: str | None, **extra: Any) -> StoreResult:
        """Store a memory; while a session is open in this window it carries the session's id
        (unless one is given) and, by default, the session's project."""
        current = gw.sessions.current
        if current is not None:
            project = project or current.project
            if not extra.get("session_id"):
                extra["session_id"] = current.id
        project = project or gw.project
        reply = await gw.call(p.SERVICE_STORE, p.Remember(kind=kind, content=content,
                                                          project=project, **extra))
        assert isinstance(reply, p.Stored)
        msg = "already stored; returning the existing id" if reply.duplicate else "stored"
        if reply.redacted:
            msg += f"; secrets replaced by a marker: {', '.join(reply.redacted)}"
        return StoreResult(id=reply.id, duplicate=reply.duplicate, project=project,
                           redacted=reply.redacted, message=msg,
                           session_id=extra.get("session_id") or None)

    @tool(mcp, annotations=WRITE)
    async def store_reflection(content: Content, tags: Tags = None,
                               project: Project = None) -> StoreResult:
        """Remember an insight, decision or lesson for later sessions. Durable when this
        returns; secrets (API keys, tokens, passwords in URLs, private keys) are redacted."""
        return await remember("reflection", content, project, tags=tags or [])

    @tool(mcp, annotations=WRITE)
    async def store_conversation(
        content: Content, project: Project = None,
        session_id: Annotated[str | None, Field(max_length=MAX_SESSION_ID_LEN)] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description=(
            f"Small JSON object (at most {MAX_METADATA_BYTES // 1024} KB) kept with the "
            "memory."))] = None,
    ) -> StoreResult:
        """Remember a piece of conversation (a turn or a summary) with optional metadata."""
        return await remember("conversation", content, project, session_id=session_id,
                              metadata=metadata or {})

    @tool(mcp, annotations={**WRITE, "destructiveHint": True, "idempotentHint": False})
    async def delete_memories(
        ctx: Context,
        ids: Annotated[list[Annotated[str, Field(max_length=MAX_ID_LEN)]] | None,
                       Field(max_length=1000, description="Ids to delete.")] = None,
        project: Annotated[str | None, Field(max_length=MAX_PROJECT_LEN, description=(
            "Delete this project's memories (with `before`: only older ones)."))] = None,
        before: Annotated[str | None, Field(max_length=64, description=(
            "ISO-8601 time: only memories created before it."))] = None,
    ) -> CountResult:
        """Delete memories by id, or a project's memories (optionally only those before a
        time). Permanent: the user's permission is needed (asked, or granted beforehand with
        the permissions tool)."""
        if not ids and not project:
            raise ToolError("give ids, or a project (optionally with before)")
        await gw.permissions.require(ctx, "delete_memories", deletion_detail(ids, project, before))
        reply = await gw.call(p.SERVICE_STORE, p.DeleteMemories(ids=ids or None,
                                                               project=project, before=before),
                              idempotent=False)
        return CountResult(count=reply.count, skipped=0, path="",
                           message=f"deleted {reply.count} memories")

    @tool(mcp, annotations=WRITE)
    async def add_project_dependency(
        source_project: ProjectName,
        target_project: ProjectName,
        dependency_type: DependencyType,
        description: Annotated[str, Field(max_length=MAX_DESCRIPTION_LEN)] = "",
    ) -> DependencyResult:
        """Link two projects (e.g. a library it uses) so search_across_projects searches both.
        Projects need not have memories yet."""
        reply = await gw.call(p.SERVICE_STORE, p.AddDependency(
            source=source_project, target=target_project, dependency_type=dependency_type,
            description=description))
        d = reply.items[0]
        return DependencyResult(source=d.source, target=d.target, dependency_type=d.type,
                                description=d.description, created_at=d.created_at,
                                created=d.created)

    @tool(mcp, annotations=READ_ONLY)
    async def reflection_stats(
        session_id: Annotated[str | None, Field(max_length=MAX_SESSION_ID_LEN, description=(
            "Also count this session's memories (by kind, project, pending vectors); "
            "\"current\": this window's open session."))] = None,
    ) -> dict[str, Any]:
        """Counts by kind and project, embedded vs pending, database size, query-cache hits;
        with session_id, also that session's."""
        reply = await gw.call(p.SERVICE_STORE, p.StoreStats(
            session_id=gw.sessions.resolve_id(session_id)))
        return {**reply.data, "query_cache": gw.cache.stats()}

    # Destructive: with overwrite=true it replaces a file.
    @tool(mcp, annotations={**WRITE, "destructiveHint": True, "idempotentHint": False})
    async def export_memories(
        ctx: Context,
        path: Annotated[str, Field(min_length=1, max_length=4096, description=(
            "Absolute path of the JSONL file to write: under your home dir (or a configured "
            "place), not inside sessiond's data dir. It is created readable by you only."))],
        project: Project = None,
        overwrite: Annotated[bool, Field(description=(
            "Replace the file if it exists. Without it an existing file is never touched."))]
            = False,
    ) -> CountResult:
        """Write memories (all, or one project's) to a new JSONL file, one memory a line, as
        they were when the export started. Replacing an existing file needs the user's
        permission (asked, or granted beforehand with the permissions tool)."""
        if overwrite:
            overwrite = await replacing(ctx, path, project)
        reply = await gw.call(p.SERVICE_STORE, p.ExportMemories(path=path, project=project,
                                                               overwrite=overwrite),
                              timeout_s=600)
        return CountResult(count=reply.count, skipped=0, path=reply.path,
                           message=f"exported {reply.count} memories to {reply.path}")

    async def replacing(ctx: Context, path: str, project: str | None) -> bool:
        """Whether an export with overwrite=true replaces a file: if so, only with the user's
        permission. The path is checked first (the store checks it again), so a refused path
        is never put to the user; when no file is there, the store is told not to overwrite,
        so a file that appears meanwhile is not replaced without permission either."""
        try:
            target = check_export_path(gw.cfg, path, overwrite=True)
        except BadRequest as exc:
            raise ToolError(exc.message) from exc
        if not (target.exists() or Path(path).expanduser().is_symlink()):
            return False
        size = target.stat().st_size if target.is_file() else 0
        what = "all memories" if project is None else f"project {project!r}'s memories"
        await gw.permissions.require(ctx, "export_overwrite",
                                     f"replace {target} ({size} bytes) with {what}")
        return True

    @tool(mcp, annotations=WRITE)
    async def import_memories(
        path: Annotated[str, Field(min_length=1, max_length=4096, description=(
            "Absolute path of a JSONL file written by export_memories."))],
    ) -> CountResult:
        """Import a JSONL export, keeping ids and timestamps. Re-importing adds nothing; an
        invalid line imports nothing and says which line."""
        reply = await gw.call(p.SERVICE_STORE, p.ImportMemories(path=path), timeout_s=600)
        return CountResult(count=reply.count, skipped=reply.skipped, path=reply.path,
                           message=f"imported {reply.count}, skipped {reply.skipped} already present")


def deletion_detail(ids: list[str] | None, project: str | None, before: str | None) -> str:
    """What a delete_memories call is about to delete, for the user to judge."""
    if ids:
        shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        return f"{len(ids)} memor{'y' if len(ids) == 1 else 'ies'} by id ({shown})"
    text = f"every memory of project {project!r}"
    return text + (f" created before {before}" if before else "")
