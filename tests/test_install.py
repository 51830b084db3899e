"""``sessiond install`` / ``uninstall`` into temporary projects and home directories: what is
there stays, a second install changes nothing, uninstall puts every byte back."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from claude_code import installed_hooks, no_claude_path
from conftest import REPO, base_env

EXISTING = """{
    "permissions": {"allow": ["Bash(npm test)"], "deny": []},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./lint.sh"}]}],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send 'Claude is done'"}]}]
    },
    "env": {"FOO": "bar"}
}"""  # four-space indent, no newline at the end: restored exactly as it was


@pytest.fixture
def env():
    home = Path(tempfile.mkdtemp(prefix="sd-"))
    user = Path(tempfile.mkdtemp(prefix="sdu-"))
    return {**base_env(home), "HOME": str(user), "PATH": no_claude_path(os.environ)}


def sessiond(env, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sessiond", *args], env=env,
                          cwd=cwd or env["HOME"], capture_output=True, text=True, timeout=60,
                          check=False)


def project_with_settings(env) -> tuple[Path, Path]:
    project = Path(env["HOME"]) / "shop"
    (project / ".claude").mkdir(parents=True)
    settings = project / ".claude" / "settings.json"
    settings.write_text(EXISTING)
    return project, settings


def test_project_scope_keeps_what_is_there_is_idempotent_and_uninstalls_byte_for_byte(env):
    project, settings = project_with_settings(env)
    done = sessiond(env, "install", "--scope", "project", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "add hooks SessionStart, PreCompact, SessionEnd, Stop" in done.stdout
    value = json.loads(settings.read_text())
    assert value["permissions"] == {"allow": ["Bash(npm test)"], "deny": []}
    assert value["env"] == {"FOO": "bar"}
    assert value["hooks"]["PreToolUse"] == json.loads(EXISTING)["hooks"]["PreToolUse"]
    stop = value["hooks"]["Stop"]
    assert stop[0] == {"hooks": [{"type": "command", "command": "notify-send 'Claude is done'"}]}
    assert len(stop) == 2 and stop[1]["hooks"][0]["command"].endswith("hook stop")
    assert value["hooks"]["SessionStart"][0]["matcher"] == "startup|resume|clear|compact"
    assert set(installed_hooks(project)) == {"session-start", "pre-compact", "session-end",
                                             "stop"}
    server = json.loads((project / ".mcp.json").read_text())["mcpServers"]["sessiond"]
    assert server["args"][-1] == "serve" and Path(server["command"]).exists()
    assert server["env"]["SESSIOND_HOME"] == env["SESSIOND_HOME"]
    backups = list((Path(env["SESSIOND_HOME"]) / "install" / "backups").iterdir())
    assert [b.read_text() for b in backups] == [EXISTING]

    after_first = settings.read_bytes(), (project / ".mcp.json").read_bytes()
    records = {p: p.read_bytes() for p in (Path(env["SESSIOND_HOME"]) / "install").glob("*.json")}
    again = sessiond(env, "install", "--scope", "project", cwd=project)
    assert again.returncode == 0, again.stderr
    assert "hooks already in" in again.stdout and "already registered" in again.stdout
    assert (settings.read_bytes(), (project / ".mcp.json").read_bytes()) == after_first
    assert {p: p.read_bytes() for p in records} == records

    gone = sessiond(env, "uninstall", "--scope", "project", cwd=project)
    assert gone.returncode == 0, gone.stderr
    assert settings.read_text() == EXISTING  # byte for byte
    assert not (project / ".mcp.json").exists()  # install created it
    assert "nothing to remove" in sessiond(env, "uninstall", "--scope", "project",
                                           cwd=project).stdout


def test_uninstall_keeps_changes_made_since_install(env):
    project, settings = project_with_settings(env)
    mcp = project / ".mcp.json"
    mcp_before = '{"mcpServers": {"db": {"command": "db-mcp"}}}\n'
    mcp.write_text(mcp_before)
    assert sessiond(env, "install", "--scope", "project", cwd=project).returncode == 0
    assert set(json.loads(mcp.read_text())["mcpServers"]) == {"db", "sessiond"}
    value = json.loads(settings.read_text())
    value["model"] = "opus"  # the user changes something else meanwhile
    value["hooks"]["Stop"][0]["hooks"].append({"type": "command", "command": "say done"})
    settings.write_text(json.dumps(value))
    assert sessiond(env, "uninstall", "--scope", "project", cwd=project).returncode == 0
    left = json.loads(settings.read_text())
    original = json.loads(EXISTING)
    assert left["model"] == "opus"
    assert left["hooks"]["Stop"] == [{"hooks": [
        *original["hooks"]["Stop"][0]["hooks"], {"type": "command", "command": "say done"}]}]
    assert set(left["hooks"]) == {"PreToolUse", "Stop"}
    assert mcp.read_text() == mcp_before  # untouched since install: restored byte for byte


def test_user_scope_edits_the_home_files_and_takes_them_back(env):
    user = Path(env["HOME"])
    state = user / ".claude.json"
    state_before = '{\n  "numStartups": 41,\n  "projects": {}\n}\n'
    state.write_text(state_before)
    state.chmod(0o600)
    done = sessiond(env, "install")  # --scope user is the default
    assert done.returncode == 0, done.stderr
    settings = user / ".claude" / "settings.json"
    assert set(json.loads(settings.read_text())["hooks"]) == {"SessionStart", "PreCompact",
                                                              "SessionEnd", "Stop"}
    value = json.loads(state.read_text())
    assert value["numStartups"] == 41 and "sessiond" in value["mcpServers"]
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert sessiond(env, "uninstall").returncode == 0
    assert state.read_text() == state_before
    assert not settings.exists() and not (user / ".claude").exists()


def test_dry_run_and_bad_files_change_nothing(env):
    project, settings = project_with_settings(env)
    done = sessiond(env, "install", "--scope", "project", "--dry-run", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("would: add hooks")
    assert settings.read_text() == EXISTING and not (project / ".mcp.json").exists()
    assert not (Path(env["SESSIOND_HOME"]) / "install").exists()
    settings.write_text('{"hooks": ')
    bad = sessiond(env, "install", "--scope", "project", cwd=project)
    assert bad.returncode == 1 and "is not valid JSON" in bad.stderr
    assert settings.read_text() == '{"hooks": ' and not (project / ".mcp.json").exists()
    settings.write_text('{"hooks": []}')
    bad = sessiond(env, "install", "--scope", "project", cwd=project)
    assert bad.returncode == 1 and '"hooks" is not a JSON object' in bad.stderr


def test_with_the_claude_cli_the_server_is_added_and_removed_through_it(env):
    """The ``claude`` CLI cannot be installed here (no network); a stand-in on PATH records
    how it is called and answers as the real one does (``mcp get`` fails for an unknown
    server)."""
    bindir = Path(tempfile.mkdtemp(prefix="sdb-"))
    calls = bindir / "calls.log"
    fake = bindir / "claude"
    fake.write_text(f"#!/bin/sh\necho \"$PWD|$*\" >> {calls}\n"
                    "[ \"$2\" = get ] && exit 1\nexit 0\n")
    fake.chmod(0o755)
    env = {**env, "PATH": f"{bindir}{os.pathsep}{env['PATH']}"}
    project, _ = project_with_settings(env)
    assert sessiond(env, "install", "--scope", "project", cwd=project).returncode == 0
    assert sessiond(env, "uninstall", "--scope", "project", cwd=project).returncode == 0
    lines = calls.read_text().splitlines()
    assert lines[0] == f"{project}|mcp get sessiond"
    where, args = lines[1].split("|")
    assert where == str(project) and args.startswith("mcp add --scope project --env=SESSIOND_")
    assert args.endswith(" sessiond -- " + " ".join(
        [str(REPO / ".venv" / "bin" / "sessiond")] if (REPO / ".venv/bin/sessiond").exists()
        else [sys.executable, "-m", "sessiond"]) + " serve")
    assert lines[2] == f"{project}|mcp remove --scope project sessiond"
    assert not (project / ".mcp.json").exists()
