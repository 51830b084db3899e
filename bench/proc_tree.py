"""Memory of a server made of several processes: every process under some root pids, summed."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psutil

MB = 2**20


def label(proc: psutil.Process) -> str:
    """A short name for a server process: a sessiond worker's ``--name``, else what ``-m`` runs
    (``sessiond serve``, ``mcp_memory_service.server``), else the executable's name."""
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return f"pid {proc.pid}"
    if "--name" in cmd[:-1]:
        return cmd[cmd.index("--name") + 1]
    if "-m" in cmd[:-1]:
        i = cmd.index("-m")
        return " ".join(cmd[i + 1:i + 3])
    try:
        return proc.name()
    except psutil.Error:
        return f"pid {proc.pid}"


def tree(roots: Iterable[int]) -> list[psutil.Process]:
    """The root processes that still exist and all their descendants, each once."""
    found: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in members:
            found.setdefault(proc.pid, proc)
    return list(found.values())


def sample(roots: Iterable[int]) -> dict:
    """RSS and PSS (MB) of each process of the tree, labelled, and their totals. A process
    that exits while it is read counts as 0. PSS splits pages shared between processes (the
    same library mapped by several workers), so its total is what the tree really holds."""
    procs: dict[str, dict[str, float]] = {}
    for proc in tree(roots):
        try:
            full = proc.memory_full_info()
        except psutil.Error:
            continue
        name = label(proc)
        if name in procs:
            name = f"{name} ({proc.pid})"
        procs[name] = {"rss_mb": round(full.rss / MB, 1), "pss_mb": round(full.pss / MB, 1)}
    return {"processes": procs, "count": len(procs),
            "rss_mb": round(sum(p["rss_mb"] for p in procs.values()), 1),
            "pss_mb": round(sum(p["pss_mb"] for p in procs.values()), 1)}


def gone(pids: Iterable[int], timeout_s: float, *, kill: Callable[[psutil.Process], None]
         | None = None) -> list[int]:
    """Wait up to ``timeout_s`` for ``pids`` to exit; ``kill`` (e.g. ``Process.kill``) is then
    applied to each one left. Returns the pids that were still there after the wait."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        if kill is not None:
            try:
                kill(proc)
            except psutil.Error:
                pass
    return [p.pid for p in alive]
