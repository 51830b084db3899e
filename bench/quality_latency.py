"""Quality worker latency on a generated git repository, through the hub of a real stack.

    uv run python -m bench.quality_latency [--files 5000] [--runs 5]

The repository: a Python project of ``--files`` files (modules of ~40 lines, their tests, docs
and data files, a few lint findings), committed. Measured, client-side through the hub:

* ``AssessQuality`` (what the session ``start`` runs): the first one (cold: ruff has no cache,
  the tool probe runs), then the p50 / p95 of ``--runs`` more;
* ``CheckpointCommit`` without a report (the worker assesses, renders the message, commits;
  what ``checkpoint`` runs), three tracked files changed before each, and with a report given
  (the commit alone);
* ``GitStatus`` (what ``status`` runs).

The issue's bars are through MCP: ``start`` <= 1.5 s and ``checkpoint`` <= 2 s on 5,000 files;
the MCP round trip adds a few ms (see the memory benchmark's ``ping``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import machine, percentiles, running_stack
from shared import protocol as p
from shared.client import HubClient
from shared.transport import endpoints

MODULE = '''"""Module {i}: helpers for the {i}th part of the app."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Item{i}:
    name: str
    count: int = 0

    def bump(self, by: int = 1) -> int:
        """Add ``by`` to the count and return it."""
        self.count += by
        return self.count


def total(items: list[Item{i}]) -> int:
    """The summed counts."""
    return sum(item.count for item in items)


def names(items: list[Item{i}]) -> list[str]:
    """The names, sorted."""
    return sorted(item.name for item in items)
'''
TEST = '''"""Tests of module {i}."""

from app.pkg{d:02}.mod{i} import Item{i}, total


def test_total() -> None:
    assert total([Item{i}("a", 1), Item{i}("b", 2)]) == 3
'''


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def make_repo(base: Path, files: int) -> Path:
    repo = base / "project"
    modules, tests = int(files * 0.7), int(files * 0.2)
    others = files - modules - tests - 6
    (repo / "src" / "app").mkdir(parents=True)
    for i in range(modules):
        d = i // 100
        pkg = repo / "src" / "app" / f"pkg{d:02}"
        pkg.mkdir(exist_ok=True)
        text = MODULE.format(i=i)
        if i % 250 == 0:
            text += "\nimport os\n"  # a lint finding now and then
        (pkg / f"mod{i}.py").write_text(text)
    (repo / "tests").mkdir()
    for i in range(tests):
        (repo / "tests" / f"test_mod{i}.py").write_text(TEST.format(i=i, d=i // 100))
    (repo / "docs").mkdir()
    for i in range(others):
        (repo / "docs" / f"page{i}.md").write_text(f"# Page {i}\n\nSome documentation.\n")
    (repo / "README.md").write_text("# project\n\n" + "A generated project. " * 20 + "\n")
    (repo / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "0.1.0"\n'
                                         'requires-python = ">=3.11"\ndependencies = []\n')
    (repo / ".gitignore").write_text(".env\n.env.*\n__pycache__/\n")
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run(["uv", "lock", "--offline", "--quiet"], cwd=repo, check=True, env=env)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Bench")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "generated")
    return repo


async def timed(client: HubClient, body: p.RequestBody) -> tuple[float, p.ReplyBody]:
    t0 = time.perf_counter()
    reply = await client.request(p.SERVICE_QUALITY, body, timeout_s=60, retry_unavailable=True)
    return time.perf_counter() - t0, reply


async def measure(cfg, repo: Path, runs: int) -> dict:
    client = HubClient(endpoints(cfg).clients)
    path = str(repo)
    out: dict = {}
    try:
        cold, report = await timed(client, p.AssessQuality(path=path))
        assert isinstance(report, p.QualityReport), report
        out["assess_cold_ms"] = round(cold * 1000, 1)
        out["score"] = report.score
        out["bounded"] = report.bounded
        out["lint"] = next(s.detail for s in report.breakdown if s.name == "lint")
        samples = [(await timed(client, p.AssessQuality(path=path)))[0] for _ in range(runs)]
        out["assess"] = percentiles(samples)
        checkpoint, commit_only = [], []
        for run in range(runs):
            for k in range(3):
                target = repo / "src" / "app" / "pkg00" / f"mod{k}.py"
                target.write_text(target.read_text() + f"\n# run {run}\n")
            took, result = await timed(client, p.CheckpointCommit(path=path, session_id="bench"))
            assert isinstance(result, p.CommitResult) and result.committed, result
            checkpoint.append(took)
            for k in range(3):
                target = repo / "tests" / f"test_mod{k}.py"
                target.write_text(target.read_text() + f"\n# run {run}\n")
            took, result = await timed(client, p.CheckpointCommit(path=path, report=report))
            assert isinstance(result, p.CommitResult) and result.committed, result
            commit_only.append(took)
        out["checkpoint"] = percentiles(checkpoint)
        out["commit_only"] = percentiles(commit_only)
        status = [(await timed(client, p.GitStatus(path=path)))[0] for _ in range(runs)]
        out["git_status"] = percentiles(status)
    finally:
        client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sd-qbench-"))
    try:
        t0 = time.perf_counter()
        repo = make_repo(base, args.files)
        built = time.perf_counter() - t0
        with running_stack(io_roots=str(base)) as running:
            result = asyncio.run(measure(running.cfg, repo, args.runs))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result = {"machine": machine(), "files": args.files, "repo_built_s": round(built, 1),
              **result}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
