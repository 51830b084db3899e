"""Asking the user a yes/no question through MCP elicitation, in both eras of the protocol.

* **Handshake-era connections** (protocol 2024-11-05 .. 2025-11-25, what MCP clients such as
  Claude Code speak today): the server sends ``elicitation/create`` while the tool call is open
  and waits for the answer (``Context.elicit``).
* **2026-07-28 connections** have no server-initiated requests. The tool call instead *returns*
  an ``InputRequiredResult`` holding the question; the client asks the user and calls the tool
  again with the answer in ``input_responses`` (and our ``request_state`` echoed back). The
  question is raised here as ``AskUser`` from wherever the tool's code needed it;
  ``AskUserMiddleware`` turns that into the tool's result. The second call runs the tool from
  the start, and ``Consent.answer_in`` finds the answer in it. A question is good for one
  answer: its ``request_state`` is a random nonce this gateway remembers (for
  ``ASK_TIMEOUT_S``) and forgets once answered, so an answer cannot be replayed.

A client "can be asked" when it declared the elicitation capability with form mode.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import mcp_types
from fastmcp import Context
from fastmcp.exceptions import ToolError
from fastmcp.server.elicitation import (
    AcceptedElicitation,
    DeclinedElicitation,
    handle_elicit_accept,
    parse_elicit_response_type,
)
from fastmcp.server.middleware import Middleware
from fastmcp.tools.base import InputRequiredToolResult
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

log = logging.getLogger("sessiond.gateway.consent")

ASK_TIMEOUT_S = 300.0  # a question nobody answers within this is a "no"
MAX_PENDING = 64  # open 2026-era questions remembered at once (the oldest are forgotten)
INPUT_KEY = "sessiond_permission"  # our key in input_requests / input_responses
ANSWER_TITLE = "Your answer"


@dataclass(frozen=True)
class Question:
    """Whether the user allows ``operation`` (or, with ``confirm_trust``, trusting it)."""
    operation: str
    level: str
    what: str  # what the operation does ("permanently deletes memories")
    detail: str  # what this call is about to do ("3 memories by id")
    offer_trust_minutes: float | None = None  # also offer "trust it for M minutes"
    approvals_in_row: int = 0  # said in the offer
    confirm_trust: bool = False  # the question is "trust it for <detail>?"

    def message(self) -> str:
        if self.confirm_trust:
            return (f"Let the assistant run {self.operation} ({self.level}: {self.what}) "
                    f"without asking you, {self.detail}?")
        text = f"Allow {self.operation}: {self.detail}? ({self.level}: {self.what})"
        if self.offer_trust_minutes is not None:
            text += (f" You allowed it {self.approvals_in_row} times in a row; you can also let "
                     f"it run without asking for {self.offer_trust_minutes:g} minutes.")
        return text

    def choices(self) -> dict[str, dict[str, str]]:
        if self.confirm_trust:
            return {"yes": {"title": "Yes, trust it"}, "no": {"title": "No"}}
        out = {"yes": {"title": "Yes, this once"}}
        if self.offer_trust_minutes is not None:
            out["trust"] = {"title": f"Yes, and don't ask again for "
                                     f"{self.offer_trust_minutes:g} minutes"}
        out["no"] = {"title": "No"}
        return out

    def same_as(self, other: Question) -> bool:
        """The same question (the trust offer may differ: other windows may have answered)."""
        return (self.operation, self.detail, self.confirm_trust) == (
            other.operation, other.detail, other.confirm_trust)


@dataclass(frozen=True)
class Answer:
    choice: str  # "yes", "trust" (yes, and trust for the offered minutes), "no", or "error"
    why: str = ""  # for "no": declined, cancelled, no answer in time; for "error": the failure


class AskUser(ToolError):
    """The question, to be the tool call's result on a 2026-07-28 connection. Raised from any
    depth of a tool; ``AskUserMiddleware`` returns ``result``. Without the middleware the
    assistant reads this error's text instead."""

    def __init__(self, result: mcp_types.InputRequiredResult, question: Question) -> None:
        super().__init__(f"{question.operation} needs the user's answer, and the client did "
                         "not take the question; nothing was done", log_level=logging.DEBUG)
        self.result = result


class AskUserMiddleware(Middleware):
    async def on_call_tool(self, context, call_next):
        try:
            return await call_next(context)
        except AskUser as ask:
            return InputRequiredToolResult(ask.result)


def can_ask(ctx: Context | None) -> bool:
    """Whether the client declared form elicitation (the way we ask)."""
    if ctx is None or ctx.is_background_task:
        return False
    try:
        caps = ctx.session.client_capabilities
    except RuntimeError:  # no session: not inside a client's request
        return False
    elicitation = caps.elicitation if caps is not None else None
    if elicitation is None:
        return False
    # An empty capability means form mode (the spec's compatibility rule); url-only cannot.
    return elicitation.form is not None or elicitation.url is None


def _modern(ctx: Context) -> bool:
    return ctx.session.protocol_version in MODERN_PROTOCOL_VERSIONS


class Consent:
    """Asks questions and keeps the 2026-era questions that await their answer."""

    def __init__(self, timeout_s: float = ASK_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._pending: dict[str, tuple[Question, float]] = {}  # nonce -> question, asked at

    def answer_in(self, ctx: Context, question: Question) -> Answer | None:
        """The answer this (2026-era, second-round) call carries to ``question``, if any."""
        responses = ctx.input_responses
        if not responses or INPUT_KEY not in responses:
            return None
        self._forget_stale()
        asked = self._pending.pop(ctx.request_state or "", None)
        if asked is None or not asked[0].same_as(question):
            log.warning("an answer about %s came without a question this gateway has open; "
                        "asking again", question.operation)
            return None
        result = responses[INPUT_KEY]
        if not isinstance(result, mcp_types.ElicitResult):
            return Answer("error", f"the client answered with {type(result).__name__}, "
                                   "not an elicitation result")
        return _answer(asked[0], result.action, result.content)

    async def ask(self, ctx: Context, question: Question) -> Answer:
        """Ask the user. Handshake era: waits for the answer. 2026 era: raises ``AskUser``."""
        if _modern(ctx):
            raise AskUser(self._input_required(question), question)
        try:
            result = await asyncio.wait_for(
                ctx.elicit(question.message(), question.choices(), response_title=ANSWER_TITLE),
                self.timeout_s)
        except TimeoutError:
            return Answer("no", f"no answer within {self.timeout_s / 60:g} minutes")
        except (MCPError, ToolError) as exc:
            log.warning("could not ask the user about %s: %s", question.operation, exc)
            return Answer("error", f"the client could not ask the user: {exc}")
        except ValueError as exc:  # the answer did not fit the question's schema
            return Answer("error", f"the client's answer did not fit the question: {exc}")
        if isinstance(result, AcceptedElicitation):
            return _answer(question, "accept", {"value": result.data})
        return _answer(question, "decline" if isinstance(result, DeclinedElicitation)
                       else "cancel", None)

    def _input_required(self, question: Question) -> mcp_types.InputRequiredResult:
        self._forget_stale()
        while len(self._pending) >= MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        nonce = secrets.token_urlsafe(16)
        self._pending[nonce] = (question, time.monotonic())
        schema = parse_elicit_response_type(question.choices(),
                                            response_title=ANSWER_TITLE).schema
        request = mcp_types.ElicitRequest(params=mcp_types.ElicitRequestFormParams(
            message=question.message(), requested_schema=schema))
        return mcp_types.InputRequiredResult(input_requests={INPUT_KEY: request},
                                             request_state=nonce)

    def _forget_stale(self) -> None:
        cutoff = time.monotonic() - self.timeout_s
        for nonce in [n for n, (_, at) in self._pending.items() if at < cutoff]:
            del self._pending[nonce]


def _answer(question: Question, action: str, content: Any) -> Answer:
    if action == "decline":
        return Answer("no", "the user declined")
    if action == "cancel":
        return Answer("no", "the user dismissed the question")
    config = parse_elicit_response_type(question.choices(), response_title=ANSWER_TITLE)
    try:
        choice = handle_elicit_accept(config, content).data
    except (ValueError, TypeError, KeyError) as exc:
        return Answer("error", f"the client's answer did not fit the question: {exc}")
    if choice not in question.choices():
        return Answer("error", f"the client answered {choice!r}, not one of "
                               f"{', '.join(question.choices())}")
    return Answer(choice, "the user said no" if choice == "no" else "")
