"""``sessiond hook EVENT``: what Claude Code runs at its hook events (``sessiond install`` and the
plugin's ``hooks/hooks.json`` register them).

Each reads the hook's JSON on stdin (``session_id``, ``transcript_path``, ``cwd``,
``hook_event_name``, and the event's own fields), does its job and exits 0 whatever happens:
a memory server must never fail the user's session. An error is logged to
``<data dir>/logs/hooks.log`` (with its traceback) and said in one line on stderr, which Claude
Code shows only in its debug view; an overall alarm (``BUDGET_S``) ends a hook that would
otherwise hang.

- ``session-start`` prints the context Claude Code adds to the conversation
  (``sessiond.hook_context``): the project's last handoff, its open recommendations and the
  memories most relevant to it, within ``hook_context_tokens``; nothing when there is nothing.
- ``pre-compact``, ``session-end`` and ``stop`` import the transcript's new turns
  (``sessiond.hook_capture``); ``stop`` only when ``capture_on_stop`` is on.

The project is ``CLAUDE_PROJECT_DIR`` (which Claude Code sets for hooks), else the input's
``cwd``. A project that opted out (``shared.privacy.ignored``) gets nothing done at all.

These processes start once per event, so they import only what they need: the hub client,
the transcript reader and the handoff reader, never fastmcp or the embedding model.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.exitcodes import ExitCode

MAX_INPUT_BYTES = 1024 * 1024
BUDGET_S = {"session-start": 8.0, "pre-compact": 50.0, "session-end": 50.0, "stop": 50.0}

log = logging.getLogger("sessiond.hooks")


class HookInputError(ValueError):
    """The hook's stdin is not what Claude Code sends."""


@dataclass(frozen=True)
class HookInput:
    event: str  # our name: session-start, pre-compact, ...
    session_id: str
    transcript_path: str
    cwd: str
    source: str  # SessionStart: startup | resume | clear | compact
    raw: dict[str, Any]

    @property
    def project_dir(self) -> Path:
        """Where the project is: CLAUDE_PROJECT_DIR, else the hook's cwd, else ours."""
        where = os.environ.get("CLAUDE_PROJECT_DIR") or self.cwd or os.getcwd()
        return Path(os.path.abspath(os.path.expanduser(where)))


def parse_input(event: str, data: bytes) -> HookInput:
    if len(data) > MAX_INPUT_BYTES:
        raise HookInputError(f"hook input is over {MAX_INPUT_BYTES} bytes")
    try:
        value = json.loads(data) if data.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise HookInputError(f"hook input is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HookInputError("hook input is not a JSON object")

    def text(key: str) -> str:
        item = value.get(key)
        return item if isinstance(item, str) and "\x00" not in item else ""

    return HookInput(event=event, session_id=text("session_id")[:200],
                     transcript_path=text("transcript_path"), cwd=text("cwd"),
                     source=text("source"), raw=value)


def run_hook(event: str) -> int:
    """The ``sessiond hook EVENT`` command: exit 0, always."""
    started = time.monotonic()
    cfg = None
    try:
        from shared.config import load_config
        from shared.logs import setup_logging

        cfg = load_config()  # a bad setting: said on stderr, nothing logged (no log dir yet)
        setup_logging(cfg, "hooks")
        _arm_alarm(event)
        hook = parse_input(event, sys.stdin.buffer.read(MAX_INPUT_BYTES + 1))
        outcome = _run(cfg, hook)
        log.info("%s (session %s, %s): %s in %.0f ms", event, hook.session_id or "?",
                 hook.project_dir, outcome, (time.monotonic() - started) * 1000)
    except Exception as exc:  # the hook must not fail the session: logged and said
        where = ""
        if cfg is not None and logging.getLogger().handlers:
            log.exception("%s hook failed", event)
            where = f" (see {cfg.log_dir / 'hooks.log'})"
        _notice(f"sessiond: {event} hook: {type(exc).__name__}: {exc}{where}")
    return ExitCode.OK


def _run(cfg, hook: HookInput) -> str:
    from shared.privacy import ignored

    why = ignored(cfg, hook.project_dir)
    if why is not None:
        return f"skipped: capture is off for this project ({why})"
    if hook.event == "session-start":
        from sessiond.hook_context import session_start

        text = session_start(cfg, hook)
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
        return f"printed {len(text)} characters"
    if hook.event == "stop" and not cfg.capture_on_stop:
        return "skipped: capture_on_stop is off"
    from sessiond.hook_capture import capture

    return capture(cfg, hook)


def stack_pid_runs(cfg) -> bool:
    """``gateway.stack_control.stack_process``'s answer where ``/proc`` gives it without
    psutil (20 ms of the hook's start): the pid of ``run/stack.json`` runs ``sessiond stack``.
    False when unsure: the caller asks psutil then."""
    try:
        pid = int(json.loads((cfg.run_dir / "stack.json").read_text(encoding="utf-8"))["pid"])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    return b"stack" in args and state != b"Z"


def _arm_alarm(event: str) -> None:
    """End the process (exit 0, logged) if the hook runs past its budget."""
    def expired(_signum, _frame):
        log.error("%s hook still running after %.0f s; stopped (what was stored stays)",
                  event, BUDGET_S[event])
        _notice(f"sessiond: {event} hook stopped after {BUDGET_S[event]:.0f} s")
        logging.shutdown()
        os._exit(ExitCode.OK)

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, BUDGET_S[event])


def _notice(line: str) -> None:
    try:
        print(line.replace("\n", " ")[:500], file=sys.stderr, flush=True)
    except OSError:  # stderr is closed: the reason is in the log, if it could be written
        return
