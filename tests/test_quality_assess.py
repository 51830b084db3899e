"""AssessQuality and GitStatus through a real stack (hub + quality worker process), on real git
repositories built in temp dirs: the tidy project scores clearly above the neglected one and
each breakdown names why; unknown signals leave the score alone; bad paths are readable errors;
a project of 100k files is assessed within its budget and says it was bounded."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from git_fixtures import (
    ask,
    commit_all,
    git,
    git_env,
    neglected_project,
    new_repo,
    quality_stack,
    signals,
    tidy_project,
    write,
)

from shared import protocol as p
from shared.errors import BadRequest


@pytest.fixture(scope="module")
def env():
    yield from quality_stack()


def assess(env, path: Path, **fields) -> p.QualityReport:
    report = ask(env, p.AssessQuality(path=str(path), **fields))
    assert isinstance(report, p.QualityReport), report
    return report


def test_tidy_project_scores_clearly_higher_and_each_breakdown_says_why(env):
    tidy, neglected = assess(env, tidy_project()), assess(env, neglected_project())
    assert tidy.score >= 85, tidy.breakdown
    assert neglected.score <= 50, neglected.breakdown
    assert tidy.score - neglected.score >= 35

    good = signals(tidy)
    for name in ("vcs", "readme", "tests", "manifest", "lockfile", "lockfile_sync", "ci", "docs",
                 "gitignore_secrets", "lint", "type_checking", "git_clean", "git_recent"):
        assert (good[name].status, good[name].value) == ("measured", 1.0), good[name]
    assert "uv lock --check" in good["lockfile_sync"].detail
    assert "no findings" in good["lint"].detail
    assert "test files in tests" in good["tests"].detail
    assert tidy.git is not None and tidy.git.clean and tidy.git.branch == "main"

    bad = signals(neglected)
    assert bad["tests"].value == 0 and bad["tests"].detail == "no tests found"
    assert bad["readme"].value == 0 and bad["manifest"].value == 0 and bad["ci"].value == 0
    assert bad["lint"].status == "measured" and bad["lint"].value < 0.2
    assert "findings" in bad["lint"].detail and "F401" in bad["lint"].detail
    assert bad["git_clean"].value < 1 and "1 unstaged, 2 untracked" in bad["git_clean"].detail
    assert bad["gitignore_secrets"].value == 0 and ".env" in bad["gitignore_secrets"].detail
    assert neglected.git is not None and neglected.git.unstaged == 1
    assert neglected.git.untracked == 2 and not neglected.git.clean
    # Recommendations come from the breakdown, the costliest first, and are concrete.
    recs = neglected.recommendations
    assert recs and any("ruff check --fix" in r and "lint findings" in r for r in recs), recs
    assert any(r.startswith("no tests") for r in recs), recs
    assert any(".env is not ignored" in r for r in recs), recs
    lost = {s.name: s.share * (1 - s.value) for s in neglected.breakdown if s.advice
            and s.status == "measured"}
    assert recs[0] == bad[max(lost, key=lost.get)].advice


def test_the_score_is_the_measured_signals_renormalised(env):
    repo = tidy_project()
    without = assess(env, repo)
    granted = assess(env, repo, permissions={"git_commit": "granted"})
    refused = assess(env, repo, permissions={"git_commit": "refused"})
    assert signals(without)["permissions"].status == "unknown"
    assert signals(without)["permissions"].share == 0
    for report in (without, granted, refused):
        measured = [s for s in report.breakdown if s.status == "measured"]
        assert math.isclose(sum(s.share for s in measured), 1.0, abs_tol=1e-3)
        assert math.isclose(sum(s.points for s in measured), report.score, abs_tol=0.1)
        assert all(s.share == 0 and s.points == 0 for s in report.breakdown
                   if s.status != "measured")
        assert sum(s.weight for s in report.breakdown) == 100
    assert signals(granted)["permissions"].value == 1
    assert refused.score < without.score <= granted.score
    assert "git_commit" in signals(refused)["permissions"].advice
    # Categories: the score of each over its own measured signals.
    cats = {c.name: c for c in refused.categories}
    assert cats["permissions"].score == 0 and cats["tools"].score is not None


def test_lockfile_out_of_date_and_coverage_and_test_reports_are_read(env):
    repo = tidy_project()
    pyproject = (repo / "pyproject.toml").read_text()
    write(repo, {
        "pyproject.toml": pyproject.replace('version = "0.1.0"', 'version = "0.2.0"'),
        "coverage.xml": '<?xml version="1.0"?>\n<coverage line-rate="0.42" branch-rate="0">'
                        "<packages/></coverage>\n",
        "reports/junit.xml": '<testsuites tests="10" failures="1" errors="1" skipped="2">'
                             '<testsuite name="t" tests="10"/></testsuites>\n',
    })
    found = signals(assess(env, repo))
    assert found["lockfile_sync"].value == 0 and "uv lock" in found["lockfile_sync"].advice
    assert found["coverage"].status == "measured" and found["coverage"].value == 0.42
    assert "42.0% of lines" in found["coverage"].detail
    assert found["test_results"].value == 0.75  # 6 of the 8 that ran passed
    assert "6 of 8 tests passed" in found["test_results"].detail


@pytest.mark.parametrize("case", ["missing", "file", "outside", "relative"])
def test_bad_project_paths_are_readable_errors(env, case, tmp_path):
    repo = new_repo("bad")
    write(repo, {"f.txt": "x"})
    path = {"missing": str(repo / "nope"), "file": str(repo / "f.txt"),
            "outside": "/proc/self", "relative": "some/dir"}[case]
    expected = {"missing": "does not exist", "file": "is a file, not a directory",
                "outside": "outside the allowed places", "relative": "absolute path"}[case]
    for body in (p.AssessQuality(path=path), p.GitStatus(path=path),
                 p.CheckpointCommit(path=path)):
        with pytest.raises(BadRequest, match=expected):
            ask(env, body)


def test_bad_time_limits_are_refused(env):
    repo = new_repo("limits")
    for bad in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(BadRequest, match="budget_s must be a positive number"):
            ask(env, p.AssessQuality(path=str(repo), budget_s=bad))
        with pytest.raises(BadRequest, match="timeout_s must be a positive number"):
            ask(env, p.CheckpointCommit(path=str(repo), timeout_s=bad))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory; no EACCES to cause")
def test_an_unreadable_directory_is_a_readable_error(env):
    repo = new_repo("locked")
    (repo / "inner").mkdir()
    (repo / "inner").chmod(0)
    try:
        with pytest.raises(BadRequest, match="cannot be read"):
            ask(env, p.AssessQuality(path=str(repo / "inner")))
    finally:
        (repo / "inner").chmod(0o755)


def test_git_status_counts_upstream_and_since(env):
    origin = new_repo("origin")
    write(origin, {"a.txt": "1\n"})
    commit_all(origin)
    clone = Path(str(origin) + "-clone")
    git(origin.parent, "clone", "-q", str(origin), str(clone))
    git(clone, "config", "user.name", "T")
    git(clone, "config", "user.email", "t@example.com")
    start = git(clone, "rev-parse", "HEAD").strip()
    write(clone, {"b.txt": "2\n"})
    commit_all(clone, "second")
    write(origin, {"c.txt": "3\n"})
    commit_all(origin, "upstream moved")
    git(clone, "fetch", "-q")
    write(clone, {"a.txt": "changed\n", "staged.txt": "s\n", "new.txt": "n\n"})
    git(clone, "add", "staged.txt")
    state = ask(env, p.GitStatus(path=str(clone), since=start))
    assert isinstance(state, p.GitState)
    assert (state.branch, state.upstream, state.ahead, state.behind) == \
        ("main", "origin/main", 1, 1)
    assert (state.staged, state.unstaged, state.untracked) == (1, 1, 1)
    assert not state.clean and state.operation is None
    assert state.last_commit_subject == "second" and state.commits_30d == 2
    assert state.since_commits == 1
    assert sorted(state.since_files) == ["a.txt", "b.txt", "staged.txt"]
    report = assess(env, clone)
    up = signals(report)["git_upstream"]
    assert up.status == "measured" and up.value < 1
    assert "1 commits not pushed" in up.advice and "1 commits behind" in up.advice


def test_git_status_outside_a_repository_says_so(env):
    plain = new_repo("plain")
    (plain / ".git").rename(plain / "not-git")
    with pytest.raises(BadRequest, match="not in a git work tree"):
        ask(env, p.GitStatus(path=str(plain)))
    report = assess(env, plain)
    assert signals(report)["vcs"].value == 0 and report.git is None
    assert signals(report)["git_clean"].status == "not_applicable"


@pytest.fixture(scope="module")
def huge_repo():
    """100,000 tracked, empty Python files (one blob for all of them: the index is written
    directly, which keeps building it to a few seconds)."""
    repo = new_repo("huge")
    for d in range(100):
        directory = repo / f"pkg{d:03}"
        directory.mkdir()
        for f in range(1000):
            os.close(os.open(directory / f"m{f:04}.py", os.O_WRONLY | os.O_CREAT, 0o644))
    blob = git(repo, "hash-object", "-w", "pkg000/m0000.py").strip()
    lines = "".join(f"100644 {blob}\tpkg{d:03}/m{f:04}.py\n"
                    for d in range(100) for f in range(1000))
    subprocess.run(["git", "update-index", "--add", "--index-info"], cwd=repo, env=git_env(),
                   input=lines.encode(), check=True)
    git(repo, "update-index", "-q", "--refresh", check=False)
    git(repo, "commit", "-q", "-m", "100k files")
    yield repo
    shutil.rmtree(repo, ignore_errors=True)


def test_a_project_of_100k_files_is_assessed_within_its_budget_and_says_bounded(env, huge_repo):
    t0 = time.monotonic()
    report = assess(env, huge_repo, budget_s=3.0)
    took = time.monotonic() - t0
    assert took < 15, took  # 3 s budget; generous for a loaded 2-core machine
    assert report.bounded
    assert any("file scan stopped after 20,000 entries" in b for b in report.bounds), report.bounds
    assert report.files_scanned == 20_001
    assert report.git is not None and report.git.clean  # git status read all 100k files
    found = signals(report)
    assert found["tests"].status == "unknown"  # none among the part scanned: not "no tests"
    lint = found["lint"]
    if lint.status == "unknown":  # ruff did not finish in the budget: said so, not guessed
        assert any("ruff" in b for b in report.bounds), report.bounds
    else:  # ruff read all the (empty) files in time
        assert lint.status == "measured" and "no findings" in lint.detail
    assert 0 <= report.score <= 100

    # A small budget: the answer still comes in about that time, bounded.
    tight = assess(env, huge_repo, budget_s=0.5)
    assert tight.bounded and tight.elapsed_ms < 3000, (tight.elapsed_ms, tight.bounds)
