"""Test results and coverage, read from the reports the project's own runs left behind.

Looked for in the project's top level and ``reports/``, ``coverage/``, ``build/``,
``test-results/``: JUnit XML (``junit*.xml``, ``TEST-*.xml``, ``test-results.xml``,
``report.xml``), Cobertura XML (``coverage.xml``, ``cobertura-coverage.xml``), coverage.py JSON
(``coverage.json``), istanbul's ``coverage-summary.json`` and ``lcov.info``. Each file is read
once, streaming where it can, and only up to ``MAX_REPORT_BYTES``; a report is as old as its
file, and its age is part of what is said about it.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

MAX_REPORT_BYTES = 32 << 20
PLACES = (".", "reports", "coverage", "build", "test-results", "build/test-results")
JUNIT_NAMES = ("junit.xml", "test-results.xml", "report.xml", "pytest.xml", "results.xml")
COVERAGE_NAMES = ("coverage.xml", "cobertura-coverage.xml", "coverage.json",
                  "coverage-summary.json", "lcov.info")


@dataclass
class TestResults:
    path: Path
    tests: int
    failed: int  # failures + errors
    skipped: int
    age_days: float


@dataclass
class Coverage:
    path: Path
    percent: float
    age_days: float


def _age_days(path: Path) -> float:
    return max(0.0, time.time() - path.stat().st_mtime) / 86400


def _candidates(root: Path, names: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> list[Path]:
    found = []
    for place in PLACES:
        directory = root / place
        if not directory.is_dir():
            continue
        for name in names:
            if (directory / name).is_file():
                found.append(directory / name)
        if prefixes:
            try:
                found += sorted(f for f in directory.iterdir() if f.suffix == ".xml"
                                and f.name.startswith(prefixes) and f.is_file())[:50]
            except OSError:
                continue
    return [f for f in found if _size(f) <= MAX_REPORT_BYTES]


def _size(path: Path) -> float:
    try:
        return path.stat().st_size
    except OSError:
        return float("inf")  # gone or unreadable: not a candidate


def find_test_results(root: Path) -> tuple[TestResults | None, str]:
    """The newest JUnit report's totals (several TEST-*.xml files of one run are summed), or
    None and why."""
    files = _candidates(root, JUNIT_NAMES, prefixes=("junit", "TEST-"))
    if not files:
        return None, "no JUnit XML report found (junit.xml, TEST-*.xml, ...)"
    newest = max(files, key=lambda f: f.stat().st_mtime)
    run = [f for f in files if f.parent == newest.parent and f.name.startswith("TEST-")] \
        if newest.name.startswith("TEST-") else [newest]
    tests = failed = skipped = 0
    for path in run:
        try:
            t, f, s = _junit_totals(path)
        except (ET.ParseError, OSError, ValueError) as exc:
            return None, f"{path.name} cannot be read: {exc}"
        tests, failed, skipped = tests + t, failed + f, skipped + s
    return TestResults(newest, tests, failed, skipped, _age_days(newest)), ""


def _junit_totals(path: Path) -> tuple[int, int, int]:
    """Totals from the <testsuites> root's attributes, else summed over top-level suites."""
    totals = [0, 0, 0]
    depth = 0
    for event, elem in ET.iterparse(path, events=("start", "end")):
        if event == "end":
            depth -= 1
            if depth <= 1:
                elem.clear()
            continue
        depth += 1
        tag = elem.tag.rsplit("}", 1)[-1]
        if depth == 1 and tag == "testsuites" and "tests" in elem.attrib:
            return _suite_counts(elem.attrib)
        if tag == "testsuite" and depth <= 2:
            counts = _suite_counts(elem.attrib)
            totals = [a + b for a, b in zip(totals, counts)]
    return totals[0], totals[1], totals[2]


def _suite_counts(attrs: dict[str, str]) -> tuple[int, int, int]:
    def num(key: str) -> int:
        return int(float(attrs.get(key) or 0))
    return num("tests"), num("failures") + num("errors"), num("skipped") + num("disabled")


def find_coverage(root: Path) -> tuple[Coverage | None, str]:
    files = _candidates(root, COVERAGE_NAMES)
    if not files:
        return None, "no coverage report found (coverage.xml, coverage.json, lcov.info, ...)"
    newest = max(files, key=lambda f: f.stat().st_mtime)
    try:
        percent = _coverage_percent(newest)
    except (ET.ParseError, OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"{newest.name} cannot be read: {exc}"
    if percent is None:
        return None, f"{newest.name} holds no total"
    return Coverage(newest, max(0.0, min(100.0, percent)), _age_days(newest)), ""


def _coverage_percent(path: Path) -> float | None:
    if path.suffix == ".xml":  # Cobertura: line-rate on the root element
        for _, elem in ET.iterparse(path, events=("start",)):
            rate = elem.attrib.get("line-rate")
            return None if rate is None else float(rate) * 100
        return None
    if path.name == "lcov.info":
        found = hit = 0
        with path.open("rb") as f:
            for line in f:
                if line.startswith(b"LF:"):
                    found += int(line[3:])
                elif line.startswith(b"LH:"):
                    hit += int(line[3:])
        return hit / found * 100 if found else None
    data = json.loads(path.read_bytes())
    if path.name == "coverage-summary.json":  # istanbul json-summary
        return float(data["total"]["lines"]["pct"])
    return float(data["totals"]["percent_covered"])  # coverage.py json
