"""The dashboard in a real browser: headless Chromium (Debian's package, driven by Playwright)
against ``sessiond ui`` and a real stack whose memories, project links and session were made
through a real MCP client (store_reflection, add_project_dependency, start/checkpoint/end).

Each page is loaded and checked, and saved as a screenshot (``UI_SCREENSHOTS_DIR=docs/ui``
writes the README's images). The tests run in file order: the deletes come last.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import pytest
from conftest import call, gateway_client, private_stack, wait_embedded
from git_fixtures import commit_all, new_repo, stack_overrides, write
from webui_fixtures import Dashboard, browser, screenshot_dir

SEEDED = [  # project, content, tags
    ("shop", ("The checkout page validates the cart total on the server before charging the "
             "card."), ["checkout"]),
    ("shop", "Invoice PDFs are rendered with wkhtmltopdf in the billing worker.", ["pdf"]),
    ("shop", ("We replaced wkhtmltopdf with WeasyPrint for the invoice PDFs in the billing "
             "worker."), ["pdf"]),
    ("shop", ('Pasted from a scraped page: <script>window.__pwned = 1</script><img src=x '
             'onerror="window.__pwned = 2"> keep it as text'), ["security"]),
    ("billing", ("Failed charges are retried three times with exponential backoff starting at "
                "30 seconds."), ["retry", "payments"]),
    ("billing", "The ledger export runs nightly at 02:00 UTC as a cron job on the worker host.",
     ["cron"]),
    ("ledger", "Ledger entries are immutable; a correction is a new reversing entry.",
     ["accounting"]),
    ("docs", "The docs site is built with mkdocs-material and deployed from the main branch.",
     ["docs"]),
    ("app", "The mobile app caches product images on disk for seven days.", ["cache"]),
    ("app", "Rotate the staging database password every quarter; the old one leaked once.",
     ["doomed"]),
    ("app", "The staging database is reset to a fresh snapshot every Sunday night.", ["keep"]),
    ("app", "Crash reports from the Android build are uploaded after the next launch.",
     ["granted"]),
]
OLD_PDF, NEW_PDF, SCRIPT, DOOMED, KEEP, GRANTED = 1, 2, 3, 9, 10, 11


class Mcp:
    """One real MCP client (a ``sessiond serve`` gateway) on a thread of its own with its own
    event loop: Playwright's sync API holds the test thread's loop."""

    def __init__(self, env: dict[str, str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = gateway_client(env)
        self.run(self.client.__aenter__())

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def call(self, tool: str, args: dict | None = None) -> dict:
        return self.run(call(self.client, tool, args))

    def close(self) -> None:
        try:
            self.run(self.client.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


async def seed(client, repo: Path) -> dict:
    ids = [(await call(client, "store_reflection", {
        "content": text, "tags": tags, "project": project}))["id"]
        for project, text, tags in SEEDED]
    for source, target, kind in (("shop", "billing", "uses"), ("billing", "ledger", "extends"),
                                 ("docs", "shop", "reference")):
        await call(client, "add_project_dependency", {
            "source_project": source, "target_project": target, "dependency_type": kind})
    started = await call(client, "start", {"working_directory": str(repo)})
    await call(client, "checkpoint", {"message": "cart checks in place"})
    write(repo, {"app.py": "VALUE = 2\n\n\ndef total(items):\n    return sum(items)\n"})
    await call(client, "checkpoint", {"message": "totals helper"})
    ended = await call(client, "end", {})
    await wait_embedded(client)
    deadline = time.monotonic() + 30
    while (await call(client, "reflection_stats"))["supersessions"] < 1:
        assert time.monotonic() < deadline, "the PDF memories were never linked"
        await asyncio.sleep(0.2)
    return {"ids": ids, "session": started["session_id"], "handoff": ended["handoff_path"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with private_stack(**stack_overrides()) as (env, _home):
        repo = new_repo("shopfront")
        write(repo, {"app.py": "VALUE = 1\n", "README.md": "# shopfront\n\n" + "A shop. " * 40})
        commit_all(repo)
        mcp = Mcp(env)
        ui = None
        try:
            seeded = mcp.run(seed(mcp.client, repo))
            ui = Dashboard(env)
            with browser() as chromium:
                yield {"env": env, "ui": ui, "mcp": mcp, "chromium": chromium, **seeded,
                       "shots": screenshot_dir(tmp_path_factory.mktemp("shots"))}
        finally:
            if ui is not None:
                ui.stop()
            mcp.close()


@pytest.fixture
def page(site):
    context = site["chromium"].new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    pg.on("console", lambda msg: pg.errors.append(msg.text) if msg.type == "error" else None)
    yield pg
    context.close()


def goto(page, site, path: str) -> None:
    response = page.goto(site["ui"].base + path)
    assert response is not None and response.status == 200, (path, response and response.status)


def shot(page, site, name: str) -> None:
    page.screenshot(path=str(site["shots"] / f"{name}.png"), full_page=True)


def search(page, text: str) -> None:
    """Type into the search box as a person does and wait for the results of the whole text."""
    page.fill("#q", "")
    page.type("#q", text, delay=25)
    page.wait_for_function("q => { const s = document.querySelector('#summary');"
                           " return s !== null && s.dataset.q === q; }", arg=text)


def texts(locator) -> list[str]:
    """The text of each element (SVG elements have no innerText)."""
    return locator.evaluate_all("els => els.map(e => e.textContent)")


def hit_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results li.hit", "els => els.map(e => e.dataset.id)")


def test_search_as_you_type_puts_the_expected_memory_first(page, site):
    goto(page, site, "/memories")
    assert len(hit_ids(page)) == len(SEEDED) + 2  # and the two checkpoint memories
    search(page, "weasyprint invoice")
    ids = hit_ids(page)
    assert ids[0] == site["ids"][NEW_PDF]
    first = page.locator("#results li.hit").first
    assert "WeasyPrint" in first.locator(".title").inner_text()
    parts = first.locator("dl.parts").inner_text()
    for part in ("score", "relevance", "cosine", "keyword", "bm25", "recency"):
        assert part in parts
    assert first.locator("time").inner_text().endswith("ago")
    assert "q=weasyprint+invoice" in page.url  # the address follows the search
    shot(page, site, "memories")
    assert page.errors == []


def test_filters_narrow_the_list(page, site):
    goto(page, site, "/memories?project=billing")
    assert set(hit_ids(page)) == {site["ids"][4], site["ids"][5]}
    page.select_option("select[name=project]", "app")
    page.wait_for_function("() => (document.querySelector('#results').dataset.shown || '')"
                           ".includes('project=app')")
    assert len(hit_ids(page)) == 4
    goto(page, site, "/memories?tags=cron,accounting")
    assert set(hit_ids(page)) == {site["ids"][5], site["ids"][6]}
    goto(page, site, "/memories?kind=checkpoint")
    assert len(hit_ids(page)) == 2
    goto(page, site, f"/memories?session={site['session']}")
    assert len(hit_ids(page)) == 2  # the session's checkpoint memories
    goto(page, site, "/memories?per_page=10&page=2")
    assert len(hit_ids(page)) == len(SEEDED) + 2 - 10
    assert page.locator("nav.pager strong").inner_text() == "2"


def test_a_memory_page_shows_content_links_and_neighbours(page, site):
    goto(page, site, "/memories")
    search(page, "weasyprint invoice")
    page.locator("#results li.hit .title").first.click()
    page.wait_for_url(re.compile(rf"/memories/{site['ids'][NEW_PDF]}$"))
    assert "replaced wkhtmltopdf with WeasyPrint" in page.inner_text("#content")
    supersedes = page.locator("ul.links a")
    assert supersedes.count() == 1
    assert supersedes.first.get_attribute("href") == f"/memories/{site['ids'][OLD_PDF]}"
    neighbours = page.locator("ol.neighbours li a")
    assert neighbours.count() >= 5
    assert neighbours.first.get_attribute("href") == f"/memories/{site['ids'][OLD_PDF]}"
    shot(page, site, "memory")
    supersedes.first.click()  # the older one says what replaced it
    assert page.locator("p.notice", has_text="Superseded by").count() == 1
    assert page.errors == []


def test_a_stored_script_is_shown_as_text_and_never_runs(page, site):
    script_id = site["ids"][SCRIPT]
    for path in ("/memories?q=scraped+page", "/memories", f"/memories/{script_id}",
                 "/memories?tags=security"):
        goto(page, site, path)
        page.wait_for_timeout(200)  # time for an onerror handler, if one had been parsed
        assert page.evaluate("() => window.__pwned") is None, path
        assert page.locator("main script").count() == 0
        assert page.locator("main img").count() == 0
        shown = page.inner_text("#content" if path.endswith(script_id) else "#results")
        assert "<script>window.__pwned = 1</script>" in shown, path
    assert page.errors == []


def test_projects_pages_draw_growth_links_and_tags(page, site):
    goto(page, site, "/projects")
    assert page.locator("svg.chart").count() == 4  # growth x2, links, tags
    nodes = texts(page.locator("svg .node-label"))
    assert set(nodes) == {"shop", "billing", "ledger", "docs"}
    rows = page.locator("table.projects tbody tr")
    assert rows.first.locator("td").first.inner_text() == "shop"  # the biggest first
    assert "pdf" in page.locator("svg").nth(3).inner_html()
    shot(page, site, "projects")
    page.locator("table.projects a", has_text="billing").first.click()
    page.wait_for_url(re.compile(r"/projects/billing$"))
    assert page.locator("h1").inner_text() == "billing"
    assert set(texts(page.locator("svg .node-label"))) == {"shop", "billing", "ledger"}
    assert page.errors == []


def test_sessions_timeline_quality_chart_and_handoff(page, site):
    goto(page, site, "/sessions")
    assert page.locator("svg.chart rect.span").count() == 1
    assert page.locator("table.sessions tbody tr").count() == 1
    shot(page, site, "sessions")
    page.locator("table.sessions a", has_text=re.compile(r"\d{4}-")).first.click()
    page.wait_for_url(re.compile(rf"/sessions/{site['session']}$"))
    assert page.locator("svg.chart circle.dot").count() == 4  # start, two checkpoints, end
    assert page.locator("table.checkpoints tbody tr").count() == 4
    handoff = page.locator("#handoff")
    assert handoff.locator("h2", has_text="Summary").count() == 1  # markdown, rendered
    assert handoff.locator("h2", has_text="Quality trend").count() == 1
    assert site["handoff"] in page.inner_text("main")
    shot(page, site, "session")
    assert page.errors == []


def test_the_stack_page_shows_every_worker_and_refreshes(page, site):
    goto(page, site, "/stack")
    workers = page.locator("tr.worker")
    assert sorted(workers.evaluate_all("rows => rows.map(r => r.dataset.worker)")) == [
        "embed-0", "quality", "store"]
    for row in workers.all():
        assert row.locator(".badge").inner_text() in ("ready", "busy")
        assert int(row.locator("td").nth(2).inner_text()) > 0  # a pid
    store = page.locator('tr.worker[data-worker="store"] td')
    assert float(store.nth(6).inner_text()) >= 0  # p50 ms: the store answered requests
    assert store.nth(9).inner_text().endswith("MB")  # RSS
    assert page.inner_text("#backlog") == "0"
    first = page.inner_text("#refreshed")
    page.wait_for_function("t => document.querySelector('#refreshed').innerText !== t",
                           arg=first, timeout=15_000)
    assert page.get_attribute("#stack-live", "data-state") == "live"
    shot(page, site, "stack")
    assert page.errors == []


def test_pages_are_readable_without_javascript(site):
    context = site["chromium"].new_context(java_script_enabled=False)
    try:
        pg = context.new_page()
        pg.goto(site["ui"].base + "/memories")
        pg.fill("#q", "nightly ledger export")
        pg.click("form#filters button[type=submit]")  # a plain GET form
        pg.wait_for_url(re.compile(r"q=nightly"))
        assert pg.locator("#results li.hit").first.get_attribute("data-id") == site["ids"][5]
        for path, text in (("/projects", "Every project"), ("/sessions", "Timeline"),
                           ("/stack", "embedding backlog"),
                           (f"/memories/{site['ids'][0]}", "Nearest neighbours")):
            pg.goto(site["ui"].base + path)
            assert text in pg.inner_text("main"), path
            assert pg.locator("svg.chart").count() >= (1 if path != "/stack" and not
                                                       path.startswith("/memories") else 0)
    finally:
        context.close()


def _decisions(site) -> list[dict]:
    return site["mcp"].call("permissions", {"action": "status"})["decisions"]


def _exists(site, memory_id: str) -> bool:
    return not site["mcp"].call("get_memory", {"ids": [memory_id]})["missing"]


def test_delete_asks_and_the_memory_is_gone_from_search(page, site):
    doomed = site["ids"][DOOMED]
    goto(page, site, "/memories")
    search(page, "staging database password rotation")
    assert hit_ids(page)[0] == doomed
    page.check(f'#results li.hit[data-id="{doomed}"] input[type=checkbox]')
    page.click("#delete-selected")
    page.wait_for_url(re.compile(r"/memories/delete$"))
    question = page.inner_text("#question")
    assert question.startswith(f"Allow delete_memories: 1 memory by id ({doomed})?")
    assert "critical: permanently deletes memories" in question
    shot(page, site, "delete")
    page.click("button[name=choice][value=yes]")
    page.wait_for_url(re.compile(r"deleted=1"))
    assert page.inner_text("#notice") == "Deleted 1 memory."
    search(page, "staging database password rotation")
    assert doomed not in hit_ids(page)
    assert not _exists(site, doomed)
    mine = [d for d in _decisions(site) if d["operation"] == "delete_memories"
            and doomed in d["detail"]]
    assert [d["decision"] for d in mine] == ["approved", "asked"]  # newest first
    assert mine[0]["gateway_pid"] == site["ui"].proc.pid
    assert page.errors == []


def test_no_keeps_the_memory_and_is_logged_as_denied(page, site):
    keep = site["ids"][KEEP]
    goto(page, site, f"/memories/{keep}")
    page.click("#delete-one")
    page.wait_for_url(re.compile(r"/memories/delete$"))
    page.click("button[name=choice][value=no]")
    page.wait_for_url(re.compile(r"cancelled=1"))
    assert page.inner_text("#notice") == "Nothing was deleted."
    assert _exists(site, keep)
    mine = [d["decision"] for d in _decisions(site) if keep in d["detail"]]
    assert mine == ["denied", "asked"]


def test_with_a_grant_the_delete_only_confirms_and_uses_it(page, site):
    target = site["ids"][GRANTED]
    grant = {"action": "trust", "operation": "delete_memories", "ttl_minutes": 5}
    site["mcp"].call("permissions", grant)
    try:
        goto(page, site, f"/memories/{target}")
        page.click("#delete-one")
        page.wait_for_url(re.compile(r"/memories/delete$"))
        assert "delete_memories is trusted until" in page.inner_text("#question")
        assert page.locator("button[name=choice]").all_inner_texts() == ["Delete", "Cancel"]
        page.click("button[name=choice][value=yes]")
        page.wait_for_url(re.compile(r"deleted=1"))
        assert not _exists(site, target)
        assert [d["decision"] for d in _decisions(site) if target in d["detail"]] == ["allowed"]
    finally:
        site["mcp"].call("permissions", {"action": "revoke", "operation": "delete_memories"})
