"""Claude Code's side of the hooks, for the tests: its directory layout under a home
directory, its transcripts (``tests/data/claude_code``, in the format of
``~/.claude/projects/<project>/<session>.jsonl``), and running a hook command exactly as it
does: the command string from a settings file through ``sh -c``, in the project's directory,
with the hook's JSON on stdin and ``CLAUDE_PROJECT_DIR`` set."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.transport import endpoints

DATA = REPO / "tests" / "data" / "claude_code"
SESSION = "5c1d8e2a-7f3b-4e9a-b1c6-0d2e4f6a8b10"
EVENT_NAMES = {"session-start": "SessionStart", "pre-compact": "PreCompact",
               "session-end": "SessionEnd", "stop": "Stop"}


def claude_home(base: Path, project: Path) -> Path:
    """``base`` as a user's home with Claude Code's projects directory for ``project``; the
    fixture session's transcript (without the tail still to be written) and its sub-agent's
    transcript copied in. Returns the transcript's path."""
    folder = base / ".claude" / "projects" / str(project).replace("/", "-")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / f"{SESSION}.jsonl", folder / f"{SESSION}.jsonl")
    shutil.copytree(DATA / SESSION, folder / SESSION, dirs_exist_ok=True)
    return folder / f"{SESSION}.jsonl"


def append_tail(transcript: Path) -> None:
    """What Claude Code writes next: the rest of the truncated line, and one more turn."""
    with open(transcript, "ab") as f:
        f.write((DATA / f"{SESSION}.tail").read_bytes())


def installed_hooks(project: Path) -> dict[str, str]:
    """Our event name -> the command Claude Code would run, from the project's settings."""
    settings = json.loads((project / ".claude" / "settings.json").read_text())
    out = {}
    for claude_event, groups in settings["hooks"].items():
        for group in groups:
            for hook in group["hooks"]:
                if " hook " in hook["command"] and "sessiond" in hook["command"]:
                    ours = next(k for k, v in EVENT_NAMES.items() if v == claude_event)
                    out[ours] = hook["command"]
    return out


def install(env: dict[str, str], project: Path, *args: str) -> subprocess.CompletedProcess:
    """``sessiond install --scope project`` into ``project``, with no ``claude`` CLI on PATH."""
    return subprocess.run([sys.executable, "-m", "sessiond", "install", "--scope", "project",
                           "--project-dir", str(project), *args],
                          env={**env, "PATH": no_claude_path(env)}, cwd=project, check=False,
                          capture_output=True, text=True, timeout=60)


def no_claude_path(env: dict[str, str]) -> str:
    parts = [d for d in env.get("PATH", os.defpath).split(os.pathsep)
             if d and not (Path(d) / "claude").exists()]
    return os.pathsep.join(parts)


def hook_input(event: str, project: Path, transcript: Path | None, session: str = SESSION,
               **extra) -> dict:
    data = {"session_id": session, "transcript_path": str(transcript) if transcript else "",
            "cwd": str(project), "hook_event_name": EVENT_NAMES[event],
            "permission_mode": "default"}
    if event == "session-start":
        data["source"] = extra.pop("source", "startup")
    if event == "pre-compact":
        data.update(trigger="auto", custom_instructions="")
    if event == "session-end":
        data["reason"] = "prompt_input_exit"
    if event == "stop":
        data["stop_hook_active"] = False
    data.update(extra)
    return data


def run_hook(command: str, project: Path, home: Path, data: dict | bytes, *,
             extra_env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a hook command as Claude Code does: ``sh -c``, in the project, JSON on stdin. The
    environment is a user's (PATH, HOME) plus CLAUDE_PROJECT_DIR; no SESSIOND_* variable
    reaches it but what the command itself carries."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LANG": "C.UTF-8",
           "CLAUDE_PROJECT_DIR": str(project), **(extra_env or {})}
    stdin = data if isinstance(data, bytes) else json.dumps(data).encode()
    return subprocess.run(["sh", "-c", command], input=stdin, env=env, cwd=project,
                          capture_output=True, timeout=timeout, check=False)


async def _ask(sd_env: dict[str, str], body: p.RequestBody):
    cfg = load_config(sd_env, create_dirs=False)
    client = HubClient(endpoints(cfg).clients, default_timeout_s=10)
    try:
        return await client.request(p.SERVICE_STORE, body, idempotent=True,
                                    retry_unavailable=True)
    finally:
        client.close()


def ask_store(sd_env: dict[str, str], body: p.RequestBody):
    """One request to the store of the stack ``sd_env`` names."""
    return asyncio.run(_ask(sd_env, body))


def project_memories(sd_env: dict[str, str], project: str, limit: int = 100) -> list[p.Memory]:
    hits = ask_store(sd_env, p.Search(query="", projects=[project], order="newest",
                                      limit=limit))
    return [h.memory for h in hits.hits]
