"""Lint findings from ruff (``ruff check --output-format json-lines``), counted by directory,
by rule and by whether ruff can fix them.

ruff runs with ``--no-fix`` (a project's ``fix = true`` must not make an assessment edit its
files) and its cache under the data dir, so nothing is written into the project. json-lines is
the JSON format one finding per line: when the output passes the cap, the lines read still
count (the total is then "at least"). The ruff binary is the one on PATH, else the one
installed with sessiond (a dependency).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from quality_worker import procs

MAX_OUTPUT = 4 << 20  # ~10k findings


def ruff_binary() -> str | None:
    found = shutil.which("ruff", path=procs.clean_env().get("PATH"))
    if found:
        return found
    try:
        from ruff import find_ruff_bin
    except ImportError:
        return None
    try:
        return os.fsdecode(find_ruff_bin())
    except FileNotFoundError:
        return None


@dataclass
class Lint:
    findings: int = 0
    fixable: int = 0
    files: set[str] = field(default_factory=set)
    by_dir: Counter = field(default_factory=Counter)
    by_code: Counter = field(default_factory=Counter)
    cut: bool = False  # more findings than were read
    error: str = ""  # why there is no result (ruff missing, failed, timed out)
    timed_out: bool = False

    def where(self) -> str:
        """"in src/" or "8 in src/, 4 in tests/"."""
        top = self.by_dir.most_common(3)
        if len(self.by_dir) == 1:
            return f"in {top[0][0]}"
        rest = len(self.by_dir) - len(top)
        parts = [f"{n} in {d}" for d, n in top] + ([f"{rest} more places"] if rest > 0 else [])
        return ", ".join(parts)

    def common(self) -> str:
        return ", ".join(f"{code} ({n})" for code, n in self.by_code.most_common(3))


def run_ruff(root: Path, cache_home: Path, timeout_s: float) -> Lint:
    binary = ruff_binary()
    if binary is None:
        return Lint(error="ruff is not installed (not on PATH, not installed with sessiond)")
    cache = cache_home / "ruff" / hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    argv = [binary, "check", "--no-fix", "--output-format", "json-lines", "--cache-dir",
            str(cache), "."]
    try:
        done = procs.run(argv, cwd=root, timeout_s=timeout_s, max_output=MAX_OUTPUT,
                         stop_when_cut=True)
    except OSError as exc:
        return Lint(error=f"ruff cannot be run: {exc}")
    if done.timed_out:
        return Lint(error=f"ruff did not finish in {timeout_s:.1f} s; it was stopped",
                    timed_out=True)
    if done.code not in (0, 1) and not done.cut:
        return Lint(error=f"ruff failed (exit {done.code}): {done.error_line()[:300]}")
    lint = Lint(cut=done.cut)
    lines = done.out.splitlines()
    if done.cut and lines:
        lines = lines[:-1]
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        _count(lint, root, item)
    return lint


def _count(lint: Lint, root: Path, item: dict) -> None:
    filename = str(item.get("filename") or "")
    rel = os.path.relpath(filename, root) if os.path.isabs(filename) else filename
    head, sep, _ = rel.partition(os.sep)
    lint.findings += 1
    lint.files.add(rel)
    lint.by_dir[f"{head}/" if sep else "the top level"] += 1
    lint.by_code[item.get("code") or "syntax-error"] += 1
    if item.get("fix"):
        lint.fixable += 1
