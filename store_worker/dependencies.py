"""Project dependencies: ``source -[type]-> target`` edges between project names.

Projects need not have any memories: a dependency may be recorded before the other project has
stored anything (the names are only validated, not looked up). Recording the same triple again
returns the stored edge with ``created`` false, not an error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb

from shared.limits import MAX_DESCRIPTION_LEN
from store_worker.records import InvalidInput, check_project
from store_worker.storage.schema import DEPENDENCY_TYPES

_COLUMNS = "source, target, type, description, created_at"


def _as_dict(row: tuple) -> dict[str, Any]:
    source, target, kind, description, created_at = row
    return {"source": source, "target": target, "type": kind, "description": description,
            "created_at": created_at.astimezone(UTC).isoformat()}


def add(con: duckdb.DuckDBPyConnection, source: Any, target: Any, kind: Any,
        description: Any = "") -> dict[str, Any]:
    source, target = check_project(source), check_project(target)
    if source == target:
        raise InvalidInput("a project cannot depend on itself")
    if kind not in DEPENDENCY_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(DEPENDENCY_TYPES)}, not {kind!r}")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LEN:
        raise InvalidInput(f"description must be a string of at most {MAX_DESCRIPTION_LEN}"
                           " characters")
    created = True
    try:
        con.execute(f"INSERT INTO project_dependencies ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                    [source, target, kind, description.strip(), datetime.now(UTC)])
    except duckdb.ConstraintException:
        created = False
    row = con.execute(
        f"SELECT {_COLUMNS} FROM project_dependencies WHERE source = ? AND target = ?"
        " AND type = ?", [source, target, kind]).fetchall()[0]
    return {**_as_dict(row), "created": created}


def of_project(con: duckdb.DuckDBPyConnection, project: Any) -> list[dict[str, Any]]:
    """Edges from or to ``project``, oldest first, each with ``direction`` "out" or "in"."""
    project = check_project(project)
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM project_dependencies WHERE source = ? OR target = ?"
        " ORDER BY created_at, source, target, type", [project, project]).fetchall()
    return [{**_as_dict(r), "direction": "out" if r[0] == project else "in"} for r in rows]


def every(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every edge, oldest first (the dashboard's graph of linked projects)."""
    rows = con.execute(f"SELECT {_COLUMNS} FROM project_dependencies"
                       " ORDER BY created_at, source, target, type").fetchall()
    return [_as_dict(r) for r in rows]
