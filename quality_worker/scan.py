"""A bounded look at a project's files: breadth first, at most ``MAX_ENTRIES`` directory entries
and ``SCAN_TIME_S`` seconds, never following symlinks, skipping what is not the project's own
(VCS data, virtualenvs, dependency and build directories, caches). What it counts: files by
language, test files, Python files. A project of 100k files stops at the limit and says so;
the signals that need only well-known paths (README, manifests, CI) do not depend on the walk.
"""

from __future__ import annotations

import os
import stat
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

MAX_ENTRIES = 20_000
SCAN_TIME_S = 1.0

SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".eggs", "dist", "build", "target",
    ".next", ".nuxt", ".cache", ".gradle", ".idea", ".vscode", "site-packages", "htmlcov",
    "vendor", "bower_components", ".terraform", ".direnv",
})
TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec", "specs", "testing"})

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript",
    ".cjs": "javascript", ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescript",
    ".rs": "rust", ".go": "go", ".java": "java", ".kt": "kotlin", ".rb": "ruby", ".php": "php",
    ".c": "c", ".h": "c", ".cc": "c++", ".cpp": "c++", ".hpp": "c++", ".cs": "c#",
    ".swift": "swift", ".scala": "scala", ".ex": "elixir", ".exs": "elixir", ".dart": "dart",
}


def is_test_file(name: str) -> bool:
    stem, _, ext = name.rpartition(".")
    if not stem:
        return False
    if ext == "py":
        return stem.startswith("test_") or stem.endswith("_test")
    if ext in ("js", "ts", "jsx", "tsx", "mjs", "cjs"):
        return stem.endswith((".test", ".spec"))
    if ext == "go":
        return stem.endswith("_test")
    if ext in ("java", "kt", "scala", "cs"):
        return stem.endswith(("Test", "Tests", "Spec"))
    if ext == "rb":
        return stem.endswith(("_spec", "_test"))
    return False


@dataclass
class Scan:
    root: Path
    entries: int = 0  # directory entries looked at
    files: int = 0
    languages: Counter = field(default_factory=Counter)
    test_files: int = 0
    test_dirs: list[str] = field(default_factory=list)  # relative paths, first few
    unreadable: int = 0  # directories that could not be listed
    bounded: bool = False
    bound: str = ""  # why the walk stopped early
    elapsed_s: float = 0.0

    @property
    def python_files(self) -> int:
        return self.languages["python"]

    def main_language(self) -> str | None:
        return self.languages.most_common(1)[0][0] if self.languages else None


def scan(root: Path, *, max_entries: int = MAX_ENTRIES, time_s: float = SCAN_TIME_S) -> Scan:
    t0 = time.monotonic()
    deadline = t0 + time_s
    result = Scan(root)
    queue: deque[tuple[Path, bool]] = deque([(root, False)])  # (dir, inside a test dir)
    while queue:
        directory, in_tests = queue.popleft()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    result.entries += 1
                    if result.entries > max_entries:
                        result.bounded = True
                        result.bound = (f"the file scan stopped after {max_entries:,} entries "
                                        "(the project has more)")
                        break
                    _visit(result, root, entry, in_tests, queue)
        except OSError:
            result.unreadable += 1
        if result.bounded:
            break
        if time.monotonic() > deadline and queue:
            result.bounded = True
            result.bound = (f"the file scan stopped after {time_s:.1f} s and "
                            f"{result.entries:,} entries")
            break
    result.elapsed_s = time.monotonic() - t0
    return result


def _visit(result: Scan, root: Path, entry: os.DirEntry, in_tests: bool,
           queue: deque[tuple[Path, bool]]) -> None:
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return
    name = entry.name
    if stat.S_ISDIR(mode):
        if name in SKIP_DIRS or name.endswith(".egg-info") or _is_virtualenv(entry.path):
            return
        is_test_dir = name in TEST_DIRS
        if is_test_dir and len(result.test_dirs) < 5:
            result.test_dirs.append(os.path.relpath(entry.path, root))
        queue.append((Path(entry.path), in_tests or is_test_dir))
    elif stat.S_ISREG(mode):
        result.files += 1
        language = LANGUAGES.get(os.path.splitext(name)[1].lower())
        if language:
            result.languages[language] += 1
            if in_tests or is_test_file(name):
                result.test_files += 1


def _is_virtualenv(path: str) -> bool:
    return os.path.exists(os.path.join(path, "pyvenv.cfg"))
