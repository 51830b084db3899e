"""The labelled retrieval evaluation: does search put the memory that answers a question first?

    uv run python -m bench.retrieval_eval            # every mode, in process (~1 minute)
    uv run python -m bench.retrieval_eval --mcp      # the default through a real stack and MCP

The data (``bench/data/retrieval/``, see its README) is loaded into a real ``MemoryStore`` in a
temp dir, with each memory's ``created_at`` set ``age_days`` before now, the way ``sessiond
import`` brings in dated memories; the real model embeds them exactly as the store's embed
filler does (``pending_embeddings`` -> model -> ``set_embeddings``, chunks included), and each
question is embedded as a query and searched with ``MemoryStore.search``: the store's own
scoring, never a copy of it. Modes are search options; ``default`` passes none, so it is what
``quick_search`` does. ``--mcp`` instead starts a stack, imports the data with the ``sessiond
import`` path, waits for the embeddings and asks ``quick_search`` over MCP with only
``query`` and ``limit``.

Printed per category and in total: R@1 and R@5 (the answer is first / in the first five),
MRR@10 (mean of 1/rank, 0 beyond ten), and the p50 of the search call (query embedding not
included; it is printed once on its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.retrieval_data import CATEGORIES, Dataset, load, problems

# name -> MemoryStore.search options (beyond query, query vector and limit)
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "cosine only": {"fusion": "vector", "decay": False},
    "BM25 only": {"fusion": "keyword", "decay": False},
    "RRF + decay (the old default)": {"fusion": "rrf", "decay": True, "half_life_days": 30.0},
    "RRF without decay": {"fusion": "rrf", "decay": False},
    "default without time preference": {"decay": False},
    "default without chunk vectors": {"chunks": False},
    "cosine only without chunk vectors": {"fusion": "vector", "decay": False, "chunks": False},
}


@dataclass
class Outcome:
    question_id: str
    category: str
    rank: int | None  # 1-based rank of the answer in the first ten, None if absent
    search_s: float
    top: list[str] = field(default_factory=list)  # memory keys of the first five


@dataclass
class ModeReport:
    mode: str
    outcomes: list[Outcome]

    def rows(self) -> dict[str, dict[str, float]]:
        """category (and "all") -> r1, r5, mrr, n."""
        groups: dict[str, list[Outcome]] = defaultdict(list)
        for o in self.outcomes:
            groups[o.category].append(o)
            groups["all"].append(o)
        out = {}
        for name, items in groups.items():
            n = len(items)
            out[name] = {
                "n": n,
                "r1": sum(o.rank == 1 for o in items) / n,
                "r5": sum(o.rank is not None and o.rank <= 5 for o in items) / n,
                "mrr": sum(1 / o.rank for o in items if o.rank) / n,
            }
        return out

    @property
    def search_p50_ms(self) -> float:
        return statistics.median(o.search_s for o in self.outcomes) * 1000


# ------------------------------------------------------------------ in process
def _import_rows(ds: Dataset, now: datetime) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The memories as ``sessiond export`` rows dated ``age_days`` before ``now``, and their ids
    by key."""
    from store_worker.records import new_id

    rows, id_of = [], {}
    for m in ds.memories:
        created = now - timedelta(days=m.age_days)
        rid = new_id(created)
        id_of[m.key] = rid
        rows.append({"id": rid, "kind": m.kind, "content": m.content, "project": m.project,
                     "tags": list(m.tags), "created_at": created.isoformat(), "metadata": {},
                     "session_id": None})
    return rows, id_of


def fill_store(store, embedder, ds: Dataset, now: datetime) -> dict[str, str]:
    """Import the dataset into ``store``, embed everything the way the embed filler does, and
    check for supersession as the store worker does when idle."""
    rows, id_of = _import_rows(ds, now)
    store.import_rows(rows)
    while pending := store.pending_embeddings(256):
        store.set_embeddings([i for i, _ in pending], embedder.embed([t for _, t in pending]))
    store.link_superseded()  # what the store worker does while idle
    return id_of


def evaluate(ds: Dataset, modes: dict[str, dict[str, Any]], *, db_dir: Path,
             embedder=None, progress: Callable[[str], None] = lambda _: None,
             ) -> tuple[list[ModeReport], dict[str, float]]:
    """Run every mode over the dataset in a fresh store under ``db_dir``; returns the reports
    and timings of the set-up (seconds) and the query embedding (ms p50)."""
    from embed_worker.model import Embedder
    from store_worker.memory_store import MemoryStore

    embedder = embedder or Embedder.load()
    now = datetime.now(UTC)
    timings: dict[str, float] = {}
    with MemoryStore(db_dir / "eval.duckdb") as store:
        t0 = time.perf_counter()
        id_of = fill_store(store, embedder, ds, now)
        timings["fill_s"] = time.perf_counter() - t0
        key_of = {v: k for k, v in id_of.items()}
        qvecs, embed_s = [], []
        for q in ds.questions:
            t0 = time.perf_counter()
            qvecs.append(embedder.embed([q.question])[0])
            embed_s.append(time.perf_counter() - t0)
        timings["query_embed_p50_ms"] = statistics.median(embed_s) * 1000
        reports = []
        for mode, options in modes.items():
            progress(mode)
            outcomes = []
            for q, qv in zip(ds.questions, qvecs, strict=True):
                t0 = time.perf_counter()
                res = store.search(q.question, query_vector=qv, limit=10, **options)
                elapsed = time.perf_counter() - t0
                keys = [key_of.get(h["id"], "?") for h in res.hits]
                rank = keys.index(q.answer) + 1 if q.answer in keys else None
                outcomes.append(Outcome(q.id, q.category, rank, elapsed, keys[:5]))
            reports.append(ModeReport(mode, outcomes))
    return reports, timings


# ------------------------------------------------------------------ over MCP
async def _mcp_outcomes(ds: Dataset, env: dict[str, str], export: Path,
                        id_of: dict[str, str]) -> list[Outcome]:
    from bench.harness import REPO
    from bench.mcp_raw import RawMcpClient

    key_of = {v: k for k, v in id_of.items()}
    async with RawMcpClient(env, REPO) as client:
        deadline = time.monotonic() + 600
        while (await client.call_tool("reflection_stats", {}))["pending_embeddings"]:
            if time.monotonic() > deadline:
                raise RuntimeError("embeddings still pending after 10 minutes")
            await asyncio.sleep(0.2)
        outcomes = []
        for q in ds.questions:
            t0 = time.perf_counter()
            res = await client.call_tool("quick_search", {"query": q.question, "limit": 10})
            elapsed = time.perf_counter() - t0
            keys = [key_of.get(h["id"], "?") for h in res["results"]]
            rank = keys.index(q.answer) + 1 if q.answer in keys else None
            outcomes.append(Outcome(q.id, q.category, rank, elapsed, keys[:5]))
    return outcomes


def evaluate_mcp(ds: Dataset) -> ModeReport:
    """The default through a real stack: ``sessiond import`` of the dated rows, then
    ``quick_search`` over MCP stdio."""
    import subprocess

    from bench.harness import REPO, running_stack

    rows, id_of = _import_rows(ds, datetime.now(UTC))
    with running_stack() as stack:
        export = Path(stack.cfg.home) / "eval-import.jsonl"
        export.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "sessiond", "import", str(export)], env=stack.env,
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        outcomes = asyncio.run(_mcp_outcomes(ds, stack.env, export, id_of))
    return ModeReport("default over MCP (quick_search)", outcomes)


# ------------------------------------------------------------------ output
def table(reports: Iterable[ModeReport]) -> str:
    reports = list(reports)
    cats = [c for c in (*CATEGORIES, "all") if c in reports[0].rows()]
    counts = reports[0].rows()
    lines = ["| mode | " + " | ".join(f"{c} ({counts[c]['n']})" for c in cats)
             + " | search p50 ms |",
             "|---|" + "---|" * (len(cats) + 1)]
    for r in reports:
        rows = r.rows()
        cells = [f"{rows[c]['r1']:.2f} / {rows[c]['r5']:.2f} / {rows[c]['mrr']:.2f}"
                 for c in cats]
        lines.append(f"| {r.mode} | " + " | ".join(cells) + f" | {r.search_p50_ms:.2f} |")
    return "\n".join(lines)


def misses(report: ModeReport, ds: Dataset, limit: int = 40) -> str:
    q_by_id = {q.id: q for q in ds.questions}
    out = []
    for o in report.outcomes:
        if o.rank != 1 and len(out) < limit:
            q = q_by_id[o.question_id]
            out.append(f"  {o.question_id} [{o.category}] rank {o.rank}: {q.question!r}\n"
                       f"      answer {q.answer}; got {o.top[:3]}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mcp", action="store_true", help="also run the default through MCP")
    ap.add_argument("--modes", help="comma-separated subset of: " + ", ".join(MODES))
    ap.add_argument("--misses", action="store_true", help="list the default's misses")
    ap.add_argument("--json", type=Path, help="write the per-question outcomes here")
    args = ap.parse_args(argv)

    ds = load()
    found = problems(ds)
    if found:
        print("the data has problems:", *found, sep="\n  ", file=sys.stderr)
        return 1
    modes = MODES if not args.modes else {m: MODES[m] for m in args.modes.split(",")}
    with tempfile.TemporaryDirectory(prefix="sd-eval-") as tmp:
        reports, timings = evaluate(ds, modes, db_dir=Path(tmp),
                                    progress=lambda m: print(f"... {m}", file=sys.stderr))
    if args.mcp:
        reports.append(evaluate_mcp(ds))
    print(f"{len(ds.memories)} memories, {len(ds.questions)} questions; "
          f"import + embedding {timings['fill_s']:.1f} s, "
          f"query embedding p50 {timings['query_embed_p50_ms']:.2f} ms")
    print("cells: R@1 / R@5 / MRR@10")
    print(table(reports))
    if args.misses:
        for r in reports:
            print(f"\nmisses of {r.mode}:\n{misses(r, ds)}")
    if args.json:
        args.json.write_text(json.dumps({r.mode: [o.__dict__ for o in r.outcomes]
                                         for r in reports}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
