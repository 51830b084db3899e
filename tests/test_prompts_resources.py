"""MCP prompts and resources through a real gateway and MCP client: what the prompts say, the
resources' contents, and resources/list_changed when a handoff or a score appears."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import call, gateway_client, out_dir, private_stack
from fastmcp.client.messages import MessageHandler

from gateway import handoff
from shared.config import load_config


@pytest.fixture(scope="module")
def sd():
    with private_stack() as (env, home):
        yield env, home


class Notices(MessageHandler):
    def __init__(self) -> None:
        self.changed = 0

    async def on_resource_list_changed(self, message) -> None:
        self.changed += 1

    async def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.changed < count:
            assert time.monotonic() < deadline, f"{self.changed} list_changed, {count} expected"
            await asyncio.sleep(0.05)


def prompt_text(result) -> str:
    return "\n".join(m.content.text for m in result.messages)


def resource_text(contents) -> str:
    return "\n".join(c.text for c in contents)


def test_prompts(sd):
    env, _ = sd

    async def scenario():
        async with gateway_client(env) as client:
            names = {p.name for p in await client.list_prompts()}
            assert names == {"start", "checkpoint", "end", "recall", "handoff"}
            stored = await call(client, "store_reflection", {
                "content": "We pinned the locale in the parser fixture: CI runs with LANG=C and "
                           "the decimal separator differed.", "project": "parser"})
            text = prompt_text(await client.get_prompt("recall", {"topic": "locale on CI"}))
            assert stored["id"] in text and "LANG=C" in text
            assert "Summarise what these say about the topic" in text
            text = prompt_text(await client.get_prompt("recall", {"topic": "zxqv-unknown-9"}))
            assert "holds nothing on 'zxqv-unknown-9'" in text
            assert "`start` tool" in prompt_text(await client.get_prompt("start"))
            text = prompt_text(await client.get_prompt("checkpoint", {"note": "parser fixed"}))
            assert "`checkpoint` tool with message='parser fixed'" in text
            assert "`end` tool" in prompt_text(await client.get_prompt("end"))

    asyncio.run(scenario())


def test_resources_and_their_list_changed_notices(sd):
    env, home = sd
    project = out_dir(home) / "tinyshop"
    project.mkdir()
    (project / "app.py").write_text("print('hi')\n")
    notices = Notices()

    async def scenario():
        async with gateway_client(env, message_handler=notices) as client:
            listed = {str(r.uri) for r in await client.list_resources()}
            assert listed == {"sessiond://quality/current"}
            templates = {t.uri_template for t in await client.list_resource_templates()}
            assert templates == {"memory://{id}"}

            await call(client, "start", {"working_directory": str(project)})
            await notices.wait(1, 10)  # a new score
            report = resource_text(await client.read_resource("sessiond://quality/current"))
            assert report.startswith("# Quality of tinyshop: ")
            assert "## Recommendations" in report
            stored = await call(client, "store_reflection", {"content": "tinyshop prints hi"})
            memory = resource_text(await client.read_resource(f"memory://{stored['id']}"))
            assert memory.startswith(f"# Memory {stored['id']}") and "tinyshop prints hi" in memory
            with pytest.raises(Exception, match="no memory has id"):
                await client.read_resource("memory://nosuchid")

            seen = notices.changed
            ended = await call(client, "end", {})
            await notices.wait(seen + 1, 10)  # the handoff
            key = Path(ended["handoff_path"]).parent.name
            listed = {str(r.uri) for r in await client.list_resources()}
            assert f"sessiond://handoff/{key}" in listed
            text = resource_text(await client.read_resource(f"sessiond://handoff/{key}"))
            assert text.startswith("# Handoff: tinyshop")
            text = prompt_text(await client.get_prompt("handoff",
                                                      {"working_directory": str(project)}))
            assert "# Handoff: tinyshop" in text and "where the work stands" in text
            with pytest.raises(Exception):  # noqa: B017 - any error: not a resource
                await client.read_resource("sessiond://handoff/..")

    asyncio.run(scenario())


def test_another_windows_handoff_is_noticed(sd):
    """A handshake-era client (Claude Code today) that listed resources is told when another
    window's end writes a handoff. Without a session, the quality report is of its root."""
    env, home = sd
    notices = Notices()
    project = out_dir(home) / "rooted"
    project.mkdir()
    (project / "README.md").write_text("# rooted\n")

    async def scenario():
        async with gateway_client(env, message_handler=notices, mode="legacy",
                                  roots=[project.as_uri()]) as client:
            await client.list_resources()
            await asyncio.sleep(0.5)
            now = datetime.now(UTC)
            cfg = load_config(env, create_dirs=False)
            path = await asyncio.to_thread(handoff.write, cfg, handoff.SessionSummary(
                session_id="other-window", project="elsewhere", root="/srv/elsewhere",
                branch="", started_at=now.isoformat(), ended_at=now.isoformat(),
                duration_s=5, start_score=None, end_score=None, trend=[], memories_total=0,
                memories=[], files_changed=[], files_changed_total=0, commits_since_start=None,
                start_head="", end_head="", recommendations=[]), now)
            await notices.wait(1, 15)
            listed = {str(r.uri) for r in await client.list_resources()}
            assert f"sessiond://handoff/{path.parent.name}" in listed
            # no session in this window: the report is made when read, of the client's root
            report = resource_text(await client.read_resource("sessiond://quality/current"))
            assert report.startswith("# Quality of rooted: ") and str(project) in report

    asyncio.run(scenario())

