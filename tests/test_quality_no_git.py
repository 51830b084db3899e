"""No git on the quality worker's PATH (a real stack started with a PATH holding nothing): the
assessment still answers, with the git signals unknown and the reason; GitStatus is a readable
error; a checkpoint makes no commit and says why."""

from __future__ import annotations

import tempfile

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


@pytest.fixture(scope="module")
def env():
    yield from quality_stack(PATH=tempfile.mkdtemp(prefix="sd-path-"))


def test_without_git_the_answers_say_so_and_nothing_is_committed(env):
    repo = new_repo("nogit")
    write(repo, {"app.py": "VALUE = 1\n"})
    commit_all(repo)
    write(repo, {"app.py": "VALUE = 2\n"})
    before, digest = git(repo, "rev-parse", "HEAD"), index_digest(repo)

    report = ask(env, p.AssessQuality(path=str(repo)))
    assert isinstance(report, p.QualityReport) and report.git is None
    found = signals(report)
    assert found["vcs"].value == 1 and "git is not installed" in found["vcs"].detail
    for name in ("git_clean", "git_upstream", "git_recent", "gitignore_secrets"):
        assert found[name].status == "unknown", found[name]
        assert "git is not installed" in found[name].detail
    assert found["tools"].value < 1 and "git: not on PATH" in found["tools"].detail
    assert "install git" in report.recommendations[0] or any(
        r.startswith("install git") for r in report.recommendations), report.recommendations
    assert found["lint"].status == "measured"  # ruff installed with sessiond still runs

    with pytest.raises(BadRequest, match="git is not installed"):
        ask(env, p.GitStatus(path=str(repo)))

    result = ask(env, p.CheckpointCommit(path=str(repo)))
    assert (result.committed, result.skipped) == (False, "no_git")
    assert "git is not installed" in result.skipped_reason
    assert git(repo, "rev-parse", "HEAD") == before and index_digest(repo) == digest
