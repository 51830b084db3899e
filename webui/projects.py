"""The project pages: every project's counts, growth over time, links and most used tags; one
project's own."""

from __future__ import annotations

from itertools import accumulate
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shared import protocol as p
from shared.limits import MAX_PROJECT_LEN
from webui import charts
from webui.render import memories_href, project_href

WEEKS = (12, 26, 52, 104)
DEFAULT_WEEKS = 26
LINES_SHOWN = 6  # projects drawn in the growth chart (the rest as "others")


def _weeks(request: Request) -> int:
    value = request.query_params.get("weeks", "")
    return int(value) if value.isdigit() and int(value) in WEEKS else DEFAULT_WEEKS


def _labels(data: dict[str, Any]) -> list[str]:
    return [w[5:] for w in data["weeks"]]  # MM-DD of each week's Monday


def growth_chart(data: dict[str, Any], projects: list[dict[str, Any]], title: str) -> Any:
    """Memories in all at the end of each week, one line per project (the biggest)."""
    shown = projects[:LINES_SHOWN]
    series = [charts.Series(pr["name"], list(accumulate(pr["growth"], initial=pr["before"]))[1:])
              for pr in shown]
    rest = projects[LINES_SHOWN:]
    if rest:
        weekly = [sum(col) for col in zip(*(pr["growth"] for pr in rest), strict=True)]
        series.append(charts.Series(f"{len(rest)} others", list(accumulate(
            weekly, initial=sum(pr["before"] for pr in rest)))[1:]))
    return charts.lines(_labels(data), series, title=title)


def graph_of(data: dict[str, Any], focus: str | None = None) -> Any:
    edges = [(d["source"], d["target"], d["type"]) for d in data["dependencies"]]
    if focus is not None:
        edges = [e for e in edges if focus in (e[0], e[1])]
    counts = {pr["name"]: pr["count"] for pr in data["projects"]}
    names = list(dict.fromkeys([*([focus] if focus and edges else []),
                                *(n for e in edges for n in e[:2])]))
    nodes = [(n, counts.get(n, 0), project_href(n)) for n in names]
    return charts.graph(nodes, edges, focus=focus, title="Linked projects")


def tags_chart(tags: list[list[Any]], project: str | None = None) -> Any:
    extra = {"project": project} if project else {}
    return charts.hbars([(t, n, memories_href(tags=t, **extra)) for t, n in tags],
                        title="Most used tags")


async def overview(request: Request) -> Response:
    ui = request.app.state.ui
    weeks = _weeks(request)
    data = (await ui.store(p.ProjectOverview(weeks=weeks, top_tags=10))).data
    projects = data["projects"]
    weekly = [sum(col) for col in zip(*(pr["growth"] for pr in projects), strict=True)] or [
        0] * weeks
    before = sum(pr["before"] for pr in projects)
    total_chart = charts.bars(
        _labels(data), weekly, running=list(accumulate(weekly, initial=before))[1:],
        title="Memories stored each week (bars) and in all (line, right axis)")
    return ui.render(
        request, "projects.html", title="Projects", active="projects", data=data,
        projects=projects, weeks=weeks, week_choices=WEEKS, total_chart=total_chart,
        growth=growth_chart(data, projects, "Memories per project, in all, week by week"),
        graph=graph_of(data), tags=tags_chart(data["top_tags"]))


async def detail(request: Request) -> Response:
    ui = request.app.state.ui
    name = request.path_params["name"]
    weeks = _weeks(request)
    if not 0 < len(name) <= MAX_PROJECT_LEN:
        return ui.render(request, "error.html", status=404, title="No such project",
                         message="A project name is 1-200 characters.", active="projects")
    data = (await ui.store(p.ProjectOverview(weeks=weeks, top_tags=15))).data
    project = next((pr for pr in data["projects"] if pr["name"] == name), None)
    links = [d for d in data["dependencies"] if name in (d["source"], d["target"])]
    if project is None and not links:
        return ui.render(request, "error.html", status=404, title="No such project",
                         message=f"No memory or link names the project {name!r}.",
                         active="projects")
    sessions = await ui.store(p.SessionQuery(project=name, limit=20))
    growth = None
    if project is not None:
        growth = charts.bars(
            _labels(data), project["growth"],
            running=list(accumulate(project["growth"], initial=project["before"]))[1:],
            title=f"{name}: memories stored each week (bars) and in all (line)")
    return ui.render(
        request, "project.html", title=f"Project {name}", active="projects", name=name,
        project=project, links=links, sessions=sessions.items, weeks=weeks, week_choices=WEEKS,
        growth=growth, graph=graph_of(data, focus=name),
        tags=tags_chart(project["top_tags"], name) if project else None)
