"""Real git repositories for the quality worker's tests, and a client for its service.

git runs with an empty global config (``GIT_CONFIG_GLOBAL``) and no system config, in the test
and in the stack alike, so the machine's own settings (identity, hooks path, ...) never leak
in: each repository configures its identity itself, or has none on purpose."""

from __future__ import annotations

import asyncio
import atexit
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.transport import endpoints


@functools.cache
def base() -> Path:
    """The directory every test repository lives below (removed when the tests end)."""
    shm = Path("/dev/shm")  # memory-backed where there is one: 100k files in seconds
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="sdq-", dir=where))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    (path / "empty.gitconfig").touch()
    return path


def git_vars() -> dict[str, str]:
    return {"GIT_CONFIG_GLOBAL": str(base() / "empty.gitconfig"), "GIT_CONFIG_NOSYSTEM": "1"}


def stack_overrides(**extra: str) -> dict[str, str]:
    """Settings for ``private_stack``: the repositories are an allowed place; git as above."""
    return {"SESSIOND_IO_ROOTS": str(base()), **git_vars(), **extra}


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(git_vars())
    return env


def git(repo: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env=git_env(), capture_output=True,
                          text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def new_repo(name: str, *, identity: bool = True) -> Path:
    repo = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base()))
    git(repo, "init", "-q", "-b", "main")
    if identity:
        git(repo, "config", "user.name", "Test Person")
        git(repo, "config", "user.email", "test@example.com")
    return repo


def write(repo: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def commit_all(repo: Path, message: str = "initial") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def index_digest(repo: Path) -> str:
    return hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()


def hook(repo: Path, name: str, script: str) -> None:
    path = repo / ".git" / "hooks" / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


TIDY_README = """# tidy

A small, well-kept library: it adds numbers. Install with `uv sync`, run the tests with
`uv run pytest`, lint with `uv run ruff check`. The CI workflow runs both on every push.
Documentation lives in docs/.
"""

TIDY_FILES = {
    "README.md": TIDY_README,
    "pyproject.toml": """[project]
name = "tidy"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = []

[tool.mypy]
strict = true
""",
    ".gitignore": ".env\n.env.*\n__pycache__/\n.venv/\n",
    ".github/workflows/ci.yml": "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
                                "    steps:\n      - run: uv run pytest\n",
    "docs/index.md": "# tidy\n\nUsage: `add(1, 2)`.\n",
    "src/tidy/__init__.py": '"""tidy: adds numbers."""\n',
    "src/tidy/core.py": '"""The adding."""\n\n\ndef add(a: int, b: int) -> int:\n'
                        '    """The sum of a and b."""\n    return a + b\n',
    "tests/test_core.py": '"""Tests of add."""\n\nfrom tidy.core import add\n\n\n'
                          'def test_add() -> None:\n    assert add(1, 2) == 3\n',
}

NEGLECTED_APP = """import os, sys
import json
def main(x):
    if x == None:
        return undefined_name
    l = lambda: 1
    return x
"""


def tidy_project() -> Path:
    """Tests, a lockfile in sync, CI, docs, clean lint, type-checker config, a clean tree."""
    repo = new_repo("tidy")
    write(repo, TIDY_FILES)
    subprocess.run(["uv", "lock", "--offline", "--quiet"], cwd=repo, check=True,
                   env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"})
    commit_all(repo)
    return repo


def neglected_project() -> Path:
    """No tests, no README, lint errors, a dirty tree, a .env git does not ignore."""
    repo = new_repo("neglected")
    write(repo, {"app.py": NEGLECTED_APP})
    commit_all(repo)
    write(repo, {"app.py": NEGLECTED_APP + "import re\n", "scratch.py": "import os\n",
                 ".env": "API_KEY=not-a-real-key\n"})
    return repo


def client_of(env: dict[str, str]) -> HubClient:
    return HubClient(endpoints(load_config(env)).clients)


def ask(env: dict[str, str], body: p.RequestBody, timeout_s: float = 30.0) -> p.ReplyBody:
    """One request to the quality service through the hub (errors raise ServiceError)."""
    async def go():
        client = client_of(env)
        try:
            return await client.request(p.SERVICE_QUALITY, body, timeout_s=timeout_s,
                                        retry_unavailable=True)
        finally:
            client.close()
    return asyncio.run(go())


def quality_stack(**overrides: str):
    """A private stack (settings as ``stack_overrides``) whose quality worker answers; yields
    its env."""
    from conftest import private_stack

    with private_stack(**stack_overrides(**overrides)) as (env, _home):
        assert isinstance(ask(env, p.Ping()), p.Pong)  # waits for the worker to register
        yield env


def signals(report: p.QualityReport) -> dict[str, p.Signal]:
    return {s.name: s for s in report.breakdown}
