"""The ``permissions`` tool: see and manage the grants that let high and critical operations run
(``gateway.permissions`` holds the classification and the checker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from gateway.consent import can_ask
from gateway.described import tool
from gateway.permissions import OPERATIONS, gated_names
from shared import protocol as p
from shared.limits import MAX_OPERATION_LEN, MAX_TRUST_MINUTES

ANNOTATIONS = {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False,
               "openWorldHint": False}


@dataclass
class GrantInfo:
    operation: str
    level: str
    via: str  # tool, tool-confirmed (the user confirmed it), elicitation (the user chose it)
    granted_at: str
    expires_at: str
    expires_in_s: float
    gateway_pid: int


@dataclass
class DecisionInfo:
    at: str
    decision: str  # asked approved denied trusted allowed refused expired revoked
    operation: str
    level: str | None
    detail: str
    gateway_pid: int | None


@dataclass
class OperationInfo:
    name: str
    level: str
    needs_permission: bool
    what: str


@dataclass
class PermissionsResult:
    action: str
    message: str
    grants: list[GrantInfo]  # active after the action
    decisions: list[DecisionInfo]  # status: the most recent first
    operations: list[OperationInfo]  # status: the classification
    client_can_be_asked: bool  # this client supports MCP elicitation
    offer_trust_after: int
    trust_minutes: float
    gateway_pid: int


def register(mcp: FastMCP, gw) -> None:
    perms = gw.permissions

    @tool(mcp, annotations=ANNOTATIONS)
    async def permissions(
        ctx: Context,
        action: Annotated[Literal["status", "trust", "revoke", "revoke_all"], Field(description=(
            "status: active grants, recent decisions, which operations need permission; "
            "trust: let `operation` run without asking for `ttl_minutes` (only once the user "
            "agreed; the user is asked to confirm when the client can ask); revoke: end "
            "`operation`'s grant; revoke_all: end every grant."))],
        operation: Annotated[str | None, Field(max_length=MAX_OPERATION_LEN, description=(
                "For trust and revoke (and to filter status): "
                f"{', '.join(gated_names())}."))] = None,
        ttl_minutes: Annotated[float | None, Field(gt=0, le=MAX_TRUST_MINUTES, description=(
            "For trust: how long the grant lasts, in minutes (fractions allowed); default: the "
            "server's permission_trust_minutes (30 unless configured)."))] = None,
    ) -> PermissionsResult:
        """Permissions for high and critical operations (delete_memories, overwriting exports,
        git commits): see them, trust one for a limited time, or revoke. Every decision is
        logged."""
        if ttl_minutes is not None and action != "trust":
            raise ToolError("ttl_minutes goes with action trust only")
        if action in ("trust", "revoke") and not operation:
            raise ToolError(f"{action} needs an operation: one of {', '.join(gated_names())}")
        if action == "revoke_all" and operation:
            raise ToolError("revoke_all takes no operation (use revoke for one)")
        if action == "trust":
            state = await perms.trust(ctx, operation, ttl_minutes)
            g = state.grants[0]
            message = (f"{g.operation} may run without asking until {g.expires_at} "
                       f"({g.expires_in_s / 60:g} minutes); revoke with "
                       f'permissions(action="revoke", operation="{g.operation}")')
        elif action in ("revoke", "revoke_all"):
            state = await perms.revoke(operation)
            what = operation or "every operation"
            message = (f"ended {state.count} grant(s) of {what}" if state.count
                       else f"no active grant of {what}")
        else:
            state = await perms.status(operation)
            message = (f"{len(state.grants)} active grant(s); {len(state.decisions)} recent "
                       "decision(s), newest first")
        return _result(action, message, state, can_ask(ctx), gw)


def _result(action: str, message: str, state: p.PermissionState, askable: bool,
            gw) -> PermissionsResult:
    status = action == "status"
    return PermissionsResult(
        action=action, message=message,
        grants=[GrantInfo(g.operation, g.level, g.via, g.granted_at, g.expires_at,
                          g.expires_in_s, g.gateway_pid) for g in state.grants],
        decisions=[DecisionInfo(d.at, d.decision, d.operation, d.level, d.detail,
                                d.gateway_pid) for d in state.decisions] if status else [],
        operations=[OperationInfo(o.name, o.level, o.gated, o.what)
                    for o in OPERATIONS.values()] if status else [],
        client_can_be_asked=askable,
        offer_trust_after=gw.permissions.offer_after,
        trust_minutes=gw.permissions.trust_minutes,
        gateway_pid=gw.permissions.pid)
