"""The pure parts of ``bench/peer_compare.py`` (the benchmark itself is run by hand: it installs
a peer server and takes minutes): how rounds are summed up, the targets' verdicts, the table,
and the process-tree memory it reads."""

from __future__ import annotations

import subprocess
import sys

import psutil

from bench import proc_tree
from bench.peer_compare import markdown, summarize, verdicts


def _side(store_ms: list[float], search_ms: list[float], rss: float, rest: float) -> dict:
    procs = {"a": {"rss_mb": rss, "pss_mb": rss / 2}}
    return {"store_s": [x / 1000 for x in store_ms], "search_s": [x / 1000 for x in search_ms],
            "spawn_to_initialize_s": 1.0, "refused_as_duplicates": 0,
            "pending_when_searches_began": 1, "search_hits_mean": 5.0,
            "rss_after_workload": {"rss_mb": rss, "pss_mb": rss / 2, "processes": procs},
            "rss_at_rest": {"rss_mb": rest, "pss_mb": rest / 2, "processes": procs}}


def _rounds(ours: dict, peer: dict, n: int = 2) -> list[dict]:
    return [{"sessiond": ours, "peer": peer} for _ in range(n)]


def test_summary_leaves_each_rounds_first_store_out_of_the_percentiles() -> None:
    ours = _side([2000.0] + [5.0] * 9, [10.0] * 5, 400, 380)
    s = summarize(_rounds(ours, ours), "sessiond")
    assert s["store"]["n"] == 18 and s["store"]["p95_ms"] == 5.0
    assert s["first_store_ms"] == 2000.0
    assert s["stores"] == 20


def test_verdicts_compare_p50_speed_ups_and_rss_ratios_with_the_targets() -> None:
    peer = summarize(_rounds(_side([200.0, 30.0], [35.0], 300, 300),
                             _side([200.0, 30.0], [35.0], 300, 300)), "peer")
    fast = summarize(_rounds(_side([900.0, 5.0], [14.0], 390, 300), {}), "sessiond")
    slow = summarize(_rounds(_side([900.0, 5.1], [14.1], 391, 400), {}), "sessiond")
    v = verdicts(fast, peer)
    assert v["store_speedup"] == {"value": 6.0, "met": True}
    assert v["search_speedup"] == {"value": 2.5, "met": True}
    assert v["rss_ratio_after_workload"] == {"value": 1.3, "met": True}
    assert v["rss_ratio_at_rest"] == {"value": 1.0, "met": True}
    w = verdicts(slow, peer)
    assert not any(x["met"] for x in w.values())  # 5.88x, 2.48x, 1.303, 1.33


def test_table_states_each_target_and_whether_it_is_met() -> None:
    peer = summarize(_rounds(_side([200.0, 30.0], [35.0], 300, 300),
                             _side([200.0, 30.0], [35.0], 300, 300)), "peer")
    ours = summarize(_rounds(_side([900.0, 10.0], [7.0], 600, 500), {}), "sessiond")
    table = markdown(ours, peer, verdicts(ours, peer), stores_per_round=2)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert "(3.0x faster)" in rows["store p50 / p95 (ms)"]
    assert rows["store p50 / p95 (ms)"].endswith("| no |")
    assert rows["search p50 / p95 (ms)"].endswith("| **yes** |")
    assert "| 2.00 |" in rows["RSS of all server processes after the workload (MB)"]
    assert rows["stores embedded when the searches began"].split(" | ")[1] == "1/2, 1/2"


def test_tree_memory_sums_a_parent_and_its_child_once_each() -> None:
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)']); print(c.pid, flush=True); c.wait()")],
        stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        s = proc_tree.sample([parent.pid, child, parent.pid])
        assert s["count"] == 2
        expected = (psutil.Process(parent.pid).memory_info().rss
                    + psutil.Process(child).memory_info().rss) / proc_tree.MB
        assert abs(s["rss_mb"] - expected) < 5
        assert {p.pid for p in proc_tree.tree([parent.pid])} == {parent.pid, child}
        assert proc_tree.gone([child], 0.1, kill=lambda p: p.kill()) == [child]
        assert proc_tree.gone([child], 10) == []
    finally:
        parent.kill()
        parent.wait()
