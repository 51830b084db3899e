"""What an assessment knows about a project before it judges anything: its top-level files,
package manifests and lockfiles, its parsed ``pyproject.toml``, the bounded file scan, and the
git repository around it (or why git cannot tell)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from quality_worker.git import Git, GitUnusable, Repo
from quality_worker.scan import Scan

MANIFESTS = {
    "pyproject.toml": "python", "setup.py": "python", "setup.cfg": "python",
    "requirements.txt": "python", "Pipfile": "python", "package.json": "node",
    "Cargo.toml": "rust", "go.mod": "go", "pom.xml": "java", "build.gradle": "java",
    "build.gradle.kts": "java", "Gemfile": "ruby", "composer.json": "php", "mix.exs": "elixir",
    "Package.swift": "swift", "pubspec.yaml": "dart", "deno.json": "deno",
}
LOCKFILES = {
    "uv.lock": "python", "poetry.lock": "python", "pdm.lock": "python", "Pipfile.lock": "python",
    "pylock.toml": "python", "package-lock.json": "node", "npm-shrinkwrap.json": "node",
    "yarn.lock": "node", "pnpm-lock.yaml": "node", "bun.lockb": "node", "bun.lock": "node",
    "Cargo.lock": "rust", "go.sum": "go", "Gemfile.lock": "ruby", "composer.lock": "php",
    "mix.lock": "elixir", "Package.resolved": "swift", "pubspec.lock": "dart",
    "deno.lock": "deno", "gradle.lockfile": "java",
}
MAX_MANIFEST_BYTES = 1 << 20


@dataclass
class Project:
    root: Path
    scan: Scan
    top: dict[str, str] = field(default_factory=dict)  # lower-cased name -> name (top level)
    manifests: list[str] = field(default_factory=list)
    lockfiles: list[str] = field(default_factory=list)
    pyproject: dict | None = None
    pyproject_error: str = ""
    git: Git | None = None  # usable for this directory (None: no git, or not a repo)
    repo: Repo | None = None
    git_error: str = ""  # why ``git`` is None
    git_error_code: str = ""
    vcs_dir: Path | None = None  # the directory holding .git/.hg/.svn, found on disk

    @property
    def python(self) -> bool:
        return bool(self.scan.python_files) or any(
            MANIFESTS[m] == "python" for m in self.manifests)

    @property
    def repo_top(self) -> Path:
        if self.repo is not None:
            return self.repo.top
        return self.vcs_dir or self.root

    def has(self, name: str) -> str | None:
        """The top-level entry called ``name`` (any case), by its real name."""
        return self.top.get(name.lower())

    def read_small(self, name: str) -> bytes | None:
        path = self.root / name
        try:
            if path.stat().st_size > MAX_MANIFEST_BYTES:
                return None
            return path.read_bytes()
        except OSError:
            return None


def describe(root: Path, scan: Scan, deadline: float) -> Project:
    project = Project(root, scan)
    try:
        project.top = {p.name.lower(): p.name for p in root.iterdir()}
    except OSError:
        pass
    project.manifests = [m for m in MANIFESTS if m in project.top.values()]
    project.lockfiles = [f for f in LOCKFILES if f in project.top.values()]
    if "pyproject.toml" in project.manifests:
        raw = project.read_small("pyproject.toml")
        try:
            project.pyproject = tomllib.loads(raw.decode("utf-8")) if raw is not None else None
            if raw is None:
                project.pyproject_error = "pyproject.toml is too large or unreadable"
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            project.pyproject_error = f"pyproject.toml is not valid TOML: {exc}"
    project.vcs_dir = _vcs_dir(root)
    try:
        git = Git(root, deadline)
        project.repo = git.repo()
        project.git = git
    except GitUnusable as exc:
        project.git_error, project.git_error_code = exc.message, exc.code
    return project


def _vcs_dir(root: Path) -> Path | None:
    for directory in (root, *root.parents):
        if any((directory / marker).exists() for marker in (".git", ".hg", ".svn")):
            return directory
    return None
