"""The search tools end to end (real MCP client -> gateway -> hub -> store + embed pool): the
search bugs of issue 8, each with the behaviour a user asked for."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import call, call_error, gateway_client, private_stack, wait_embedded

ZONE = "Pacific/Kiritimati"  # UTC+14 all year: its "today" is rarely UTC's


@pytest.fixture(scope="module")
def mem():
    with private_stack(SESSIOND_TIMEZONE=ZONE) as env_home:
        yield env_home


def _import(home, name: str, rows: list[dict]) -> str:
    path = home / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _row(i: int, content: str, project: str, created: datetime, kind: str = "note",
         tags: list[str] | None = None) -> dict:
    return {"id": f"{project[:8]}{i:024d}", "kind": kind, "content": content,
            "project": project, "tags": tags or [], "created_at": created.isoformat(),
            "metadata": {}}


def test_search_temporal_without_a_query_lists_the_period_newest_first(mem):
    env, home = mem
    now = datetime.now(UTC)
    rows = [_row(i, f"worked on the parser refactor, step {i}", "p-temporal",
                 now - timedelta(hours=2 * i)) for i in range(20)]
    path = _import(home, "temporal.jsonl", rows)

    async def scenario():
        async with gateway_client(env) as client:
            await call(client, "import_memories", {"path": path})
            found = await call(client, "search_temporal", {
                "time_expression": "past 9 hours", "project": "p-temporal", "limit": 3})
            assert found["mode"] == "recent" and found["total_candidates"] == 5
            assert [r["id"] for r in found["results"]] == [r["id"] for r in rows[:3]]
            more = await call(client, "search_temporal", {
                "time_expression": "past 9 hours", "project": "p-temporal", "limit": 3,
                "offset": 3})
            assert [r["id"] for r in more["results"]] == [r["id"] for r in rows[3:5]]

    asyncio.run(scenario())


def test_today_is_the_user_time_zone_day(mem):
    env, _ = mem

    async def scenario():
        async with gateway_client(env) as client:
            found = await call(client, "search_temporal", {"time_expression": "today"})
            local = datetime.now(ZoneInfo(ZONE))
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            assert datetime.fromisoformat(found["since"]) == midnight.astimezone(UTC)

    asyncio.run(scenario())


def test_search_errors_finds_errors_not_words_starting_with_e(mem):
    env, _ = mem

    async def scenario():
        async with gateway_client(env) as client:
            ok = await call(client, "store_reflection", {
                "content": "Else every email to the Elastic team went out fine",
                "project": "p-errors"})
            bad = await call(client, "store_reflection", {
                "content": "psql: ECONNREFUSED 127.0.0.1:5432, postgres was not started",
                "project": "p-errors"})
            typed = await call(client, "store_reflection", {
                "content": "TypeError: cannot read properties of undefined (reading 'id')",
                "project": "p-errors"})
            found = await call(client, "search_errors", {"project": "p-errors"})
            ids = [r["id"] for r in found["results"]]
            assert set(ids) == {bad["id"], typed["id"]} and ok["id"] not in ids
            assert ids[0] == typed["id"]  # no query: newest first
            found = await call(client, "search_errors", {"project": "p-errors",
                                                         "error_type": "ECONNREFUSED"})
            assert [r["id"] for r in found["results"]] == [bad["id"]]
            await wait_embedded(client)
            found = await call(client, "search_errors", {"project": "p-errors",
                                                         "query": "database not running"})
            assert found["results"][0]["id"] == bad["id"]

    asyncio.run(scenario())


def test_search_by_file_returns_every_mention_paged(mem):
    env, home = mem
    now = datetime.now(UTC)
    rows = [_row(i, f"fixed bug {i} in src/app.py by adding a guard", "p-files",
                 now - timedelta(minutes=i)) for i in range(130)]
    rows += [_row(1000 + i, f"note {i} about lib/app.py and app settings", "p-files",
                  now - timedelta(minutes=i)) for i in range(300)]
    path = _import(home, "files.jsonl", rows)

    async def scenario():
        async with gateway_client(env) as client:
            await call(client, "import_memories", {"path": path})
            seen = []
            for offset in (0, 100):
                page = await call(client, "search_by_file", {
                    "file_path": "/home/me/repo/src/app.py", "limit": 100, "offset": offset})
                assert page["total_candidates"] == 130
                seen += [r["id"] for r in page["results"]]
            assert seen == [r["id"] for r in rows[:130]]  # all of them, newest first
            assert all("src/app.py" in r["files"] for r in page["results"])

    asyncio.run(scenario())


def test_get_more_results_keeps_the_filters_of_the_first_search(mem):
    env, _ = mem

    async def scenario():
        async with gateway_client(env) as client:
            for i in range(6):
                await call(client, "store_reflection", {
                    "content": f"paging check {i}: the cache warms up slowly",
                    "project": "p-page", "tags": ["keep"] if i % 2 else ["drop"]})
                await call(client, "store_reflection", {
                    "content": f"paging check {i}: the cache warms up slowly elsewhere",
                    "project": "p-page-other", "tags": ["keep"]})
            await wait_embedded(client)  # else a vector arriving between the pages reorders them
            first = await call(client, "reflect_on_past", {
                "query": "cache warms up", "project": "p-page", "tags": ["keep"], "limit": 2})
            more = await call(client, "get_more_results", {
                "query": "cache warms up", "project": "p-page", "tags": ["keep"], "limit": 2,
                "offset": 2})
            results = first["results"] + more["results"]
            assert len(results) == 3 and len({r["id"] for r in results}) == 3
            assert all(r["project"] == "p-page" and r["tags"] == ["keep"] for r in results)

    asyncio.run(scenario())


def test_get_memory_returns_the_full_content(mem):
    env, _ = mem
    long = "design notes: " + "the retry budget is shared across workers. " * 120

    async def scenario():
        async with gateway_client(env) as client:
            stored = await call(client, "store_reflection", {"content": long,
                                                             "project": "p-full"})
            hit = (await call(client, "quick_search", {"query": "retry budget shared",
                                                       "project": "p-full"}))["results"][0]
            assert hit["truncated"] and len(hit["content"]) == 2000
            got = await call(client, "get_memory", {"ids": [stored["id"], "nope"]})
            assert [m["content"] for m in got["memories"]] == [long.strip()]
            assert got["missing"] == ["nope"]
            assert "ids" in await call_error(client, "get_memory", {"ids": []})

    asyncio.run(scenario())


def test_a_newer_restatement_shows_what_it_supersedes(mem):
    env, home = mem
    now = datetime.now(UTC)
    rows = [_row(1, "Invoice PDFs are rendered with wkhtmltopdf 0.12 inside the billing worker",
                 "p-supersede", now - timedelta(days=150)),
            _row(2, "Replaced wkhtmltopdf with WeasyPrint for rendering invoice PDFs in the "
                    "billing worker", "p-supersede", now - timedelta(days=3))]
    path = _import(home, "supersede.jsonl", rows)

    async def scenario():
        async with gateway_client(env) as client:
            await call(client, "import_memories", {"path": path})
            await wait_embedded(client)
            deadline = asyncio.get_running_loop().time() + 10
            while (await call(client, "reflection_stats"))["supersession_checks_waiting"]:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            found = await call(client, "quick_search", {
                "query": "what do we render invoice PDFs with now?", "project": "p-supersede"})
            first, second = found["results"]
            assert first["id"] == rows[1]["id"] and first["supersedes"] == [rows[0]["id"]]
            assert second["superseded_by"] == rows[1]["id"]

    asyncio.run(scenario())
