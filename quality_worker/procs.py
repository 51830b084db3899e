"""Bounded subprocesses: every git and tool process of the quality jobs runs through ``run``.

Each process leads a session of its own (so the hooks and helpers it starts are in its process
group), gets no stdin, a time limit and a cap on the output kept. At the limit the whole group is
killed; once the leader has exited, whatever it left behind in its group is killed too (a hook's
background child would otherwise hold the pipes open, or the repository, after the job).

When the worker stops, ``stop_all`` kills every group still running, so its jobs end (and
clean up) within the supervisor's grace instead of being killed in the middle.

``clean_env`` is the environment git and the tools run with: no variable that points git at
another repository or index, no pager, no editor, no terminal prompt, messages in English.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MAX_OUTPUT = 1 << 20  # bytes kept of each of stdout and stderr
EXIT_GRACE_S = 0.2  # the leader exited: how long its leftovers may keep the pipes open

# Git variables kept from the worker's environment: the identity and which config files to read.
# Every other GIT_* variable is dropped (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, ... would point
# git at another repository or index; GIT_EDITOR, GIT_PAGER, GIT_ASKPASS could wait for a human).
KEPT_GIT_VARS = frozenset({
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
    "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM",
})


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in KEPT_GIT_VARS}
    # English messages (some are parsed) without changing how file names are encoded.
    if "LC_ALL" in env:
        env.setdefault("LC_CTYPE", env.pop("LC_ALL"))
    env.pop("LANGUAGE", None)
    env.update({
        "LC_MESSAGES": "C",
        "GIT_TERMINAL_PROMPT": "0",  # never ask for credentials
        "GIT_EDITOR": "false",  # anything wanting an editor fails at once instead of waiting
        "GIT_SEQUENCE_EDITOR": "false",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
        "GIT_OPTIONAL_LOCKS": "0",  # git status must not take index.lock behind the user's back
        "GCM_INTERACTIVE": "never",
        "NO_COLOR": "1",
    })
    env.update(extra)
    return env


_live: set[subprocess.Popen] = set()  # the processes running now, for stop_all
_live_lock = threading.Lock()
_stopped = threading.Event()


def stop_all() -> None:
    """The worker is stopping: kill every process group running now and refuse new ones, so
    the jobs waiting on them end at once and clean up (a commit releases index.lock)."""
    _stopped.set()
    with _live_lock:
        for proc in list(_live):
            _kill_group(proc)


def stopped() -> bool:
    return _stopped.is_set()


@dataclass
class Finished:
    argv: list[str]
    code: int | None  # None: it was killed at the time limit
    out: bytes
    err: bytes
    timed_out: bool
    cut: bool  # it printed more than the cap: the rest was dropped (or it was stopped for it)
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.code == 0

    def text(self, limit: int = 4000) -> str:
        """stdout and stderr together, decoded, stripped, at most ``limit`` characters."""
        both = b"\n".join(part.strip() for part in (self.out, self.err) if part.strip())
        text = both.decode("utf-8", errors="replace")
        return text if len(text) <= limit else text[:limit] + " [...]"

    def error_line(self) -> str:
        """The first line that says what went wrong (git's ``fatal: ...``), for messages."""
        lines = [ln.strip() for ln in self.err.decode("utf-8", "replace").splitlines()
                 if ln.strip()]
        for line in lines:
            if line.startswith(("fatal:", "error:")):
                return line
        return lines[0] if lines else f"exit status {self.code}"


def run(argv: list[str], *, cwd: Path, timeout_s: float, env: dict[str, str] | None = None,
        max_output: int = MAX_OUTPUT, stop_when_cut: bool = False,
        while_stopping: bool = False) -> Finished:
    """Run ``argv`` to its end or the time limit. ``stop_when_cut``: kill it as soon as it has
    printed more than ``max_output`` (a reader that only needs the beginning); otherwise the
    rest is read and dropped, so a chatty hook does not fail a commit. ``while_stopping``: run
    even after ``stop_all`` (a quick read a job's cleanup needs). Raises ``OSError`` when the
    program cannot be started."""
    t0 = time.monotonic()
    deadline = t0 + max(0.0, timeout_s)
    with _live_lock:
        if _stopped.is_set() and not while_stopping:
            raise OSError(f"not started: the quality worker is stopping ({argv[0]})")
        proc = subprocess.Popen(argv, cwd=cwd, env=clean_env() if env is None else env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        _live.add(proc)
    out, err = bytearray(), bytearray()
    bufs = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    cut = timed_out = False
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            exited_at: float | None = None
            while sel.get_map():
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if now >= deadline:
                    timed_out = proc.poll() is None
                    break
                if exited_at is not None and now - exited_at > EXIT_GRACE_S:
                    break  # the leader is gone; a leftover child holds the pipes
                for key, _ in sel.select(min(deadline - now, 0.05)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf = bufs[key.fd]
                    room = max_output - len(buf)
                    buf += chunk[:room]
                    if len(chunk) > room:
                        cut = True
                if cut and stop_when_cut:
                    break
        if not timed_out and proc.poll() is None and not (cut and stop_when_cut):
            # Pipes closed but the leader still runs: give it the rest of the time limit.
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        with _live_lock:
            _live.discard(proc)
            _kill_group(proc)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    timed_out = timed_out or (_stopped.is_set() and proc.returncode == -signal.SIGKILL)
    code = None if timed_out else proc.returncode
    return Finished(argv, code, bytes(out), bytes(err), timed_out, cut, time.monotonic() - t0)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the process group the child leads: it, if still running, and what it started.
    The group id is the leader's pid, which the kernel keeps reserved while the group has
    members; an empty group is simply not found."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left in the group
