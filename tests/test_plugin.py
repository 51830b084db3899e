"""The checkout as a Claude Code plugin: the manifest, its marketplace entry, ``.mcp.json``,
``hooks/hooks.json`` and ``commands/`` parse, and everything they name exists: the launcher,
the sessiond commands it is given, the tools the slash commands ask for. The plugin's hook
commands run as Claude Code runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import tempfile
from pathlib import Path

import pytest
from claude_code import hook_input, run_hook
from conftest import REPO

from sessiond.claude_config import HOOKS
from sessiond.main import _parser

CLAUDE_EVENTS = {"PreToolUse", "PostToolUse", "Notification", "UserPromptSubmit", "Stop",
                 "SubagentStop", "PreCompact", "SessionStart", "SessionEnd"}


def load(path: str) -> dict:
    value = json.loads((REPO / path).read_text())
    assert isinstance(value, dict)
    return value


def expand(command: str) -> list[str]:
    """A plugin command as Claude Code runs it: ``${CLAUDE_PLUGIN_ROOT}`` is the checkout."""
    text = command.replace("${CLAUDE_PLUGIN_ROOT:-.}", str(REPO))
    return shlex.split(text.replace("${CLAUDE_PLUGIN_ROOT}", str(REPO)))


def accepts(argv: list[str]) -> bool:
    try:
        _parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def test_manifest_and_marketplace():
    manifest = load(".claude-plugin/plugin.json")
    assert manifest["name"] == "sessiond" and re.fullmatch(r"[a-z0-9-]+", manifest["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"]) and manifest["description"]
    market = load(".claude-plugin/marketplace.json")
    entry = next(p for p in market["plugins"] if p["name"] == manifest["name"])
    assert (REPO / entry["source"] / ".claude-plugin" / "plugin.json").is_file()


def test_mcp_server_names_the_launcher_and_a_real_command():
    servers = load(".mcp.json")["mcpServers"]
    assert set(servers) == {"sessiond"}
    argv = expand(servers["sessiond"]["command"]) + servers["sessiond"]["args"]
    assert Path(argv[0]) == REPO / "bin" / "sessiond"
    assert os.access(argv[0], os.X_OK)
    assert accepts(argv[1:]) and argv[1:] == ["serve"]


def test_hooks_are_claude_code_events_running_sessiond_hook_commands():
    doc = load("hooks/hooks.json")
    hooks = doc["hooks"]
    assert set(hooks) <= CLAUDE_EVENTS and set(hooks) == set(HOOKS)
    for name, groups in hooks.items():
        event, matcher, timeout = HOOKS[name]
        assert len(groups) == 1 and groups[0].get("matcher") == matcher
        (hook,) = groups[0]["hooks"]
        assert hook["type"] == "command" and hook["timeout"] == timeout
        argv = expand(hook["command"])
        assert argv[0] == str(REPO / "bin" / "sessiond") and os.access(argv[0], os.X_OK)
        assert argv[1:] == ["hook", event] and accepts(argv[1:])


def slash_commands() -> list[Path]:
    return sorted((REPO / "commands").glob("*.md"))


def test_slash_commands_have_frontmatter_and_name_real_tools():
    from gateway.server import build_server
    from shared.config import load_config

    with tempfile.TemporaryDirectory(prefix="sd-") as home:
        mcp = build_server(load_config({"SESSIOND_HOME": home}))

        async def names():  # the server's own list, outside its lifespan: no stack starts
            return {t.name for t in await mcp.list_tools()}

        tools = asyncio.run(names())
        assert not (Path(home) / "run" / "stack.json").exists()
    assert {p.stem for p in slash_commands()} >= {"start", "checkpoint", "end", "recall",
                                                  "handoff", "remember"}
    for path in slash_commands():
        text = path.read_text()
        head = re.match(r"---\n(.*?)\n---\n(.+)", text, re.DOTALL)
        assert head, f"{path.name}: no frontmatter"
        fields = dict(line.split(": ", 1) for line in head.group(1).splitlines())
        assert fields.get("description"), path.name
        if "argument-hint" in fields:
            assert "$ARGUMENTS" in head.group(2), path.name
        named = set(re.findall(r"`([a-z_]+)` tool", head.group(2)))
        named |= set(re.findall(r"`([a-z_]+)` for", head.group(2)))
        assert named, f"{path.name} names no sessiond tool"
        assert named <= tools, f"{path.name} names unknown tools {named - tools}"


@pytest.mark.parametrize("event", ["session-start", "stop"])
def test_the_plugin_hook_commands_run(event, tmp_path):
    """Through the launcher, in a project with nothing stored and no transcript yet: exit 0,
    nothing printed (and no stack started for nothing by the Stop hook)."""
    hooks = load("hooks/hooks.json")["hooks"]
    name = next(n for n, (e, _, _) in HOOKS.items() if e == event)
    command = hooks[name][0]["hooks"][0]["command"]
    project = tmp_path / "proj"
    project.mkdir()
    home = Path(tempfile.mkdtemp(prefix="sd-"))
    try:
        done = run_hook(command, project, tmp_path, hook_input(event, project, None),
                        extra_env={"CLAUDE_PLUGIN_ROOT": str(REPO), "SESSIOND_HOME": str(home),
                                   "SESSIOND_HOOK_CONTEXT_TOKENS": "0"})
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
        assert "hook" in (home / "logs" / "hooks.log").read_text()
        assert not (home / "run" / "stack.json").exists()
    finally:
        from conftest import kill_stack_processes

        kill_stack_processes(home)
