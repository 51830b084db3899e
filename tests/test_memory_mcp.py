"""Memory end to end: real MCP client over stdio -> gateway -> hub -> store + embed pool."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import (
    call,
    call_error,
    gateway_client,
    private_stack,
    wait_embedded,
)


@pytest.fixture(scope="module")
def mem():
    """One stack for the module; each test uses its own project names."""
    with private_stack() as env_home:
        yield env_home


def ids_of(result: dict) -> list[str]:
    return [r["id"] for r in result["results"]]


def test_finds_by_meaning_identifier_and_error_text(mem):
    env, _ = mem
    texts = {
        "ci": "The deployment pipeline broke because the Docker image ran out of disk space",
        "ident": "parse_config_v2 returns None when the YAML file is indented with tabs",
        "err": "ECONNREFUSED 127.0.0.1:5432 while running migrations: postgres was not started",
        "bread": "Sourdough needs a long cold proof in the fridge overnight",
        "cat": "The kitten sleeps on the warm rug by the window",
        "tax": "Quarterly tax filings are due at the end of the month",
    }

    async def scenario():
        async with gateway_client(env) as client:
            ids = {k: (await call(client, "store_reflection",
                                  {"content": t, "project": "p-meaning"}))["id"]
                   for k, t in texts.items()}
            await wait_embedded(client)
            found = await call(client, "quick_search", {
                "query": "CI release job failed: container storage was full",
                "project": "p-meaning", "limit": 3})
            assert found["mode"] == "hybrid" and found["note"] == ""
            assert ids_of(found)[0] == ids["ci"]
            top = found["results"][0]
            assert top["parts"]["bm25"] == 0 and top["parts"]["vector"] > 0.3

            found = await call(client, "quick_search", {"query": "parse_config_v2"})
            assert ids_of(found)[0] == ids["ident"]
            again = await call(client, "quick_search", {"query": "  PARSE_CONFIG_V2 "})
            assert ids_of(again)[0] == ids["ident"]
            cache = (await call(client, "status"))["stack"]["query_cache"]
            assert cache["hits"] >= 1 and 0 < cache["hit_rate"] < 1
            assert found["results"][0]["parts"]["bm25"] > 0

            found = await call(client, "search_errors",
                               {"error_type": "ECONNREFUSED", "project": "p-meaning"})
            assert ids_of(found) == [ids["err"]]

            f = await call(client, "store_reflection", {
                "content": "Moved the retry limits into src/app/settings.py", "project": "p-meaning"})
            found = await call(client, "search_by_file", {"file_path": "/repo/src/app/settings.py"})
            assert ids_of(found) == [f["id"]]
            concept = await call(client, "search_by_concept", {"concept": "retry configuration",
                                                               "project": "p-meaning"})
            assert "src/app/settings.py" in concept["files"]

    asyncio.run(scenario())


def test_linked_projects_and_the_time_preferences(mem):
    env, home = mem
    now = datetime.now(UTC)
    text = "Use exponential backoff with jitter when retrying the payment webhook"
    rows = [
        {"id": "0" * 31 + "1", "kind": "reflection", "content": text, "project": "p-old",
         "tags": [], "created_at": (now - timedelta(days=200)).isoformat(), "metadata": {}},
        {"id": "0" * 31 + "2", "kind": "reflection", "content": text, "project": "p-new",
         "tags": [], "created_at": (now - timedelta(days=1)).isoformat(), "metadata": {}},
    ]
    path = home / "decay.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    async def scenario():
        async with gateway_client(env) as client:
            imported = await call(client, "import_memories", {"path": str(path)})
            assert imported["count"] == 2
            await wait_embedded(client)
            query = {"query": "retry payment webhook backoff", "limit": 2}
            on = await call(client, "search_across_projects",
                            {**query, "current_project": "p-old"})
            assert [r["project"] for r in on["results"]] == ["p-old"]  # not linked yet
            await call(client, "add_project_dependency", {
                "source_project": "p-old", "target_project": "p-new",
                "dependency_type": "continuation"})
            on = await call(client, "search_across_projects", {**query, "current_project": "p-old"})
            # equally relevant: the default lets the newer one win the tie, by a hair
            assert [r["project"] for r in on["results"]] == ["p-new", "p-old"]
            assert 0 < on["results"][0]["score"] - on["results"][1]["score"] < 0.02
            decayed = await call(client, "reflect_on_past", {**query, "decay": True,
                                                             "project": "p-old"})
            old = next(r for r in decayed["results"] if r["project"] == "p-old")
            assert old["parts"]["recency"] < 0.01 and old["score"] < 0.01  # explicit decay
            slow = await call(client, "reflect_on_past", {**query, "decay": True,
                                                          "half_life_days": 3650,
                                                          "project": "p-old"})
            assert next(r for r in slow["results"] if r["project"] == "p-old")[
                "parts"]["recency"] > 0.9
            off = await call(client, "reflect_on_past", {**query, "decay": False})
            scores = [r["score"] for r in off["results"] if r["project"] in ("p-old", "p-new")]
            assert len(scores) == 2 and scores[0] == pytest.approx(scores[1])
            assert all(r["score"] == r["parts"]["relevance"] for r in off["results"])

    asyncio.run(scenario())


def test_filters_kinds_tags_project_and_time(mem):
    env, _ = mem

    async def scenario():
        async with gateway_client(env) as client:
            a = (await call(client, "store_reflection", {
                "content": "Caching the tokenizer made cold start twice as fast",
                "tags": ["perf", "startup"], "project": "p-filter"}))["id"]
            b = (await call(client, "store_conversation", {
                "content": "We talked about caching the tokenizer to speed up cold start",
                "project": "p-filter", "session_id": "s-1", "metadata": {"turn": 3}}))["id"]
            c = (await call(client, "store_reflection", {
                "content": "Caching tokenizer output elsewhere too", "tags": ["misc"],
                "project": "p-other"}))["id"]
            q = {"query": "tokenizer caching cold start", "limit": 10}
            got = await call(client, "reflect_on_past", {**q, "project": "p-filter"})
            assert set(ids_of(got)) == {a, b}
            got = await call(client, "reflect_on_past", {**q, "kinds": ["conversation"]})
            assert ids_of(got) == [b]
            assert got["results"][0]["session_id"] == "s-1"
            assert got["results"][0]["metadata"] == {"turn": 3}
            got = await call(client, "reflect_on_past", {**q, "tags": ["perf"]})
            assert ids_of(got) == [a]
            got = await call(client, "search_temporal", {"time_expression": "today",
                                                         "query": "tokenizer"})
            assert {a, b, c} <= set(ids_of(got))
            got = await call(client, "search_temporal", {"time_expression": "last year",
                                                         "query": "tokenizer"})
            assert not {a, b, c} & set(ids_of(got))
            text = await call_error(client, "search_temporal", {"time_expression": "the day after"})
            assert "try:" in text
            summary = await call(client, "search_summary", {"query": "tokenizer caching"})
            assert summary["count"] >= 3 and summary["projects"]["p-filter"] == 2
            assert summary["top_tags"].get("perf") == 1

    asyncio.run(scenario())


def test_duplicates_and_redaction(mem):
    env, _ = mem
    secret = "sk-" + "a1B2c3D4e5F6g7H8i9J0" * 2

    async def scenario():
        async with gateway_client(env) as client:
            first = await call(client, "store_reflection",
                               {"content": "Deploy key rotated", "project": "p-dup"})
            again = await call(client, "store_reflection",
                               {"content": "  Deploy key rotated  ", "project": "p-dup"})
            assert again["duplicate"] is True and again["id"] == first["id"]
            red = await call(client, "store_reflection", {
                "content": f"Set OPENAI key {secret} and db postgres://app:hunter2@db/prod",
                "project": "p-dup"})
            assert red["redacted"] == ["url_password", "openai_key"]
            assert "secrets replaced" in red["message"]
            found = await call(client, "quick_search", {"query": "OPENAI key", "project": "p-dup"})
            content = next(r["content"] for r in found["results"] if r["id"] == red["id"])
            assert secret not in content and "hunter2" not in content and "REDACTED" in content

    asyncio.run(scenario())
