"""A quality worker whose PATH holds no git and a ruff that hangs (a real stack started with
that PATH): the assessment still answers within its budget, with the git signals and lint
unknown and the reasons; GitStatus is a readable error; a checkpoint makes no commit and says
why."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from git_fixtures import (
    ask,
    commit_all,
    git,
    index_digest,
    new_repo,
    quality_stack,
    signals,
    write,
)

from shared import protocol as p
from shared.errors import BadRequest

SLEEP = shutil.which("sleep")


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sd-path-"))


@pytest.fixture(scope="module")
def env(bin_dir):
    ruff = bin_dir / "ruff"  # answers --version, hangs on anything else
    ruff.write_text(f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "ruff 0.0.0"; exit 0; fi\n'
                    f'echo $$ > {bin_dir}/ruff.pid\nexec {SLEEP} 300\n')
    ruff.chmod(0o755)
    yield from quality_stack(PATH=str(bin_dir))


def test_without_git_the_answers_say_so_and_nothing_is_committed(env, bin_dir):
    repo = new_repo("nogit")
    write(repo, {"app.py": "VALUE = 1\n"})
    commit_all(repo)
    write(repo, {"app.py": "VALUE = 2\n"})
    before, digest = git(repo, "rev-parse", "HEAD"), index_digest(repo)

    t0 = time.monotonic()
    report = ask(env, p.AssessQuality(path=str(repo), budget_s=2.0))
    assert time.monotonic() - t0 < 10  # a 2 s budget; generous for a loaded machine
    assert isinstance(report, p.QualityReport) and report.git is None
    found = signals(report)
    assert found["vcs"].value == 1 and "git is not installed" in found["vcs"].detail
    for name in ("git_clean", "git_upstream", "git_recent", "gitignore_secrets"):
        assert found[name].status == "unknown", found[name]
        assert "git is not installed" in found[name].detail
    assert found["tools"].value < 1 and "git: not on PATH" in found["tools"].detail
    assert any(r.startswith("install git") for r in report.recommendations), \
        report.recommendations
    # The hanging ruff was stopped at the budget: lint unknown, and the report says bounded.
    assert found["lint"].status == "unknown" and "did not finish" in found["lint"].detail
    assert report.bounded and any("ruff" in b for b in report.bounds), report.bounds
    pid = int((bin_dir / "ruff.pid").read_text())
    assert not (psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie")

    with pytest.raises(BadRequest, match="git is not installed"):
        ask(env, p.GitStatus(path=str(repo)))

    result = ask(env, p.CheckpointCommit(path=str(repo), timeout_s=4))
    assert (result.committed, result.skipped) == (False, "no_git")
    assert "git is not installed" in result.skipped_reason
    assert git(repo, "rev-parse", "HEAD") == before and index_digest(repo) == digest
