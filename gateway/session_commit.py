"""The checkpoint's git commit, from the gateway's side: whether to make it (turned on, a work
tree on a branch with no merge/rebase/... under way, tracked changes to commit), the user's
``git_commit`` permission, then the quality worker's ``CheckpointCommit``, which commits the
tracked changes only (untracked files with ``checkpoint_include_untracked``) and leaves the
index as it was when it cannot.

The permission is asked before anything else changes: on a 2026-07-28 connection the question
(``AskUser``) is the tool call's result and the client calls the tool again with the answer,
so it propagates. A refusal is not the checkpoint's failure: the rest of it (score, memory)
goes on, and the commit says ``refused`` with the text that says how to grant it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastmcp import Context
from fastmcp.exceptions import ToolError

from gateway import session_results as res
from gateway import session_texts as texts
from gateway.consent import AskUser
from shared import protocol as p
from shared.errors import BadRequest

if TYPE_CHECKING:
    from gateway.sessions import Current, Sessions

GIT_TIMEOUT_S = 10.0
ASSESS_MARGIN_S = 13.0  # the worker's own assessment (at most 8 s) and the reply


async def commit(sessions: Sessions, ctx: Context, cur: Current, note: str, perms: dict,
                 notes: list[str]) -> tuple[p.CommitResult | None, res.CommitView]:
    """The commit's result (with the worker's assessment in its ``report``) and its view; no
    result when it was not attempted (the view's ``skipped`` and ``reason`` say why)."""
    enabled = sessions.cfg.checkpoint_commit

    def skip(code: str, why: str) -> tuple[None, res.CommitView]:
        return None, res.commit_view(None, enabled=enabled, skipped=code, reason=why)

    if not enabled:
        return skip("disabled", "checkpoint commits are turned off (checkpoint_commit = "
                                "false in the configuration)")
    try:
        git = await sessions.ask(p.SERVICE_QUALITY, p.GitStatus(path=str(cur.root)),
                                 timeout_s=GIT_TIMEOUT_S)
    except ToolError as exc:
        cause = exc.__cause__
        return skip("not_a_repo" if isinstance(cause, BadRequest) else "git_error",
                    getattr(cause, "message", str(exc)))
    if git.operation:
        return skip("operation_in_progress", f"a {git.operation} is in progress in "
                    f"{git.root}; finish or abort it, then checkpoint again")
    if git.branch is None:
        return skip("detached_head", "HEAD is detached (not on a branch); nothing committed")
    untracked = sessions.cfg.checkpoint_include_untracked
    if not (git.staged or git.unstaged or git.conflicted or (untracked and git.untracked)):
        return skip("nothing_changed", "no tracked file changed since the last commit")
    try:
        await sessions.gw.permissions.require(ctx, "git_commit", texts.commit_detail(
            str(cur.root), cur.project, git, untracked))
    except AskUser:
        raise  # the client asks the user and calls again: nothing is done yet
    except ToolError as exc:
        return skip("refused", str(exc))
    try:
        timeout = sessions.cfg.checkpoint_commit_timeout_s
        result = await sessions.ask(p.SERVICE_QUALITY, p.CheckpointCommit(
            path=str(cur.root), project=cur.project, session_id=cur.id, note=note,
            include_untracked=untracked, timeout_s=timeout, permissions=perms),
            timeout_s=timeout + ASSESS_MARGIN_S, idempotent=False)
    except ToolError as exc:
        notes.append(f"the commit's outcome is unknown (check `git log`): {exc}")
        return skip("git_error", f"the quality worker did not answer the commit: {exc}")
    return result, res.commit_view(result, enabled=True)
