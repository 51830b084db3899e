"""Which operations need the user's permission, and the checker every such tool calls first.

Operations are classified low / medium / high / critical (the seed's table, extended for this
server's own operations). High and critical ones run only with the user's permission:

1. an unexpired grant for the operation (kept in the store, shared by every gateway), else
2. when the client supports MCP elicitation, the user's answer to "Allow delete_memories: 3
   memories by id?"; after ``permission_offer_trust_after`` approvals in a row the question
   also offers "don't ask again for ``permission_trust_minutes`` minutes", else
3. a refusal that says exactly which tool call grants it (``permissions`` with ``trust`` and a
   ``ttl_minutes``), for the assistant to make once the user agrees.

Every decision is logged in the store with this gateway's pid. A ``trust`` through the
``permissions`` tool is itself confirmed with the user when the client can ask, so the
assistant cannot grant itself anything a user could have been asked about.

Usage, from any tool (before it acts)::

    await gw.permissions.require(ctx, "git_commit", "commit 3 tracked files in /repo")

It returns when the operation may go ahead and raises ``ToolError`` (the text the assistant
reads) when not. On a 2026-07-28 connection it may raise ``consent.AskUser`` instead, which
becomes the tool's result: the client asks the user and calls the tool again, from the start,
so a tool should call ``require`` before it changes anything.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastmcp import Context
from fastmcp.exceptions import ToolError
from fastmcp.server.dependencies import get_context

from gateway.consent import Answer, Consent, Question, can_ask
from shared import protocol as p
from shared.limits import MAX_PERMISSION_DETAIL_LEN, MAX_TRUST_MINUTES

if TYPE_CHECKING:
    from gateway.server import Gateway

log = logging.getLogger("sessiond.gateway.permissions")

GATED = ("high", "critical")  # the levels that need a grant or the user's yes


@dataclass(frozen=True)
class Operation:
    name: str
    level: p.PermissionLevel
    what: str  # shown to the user when asked

    @property
    def gated(self) -> bool:
        return self.level in GATED


OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    Operation("search_memories", "low", "reads memories (every search and get tool)"),
    Operation("read_status", "low", "reads the server's status, health and statistics"),
    Operation("store_reflection", "medium", "stores a memory"),
    Operation("store_conversation", "medium", "stores a memory"),
    Operation("add_project_dependency", "medium", "links two projects"),
    Operation("import_memories", "medium", "adds memories from a file, replacing none"),
    Operation("export_memories", "medium", "writes memories to a new file"),
    Operation("export_overwrite", "high", "replaces an existing file with exported memories"),
    Operation("git_commit", "high", "commits the project's tracked changes"),
    Operation("delete_memories", "critical", "permanently deletes memories"),
    Operation("reset", "critical", "wipes stored state"),
)}


def operation_named(name: str) -> Operation:
    """The operation called ``name``, or ``ToolError`` listing the known ones."""
    op = OPERATIONS.get(name)
    if op is None:
        raise ToolError(f"unknown operation {name!r}; operations needing permission: "
                        f"{', '.join(gated_names())}")
    return op


def gated_names() -> list[str]:
    return [name for name, op in OPERATIONS.items() if op.gated]


def _clip(detail: str) -> str:
    detail = " ".join(detail.split())
    if len(detail) <= MAX_PERMISSION_DETAIL_LEN:
        return detail
    return detail[:MAX_PERMISSION_DETAIL_LEN - 3] + "..."


def _current_context() -> Context | None:
    try:
        return get_context()
    except RuntimeError:  # not inside a tool call
        return None


def trust_call(name: str, minutes: float) -> str:
    return (f'permissions(action="trust", operation="{name}", ttl_minutes={minutes:g})')


class Permissions:
    """The gateway's permission checker; the store keeps grants and the decision log."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.offer_after = gw.cfg.permission_offer_trust_after
        self.trust_minutes = gw.cfg.permission_trust_minutes
        self.consent = Consent()
        self.pid = os.getpid()

    # ---------------------------------------------------------------- the check
    async def require(self, ctx: Context | None, operation_name: str, detail: str) -> None:
        """Return if ``operation_name`` may run now (``detail``: what it is about to do);
        raise ``ToolError`` saying why not and how to allow it otherwise."""
        op = operation_named(operation_name)
        if not op.gated:
            return
        detail = _clip(detail)
        state = await self.check(op, detail)
        if state.allowed:
            return
        ctx = ctx or _current_context()
        if not can_ask(ctx):
            await self._log(op, "refused", f"{detail} (the client cannot ask the user)")
            raise ToolError(self.refusal(op, detail))
        question = self.question(op, detail, state.approvals_in_row)
        await self.settle(op, question, await self._ask(ctx, op, question))

    # A client that asks the user its own way (the dashboard's confirmation page) uses the steps
    # of ``require`` one by one: ``check`` for a grant, else ``question``, ``asked`` when it is
    # shown, and ``settle`` with the user's answer.
    async def check(self, op: Operation, detail: str) -> p.PermissionState:
        """Whether a grant covers ``op`` now (the store logs ``allowed`` when one does)."""
        return await self._send(p.CheckPermission(operation=op.name, level=op.level,
                                                  detail=_clip(detail), gateway_pid=self.pid))

    def question(self, op: Operation, detail: str, approvals_in_row: int) -> Question:
        """What the user is asked about ``op``: with the offer to trust it for
        ``permission_trust_minutes`` after ``permission_offer_trust_after`` approvals in a row."""
        offer = (self.trust_minutes if 0 < self.offer_after <= approvals_in_row else None)
        return Question(op.name, op.level, op.what, _clip(detail), offer_trust_minutes=offer,
                        approvals_in_row=approvals_in_row)

    async def asked(self, op: Operation, question: Question) -> None:
        await self._log(op, "asked", question.detail)

    async def settle(self, op: Operation, question: Question, answer: Answer) -> None:
        """Return if the user allowed it (logged ``approved``; "trust" also makes the offered
        grant); else log the no and raise ``ToolError`` saying nothing was done."""
        if answer.choice in ("yes", "trust"):
            await self._log(op, "approved", question.detail)
            if answer.choice == "trust" and question.offer_trust_minutes is not None:
                await self._grant(op, question.offer_trust_minutes, "elicitation",
                                  question.detail)
            return
        raise ToolError(await self.not_allowed(op, question.detail, answer))

    def refusal(self, op: Operation, detail: str) -> str:
        return (f"{op.name} needs the user's permission ({op.level}: {op.what}), and this "
                f"client cannot ask them (it does not support MCP elicitation). Nothing was "
                f"done ({detail}). Ask the user; if they agree, grant it for a limited time "
                f"with the tool call {trust_call(op.name, self.trust_minutes)} and try again. "
                f'The grant can be withdrawn with permissions(action="revoke", '
                f'operation="{op.name}").')

    # ---------------------------------------------------------- the tool's actions
    async def trust(self, ctx: Context | None, operation_name: str,
                    ttl_minutes: float | None) -> p.PermissionState:
        """Grant ``operation_name`` for ``ttl_minutes`` (default ``permission_trust_minutes``),
        confirmed with the user when the client can ask."""
        op = operation_named(operation_name)
        if not op.gated:
            raise ToolError(f"{op.name} is {op.level}: it never needs permission")
        minutes = self.trust_minutes if ttl_minutes is None else ttl_minutes
        if not 0 < minutes <= MAX_TRUST_MINUTES:
            raise ToolError(f"ttl_minutes must be more than 0 and at most {MAX_TRUST_MINUTES}")
        via: p.GrantVia = "tool"
        ctx = ctx or _current_context()
        if can_ask(ctx):
            detail = f"for {minutes:g} minutes"
            question = Question(op.name, op.level, op.what, detail, confirm_trust=True)
            answer = await self._ask(ctx, op, question)
            if answer.choice != "yes":
                raise ToolError(await self.not_allowed(op, f"trust {detail}", answer))
            await self._log(op, "approved", f"trust {detail}")
            via = "tool-confirmed"
        return await self._grant(op, minutes, via, "")

    async def revoke(self, operation_name: str | None) -> p.PermissionState:
        """End the grant of one operation (None: of all)."""
        op = None if operation_name is None else operation_named(operation_name)
        return await self._send(p.RevokePermission(
            operation=op and op.name, level=op and op.level, gateway_pid=self.pid))

    async def status(self, operation_name: str | None = None,
                     limit: int = 20) -> p.PermissionState:
        """Active grants and the ``limit`` most recent decisions (of one operation, or all)."""
        op = None if operation_name is None else operation_named(operation_name)
        return await self._send(p.PermissionStatus(operation=op and op.name, limit=limit),
                                idempotent=True)

    # ---------------------------------------------------------------- helpers
    async def _ask(self, ctx: Context, op: Operation, question: Question) -> Answer:
        """The answer this call carries (2026 era), else ask (logged as ``asked``)."""
        answer = self.consent.answer_in(ctx, question)
        if answer is None:
            await self._log(op, "asked", question.detail)
            answer = await self.consent.ask(ctx, question)
        return answer

    async def not_allowed(self, op: Operation, detail: str, answer: Answer) -> str:
        """Log a no (denied) or a failure to ask (refused); the text to raise."""
        if answer.choice == "error":
            await self._log(op, "refused", f"{detail} ({answer.why})")
            return f"{self.refusal(op, detail)} ({answer.why})"
        await self._log(op, "denied", f"{detail} ({answer.why})")
        return (f"the user did not allow {op.name} ({answer.why}); nothing was done "
                f"({detail}). Do not retry unless the user asks for it.")

    async def _grant(self, op: Operation, minutes: float, via: p.GrantVia,
                     detail: str) -> p.PermissionState:
        return await self._send(p.GrantPermission(
            operation=op.name, level=op.level, ttl_s=minutes * 60, via=via,
            detail=_clip(detail), gateway_pid=self.pid))

    async def _log(self, op: Operation, decision: p.PermissionDecision, detail: str) -> None:
        log.info("permission %s: %s (%s)", decision, op.name, detail)
        await self._send(p.LogPermission(operation=op.name, level=op.level, decision=decision,
                                         detail=_clip(detail), gateway_pid=self.pid))

    async def _send(self, body: p.RequestBody, *, idempotent: bool = False) -> p.PermissionState:
        reply = await self.gw.call(p.SERVICE_STORE, body, idempotent=idempotent)
        assert isinstance(reply, p.PermissionState)
        return reply
