"""Start-up: spawn -> MCP ``initialize`` of a gateway, and the first search on a cold stack.

Each round starts the gateway the way the README's ``claude mcp add`` line does
(``uv run --directory <repo> sessiond serve``) and times, with the minimal JSON-RPC client of
``bench/mcp_raw.py``, from the spawn until the ``initialize`` reply. Four launchers, alternated
round by round so machine load hits them alike:

- ``uv run`` with the project's settings as they are now (bytecode compiled lazily, once, by
  Python itself on first import);
- ``uv run`` with ``UV_COMPILE_BYTECODE=1``: the project's old ``compile-bytecode = true``,
  under which every ``uv run`` re-compiles the whole environment (~5,000 files) before starting;
- ``bin/sessiond serve``, as the Claude Code plugin and ``sessiond install`` run it (the
  checkout's venv when it is set up, else ``uv run``);
- ``python -m sessiond serve`` straight from the venv (no uv): the floor.

Phase 1 ("warm stack") measures against a stack that is already running, as every Claude window
after the first meets it. Phase 2 ("cold stack") starts each round with no stack: a data dir of
``--memories`` memories (random unit vectors, written before the stack starts), a gateway
spawned through ``uv run``, and a ``quick_search`` sent right after ``initialize``: its time is
what a user waits for the first answer, stack start, store open and model load included. (The
disk cache is warm: "cold" is the processes, not the page cache.)

Usage: ``uv run python -m bench.startup [--rounds 5] [--memories 1000] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import REPO, machine, percentiles, running_stack, stack_env
from bench.mcp_raw import RawMcpClient
from bench.workload import Corpus, populate
from shared.version import VERSION

UV = shutil.which("uv") or "uv"
LAUNCHERS = {
    "uv run (lazy bytecode, now)": ([UV, "run", "--directory", str(REPO), "sessiond", "serve"],
                                    {"UV_COMPILE_BYTECODE": None}),
    "uv run (compile-bytecode, before)": (
        [UV, "run", "--directory", str(REPO), "sessiond", "serve"], {"UV_COMPILE_BYTECODE": "1"}),
    "bin/sessiond serve (the plugin's)": ([str(REPO / "bin" / "sessiond"), "serve"], {}),
    "python -m sessiond serve (no uv)": ([sys.executable, "-m", "sessiond", "serve"], {}),
}


def _env(base: dict[str, str], extra: dict[str, str | None]) -> dict[str, str]:
    env = dict(base)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


async def _connect_once(command: list[str], env: dict[str, str],
                        search: str | None = None) -> tuple[float, float | None, dict]:
    """(spawn -> initialize s, initialize -> search answer s or None, serverInfo)."""
    t0 = time.perf_counter()
    async with RawMcpClient(env, REPO, command) as client:
        t_init = time.perf_counter() - t0
        t_search = None
        if search is not None:
            ts = time.perf_counter()
            await client.call_tool("quick_search", {"query": search})
            t_search = time.perf_counter() - ts
        return t_init, t_search, client.initialize_result.get("serverInfo", {})


def warm_stack_phase(rounds: int) -> dict:
    samples: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    info: dict = {}
    with running_stack() as stack:
        for name, (command, extra) in LAUNCHERS.items():  # one unmeasured start each
            asyncio.run(_connect_once(command, _env(stack.env, extra)))
        for r in range(rounds):
            names = list(LAUNCHERS) if r % 2 == 0 else list(reversed(LAUNCHERS))
            for name in names:
                command, extra = LAUNCHERS[name]
                t_init, _, info = asyncio.run(_connect_once(command, _env(stack.env, extra)))
                samples[name].append(t_init)
    return {"spawn_to_initialize": {k: percentiles(v) for k, v in samples.items()},
            "server_info": info}


def _stop_stack(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "sessiond", "stop"], env=env, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)


def cold_stack_phase(rounds: int, memories: int, base: Path) -> dict:
    home = base / "cold"
    home.mkdir()
    corpus = Corpus(seed=7)
    populate(home / "memory.duckdb", memories, corpus, engine_calls=1)
    env = stack_env(home, idle_timeout_s=300)
    command, extra = LAUNCHERS["uv run (lazy bytecode, now)"]
    env = _env(env, extra)
    inits, searches = [], []
    queries = corpus.queries(rounds)
    for r in range(rounds):
        try:
            t_init, t_search, _ = asyncio.run(_connect_once(command, env, search=queries[r]))
        finally:
            _stop_stack(env)
        inits.append(t_init)
        searches.append(t_search)
    return {"memories": memories, "spawn_to_initialize": percentiles(inits),
            "first_search_after_initialize": percentiles(searches),
            "spawn_to_first_answer": percentiles([a + b for a, b in zip(inits, searches,
                                                                          strict=True)])}


def _fmt(d: dict) -> str:
    return f"p50 {d['p50_ms']:.0f} ms, p95 {d['p95_ms']:.0f} ms (n={d['n']})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memories", type=int, default=1000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="sd-start-"))
    load_before = os.getloadavg()
    try:
        warm = warm_stack_phase(args.rounds)
        cold = cold_stack_phase(args.rounds, args.memories, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out = {"machine": machine(), "version": VERSION, "load_avg_before": load_before,
           "load_avg_after": os.getloadavg(), "warm_stack": warm, "cold_stack": cold}
    print(f"machine: {out['machine']}")
    print(f"load average before {load_before[0]:.2f} / after {out['load_avg_after'][0]:.2f} "
          "(1 min): figures on a shared machine are noisy; compare within the run")
    print(f"serverInfo in the initialize reply: {warm['server_info']}")
    print("spawn -> initialize, stack already running:")
    spawn = warm["spawn_to_initialize"]
    for name, d in spawn.items():
        print(f"  {name:40s} {_fmt(d)}")
    now, before = (spawn["uv run (lazy bytecode, now)"]["p50_ms"],
                   spawn["uv run (compile-bytecode, before)"]["p50_ms"])
    print(f"  ratio now / before (p50): {now / before:.2f}")
    print(f"cold stack ({cold['memories']} memories), uv run, lazy bytecode:")
    print(f"  spawn -> initialize                    {_fmt(cold['spawn_to_initialize'])}")
    print(f"  initialize -> first quick_search answer {_fmt(cold['first_search_after_initialize'])}")
    print(f"  spawn -> first answer                  {_fmt(cold['spawn_to_first_answer'])}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
