"""Code-quality signals: lint findings (ruff, on Python projects), the last test run's results
and coverage (from the reports it left), and whether a type checker is configured."""

from __future__ import annotations

import json

from quality_worker.lint import Lint
from quality_worker.project import Project
from quality_worker.reports import find_coverage, find_test_results
from quality_worker.score import measured, not_applicable, unknown
from shared import protocol as p

# The lint value halves for every HALF_AT findings per Python file: 0.05 per file -> 0.87,
# 0.25 -> 0.5, 1 -> 0.06.
HALF_AT = 0.25
STALE_DAYS = 30
TYPE_CONFIG_FILES = ("mypy.ini", ".mypy.ini", "pyrightconfig.json", "pytype.cfg", "ty.toml")
TYPE_TOOL_SECTIONS = ("mypy", "pyright", "basedpyright", "pytype", "ty")


def lint(pr: Project, result: Lint | None, enabled: bool) -> p.Signal:
    if not pr.python:
        return not_applicable("lint", "not a Python project (ruff lints Python)")
    if not enabled:
        return unknown("lint", "lint not requested")
    if result is None or result.error:
        why = result.error if result is not None else "ruff was not run (no time left)"
        return unknown("lint", why, "install ruff to lint the project" if "not installed" in why
                       else "")
    files = max(pr.scan.python_files, len(result.files), 1)
    at_least = "at least " if result.cut else ""
    if result.cut and pr.scan.bounded:
        return unknown("lint", f"ruff: at least {result.findings} findings ({result.where()}); "
                       "its output passed the cap and the project has more files than the "
                       "scan counted, so the findings per file are not known",
                       f"at least {result.findings} lint findings: run `ruff check --fix`, "
                       "then `ruff check` for the rest")
    scope = f"{files} Python files" + (" seen (scan bounded)" if pr.scan.bounded else "")
    if not result.findings:
        return measured("lint", 1, f"ruff: no findings in {scope}")
    value = 0.5 ** (result.findings / files / HALF_AT)
    detail = (f"ruff: {at_least}{result.findings} findings in {len(result.files)} files "
              f"({result.where()}; {result.fixable} fixable; most common {result.common()}) "
              f"of {scope}")
    dirs = [d for d in result.by_dir if d.endswith("/")]
    target = f" {dirs[0]}" if len(result.by_dir) == 1 and dirs else ""
    fix = (f"; {result.fixable} fixable: run `ruff check --fix{target}`" if result.fixable
           else "; fix them by hand (`ruff check` lists them)")
    advice = f"{at_least}{result.findings} lint findings {result.where()}{fix}"
    return measured("lint", value, detail, advice)


def test_results(pr: Project) -> p.Signal:
    found, why = find_test_results(pr.root)
    if found is None:
        return unknown("test_results", why, _report_advice(pr, "junit"))
    ran = found.tests - found.skipped
    rel = found.path.relative_to(pr.root)
    age = _age(found.age_days)
    if ran <= 0:
        return unknown("test_results", f"{rel} ({age}) holds no test that ran")
    passed = ran - found.failed
    detail = (f"{rel} ({age}): {passed} of {ran} tests passed"
              + (f", {found.skipped} skipped" if found.skipped else ""))
    advice = f"{found.failed} of {ran} tests failed in the last run ({rel}): fix them"
    return measured("test_results", max(0, passed) / ran, detail, advice)


def coverage(pr: Project) -> p.Signal:
    found, why = find_coverage(pr.root)
    if found is None:
        return unknown("coverage", why, _report_advice(pr, "coverage"))
    rel = found.path.relative_to(pr.root)
    detail = f"{rel} ({_age(found.age_days)}): {found.percent:.1f}% of lines covered"
    return measured("coverage", found.percent / 100, detail,
                    f"test coverage is {found.percent:.0f}% ({rel}): cover the untested code")


def type_checking(pr: Project) -> p.Signal:
    if pr.python:
        configured = [n for n in TYPE_CONFIG_FILES if pr.has(n)]
        tool = (pr.pyproject or {}).get("tool", {})
        configured += [f"[tool.{s}] in pyproject.toml" for s in TYPE_TOOL_SECTIONS if s in tool]
        raw = pr.read_small("setup.cfg") if pr.has("setup.cfg") else None
        if raw and b"[mypy" in raw:
            configured.append("[mypy] in setup.cfg")
        if configured:
            return measured("type_checking", 1, ", ".join(configured))
        return measured("type_checking", 0, "no type checker configured",
                        "no type checker configured: add [tool.mypy] (or pyright) to "
                        "pyproject.toml and run it in CI")
    if pr.scan.languages["typescript"] or pr.has("tsconfig.json"):
        if not pr.has("tsconfig.json"):
            return measured("type_checking", 0, "TypeScript without tsconfig.json",
                            "add a tsconfig.json with \"strict\": true")
        strict = _tsconfig_strict(pr)
        return measured("type_checking", 1 if strict else 0.5,
                        "tsconfig.json" + (" (strict)" if strict else " (not strict)"),
                        "turn on \"strict\" in tsconfig.json")
    return not_applicable("type_checking", "no Python or TypeScript sources")


def _tsconfig_strict(pr: Project) -> bool:
    raw = pr.read_small("tsconfig.json") or b"{}"
    try:
        data = json.loads(raw)
    except ValueError:  # tsconfig allows comments; look for the literal setting
        return b'"strict": true' in raw or b'"strict":true' in raw
    return bool(isinstance(data, dict) and data.get("compilerOptions", {}).get("strict"))


def _age(days: float) -> str:
    text = "today" if days < 1 else f"{days:.0f} days old"
    return text + (", stale" if days > STALE_DAYS else "")


def _report_advice(pr: Project, kind: str) -> str:
    if not pr.python or not pr.scan.test_files:
        return ""
    if kind == "junit":
        return ("no test report: run `pytest --junitxml=junit.xml` so the results count in "
                "the score")
    return ("no coverage report: run `pytest --cov --cov-report=xml` (pytest-cov) so coverage "
            "counts in the score")
