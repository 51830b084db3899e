"""Benchmark of the store engine (``store_worker.memory_store``) at 1k and 100k memories.

Synthetic text (Zipf-distributed words plus code identifiers), random unit vectors for embeddings.
Prints p50/p95 of ``add`` and of ``search`` (keyword, hybrid, hybrid filtered to one project), bulk
load and embedding throughput, and the reopen time (index rebuild). Runs in about 1-2 minutes.

    uv run python -m bench.store_engine [--sizes 1000,100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.workload import fsync_latency
from store_worker.memory_store import MemoryStore

DIM = 384
_SYL = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ven", "dar", "ex", "il", "or", "um",
        "zen", "qu", "bri", "sto", "fal", "gri"]


def _vocab(rng: random.Random, n: int) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choices(_SYL, k=rng.randint(1, 4))))
    return sorted(words, key=lambda w: (len(w), w))


def _identifiers(rng: random.Random, vocab: list[str], n: int) -> list[str]:
    out = []
    for i in range(n):
        a, b, c = rng.sample(vocab[:3000], 3)
        shape = i % 5
        if shape == 0:
            out.append(f"{a}_{b}_v{i % 7}")
        elif shape == 1:
            out.append(f"{a.title()}{b.title()}Error")
        elif shape == 2:
            out.append(f"src/{a}/{b}_{c}.py")
        elif shape == 3:
            out.append(f"E{1000 + i}")
        else:
            out.append(f"{a}.{b}.{c}")
    return out


class Corpus:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.vocab = _vocab(self.rng, 20_000)
        weights = [1.0 / (i + 1) ** 1.05 for i in range(len(self.vocab))]
        self.cum = np.cumsum(weights).tolist()
        self.idents = _identifiers(self.rng, self.vocab, 5_000)
        self.projects = [f"project-{i:02d}" for i in range(50)]
        self.project_weights = [1.0 / (i + 1) for i in range(50)]
        self.tags = [f"tag{i}" for i in range(30)]
        self.kinds = ["note", "reflection", "conversation", "checkpoint", "handoff"]
        self.serial = 0

    def text(self) -> str:
        words = self.rng.choices(self.vocab, cum_weights=self.cum, k=self.rng.randint(20, 80))
        for _ in range(self.rng.randint(0, 2)):
            words.insert(self.rng.randrange(len(words)), self.rng.choice(self.idents))
        self.serial += 1
        return " ".join(words) + f" (#{self.serial})"

    def item(self, now: datetime) -> dict:
        return {
            "kind": self.rng.choice(self.kinds),
            "content": self.text(),
            "project": self.rng.choices(self.projects, weights=self.project_weights)[0],
            "tags": self.rng.sample(self.tags, self.rng.randint(0, 3)),
            "created_at": now - timedelta(days=self.rng.random() * 365),
        }

    def query(self) -> str:
        if self.rng.random() < 0.3:
            return self.rng.choice(self.idents)
        return " ".join(self.rng.choices(self.vocab[50:5000], k=self.rng.randint(1, 4)))


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _pct(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"p50 {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})"


def run(size: int, workdir: Path) -> None:
    corpus = Corpus()
    vrng = np.random.default_rng(size)
    now = datetime.now(UTC)
    path = workdir / f"bench-{size}.duckdb"
    store = MemoryStore(path)
    print(f"\n== {size:,} memories ==")

    t0 = time.perf_counter()
    batch = 2000
    for lo in range(0, size, batch):
        store.add_many(corpus.item(now) for _ in range(min(batch, size - lo)))
    load = time.perf_counter() - t0
    print(f"bulk add_many ({batch}/txn): {size / load:9.0f} rows/s ({load:.1f} s)")

    t_pending = t_set = 0.0
    while True:
        t0 = time.perf_counter()
        pending = store.pending_embeddings(1000)
        t1 = time.perf_counter()
        if not pending:
            break
        store.set_embeddings([i for i, _ in pending], _unit(vrng, len(pending)))
        t_pending, t_set = t_pending + t1 - t0, t_set + time.perf_counter() - t1
    print(f"set_embeddings (1000/txn):  {size / t_set:9.0f} rows/s ({t_set:.1f} s;"
          f" pending_embeddings {t_pending:.1f} s)")
    store.checkpoint()

    adds = []
    for _ in range(300):
        item = corpus.item(now)
        t0 = time.perf_counter()
        store.add(item["kind"], item["content"], item["project"], item["tags"])
        adds.append(time.perf_counter() - t0)
    print(f"add (single, committed):    {_pct(adds)}")

    small = []
    while pending := store.pending_embeddings(32):
        t0 = time.perf_counter()
        store.set_embeddings([i for i, _ in pending], _unit(vrng, len(pending)))
        small.append(time.perf_counter() - t0)
    print(f"set_embeddings (32/txn):    {_pct(small)}")

    queries = [corpus.query() for _ in range(200)]
    vectors = _unit(vrng, len(queries))
    for name, kwargs in [
        ("keyword", lambda i: {}),
        ("hybrid", lambda i: {"query_vector": vectors[i]}),
        ("hybrid, one project", lambda i: {"query_vector": vectors[i],
                                           "project": corpus.projects[i % 10]}),
        ("hybrid, tag+since", lambda i: {"query_vector": vectors[i], "tags_any": ["tag3"],
                                         "since": now - timedelta(days=90)}),
    ]:
        times, hits = [], 0
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            res = store.search(q, **kwargs(i))
            times.append(time.perf_counter() - t0)
            hits += len(res.hits)
        print(f"search {name:20s} {_pct(times)}  avg hits {hits / len(queries):.1f}")

    stats = store.stats()
    store.close()
    t0 = time.perf_counter()
    store = MemoryStore(path)
    reopen = time.perf_counter() - t0
    print(f"reopen + index rebuild:     {reopen * 1000:7.0f} ms  "
          f"(db {stats['db_bytes'] / 1e6:.0f} MB, {stats['distinct_terms']:,} terms)")
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,100000")
    ap.add_argument("--keep", type=Path, help="write the databases here and keep them")
    ap.add_argument("--dir", type=Path, help="parent of the temporary directory (default: TMPDIR)")
    args = ap.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="sessiond-bench-", dir=args.dir))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; data in {workdir}")
    disk = fsync_latency(workdir)
    print(f"disk fsync (4 KiB):         p50 {disk['p50_ms']:7.2f} ms   p95 {disk['p95_ms']:7.2f} ms")
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            run(size, workdir)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
