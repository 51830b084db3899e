"""Session tool latency through MCP on a generated git repository of 5,000 files.

    uv run python -m bench.session_latency [--files 5000] [--runs 5]

The repository is ``bench.quality_latency``'s (a Python project: modules, tests, docs, a few
lint findings; ruff runs on it), committed. A real stack and a real gateway (``sessiond
serve``) spawned by the minimal MCP client of ``bench.mcp_raw`` (client-side wall time of each
``tools/call``). ``git_commit`` is trusted first, so each checkpoint commits. Each run is one
session: ``start``, ``status`` x 10, three tracked files edited then ``checkpoint``, twice,
then ``end``; the first ``start`` (ruff without a cache, the tool probe) is reported apart.

The issue's bars: ``start`` <= 1.5 s and ``checkpoint`` <= 2 s on 5,000 files, ``status`` <=
100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.harness import REPO, machine, percentiles, running_stack
from bench.mcp_raw import RawMcpClient
from bench.quality_latency import make_repo

BARS_MS = {"start": 1500, "checkpoint": 2000, "status": 100}
STATUS_CALLS = 10


async def timed(client: RawMcpClient, tool: str, args: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = await client.call_tool(tool, args)
    return time.perf_counter() - t0, result


def edit(repo: Path, run: int, k: int) -> None:
    for i in range(3):
        target = repo / "src" / "app" / "pkg00" / f"mod{i}.py"
        target.write_text(target.read_text() + f"\n# run {run} edit {k}\n")


async def measure(env: dict[str, str], repo: Path, runs: int) -> dict:
    samples: dict[str, list[float]] = {"start": [], "checkpoint": [], "end": [], "status": []}
    out: dict = {}
    where = {"working_directory": str(repo)}
    async with RawMcpClient(env, REPO) as client:
        await client.call_tool("permissions", {"action": "trust", "operation": "git_commit",
                                               "ttl_minutes": 60})
        for run in range(runs + 1):
            took, started = await timed(client, "start", where)
            if run == 0:
                out["start_cold_ms"] = round(took * 1000, 1)
                out["score"] = started["quality"]["score"]
                out["bounded"] = started["quality"]["bounded"]
            else:
                samples["start"].append(took)
            for _ in range(STATUS_CALLS):
                samples["status"].append((await timed(client, "status", {}))[0])
            for k in range(2):
                edit(repo, run, k)
                took, cp = await timed(client, "checkpoint", {"message": f"run {run}.{k}"})
                assert cp["commit"]["committed"], cp["commit"]
                samples["checkpoint"].append(took)
            took, ended = await timed(client, "end", {})
            assert ended["handoff_path"], ended
            samples["end"].append(took)
    out.update({tool: percentiles(values) for tool, values in samples.items()})
    out["bars"] = {tool: {"bar_ms": bar, "p95_ms": out[tool]["p95_ms"],
                          "pass": out[tool]["p95_ms"] <= bar} for tool, bar in BARS_MS.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sd-sbench-"))
    try:
        t0 = time.perf_counter()
        repo = make_repo(base, args.files)
        built = time.perf_counter() - t0
        with running_stack(io_roots=str(base)) as running:
            result = asyncio.run(measure(running.env, repo, args.runs))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"machine": machine(), "files": args.files,
                      "repo_built_s": round(built, 1), **result}, indent=2))


if __name__ == "__main__":
    main()
