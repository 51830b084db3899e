"""Deleting memories from the dashboard, under the same permission rules as the
``delete_memories`` tool (``gateway.permissions``: critical, so a grant or the user's yes).

1. *Delete* (one memory's button, or a selection) posts the ids here. The page that comes back
   is the question: with no active grant it is the tool's own question ("Allow delete_memories:
   3 memories by id (...)? (critical: ...)") with the tool's choices — yes this once, no, and
   after ``permission_offer_trust_after`` approvals in a row also "yes, and don't ask again for
   N minutes" — and it is logged as ``asked``. With a grant it says which grant will be used and
   asks only to confirm.
2. The answer is posted with the question's one-time nonce. "No" is logged ``denied``; a yes is
   checked against the grants first (a grant used is logged ``allowed`` by the store), else
   logged ``approved`` (a "trust" also makes the grant), and then the store deletes.

The confirmation page is how this client asks the user, as MCP elicitation is the tool's; a
question is answered once, within ``ASK_TIMEOUT_S``, like the tool's 2026-era questions.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.consent import ASK_TIMEOUT_S, Answer, Question
from gateway.memory_tools import deletion_detail
from gateway.permissions import operation_named
from shared import protocol as p
from webui.filters import ID_RE, safe_next, with_notice
from webui.security import checked_form

OPERATION = "delete_memories"
MAX_SELECTION = 1000  # the tool's limit on ids per call
MAX_PENDING = 64


@dataclass
class Pending:
    ids: list[str]
    question: Question
    asked: bool  # False: a grant covered it when the page was shown (only a confirmation)
    next: str
    at: float


class PendingDeletes:
    """Questions shown and not yet answered, by nonce (the oldest forgotten past MAX_PENDING)."""

    def __init__(self, timeout_s: float = ASK_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._open: dict[str, Pending] = {}

    def add(self, pending: Pending) -> str:
        self._forget_stale()
        while len(self._open) >= MAX_PENDING:
            self._open.pop(next(iter(self._open)))
        nonce = secrets.token_urlsafe(16)
        self._open[nonce] = pending
        return nonce

    def take(self, nonce: object) -> Pending | None:
        self._forget_stale()
        return self._open.pop(nonce, None) if isinstance(nonce, str) else None

    def _forget_stale(self) -> None:
        cutoff = time.monotonic() - self.timeout_s
        for nonce in [n for n, q in self._open.items() if q.at < cutoff]:
            del self._open[nonce]


async def ask(request: Request) -> Response:
    """The confirmation page for the posted selection."""
    ui = request.app.state.ui
    form = await checked_form(request)
    back = safe_next(form.get("next"))
    ids = list(dict.fromkeys(i for i in form.getlist("id") if isinstance(i, str)))
    if not ids:
        return RedirectResponse(with_notice(back, none=1), status_code=303)
    if len(ids) > MAX_SELECTION or not all(ID_RE.fullmatch(i) for i in ids):
        return ui.render(request, "error.html", status=400, title="Cannot delete",
                         message=f"Select 1-{MAX_SELECTION} memories by their ids.",
                         active="memories")
    found = (await ui.store(p.GetMemories(ids=ids))).items
    if not found:
        return ui.render(request, "error.html", status=404, title="Nothing to delete",
                         message="None of the selected memories exists (any more); nothing was "
                                 "asked or deleted.", active="memories")
    perms = ui.gw.permissions
    op = operation_named(OPERATION)
    state = await perms.status(op.name, limit=0)
    question = perms.question(op, deletion_detail(ids, None, None), state.approvals_in_row)
    asked = not state.grants
    if asked:
        await perms.asked(op, question)
    nonce = ui.deletes.add(Pending(ids, question, asked, back, time.monotonic()))
    have = {m.id for m in found}
    return ui.render(request, "confirm.html", title="Delete memories?", active="memories",
                     question=question, asked=asked, grants=state.grants, nonce=nonce,
                     memories=found, missing=[i for i in ids if i not in have], back=back,
                     choices=question.choices() if asked else {"yes": {"title": "Delete"},
                                                               "no": {"title": "Cancel"}})


async def answer(request: Request) -> Response:
    """The user's answer: delete, or not."""
    ui = request.app.state.ui
    form = await checked_form(request)
    pending = ui.deletes.take(form.get("nonce"))
    if pending is None:
        return ui.render(request, "error.html", status=409, title="Question closed",
                         message="This question was already answered or has expired; nothing "
                                 "was deleted. Select the memories again.", active="memories")
    choice = form.get("choice")
    allowed = pending.question.choices() if pending.asked else {"yes": {}, "no": {}}
    if choice not in allowed:
        return ui.render(request, "error.html", status=400, title="Unknown answer",
                         message="That answer was not one of the choices; nothing was deleted.",
                         active="memories")
    perms, op, question = ui.gw.permissions, operation_named(OPERATION), pending.question
    if choice == "no":
        if pending.asked:
            await perms.not_allowed(op, question.detail, Answer("no", "the user declined"))
        return RedirectResponse(with_notice(pending.next, cancelled=1), status_code=303)
    state = await perms.check(op, question.detail)
    if not state.allowed:
        if not pending.asked:  # the grant ended while the page was open: the yes is the answer
            await perms.asked(op, question)
        await perms.settle(op, question, Answer(str(choice)))
    reply = await ui.store(p.DeleteMemories(ids=pending.ids), idempotent=False)
    ui.forget_facets()
    return RedirectResponse(with_notice(pending.next, deleted=reply.count), status_code=303)
