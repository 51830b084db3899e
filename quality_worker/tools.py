"""Which external tools the quality jobs can run, and their versions.

Each tool found (on PATH; ruff also as installed with sessiond) runs as ``NAME --version`` in its
own process, all at once, with a time limit and a cap on the output read (a tool that hangs is
killed, one that floods its output is cut off and killed), so one bad executable on PATH cannot
wedge or bloat the worker.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from shared import protocol as p

TIMEOUT_S = 3.0  # for all the tools together (pytest --version alone takes ~0.3 s)
MAX_OUTPUT = 4096  # bytes read from a tool
MAX_VERSION_CHARS = 200
ALTERNATES = {"python": ("python", "python3")}  # names tried in order
CACHE_S = 300.0
_cache: dict[tuple[str, ...], tuple[float, list[p.ToolInfo]]] = {}
_cache_lock = threading.Lock()


def find_tool(name: str) -> str | None:
    """The executable for ``name``: on PATH (trying its other names), else for ruff the binary
    installed with sessiond (a dependency)."""
    found = next(filter(None, map(shutil.which, ALTERNATES.get(name, (name,)))), None)
    if found is None and name == "ruff":
        from quality_worker.lint import ruff_binary

        found = ruff_binary()
    return found


def probe_tools_cached(names: tuple[str, ...], *, cwd: Path | None = None,
                       max_age_s: float = CACHE_S) -> list[p.ToolInfo]:
    """``probe_tools``, reusing an answer younger than ``max_age_s`` (assessments run often;
    installed tools rarely change)."""
    with _cache_lock:
        hit = _cache.get(names)
        if hit is not None and time.monotonic() - hit[0] < max_age_s:
            return [msgspec.structs.replace(t) for t in hit[1]]
    tools = probe_tools(names, cwd=cwd)
    with _cache_lock:
        _cache[names] = (time.monotonic(), tools)
    return [msgspec.structs.replace(t) for t in tools]


@dataclass
class _Run:
    name: str
    path: str
    proc: subprocess.Popen
    out: bytearray = field(default_factory=bytearray)
    cut: bool = False  # stopped reading: more output than MAX_OUTPUT


def probe_tools(names: tuple[str, ...] = p.PROBED_TOOLS, *, cwd: Path | None = None,
                timeout_s: float = TIMEOUT_S) -> list[p.ToolInfo]:
    """One ``ToolInfo`` per name, in order. ``cwd``: where the tools run (not a project whose
    config files they would read)."""
    found: dict[str, p.ToolInfo] = {}
    runs: list[_Run] = []
    for name in names:
        path = find_tool(name)
        if path is None:
            found[name] = p.ToolInfo(name=name, found=False, error="not on PATH")
            continue
        try:
            proc = subprocess.Popen([path, "--version"], cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            found[name] = p.ToolInfo(name=name, found=True, path=path, error=f"cannot run: {exc}")
            continue
        runs.append(_Run(name, path, proc))
    deadline = time.monotonic() + timeout_s
    try:
        _read_all(runs, deadline)
        for run in runs:
            found[run.name] = _finish(run, deadline, timeout_s)
    finally:
        for run in runs:
            _kill(run.proc)
            run.proc.wait()
            run.proc.stdout.close()
    return [found[name] for name in names]


def _kill(proc: subprocess.Popen) -> None:
    """Kill the tool and anything it started (it leads its own session)."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it has exited and been reaped meanwhile


def _read_all(runs: list[_Run], deadline: float) -> None:
    """Read every tool's output until EOF, ``MAX_OUTPUT`` bytes, or the deadline."""
    with selectors.DefaultSelector() as sel:
        for run in runs:
            sel.register(run.proc.stdout, selectors.EVENT_READ, run)
        while sel.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                run: _Run = key.data
                chunk = os.read(key.fd, MAX_OUTPUT)
                room = MAX_OUTPUT - len(run.out)
                run.out += chunk[:room]
                if not chunk or len(chunk) > room:
                    run.cut = len(chunk) > room
                    sel.unregister(key.fileobj)


def _finish(run: _Run, deadline: float, timeout_s: float) -> p.ToolInfo:
    info = p.ToolInfo(name=run.name, found=True, path=run.path)
    if run.cut:
        _kill(run.proc)  # its first line is all we need
    try:
        code = run.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(run.proc)
        info.error = f"no answer to --version within {timeout_s:.0f} s"
        return info
    text = run.out.decode("utf-8", errors="replace").strip()
    first = text.splitlines()[0].strip()[:MAX_VERSION_CHARS] if text else ""
    if code != 0 and not run.cut:
        info.error = f"--version exited with {code}" + (f": {first}" if first else "")
    elif not first:
        info.error = "--version printed nothing"
    else:
        info.version = first
    return info
