"""The quality worker's tool probe with real executables on PATH: versions, missing tools, and
tools that fail, hang or flood their output (bounded time and memory)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from quality_worker.tools import MAX_VERSION_CHARS, probe_tools


def tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


# The fake tools' own commands, by absolute path: PATH holds only the fake tools.
SLEEP, YES, TR = (shutil.which(c) for c in ("sleep", "yes", "tr"))


@pytest.fixture
def bin_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", str(d))
    return d


def test_versions_missing_and_failing_tools(bin_dir, tmp_path):
    tool(bin_dir, "git", 'echo "git version 9.9.9"')
    tool(bin_dir, "python3", 'echo "Python 3.99.0" >&2')  # python found by its other name
    tool(bin_dir, "ruff", 'echo "no such option" >&2; exit 2')
    tool(bin_dir, "pytest", "exit 0")
    got = {t.name: t for t in probe_tools(cwd=tmp_path)}
    assert list(got) == ["git", "uv", "python", "ruff", "pytest"]
    assert got["git"].found and got["git"].version == "git version 9.9.9" and not got["git"].error
    assert got["python"].version == "Python 3.99.0"
    assert not got["uv"].found and got["uv"].error == "not on PATH"
    assert got["ruff"].found and not got["ruff"].version
    assert got["ruff"].error == "--version exited with 2: no such option"
    assert got["pytest"].error == "--version printed nothing"


def test_a_hanging_tool_is_killed_at_the_time_limit(bin_dir, tmp_path):
    tool(bin_dir, "git", f"{SLEEP} 60 & {SLEEP} 60")  # it and a child of its own hold the pipe
    tool(bin_dir, "uv", 'echo "uv 1.0"')
    t0 = time.monotonic()
    got = {t.name: t for t in probe_tools(("git", "uv"), cwd=tmp_path, timeout_s=1.0)}
    assert time.monotonic() - t0 < 10  # 1 s limit; generous for a loaded machine
    assert got["git"].error == "no answer to --version within 1 s"
    assert got["uv"].version == "uv 1.0"


def test_a_flooding_tool_is_cut_off(bin_dir, tmp_path):
    tool(bin_dir, "git", f"{YES} 'git version 1.0 and then a very long line' | {TR} -d '\\n'")
    got = probe_tools(("git",), cwd=tmp_path, timeout_s=5.0)[0]
    assert got.version.startswith("git version 1.0")
    assert len(got.version) == MAX_VERSION_CHARS
