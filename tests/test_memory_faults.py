"""Hostile input, concurrent gateways, a killed store, a missing model: nothing lost, no crash."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import (
    REPO,
    base_env,
    call,
    call_error,
    gateway_client,
    kill_stack_processes,
    out_dir,
    private_stack,
    wait_all_ready,
)

from shared import limits

BAD_STORES = [
    ({"content": ""}, "at least 1 character"),
    ({"content": "   \n\t "}, "must not be empty"),
    ({"content": "é" * 60_000}, "bytes"),
    ({"content": "abc\x00def"}, "NUL"),
    ({"content": "ok", "tags": [f"t{i}" for i in range(33)]}, "32"),
    ({"content": "ok", "tags": ["x" * 65]}, "64"),
    ({"content": "ok", "tags": [1, 2]}, "string"),
    ({"content": "ok", "tags": "not-a-list"}, "list"),
    ({"content": "ok", "project": "p" * 201}, "200"),
]


@pytest.fixture(scope="module")
def faults():
    with private_stack() as env_home:
        yield env_home


def test_hostile_input_is_a_clear_error_and_writes_nothing(faults):
    env, home = faults
    outside = "/etc/sessiond-export.jsonl"
    bad_utf8 = home / "bad-utf8.jsonl"
    bad_utf8.write_bytes(b'{"id": "x1", "kind": "note", "content": "\xff\xfe", "project": "q"}\n')
    loop = out_dir(home) / "loop-a"  # a loop of symlinks
    loop.symlink_to(out_dir(home) / "loop-b")
    (out_dir(home) / "loop-b").symlink_to(loop)
    half_bad = home / "half-bad.jsonl"
    good = {"id": "a" * 32, "kind": "note", "content": "fine row", "project": "q", "tags": [],
            "created_at": "2026-01-01T00:00:00+00:00", "metadata": {}}
    half_bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b" * 32,
                                                               "content": ""}) + "\n")

    async def scenario():
        async with gateway_client(env) as client:
            before = await wait_all_ready(client)
            count = (await call(client, "reflection_stats"))["memories"]
            for args, message in BAD_STORES:
                text = await call_error(client, "store_reflection", {"project": "p-bad", **args})
                assert message in text, (args, text)
            for tool, args, message in [
                ("export_memories", {"path": outside}, "outside the allowed places"),
                ("export_memories", {"path": "../../etc/x.jsonl"}, "absolute"),
                ("export_memories", {"path": str(home / ".." / ".." / "etc" / "x")}, "outside"),
                ("import_memories", {"path": "/etc/passwd"}, "outside the allowed places"),
                ("import_memories", {"path": str(home / "missing.jsonl")}, "not a file"),
                ("import_memories", {"path": str(bad_utf8)}, "UTF-8"),
                ("import_memories", {"path": str(half_bad)}, "content"),
                # a name longer than the file system allows (found by the fault suite)
                ("export_memories", {"path": f"{out_dir(home)}/{'a' * 300}.jsonl"},
                 "bad_request: cannot use"),
                ("import_memories", {"path": str(home / ("a" * 300 + ".jsonl"))},
                 "bad_request: cannot use"),
                ("export_memories", {"path": str(loop)}, "bad_request: cannot use"),
                ("import_memories", {"path": str(loop)}, "bad_request: cannot use"),
                ("delete_memories", {}, "give ids"),
                ("add_project_dependency", {"source_project": "a", "target_project": "a",
                                            "dependency_type": "uses"}, "itself"),
                ("add_project_dependency", {"source_project": "a", "target_project": "b",
                                            "dependency_type": "owns"}, "dependency_type"),
            ]:
                text = await call_error(client, tool, args)
                assert message in text, (tool, text)
            assert not Path(outside).exists()
            assert (await call(client, "reflection_stats"))["memories"] == count
            sql = "'); DROP TABLE memories; -- \" OR 1=1; SELECT * FROM memories"
            stored = await call(client, "store_reflection", {"content": sql, "project": "p-bad"})
            found = await call(client, "quick_search", {"query": "DROP TABLE memories",
                                                        "project": "p-bad"})
            assert found["results"][0]["id"] == stored["id"]
            assert found["results"][0]["content"] == sql
            after = (await call(client, "status"))["stack"]
            assert [(w["pid"], w["restarts"]) for w in after["workers"]] == \
                   [(w["pid"], w["restarts"]) for w in before["workers"]]

    asyncio.run(scenario())


def _schema(tool, name: str) -> dict:
    """A parameter's JSON schema, with an optional (``anyOf [..., null]``) one unwrapped."""
    prop = tool.input_schema["properties"][name]
    return next((a for a in prop.get("anyOf", []) if a.get("type") != "null"), prop)


def test_tool_schemas_state_the_limits_the_store_applies(faults):
    """The limits live in ``shared.limits``: the assistant reads them in the tool schemas, and
    the store accepts exactly up to them (content is counted in UTF-8 bytes)."""
    env, _ = faults

    async def scenario():
        async with gateway_client(env) as client:
            tools = {t.name: t for t in await client.list_tools()}
            store, conv = tools["store_reflection"], tools["store_conversation"]
            assert _schema(store, "content")["maxLength"] == limits.MAX_CONTENT_BYTES
            tags = _schema(store, "tags")
            assert tags["maxItems"] == limits.MAX_TAGS
            assert tags["items"]["maxLength"] == limits.MAX_TAG_LEN
            assert _schema(store, "project")["maxLength"] == limits.MAX_PROJECT_LEN
            assert _schema(conv, "session_id")["maxLength"] == limits.MAX_SESSION_ID_LEN
            dep = tools["add_project_dependency"]
            assert _schema(dep, "description")["maxLength"] == limits.MAX_DESCRIPTION_LEN
            at_limit = "é" * (limits.MAX_CONTENT_BYTES // 2)
            stored = await call(client, "store_reflection", {
                "content": at_limit, "project": "p-limits",
                "tags": [f"{i:0{limits.MAX_TAG_LEN}d}" for i in range(limits.MAX_TAGS)]})
            assert not stored["duplicate"]
            text = await call_error(client, "store_reflection",
                                    {"content": at_limit + "é", "project": "p-limits"})
            assert f"at most {limits.MAX_CONTENT_BYTES} allowed" in text

    asyncio.run(scenario())


def test_invalid_unicode_from_a_raw_client_is_a_tool_error(faults):
    """Invalid UTF-8 bytes and an escaped lone surrogate: a tool error each, never silence."""
    env, _ = faults
    proc = subprocess.Popen([sys.executable, "-m", "sessiond", "serve"], env=env, cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)

    def store(request_id: int, content: bytes) -> bytes:
        return (b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":'
                b'"store_reflection","arguments":{"content":"%s","project":"p-raw"}}}'
                % (request_id, content))

    lines = [
        (b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":'
         b'"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}'),
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
        store(2, b"lone \\ud800 surrogate"),
        store(3, b"bad \xff\xfe bytes"),
        store(4, b"a fine emoji \\ud83d\\ude00"),
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ping","arguments":{}}}',
    ]
    replies = {}
    try:
        for line in lines:
            proc.stdin.write(line + b"\n")
            proc.stdin.flush()
        while not {2, 3, 4, 5} <= replies.keys():  # the server may answer out of order
            raw = proc.stdout.readline()
            assert raw, "gateway closed stdout"
            msg = json.loads(raw)
            replies[msg.get("id")] = msg
    finally:
        proc.stdin.close()
        proc.wait(30)
    for request_id in (2, 3):
        assert replies[request_id]["result"]["isError"] is True
        assert "not valid Unicode" in replies[request_id]["result"]["content"][0]["text"]
    assert replies[4]["result"]["isError"] is False
    assert replies[5]["result"]["structuredContent"]["ok"] is True


def test_two_gateways_write_and_search_concurrently(faults):
    env, home = faults
    per_gateway = 150

    async def one(name: str) -> list[str]:
        ids = []
        async with gateway_client(env) as client:
            for i in range(per_gateway):
                r = await call(client, "store_conversation", {
                    "content": f"gateway {name} turn {i}: notes about module_{i % 13}",
                    "project": "p-conc", "session_id": name})
                ids.append(r["id"])
                if i % 5 == 0:
                    await call(client, "quick_search", {"query": f"module_{i % 13}",
                                                        "project": "p-conc"})
        return ids

    async def scenario():
        a, b = await asyncio.gather(one("A"), one("B"))
        async with gateway_client(env) as client:
            out = out_dir(home) / "conc.jsonl"
            await call(client, "export_memories", {"path": str(out), "project": "p-conc"})
        return a, b, {json.loads(line)["id"] for line in out.read_text().splitlines()}

    a, b, exported = asyncio.run(scenario())
    assert len(set(a)) == per_gateway and len(set(b)) == per_gateway
    assert set(a) | set(b) <= exported


def test_kill9_store_during_writes_keeps_every_acked_id(faults):
    env, home = faults

    async def scenario():
        acked = []
        async with gateway_client(env) as client:
            st = await wait_all_ready(client)
            store_pid = next(w["pid"] for w in st["workers"] if w["name"] == "store")
            for i in range(120):
                if i == 40:
                    os.kill(store_pid, signal.SIGKILL)
                result = await client.call_tool("store_reflection", {
                    "content": f"durability check number {i}", "project": "p-kill"},
                    raise_on_error=False)
                if not result.is_error:
                    acked.append(result.structured_content["id"])
            await wait_all_ready(client)
            out = out_dir(home) / "kill.jsonl"
            await call(client, "export_memories", {"path": str(out), "project": "p-kill"})
        return acked, {json.loads(line)["id"] for line in out.read_text().splitlines()}

    acked, present = asyncio.run(scenario())
    assert len(acked) >= 100  # the gateway retries while the store restarts
    assert set(acked) <= present


def test_missing_model_degrades_to_keyword_search(tmp_path):
    home = Path(tempfile.mkdtemp(prefix="sd-"))
    env = base_env(home, SESSIOND_EMBED_MODEL_PATH=str(tmp_path / "no-model.onnx"))
    try:
        async def scenario():
            async with gateway_client(env) as client:
                await wait_all_ready(client)
                health = await call(client, "health_check")
                embed = next(c for c in health["components"] if c["name"] == "embed")
                assert health["status"] == "unhealthy" and embed["status"] == "unhealthy"
                assert "no-model.onnx" in embed["reason"]
                stored = await call(client, "store_reflection",
                                    {"content": "keyword fallback still finds zebra_crossing"})
                found = await call(client, "quick_search", {"query": "zebra_crossing"})
                assert found["mode"] == "keyword" and "keyword-only" in found["note"]
                assert found["results"][0]["id"] == stored["id"]

        asyncio.run(scenario())
    finally:
        kill_stack_processes(home)


def test_dates_past_the_ends_of_the_calendar_are_clear_errors(faults):
    """A time expression or timestamp whose UTC value falls outside years 1-9999 was an
    OverflowError, answered as an internal error (found by the hostile-input fault suite)."""
    env, home = faults
    edge = home / "edge-date.jsonl"
    edge.write_text(json.dumps({
        "id": "e" * 32, "kind": "note", "content": "a row from before the calendar",
        "project": "p-edge", "created_at": "0001-01-01T00:00:00+14:00", "metadata": {}}) + "\n")

    async def scenario():
        async with gateway_client(env) as client:
            before = (await call(client, "reflection_stats"))["memories"]
            for expression in ("since 9999-12-31", "9999-12-31",
                               "between 0001-01-01 and 9999-12-31"):
                text = await call_error(client, "search_temporal",
                                        {"time_expression": expression})
                assert text.startswith("store bad_request:") and "past the dates" in text, text
            await call(client, "permissions", {"action": "trust", "operation": "delete_memories",
                                               "ttl_minutes": 5})
            for at in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
                text = await call_error(client, "delete_memories",
                                        {"project": "p-edge", "before": at})
                assert text.startswith("store bad_request:") and "out of range" in text, text
            text = await call_error(client, "import_memories", {"path": str(edge)})
            assert "out of range" in text and "internal" not in text, text
            assert (await call(client, "reflection_stats"))["memories"] == before

    asyncio.run(scenario())
