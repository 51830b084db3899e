"""What sessiond adds to Claude Code's configuration, as JSON values: the hooks (in a
``settings.json``) and the MCP server (in ``.mcp.json`` or ``~/.claude.json``), and how each is
merged into, found in and taken out of a file's JSON without touching anything else in it.

Hooks are Claude Code's documented shape::

    {"hooks": {"SessionStart": [{"matcher": "startup|resume|clear|compact",
                                 "hooks": [{"type": "command", "command": "...", "timeout": 10}]}]}}

Ours are recognised by their command (``<sessiond> hook <event>``), so nothing else has to be
written into the user's settings to find them again.
"""

from __future__ import annotations

import copy
import os
import shlex
import sys
from pathlib import Path
from typing import Any

SERVER_NAME = "sessiond"
# Claude Code's event -> (our hook command's event, matcher, timeout in seconds)
HOOKS: dict[str, tuple[str, str | None, int]] = {
    "SessionStart": ("session-start", "startup|resume|clear|compact", 15),
    "PreCompact": ("pre-compact", None, 60),
    "SessionEnd": ("session-end", None, 60),
    "Stop": ("stop", None, 60),
}


def sessiond_command() -> list[str]:
    """How to start this sessiond: the console script beside this Python (a venv's ``bin``),
    else this Python with ``-m sessiond``."""
    script = Path(sys.executable).with_name("sessiond")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "sessiond"]


def carried_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The ``SESSIOND_*`` settings of the installing shell, carried into what Claude Code
    starts, so its hooks and server use the same data dir and settings."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in sorted(environ.items()) if k.startswith("SESSIOND_")}


def hook_command(event: str, env: dict[str, str]) -> str:
    prefix = ["env", *(f"{k}={v}" for k, v in env.items())] if env else []
    return shlex.join([*prefix, *sessiond_command(), "hook", event])


def hook_entries(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Claude Code event -> the matcher group sessiond adds to it."""
    out = {}
    for name, (event, matcher, timeout) in HOOKS.items():
        group: dict[str, Any] = {} if matcher is None else {"matcher": matcher}
        group["hooks"] = [{"type": "command", "command": hook_command(event, env),
                           "timeout": timeout}]
        out[name] = group
    return out


def server_entry(env: dict[str, str]) -> dict[str, Any]:
    cmd = sessiond_command()
    entry: dict[str, Any] = {"type": "stdio", "command": cmd[0], "args": [*cmd[1:], "serve"]}
    if env:
        entry["env"] = dict(env)
    return entry


def is_ours(command: Any, event: str) -> bool:
    """Whether a hook's command runs ``sessiond hook <event>`` (whatever path or env it has)."""
    if not isinstance(command, str):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    for i in range(len(words) - 2):
        if (words[i] == "sessiond" or words[i].endswith("/sessiond")) \
                and words[i + 1:i + 3] == ["hook", event]:
            return True
    return False


def _groups(settings: dict[str, Any], name: str) -> list[Any]:
    hooks = settings.get("hooks")
    groups = hooks.get(name) if isinstance(hooks, dict) else None
    return groups if isinstance(groups, list) else []


def has_hook(settings: dict[str, Any], name: str) -> bool:
    event = HOOKS[name][0]
    return any(is_ours(h.get("command"), event)
               for g in _groups(settings, name) if isinstance(g, dict)
               for h in g.get("hooks", []) if isinstance(h, dict))


def with_hooks(settings: dict[str, Any], env: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """``settings`` with sessiond's hooks added where missing; the events added."""
    if "hooks" in settings and not isinstance(settings["hooks"], dict):
        raise ValueError('its "hooks" is not a JSON object')
    out = copy.deepcopy(settings)
    added = []
    for name, group in hook_entries(env).items():
        if has_hook(out, name):
            continue
        hooks = out.setdefault("hooks", {})
        if name in hooks and not isinstance(hooks[name], list):
            raise ValueError(f'its "hooks.{name}" is not a JSON list')
        hooks.setdefault(name, []).append(group)
        added.append(name)
    return out, added


def without_hooks(settings: dict[str, Any], names: list[str],
                  original: dict[str, Any] | None) -> dict[str, Any]:
    """``settings`` without sessiond's hooks of ``names``; a group, event list or ``hooks``
    object left empty goes too, unless ``original`` (the file before install) had it."""
    out = copy.deepcopy(settings)
    hooks = out.get("hooks")
    if not isinstance(hooks, dict):
        return out
    before = (original or {}).get("hooks")
    before = before if isinstance(before, dict) else {}
    for name in names:
        groups = hooks.get(name)
        if not isinstance(groups, list):
            continue
        event = HOOKS[name][0]
        kept = []
        for g in groups:
            if isinstance(g, dict) and isinstance(g.get("hooks"), list):
                inner = [h for h in g["hooks"]
                         if not (isinstance(h, dict) and is_ours(h.get("command"), event))]
                if not inner and len(inner) != len(g["hooks"]):
                    continue  # the group held only ours
                g = {**g, "hooks": inner}
            kept.append(g)
        if kept or name in before:
            hooks[name] = kept
        else:
            del hooks[name]
    if not hooks and "hooks" not in (original or {}):
        del out["hooks"]
    return out


def with_server(config: dict[str, Any], env: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """``config`` (a ``.mcp.json`` or ``~/.claude.json``) with the sessiond server in its
    ``mcpServers``; whether it was added (an entry of that name is never replaced)."""
    servers = config.get("mcpServers", {})
    if not isinstance(servers, dict):
        raise ValueError('its "mcpServers" is not a JSON object')  # noqa: TRY004 - a bad file
    if SERVER_NAME in servers:
        return config, False
    out = copy.deepcopy(config)
    out.setdefault("mcpServers", {})[SERVER_NAME] = server_entry(env)
    return out, True


def without_server(config: dict[str, Any], original: dict[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(config)
    servers = out.get("mcpServers")
    if isinstance(servers, dict) and SERVER_NAME in servers:
        del servers[SERVER_NAME]
        if not servers and "mcpServers" not in (original or {}):
            del out["mcpServers"]
    return out
