"""Project-health signals: version control, README, tests, manifest, lockfile (and whether it
matches its manifest, where that can be checked), CI, docs, and whether git ignores secrets."""

from __future__ import annotations

import json
import time
from pathlib import Path

from quality_worker import procs
from quality_worker.git import GitUnusable
from quality_worker.project import Project
from quality_worker.score import measured, not_applicable, unknown
from shared import protocol as p

MIN_README_BYTES = 200
CI_PATHS = (".github/workflows", ".gitlab-ci.yml", ".circleci/config.yml", "azure-pipelines.yml",
            "Jenkinsfile", ".travis.yml", "bitbucket-pipelines.yml", ".drone.yml",
            ".woodpecker.yml", ".woodpecker", ".buildkite", "appveyor.yml", ".forgejo/workflows",
            ".gitea/workflows")
DOCS_PATHS = ("docs", "doc", "mkdocs.yml", ".readthedocs.yaml", ".readthedocs.yml")
SECRET_PROBES = (".env", ".env.local")  # must be ignored by git
SECRET_NAMES = (".env", ".pypirc", ".npmrc", "id_rsa", "id_ed25519", "credentials.json")
SECRET_SUFFIXES = (".pem", ".key", ".p12", ".pfx")
NOT_SECRET = (".env.example", ".env.sample", ".env.template", ".env.dist")
LOCK_CHECK_TIMEOUT_S = 5.0


def vcs(pr: Project) -> p.Signal:
    if pr.repo is not None:
        return measured("vcs", 1, f"git work tree at {pr.repo.top}")
    if pr.vcs_dir is not None:
        kind = next(m for m in (".git", ".hg", ".svn") if (pr.vcs_dir / m).exists())
        extra = f"; git cannot read it: {pr.git_error}" if kind == ".git" and pr.git_error else ""
        return measured("vcs", 1, f"{kind} in {pr.vcs_dir}{extra}")
    return measured("vcs", 0, "not under version control",
                    "not under version control: `git init` and commit, so checkpoints can "
                    "save the work")


def readme(pr: Project) -> p.Signal:
    names = [n for n in pr.top.values()
             if n.lower().startswith("readme") and (pr.root / n).is_file()]
    if not names:
        return measured("readme", 0, "no README", "no README: add a README.md saying what the "
                        "project is and how to run it")
    size = max((pr.root / n).stat().st_size for n in names)
    if size < MIN_README_BYTES:
        return measured("readme", 0.5, f"{names[0]} is only {size} bytes",
                        f"{names[0]} is nearly empty ({size} bytes): say what the project is, "
                        "how to install, run and test it")
    return measured("readme", 1, f"{names[0]} ({size:,} bytes)")


def tests(pr: Project) -> p.Signal:
    scan = pr.scan
    partial = " (scan bounded)" if scan.bounded else ""
    if scan.test_files:
        where = f" in {', '.join(scan.test_dirs)}" if scan.test_dirs else ""
        return measured("tests", 1, f"{scan.test_files} test files{where}{partial}")
    if scan.test_dirs:
        return measured("tests", 0.5, f"{', '.join(scan.test_dirs)} holds no test files",
                        f"{scan.test_dirs[0]}/ holds no test files: add tests")
    if not scan.languages:
        return not_applicable("tests", f"no source files found{partial}")
    if scan.bounded:
        return unknown("tests", f"no tests among the first {scan.entries:,} entries scanned")
    return measured("tests", 0, "no tests found",
                    "no tests: add a tests/ folder (for Python, pytest files named test_*.py)")


def manifest(pr: Project) -> p.Signal:
    if pr.manifests:
        detail = ", ".join(pr.manifests)
        if pr.pyproject_error:
            return measured("manifest", 0.5, pr.pyproject_error, f"fix {pr.pyproject_error}")
        return measured("manifest", 1, detail)
    if not pr.scan.languages:
        return not_applicable("manifest", "no source files found")
    language = pr.scan.main_language()
    hint = "pyproject.toml (`uv init`)" if language == "python" else "a package manifest"
    return measured("manifest", 0, f"no package manifest ({language} sources)",
                    f"no package manifest: add {hint} declaring the dependencies")


def _declares_dependencies(pr: Project) -> bool | None:
    """Whether the manifests declare any dependency; None when it cannot be told."""
    for name in pr.manifests:
        if name == "pyproject.toml" and pr.pyproject is not None:
            proj = pr.pyproject.get("project", {})
            poetry = pr.pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {})
            if (proj.get("dependencies") or proj.get("optional-dependencies")
                    or pr.pyproject.get("dependency-groups") or set(poetry) - {"python"}):
                return True
        elif name == "package.json":
            data = _json(pr, name)
            if data is None:
                return None
            if any(data.get(k) for k in ("dependencies", "devDependencies",
                                         "optionalDependencies")):
                return True
        elif name == "go.mod":
            raw = pr.read_small(name) or b""
            if b"require" in raw:
                return True
        else:
            return None  # setup.py, Cargo.toml, ...: not parsed; assume it may have some
    return False


def lockfile(pr: Project) -> p.Signal:
    if pr.lockfiles:
        return measured("lockfile", 1, ", ".join(pr.lockfiles))
    if not pr.manifests:
        return not_applicable("lockfile", "no package manifest")
    if _declares_dependencies(pr) is False:
        return not_applicable("lockfile", f"{', '.join(pr.manifests)} declares no dependencies")
    hint = "`uv lock`" if pr.python else "your package manager's lock command"
    return measured("lockfile", 0, f"no lockfile beside {', '.join(pr.manifests)}",
                    f"no lockfile: run {hint} and commit it, so installs are reproducible")


def lockfile_sync(pr: Project, deadline: float) -> p.Signal:
    if not pr.lockfiles:
        return not_applicable("lockfile_sync", "no lockfile")
    if "uv.lock" in pr.lockfiles and "pyproject.toml" in pr.manifests:
        return _uv_lock_check(pr, deadline)
    if "package-lock.json" in pr.lockfiles and "package.json" in pr.manifests:
        return _npm_lock_check(pr)
    return unknown("lockfile_sync", f"whether {pr.lockfiles[0]} matches its manifest cannot "
                   "be checked without resolving dependencies")


def _uv_lock_check(pr: Project, deadline: float) -> p.Signal:
    from quality_worker.tools import find_tool

    uv = find_tool("uv")
    if uv is None:
        return unknown("lockfile_sync", "uv is not installed: uv.lock cannot be checked",
                       "install uv to check uv.lock against pyproject.toml")
    argv = [uv, "lock", "--check", "--offline", "--no-progress", "--no-python-downloads"]
    limit = min(LOCK_CHECK_TIMEOUT_S, deadline - time.monotonic())
    try:
        done = procs.run(argv, cwd=pr.root, timeout_s=max(0.0, limit), max_output=64 << 10)
    except OSError as exc:
        return unknown("lockfile_sync", f"uv cannot be run: {exc}")
    if done.ok:
        return measured("lockfile_sync", 1, "uv.lock matches pyproject.toml (uv lock --check)")
    text = done.text(2000)
    if "needs to be updated" in text:
        return measured("lockfile_sync", 0, "uv.lock is out of date with pyproject.toml",
                        "uv.lock is out of date: run `uv lock` and commit it")
    why = "timed out" if done.timed_out else done.error_line()[:200]
    return unknown("lockfile_sync", f"uv lock --check could not decide offline: {why}")


def _json(pr: Project, name: str) -> dict | None:
    raw = pr.read_small(name) if name != "package-lock.json" else _read_capped(pr.root / name)
    try:
        data = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _read_capped(path: Path, cap: int = 64 << 20) -> bytes | None:
    try:
        return path.read_bytes() if path.stat().st_size <= cap else None
    except OSError:
        return None


def _npm_lock_check(pr: Project) -> p.Signal:
    manifest_data, lock = _json(pr, "package.json"), _json(pr, "package-lock.json")
    root_pkg = (lock or {}).get("packages", {}).get("") if lock else None
    if manifest_data is None or not isinstance(root_pkg, dict):
        return unknown("lockfile_sync", "package-lock.json has no root package entry to "
                       "compare (lockfileVersion 1, or unreadable)")
    keys = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")
    differ = [k for k in keys if (manifest_data.get(k) or {}) != (root_pkg.get(k) or {})]
    if differ:
        return measured("lockfile_sync", 0, f"package-lock.json's {', '.join(differ)} differ "
                        "from package.json", "package-lock.json is out of date: run "
                        "`npm install` and commit it")
    return measured("lockfile_sync", 1, "package-lock.json lists package.json's dependencies")


def _present(path: Path) -> bool:
    """A file, or a directory holding something."""
    try:
        return path.is_file() or (path.is_dir() and any(path.iterdir()))
    except OSError:
        return False


def ci(pr: Project) -> p.Signal:
    for base in dict.fromkeys((pr.root, pr.repo_top)):
        for rel in CI_PATHS:
            if _present(base / rel):
                return measured("ci", 1, rel)
    return measured("ci", 0, "no CI configuration", "no CI: add a workflow that runs the "
                    "tests and the linter on every push (e.g. .github/workflows/ci.yml)")


def docs(pr: Project) -> p.Signal:
    for rel in DOCS_PATHS:
        if _present(pr.root / rel):
            return measured("docs", 1, rel)
    return measured("docs", 0, "no docs/ folder or docs site config",
                    "no documentation beyond the README: add a docs/ folder")


def gitignore_secrets(pr: Project) -> p.Signal:
    if pr.repo is None or pr.git is None:
        if pr.vcs_dir is None:
            return not_applicable("gitignore_secrets", "not a git repository")
        return unknown("gitignore_secrets", f"git cannot answer: {pr.git_error}")
    present = [n for n in pr.top.values() if _secret_like(n)]
    try:
        ignored = set(_check_ignore(pr, [*SECRET_PROBES, *present]))
        tracked = set(_ls_files(pr, present)) if present else set()
    except (RuntimeError, GitUnusable) as exc:
        return unknown("gitignore_secrets", str(exc))
    exposed = sorted(tracked)
    if exposed:
        return measured("gitignore_secrets", 0, f"committed: {', '.join(exposed)}",
                        f"{exposed[0]} is committed: remove it from git (`git rm --cached "
                        f"{exposed[0]}`), rotate what it holds, and ignore it")
    loose = sorted(n for n in present if n not in ignored)
    if loose:
        return measured("gitignore_secrets", 0, f"not ignored: {', '.join(loose)}",
                        f"{loose[0]} is not ignored by git: add it to .gitignore")
    covered = [n for n in SECRET_PROBES if n in ignored]
    uncovered = [n for n in SECRET_PROBES if n not in ignored]
    detail = f"git ignores {', '.join(covered) or 'neither'} of {', '.join(SECRET_PROBES)}"
    return measured("gitignore_secrets", len(covered) / len(SECRET_PROBES), detail,
                    f"{', '.join(uncovered)} would not be ignored: add .env and .env.* to "
                    ".gitignore so secrets are never committed")


def _secret_like(name: str) -> bool:
    low = name.lower()
    if low in NOT_SECRET:
        return False
    return low in SECRET_NAMES or low.startswith(".env.") or low.endswith(SECRET_SUFFIXES)


def _check_ignore(pr: Project, names: list[str]) -> list[str]:
    # -z needs --stdin, which these jobs do not feed; top-level names print unquoted this way.
    done = pr.git.run("-c", "core.quotePath=false", "check-ignore", "--no-index", "--", *names)
    if done.code not in (0, 1):
        raise RuntimeError(f"git check-ignore failed: {done.error_line()}")
    return done.out.decode("utf-8", "surrogateescape").splitlines()


def _ls_files(pr: Project, names: list[str]) -> list[str]:
    done = pr.git.run("ls-files", "-z", "--", *names)
    if not done.ok:
        raise RuntimeError(f"git ls-files failed: {done.error_line()}")
    return [n.decode("utf-8", "surrogateescape") for n in done.out.split(b"\0") if n]
