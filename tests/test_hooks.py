"""The Claude Code hooks, run as Claude Code runs them: the commands ``sessiond install``
wrote into a project's ``.claude/settings.json``, through ``sh -c`` in the project, with the
hook's JSON on stdin and a transcript in Claude Code's format under a home directory's
``.claude/projects`` (tool-use and tool-result turns, thinking, a sidechain, a sub-agent
transcript, a slash-command echo, a private part, a truncated last line)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from claude_code import (
    SESSION,
    append_tail,
    ask_store,
    claude_home,
    hook_input,
    install,
    installed_hooks,
    project_memories,
    run_hook,
)
from conftest import kill_stack_processes, private_stack, stack_info, wait_for

from gateway import handoff
from shared import protocol as p
from shared.config import load_config

# In the fixture transcript: every text block of a user or assistant turn, main and sidechain
# (tool_use, tool_result, thinking, the /cost echo, the summary and system lines are not
# conversation), the private part cut out; and the sub-agent transcript's two turns.
STORED_FIRST = {
    "user: The checkout total is off by one cent for orders with three items.",
    "assistant: I'll read the tax module first.",
    "user: Search the repository for every call of line_tax and report the callers.",
    "assistant: line_tax is called from cart/totals.py (per line item)",
    "assistant: Found it: tax is rounded per line item with ROUND_HALF_UP",
    "user: Do it, and keep a note of the decision:",
    "assistant: Done: cart/totals.py now sums unrounded line taxes",
    "user: Check whether invoices/render.py rounds tax per line.",
    "assistant: invoices/render.py calls line_tax per line",
}
STORED_AFTER_TAIL = {
    "assistant: The invoice renderer now rounds once per order too.",
    "user: Thanks. Next: the refund path has the same rounding problem",
}


@pytest.fixture(scope="module")
def sd():
    with private_stack(SESSIOND_PRIVATE_PATTERNS="*INTERNAL ONLY*") as (env, home):
        yield env, home


def new_project(name: str) -> tuple[Path, Path]:
    """A user's home (``<tmp>/home``) and a project in it (``~/work/<name>``)."""
    base = Path(tempfile.mkdtemp(prefix="sdh-"))
    user_home = base / "home"
    project = user_home / "work" / name
    project.mkdir(parents=True)
    return user_home, project


def installed(sd_env, project: Path) -> dict[str, str]:
    done = install(sd_env, project)
    assert done.returncode == 0, done.stderr
    return installed_hooks(project)


def write_handoff(sd_env: dict[str, str], project: Path, recommendation: str) -> None:
    """The handoff a session of ``project`` left, recommending one thing."""
    now = datetime.now(UTC)
    handoff.write(load_config(sd_env), handoff.SessionSummary(
        session_id="s0", project=project.name, root=str(project.resolve()), branch="",
        started_at=now.isoformat(), ended_at=now.isoformat(), duration_s=60,
        start_score=None, end_score=None, trend=[], memories_total=0, memories=[],
        files_changed=[], files_changed_total=0, commits_since_start=None, start_head="",
        end_head="", recommendations=[recommendation]), now)


def starts_with_each(contents: list[str], prefixes: set[str]) -> None:
    for prefix in prefixes:
        assert sum(c.startswith(prefix) for c in contents) == 1, (prefix, contents)


def test_importing_hooks_store_new_turns_once_as_claude_code_runs_them(sd):
    sd_env, _ = sd
    user_home, project = new_project("shop")
    transcript = claude_home(user_home, project)
    hooks = installed(sd_env, project)
    assert set(hooks) == {"session-start", "pre-compact", "session-end", "stop"}

    done = run_hook(hooks["pre-compact"], project, user_home,
                    hook_input("pre-compact", project, transcript))
    assert done.returncode == 0 and done.stdout == b"", done.stderr
    memories = project_memories(sd_env, "shop")
    contents = [m.content for m in memories]
    assert len(memories) == len(STORED_FIRST), contents
    starts_with_each(contents, STORED_FIRST)
    assert {m.kind for m in memories} == {"conversation"}
    assert {m.session_id for m in memories} == {SESSION}
    assert {m.metadata["source"] for m in memories} == {"claude-code"}
    sidechain = [m for m in memories if m.metadata.get("sidechain")]
    assert len(sidechain) == 4  # two inline, two in the sub-agent's transcript
    decision = next(c for c in contents if c.startswith("user: Do it"))
    assert "hunter22" not in decision and "round tax once per order" in decision
    assert not any("hunter22" in c or "ROUND_HALF_UP)\n" in c or "4 passed" in c
                   for c in contents)

    # Claude Code finishes the truncated line and writes another turn: only those come in.
    append_tail(transcript)
    done = run_hook(hooks["stop"], project, user_home, hook_input("stop", project, transcript))
    assert done.returncode == 0 and done.stdout == b"", done.stderr
    contents = [m.content for m in project_memories(sd_env, "shop")]
    assert len(contents) == len(STORED_FIRST) + len(STORED_AFTER_TAIL)
    starts_with_each(contents, STORED_FIRST | STORED_AFTER_TAIL)

    # Nothing new: the session-end hook reads nothing (its cursor), stores nothing.
    done = run_hook(hooks["session-end"], project, user_home,
                    hook_input("session-end", project, transcript))
    assert done.returncode == 0, done.stderr
    assert len(project_memories(sd_env, "shop")) == len(contents)
    log = (Path(sd_env["SESSIOND_HOME"]) / "logs" / "hooks.log").read_text()
    assert "pre-compact (session" in log and "9 new turns, added 9" in log
    assert "stop (session" in log and "2 new turns, added 2" in log
    assert "session-end (session" in log and "0 new turns" in log


def test_a_transcript_read_again_from_the_start_adds_nothing(sd):
    """A cursor lost (or the file replaced): everything is read again, the store keeps one
    copy of each turn."""
    sd_env, home = sd
    user_home, project = new_project("again")
    transcript = claude_home(user_home, project)
    hooks = installed(sd_env, project)
    data = hook_input("pre-compact", project, transcript)
    assert run_hook(hooks["pre-compact"], project, user_home, data).returncode == 0
    first = len(project_memories(sd_env, "again"))
    for cursor in (home / "hooks" / "cursors").glob("*.json"):
        cursor.unlink()
    assert run_hook(hooks["session-end"], project, user_home, data).returncode == 0
    assert len(project_memories(sd_env, "again")) == first == len(STORED_FIRST)


def test_session_start_prints_handoff_recommendations_and_memories(sd):
    sd_env, _ = sd
    user_home, project = new_project("billing")
    transcript = claude_home(user_home, project)
    hooks = installed(sd_env, project)
    assert run_hook(hooks["session-end"], project, user_home,
                    hook_input("session-end", project, transcript)).returncode == 0
    cfg = load_config(sd_env, create_dirs=False)
    ended = datetime.now(UTC)
    summary = handoff.SessionSummary(
        session_id="s-prev", project="billing", root=str(project.resolve()), branch="main",
        started_at=ended.isoformat(), ended_at=ended.isoformat(), duration_s=1800,
        start_score=70.0, end_score=74.0, trend=[], memories_total=2, memories=[],
        files_changed=["cart/totals.py"], files_changed_total=1, commits_since_start=1,
        start_head="a" * 40, end_head="b" * 40,
        recommendations=["Round refunds once per order in refunds/calc.py"])
    handoff.write(cfg, summary, ended)
    stored = ask_store(sd_env, p.Remember(
        kind="reflection", project="billing", tags=["decision"],
        content="Decision: tax is rounded once per order with ROUND_HALF_EVEN; refunds must "
                "follow the same rule in refunds/calc.py"))

    done = run_hook(hooks["session-start"], project, user_home,
                    hook_input("session-start", project, transcript, session="s-new"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert f"sessiond memory of billing ({project.resolve()})" in out
    assert "Last session's handoff" in out and "Worked 30 min on billing" in out
    assert "Open recommendations:\n- Round refunds once per order in refunds/calc.py" in out
    assert f"(id {stored.id})" in out  # the reflection
    assert "Where the last conversation left off:" in out
    assert "user: Thanks. Next: the refund path" not in out  # the tail was never written
    assert "assistant: Done: cart/totals.py now sums" in out  # the newest turn
    assert len(out) <= 1500 * 4

    # The session's own turns are not shown to it again (a resume or a compaction).
    again = run_hook(hooks["session-start"], project, user_home,
                     hook_input("session-start", project, transcript, source="compact"))
    assert "Where the last conversation left off" not in again.stdout.decode()
    assert "Open recommendations" in again.stdout.decode()

    # A small budget: whole lines, most important first, within it.
    small = run_hook(hooks["session-start"], project, user_home,
                     hook_input("session-start", project, transcript, session="s-new"),
                     extra_env={"SESSIOND_HOOK_CONTEXT_TOKENS": "120"})
    text = small.stdout.decode()
    assert 0 < len(text) <= 480 and "Last session's handoff" in text
    assert "Where the last conversation left off" not in text


def test_session_start_prints_nothing_when_memory_holds_nothing(sd):
    sd_env, _ = sd
    user_home, project = new_project("empty")
    hooks = installed(sd_env, project)
    for source in ("startup", "resume", "clear", "compact"):
        done = run_hook(hooks["session-start"], project, user_home,
                        hook_input("session-start", project, None, source=source))
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_an_opted_out_project_is_never_captured(sd):
    sd_env, home = sd
    user_home, project = new_project("secret")
    transcript = claude_home(user_home, project)
    hooks = installed(sd_env, project)
    (project / ".sessiond-ignore").write_text("")
    for event in ("pre-compact", "stop", "session-end"):
        done = run_hook(hooks[event], project, user_home, hook_input(event, project, transcript))
        assert (done.returncode, done.stdout) == (0, b"")
    assert project_memories(sd_env, "secret") == []
    # and the same through the setting, for a project without the file
    user_home2, project2 = new_project("client-work")
    transcript2 = claude_home(user_home2, project2)
    hooks2 = installed(sd_env, project2)
    done = run_hook(hooks2["pre-compact"], project2, user_home2,
                    hook_input("pre-compact", project2, transcript2),
                    extra_env={"SESSIOND_CAPTURE_EXCLUDE": str(project2.parent)})
    assert done.returncode == 0
    assert project_memories(sd_env, "client-work") == []
    log = (home / "logs" / "hooks.log").read_text()
    assert "capture is off for this project" in log and "capture_exclude" in log


def test_configured_private_lines_are_never_stored(sd):
    sd_env, _ = sd
    user_home, project = new_project("notes")
    hooks = installed(sd_env, project)
    transcript = user_home / ".claude" / "projects" / "-notes" / "s1.jsonl"
    transcript.parent.mkdir(parents=True)
    lines = [{"type": "user", "sessionId": "s1", "cwd": str(project), "uuid": "u1",
              "timestamp": "2025-10-14T10:00:00Z",
              "message": {"role": "user", "content": "Deploy steps:\nrun make release\n"
                          "the vault token is INTERNAL ONLY: s3cr3t-vault\nthen tag it"}},
             {"type": "user", "sessionId": "s1", "cwd": str(project), "uuid": "u2",
              "timestamp": "2025-10-14T10:01:00Z",
              "message": {"role": "user", "content": "<PRIVATE>all of this</Private>"}}]
    transcript.write_text("".join(json.dumps(x) + "\n" for x in lines))
    done = run_hook(hooks["pre-compact"], project, user_home,
                    hook_input("pre-compact", project, transcript, session="s1"))
    assert done.returncode == 0, done.stderr
    contents = [m.content for m in project_memories(sd_env, "notes")]
    assert contents == ["user: Deploy steps:\nrun make release\nthen tag it"]
    # the store applies the same rules to what a tool stores
    reply = ask_store(sd_env, p.Remember(kind="note", project="notes",
                                         content="keep <private>not this</private>this"))
    got = ask_store(sd_env, p.GetMemories(ids=[reply.id])).items[0].content
    assert got == "keep this"
    with pytest.raises(Exception, match="only private parts"):
        ask_store(sd_env, p.Remember(kind="note", project="notes",
                                     content="<private>everything</private>"))


def test_hooks_never_fail_the_session(sd):
    """Garbage on stdin, a transcript outside the allowed places or not a file, a bad setting:
    exit 0, nothing on stdout, one line on stderr at most, the reason logged. A transcript not
    written yet is no error at all."""
    sd_env, home = sd
    user_home, project = new_project("robust")
    hooks = installed(sd_env, project)
    cases = [
        (hooks["pre-compact"], b"{not json", {}),
        (hooks["session-start"], b"[1, 2]", {}),
        (hooks["stop"], json.dumps(hook_input("stop", project,
                                              user_home / "missing.jsonl")).encode(), {}),
        (hooks["stop"], json.dumps(hook_input("stop", project, user_home)).encode(), {}),
        (hooks["session-end"], json.dumps(hook_input("session-end", project,
                                                     Path("/etc/hostname"))).encode(), {}),
        (hooks["pre-compact"], json.dumps(hook_input("pre-compact", project, None)).encode(),
         {"SESSIOND_HOOK_CONTEXT_TOKENS": "-5"}),
        (hooks["session-start"], b"", {"SESSIOND_NO_SUCH_SETTING": "1"}),
    ]
    for command, stdin, extra in cases:
        done = run_hook(command, project, user_home, stdin, extra_env=extra)
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout == b""
        assert len(done.stderr.decode().strip().splitlines()) <= 1, done.stderr
    log = (home / "logs" / "hooks.log").read_text()
    assert "hook input is not JSON" in log and "hook input is not a JSON object" in log
    assert f"{user_home} is not a file" in log and "outside the allowed places" in log
    assert "stop (session 5c1d8e2a" in log and "no transcript to read" in log


def test_hooks_start_a_stack_without_waiting_for_it():
    """No stack running: session-start starts one and prints the handoff at once, without
    waiting for it; an importing hook starts one and waits for its hub (not for the model)."""
    base = Path(tempfile.mkdtemp(prefix="sd-"))
    user_home, project = new_project("cold")
    from conftest import base_env

    sd_env = base_env(base)
    try:
        transcript = claude_home(user_home, project)
        hooks = installed(sd_env, project)
        write_handoff(sd_env, project, "Write the refund test")
        assert stack_info(base) is None
        done = run_hook(hooks["session-start"], project, user_home,
                        hook_input("session-start", project, transcript, session="s1"))
        assert done.returncode == 0, done.stderr
        assert "- Write the refund test" in done.stdout.decode()
        wait_for(lambda: stack_info(base), 20, what="the stack the hook started")
        stopped = subprocess.run([sys.executable, "-m", "sessiond", "stop"], env=sd_env,
                                 capture_output=True, text=True, timeout=60, check=False)
        assert stopped.stdout.strip() == "stack stopped", stopped
        done = run_hook(hooks["pre-compact"], project, user_home,  # starts one, waits for it
                        hook_input("pre-compact", project, transcript))
        assert done.returncode == 0, done.stderr
        assert len(project_memories(sd_env, "cold")) == len(STORED_FIRST)
    finally:
        kill_stack_processes(base)


def test_sessiond_import_skips_opted_out_projects_and_private_parts(sd):
    sd_env, _ = sd
    user_home, project = new_project("imported")
    transcript = claude_home(user_home, project)  # recorded in /home/dev/shop
    mine = transcript.with_name("mine.jsonl")
    mine.write_text(json.dumps({
        "type": "user", "sessionId": "s9", "cwd": str(project), "uuid": "u9",
        "timestamp": "2025-10-14T10:00:00Z", "message": {"role": "user", "content":
        "Use the staging DB <private>at 10.1.2.3 with password pw-9981</private> for tests"}})
        + "\n")
    done = subprocess.run([sys.executable, "-m", "sessiond", "import", str(transcript.parent)],
                          env={**sd_env, "HOME": str(user_home),
                               "SESSIOND_CAPTURE_EXCLUDE": "/home/dev"},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    skipped = (f"skipping ~/.claude/projects/{transcript.parent.name}/{transcript.name}: "
               "capture is off for its project (/home/dev/shop is under capture_exclude")
    assert skipped in done.stderr
    assert [m.content for m in project_memories(sd_env, "imported")] == [
        "user: Use the staging DB  for tests"]
    assert project_memories(sd_env, "shop-imported") == []


def test_hook_processes_import_nothing_heavy(sd):
    """A hook starts once per event: it must not load fastmcp, the model or DuckDB."""
    sd_env, _ = sd
    user_home, project = new_project("light")
    transcript = claude_home(user_home, project)
    heavy = {"fastmcp", "mcp", "onnxruntime", "tokenizers", "duckdb", "numpy", "pydantic"}
    for event in ("session-start", "pre-compact"):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "sessiond", "hook", event],
            input=json.dumps(hook_input(event, project, transcript)).encode(),
            env={**sd_env, "HOME": str(user_home), "CLAUDE_PROJECT_DIR": str(project)},
            cwd=project, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0
        loaded = {line.split("|")[-1].strip().split(".")[0]
                  for line in done.stderr.decode().splitlines() if line.startswith("import time:")}
        assert "sessiond" in loaded and not loaded & heavy, loaded & heavy
    assert len(project_memories(sd_env, "light")) == len(STORED_FIRST)


def test_session_start_never_starts_a_stack_beside_a_hub_elsewhere():
    """A window configured to use a hub elsewhere (``hub_host``) is never given a local stack
    by its session-start hook: it prints what the handoff file holds and asks that hub only
    (here nothing listens: the memory part stays empty)."""
    import time

    from apart import free_port
    from conftest import base_env

    base = Path(tempfile.mkdtemp(prefix="sd-"))
    user_home, project = new_project("remote")
    sd_env = base_env(base)
    try:
        transcript = claude_home(user_home, project)
        hooks = installed(sd_env, project)
        write_handoff(sd_env, project, "Ask the team hub")
        remote = {"SESSIOND_HUB_HOST": "127.0.0.1", "SESSIOND_TCP_CLIENT_PORT": str(free_port())}
        done = run_hook(hooks["session-start"], project, user_home,
                        hook_input("session-start", project, transcript, session="s1"),
                        extra_env=remote)
        assert done.returncode == 0, done.stderr
        assert "- Ask the team hub" in done.stdout.decode()
        time.sleep(3)  # a stack spawned by the hook would have written its stack.json by now
        assert stack_info(base) is None
    finally:
        kill_stack_processes(base)
