"""Permissions end to end: a real MCP client over stdio -> gateway -> hub -> store (DuckDB).

High and critical operations (delete_memories, an export replacing a file) run only with a
grant, or with the user's yes asked through MCP elicitation. Clients with elicitation are
fastmcp Clients with an ``elicitation_handler`` playing the user, in both eras of the protocol:
``mode="legacy"`` (the initialize handshake: the server asks while the call is open, as Claude
Code does today) and the default (2026-07-28: the tool call returns the question and the client
calls again with the answer).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from conftest import call, call_error, gateway_client, kill_stack_processes, private_stack
from mcp.shared.exceptions import MCPError

OFFER_AFTER = 2  # approvals in a row before "trust for M minutes" is offered (configured)
TRUST_MINUTES = 5  # M, and the default length of a trust


@pytest.fixture(scope="module")
def perm():
    with private_stack(SESSIOND_PERMISSION_OFFER_TRUST_AFTER=str(OFFER_AFTER),
                       SESSIOND_PERMISSION_TRUST_MINUTES=str(TRUST_MINUTES)) as env_home:
        yield env_home


async def stored(client, project: str, n: int) -> list[str]:
    return [(await call(client, "store_reflection", {
        "content": f"{project} memory number {i} about permissions", "project": project}))["id"]
            for i in range(n)]


async def present(client, ids: list[str]) -> list[str]:
    found = await call(client, "get_memory", {"ids": ids})
    return sorted(m["id"] for m in found["memories"])


async def status(client, operation: str | None = None) -> dict:
    args = {"action": "status"} | ({"operation": operation} if operation else {})
    return await call(client, "permissions", args)


def decisions(st: dict, operation: str = "delete_memories") -> list[str]:
    """The decisions about ``operation`` in a status, oldest first."""
    return [d["decision"] for d in reversed(st["decisions"]) if d["operation"] == operation]


class User:
    """Plays the user behind a client with elicitation: answers from a script, records what
    it was asked."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.asked: list[tuple[str, list[str]]] = []  # message, choices offered

    async def __call__(self, message, response_type, params, context):
        choices = [c["const"] for c in params.requested_schema["properties"]["value"]["oneOf"]]
        self.asked.append((message, choices))
        assert self.answers, f"asked unexpectedly: {message}"
        answer = self.answers.pop(0)
        if answer == "fail":
            raise RuntimeError("this client's dialog broke")
        return {"value": answer}


def test_delete_needs_a_grant_and_the_grant_expires(perm):
    """A client without elicitation: refused (nothing deleted, the error names the tool call
    that grants it), allowed with a grant, refused again once the grant has expired."""
    env, _ = perm

    async def scenario():
        async with gateway_client(env) as client:
            pid = (await call(client, "ping"))["gateway_pid"]
            ids = await stored(client, "p-grant", 3)
            text = await call_error(client, "delete_memories", {"ids": ids})
            assert ('permissions(action="trust", operation="delete_memories", '
                    f'ttl_minutes={TRUST_MINUTES})') in text
            assert "Nothing was done" in text and "3 memories by id" in text
            assert await present(client, ids) == sorted(ids)
            text = await call_error(client, "delete_memories", {"project": "p-grant"})
            assert "every memory of project 'p-grant'" in text
            assert await present(client, ids) == sorted(ids)

            granted = await call(client, "permissions", {
                "action": "trust", "operation": "delete_memories", "ttl_minutes": 0.1})
            (grant,) = granted["grants"]
            assert grant["via"] == "tool" and grant["gateway_pid"] == pid
            assert 0 < grant["expires_in_s"] <= 6
            assert not granted["client_can_be_asked"]
            done = await call(client, "delete_memories", {"ids": ids[:1]})
            assert done["count"] == 1 and await present(client, ids) == sorted(ids[1:])

            expires = datetime.fromisoformat(grant["expires_at"])
            deadline = time.monotonic() + 60
            while datetime.now(UTC) <= expires or (await status(client))["grants"]:
                assert time.monotonic() < deadline, "the grant never expired"
                await asyncio.sleep(0.2)
            text = await call_error(client, "delete_memories", {"ids": ids[1:]})
            assert 'permissions(action="trust"' in text
            assert await present(client, ids) == sorted(ids[1:])

            st = await status(client, "delete_memories")
            assert decisions(st)[-6:] == ["refused", "refused", "trusted", "allowed", "expired",
                                          "refused"]
            by_decision = {d["decision"]: d for d in st["decisions"]}
            assert by_decision["expired"]["gateway_pid"] is None
            assert f"by gateway {pid}" in by_decision["expired"]["detail"]
            assert by_decision["allowed"]["gateway_pid"] == pid
            assert by_decision["allowed"]["detail"].startswith("1 memory by id")
            assert all(d["level"] == "critical" for d in st["decisions"])
            ops = {o["name"]: o for o in st["operations"]}
            assert ops["delete_memories"]["needs_permission"]
            assert ops["git_commit"]["level"] == "high" and ops["git_commit"]["needs_permission"]
            assert not ops["store_reflection"]["needs_permission"]

    asyncio.run(scenario())


def test_revoke_revoke_all_and_bad_requests(perm):
    env, _ = perm

    async def scenario():
        async with gateway_client(env) as client:
            ids = await stored(client, "p-revoke", 2)
            for op in ("delete_memories", "export_overwrite"):
                got = await call(client, "permissions", {"action": "trust", "operation": op})
                assert round(got["grants"][0]["expires_in_s"] / 60) == TRUST_MINUTES
            assert {g["operation"] for g in (await status(client))["grants"]} == {
                "delete_memories", "export_overwrite"}

            revoked = await call(client, "permissions", {"action": "revoke",
                                                         "operation": "delete_memories"})
            assert revoked["message"] == "ended 1 grant(s) of delete_memories"
            assert [g["operation"] for g in revoked["grants"]] == ["export_overwrite"]
            await call_error(client, "delete_memories", {"ids": ids})
            assert await present(client, ids) == sorted(ids)

            revoked = await call(client, "permissions", {"action": "revoke_all"})
            assert revoked["grants"] == [] and revoked["message"].startswith("ended 1 grant")
            again = await call(client, "permissions", {"action": "revoke_all"})
            assert again["message"] == "no active grant of every operation"
            st = await status(client)
            assert st["grants"] == []
            assert [d["decision"] for d in st["decisions"][:3]] == ["revoked", "revoked", "refused"]
            assert st["decisions"][0]["operation"] == "*"  # nothing was left to revoke

            refusals = [
                ({"action": "trust", "operation": "rm_rf"}, "unknown operation 'rm_rf'"),
                ({"action": "trust", "operation": "store_reflection"},
                 "never needs permission"),
                ({"action": "trust"}, "trust needs an operation"),
                ({"action": "revoke"}, "revoke needs an operation"),
                ({"action": "revoke_all", "operation": "git_commit"}, "takes no operation"),
                ({"action": "status", "ttl_minutes": 5}, "goes with action trust only"),
                ({"action": "trust", "operation": "git_commit", "ttl_minutes": 0}, "ttl_minutes"),
                ({"action": "trust", "operation": "git_commit", "ttl_minutes": 1441},
                 "ttl_minutes"),
                ({"action": "grant", "operation": "git_commit"}, "action"),
            ]
            for args, message in refusals:
                text = await call_error(client, "permissions", args)
                assert message in text, (args, text)
            assert (await status(client))["grants"] == []

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_elicitation_asks_the_user_and_offers_trust_after_approvals(perm, mode):
    """Deny once, approve twice, then the question offers "trust for M minutes"; taking it
    makes a grant, and the next delete asks nothing. A `permissions trust` is itself
    confirmed with the user; a client whose dialog fails gets the refusal."""
    env, _ = perm
    user = User()

    async def scenario():
        async with gateway_client(env, elicitation_handler=user, mode=mode) as client:
            await call(client, "permissions", {"action": "revoke_all"})
            ids = await stored(client, f"p-ask-{mode}", 5)

            user.answers = ["no"]
            text = await call_error(client, "delete_memories", {"ids": ids[:1]})
            assert "the user did not allow delete_memories" in text
            assert await present(client, ids) == sorted(ids)
            message, choices = user.asked[-1]
            assert message.startswith("Allow delete_memories: 1 memory by id")
            assert choices == ["yes", "no"]

            for i in (0, 1):
                user.answers = ["yes"]
                assert (await call(client, "delete_memories", {"ids": [ids[i]]}))["count"] == 1
                assert user.asked[-1][1] == ["yes", "no"]  # no offer before OFFER_AFTER yeses
            user.answers = ["trust"]
            assert (await call(client, "delete_memories", {"ids": [ids[2]]}))["count"] == 1
            message, choices = user.asked[-1]
            assert choices == ["yes", "trust", "no"]
            assert f"{TRUST_MINUTES} minutes" in message
            (grant,) = (await status(client))["grants"]
            assert grant["via"] == "elicitation"
            assert TRUST_MINUTES * 60 - 60 < grant["expires_in_s"] <= TRUST_MINUTES * 60

            asked = len(user.asked)
            assert (await call(client, "delete_memories", {"ids": [ids[3]]}))["count"] == 1
            assert len(user.asked) == asked  # the grant answered
            st = await status(client, "delete_memories")
            assert decisions(st)[-10:] == ["asked", "denied", "asked", "approved", "asked",
                                           "approved", "asked", "approved", "trusted",
                                           "allowed"]
            assert (await status(client))["client_can_be_asked"] is True

            # trusting through the tool asks the user too
            await call(client, "permissions", {"action": "revoke_all"})
            user.answers = ["no"]
            text = await call_error(client, "permissions", {
                "action": "trust", "operation": "delete_memories", "ttl_minutes": 10})
            assert "did not allow" in text and (await status(client))["grants"] == []
            assert user.asked[-1][0].startswith("Let the assistant run delete_memories")
            assert user.asked[-1][1] == ["yes", "no"]
            user.answers = ["yes"]
            got = await call(client, "permissions", {
                "action": "trust", "operation": "delete_memories", "ttl_minutes": 10})
            assert got["grants"][0]["via"] == "tool-confirmed"
            await call(client, "permissions", {"action": "revoke_all"})

            user.answers = ["fail"]
            if mode == "legacy":  # the server hears of the failure: the refusal, logged
                text = await call_error(client, "delete_memories", {"ids": [ids[4]]})
                assert "Nothing was done" in text and 'permissions(action="trust"' in text
                last = (await status(client, "delete_memories"))["decisions"][0]
                assert last["decision"] == "refused"
                assert "this client's dialog broke" in last["detail"]
            else:  # 2026: the question is the call's result; the failure stays in the client
                with pytest.raises(MCPError, match="dialog broke"):
                    await client.call_tool("delete_memories", {"ids": [ids[4]]})
                last = (await status(client, "delete_memories"))["decisions"][0]
                assert last["decision"] == "asked"
            assert await present(client, [ids[4]]) == [ids[4]]

    asyncio.run(scenario())


def test_grants_survive_a_killed_stack(env, home):
    """A grant is committed to DuckDB before the reply: kill -9 every stack process, and the
    next gateway's fresh stack still has it (and honours it)."""

    async def grant() -> dict:
        async with gateway_client(env) as client:
            ids = await stored(client, "p-restart", 2)
            got = await call(client, "permissions", {"action": "trust",
                                                     "operation": "delete_memories"})
            return {"ids": ids, "grant": got["grants"][0]}

    async def after_restart(ids: list[str]) -> tuple[dict, dict]:
        async with gateway_client(env) as client:
            st = await status(client)
            done = await call(client, "delete_memories", {"ids": ids})
            return st, done

    before = asyncio.run(grant())
    kill_stack_processes(home)
    st, done = asyncio.run(after_restart(before["ids"]))
    (grant,) = st["grants"]
    assert grant["expires_at"] == before["grant"]["expires_at"]
    assert grant["gateway_pid"] == before["grant"]["gateway_pid"]
    assert done["count"] == 2
