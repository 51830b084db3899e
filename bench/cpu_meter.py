"""CPU accounting for benchmarks: load from other processes, and CPU per process role."""

from __future__ import annotations

import time

import psutil


# ----------------------------------------------------------------------------- CPU accounting
def _busy_cpu_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(
        t, "steal", 0)


def _tree_cpu_s() -> dict[int, float]:
    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
        except psutil.Error:
            continue
    return out


class CpuMeter:
    """CPU busy during a phase: by this benchmark and its children vs by everything else."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.busy0 = _busy_cpu_s()
        self.tree0 = _tree_cpu_s()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        busy = _busy_cpu_s() - self.busy0
        tree1 = _tree_cpu_s()
        ours = sum(v - self.tree0.get(pid, 0.0) for pid, v in tree1.items())
        return {"wall_s": round(wall, 2), "ours_cores": round(ours / wall, 2),
                "other_cores": round(max(0.0, busy - ours) / wall, 2)}


class RoleCpu:
    """CPU time of each process on a request's path (client = this process), per call."""

    def __init__(self, stack_pid: int, gateway_pid: int) -> None:
        stack = psutil.Process(stack_pid)
        self.roles: dict[str, list[psutil.Process]] = {
            "client": [psutil.Process()], "gateway": [psutil.Process(gateway_pid)],
            "hub": [stack], "store": [], "embed": [], "quality": []}
        for child in stack.children():
            cmd = " ".join(child.cmdline())
            for role in ("store", "embed", "quality"):
                if f"{role}_worker" in cmd:
                    self.roles[role].append(child)

    def snapshot(self) -> dict[str, float]:
        out = {}
        for role, procs in self.roles.items():
            total = 0.0
            for proc in procs:
                try:
                    t = proc.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            out[role] = total
        return out

    def per_call_ms(self, before: dict[str, float], calls: int) -> dict[str, float]:
        after = self.snapshot()
        out = {k: round((after[k] - before[k]) * 1000 / calls, 2) for k in after}
        out["total"] = round(sum(out.values()), 2)
        return out
