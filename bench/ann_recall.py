"""Candidate recall, speed and size of the approximate index (``store_worker.indexes.ann_index``) against
the exact numpy scan, on random and on clustered unit vectors.

    uv run python -m bench.ann_recall                       # clustered + random, 100k
    uv run python -m bench.ann_recall --kinds clustered --sizes 500000
    uv run python -m bench.ann_recall --dtype f16 --connectivity 24 --sizes 100000

For each data kind and size: build time (one batch add over ``--threads`` threads), index memory,
single-query search latency p50/p95 for k = ``--k`` (400: 100 results x 4 oversampling), recall@100
(share of the exact top 100 found among the index's top 100 / 200 / 400), the exact rescoring of
the 400 candidates, single-vector add latency, save/load time and file size; and the exact scan
(einsum over two threads + argpartition, as ``ExactIndex`` does it) on the same data. With
``--churn`` (default on for the first size) 10% of the rows are then replaced by new vectors and
10% removed, and recall is measured again.

"clustered": 200 centres; each row is its centre + a 32-dimensional cluster-specific part +
isotropic noise, normalised; queries are fresh draws from the same distribution. "random":
uniform unit vectors, queries too (every row about as far as any other: the worst case).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from store_worker.indexes.ann_index import DEFAULTS, AnnIndex

DIM = 384
TRUE_K = 100


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def random_data(n: int, rng: np.random.Generator) -> np.ndarray:
    return unit(rng.standard_normal((n, DIM), dtype=np.float32))


def clustered_data(n: int, rng: np.random.Generator, centres: int = 200,
                   rank: int = 32) -> np.ndarray:
    c = unit(rng.standard_normal((centres, DIM), dtype=np.float32))
    basis = rng.standard_normal((centres, rank, DIM), dtype=np.float32) / np.sqrt(DIM)
    which = rng.integers(0, centres, n)
    out = np.empty((n, DIM), dtype=np.float32)
    for i in range(centres):
        idx = np.flatnonzero(which == i)
        z = rng.standard_normal((len(idx), rank), dtype=np.float32)
        noise = rng.standard_normal((len(idx), DIM), dtype=np.float32)
        out[idx] = c[i] + 0.25 * (z @ basis[i]) + 0.035 * noise
    return unit(out)


GENERATORS = {"clustered": clustered_data, "random": random_data}


def exact_truth(data: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, dict]:
    """Exact top ``k`` row numbers per query (blocked matmul), and similarity statistics."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    block = 100_000
    for start in range(0, len(data), block):
        s = queries @ data[start:start + block].T
        cand_s = np.concatenate([best_s, s], axis=1)
        cand_i = np.concatenate(
            [best_i, np.broadcast_to(np.arange(start, start + s.shape[1]), s.shape)], axis=1)
        part = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, part, axis=1)
        best_i = np.take_along_axis(cand_i, part, axis=1)
    order = np.argsort(-best_s, axis=1)
    best_s = np.take_along_axis(best_s, order, axis=1)
    sample = data[np.random.default_rng(9).integers(0, len(data), 2000)]
    stats = {"top1": float(best_s[:, 0].mean()), "top100": float(best_s[:, k - 1].mean()),
             "random_pair": float(np.median(queries[:50] @ sample.T))}
    return np.take_along_axis(best_i, order, axis=1), stats


class ExactScan:
    """The exact index's scan: einsum over two threads, then argpartition."""

    def __init__(self, mat: np.ndarray) -> None:
        self.mat = mat
        self.pool = ThreadPoolExecutor(max_workers=1)

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        n = len(self.mat)
        out = np.empty(n, dtype=np.float32)
        half = n // 2
        other = self.pool.submit(np.einsum, "ij,j->i", self.mat[half:], q, out=out[half:])
        np.einsum("ij,j->i", self.mat[:half], q, out=out[:half])
        other.result()
        top = np.argpartition(out, n - k)[n - k:]
        return top[np.argsort(-out[top])]


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, p))


def measure_search(index: AnnIndex, data: np.ndarray, queries: np.ndarray, truth: np.ndarray,
                   k: int, label_of_row: np.ndarray | None = None,
                   tops: tuple[int, ...] = (100, 200, 400)) -> dict:
    lat, rescore_lat = [], []
    hits = dict.fromkeys(tops, 0)
    for q, true_rows in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        labels, _ = index.search(q, k)
        t1 = time.perf_counter()
        rows = labels if label_of_row is None else label_of_row[labels]
        scores = np.einsum("ij,j->i", data[rows], q)  # what the exact index does with them
        rows[np.argsort(-scores)[:TRUE_K]]
        rescore_lat.append(time.perf_counter() - t1)
        lat.append(t1 - t0)
        want = set(true_rows.tolist())
        for top in hits:
            hits[top] += len(want.intersection(rows[:top].tolist()))
    n = len(queries) * TRUE_K
    return {"p50": pct(lat, 50), "p95": pct(lat, 95), "rescore_p50": pct(rescore_lat, 50),
            **{f"r{top}": hits[top] / n for top in hits}}


def run(kind: str, n: int, args: argparse.Namespace, churn: bool) -> list[str]:
    rng = np.random.default_rng(12345 + n)
    t0 = time.perf_counter()
    allv = GENERATORS[kind](n + args.queries, rng)
    data, queries = allv[:n], allv[n:]
    truth, stats = exact_truth(data, queries, TRUE_K)
    prep = time.perf_counter() - t0
    lines = [(f"\n## {kind}, {n:,} rows (data + exact truth {prep:.1f} s): cosine of a query "
              f"to its nearest row {stats['top1']:.3f}, to its 100th {stats['top100']:.3f}, "
              f"to a random row {stats['random_pair']:.3f}")]

    scan = ExactScan(data)
    for q in queries[:5]:
        scan.search(q, TRUE_K)
    lat = []
    for q in queries:
        t = time.perf_counter()
        scan.search(q, TRUE_K)
        lat.append(time.perf_counter() - t)
    lines.append(f"exact scan (k=100, 2 threads): p50 {pct(lat, 50):.2f} ms, p95 "
                 f"{pct(lat, 95):.2f} ms; matrix {data.nbytes / 2**20:.0f} MiB")

    index = AnnIndex(DIM, capacity=n, dtype=args.dtype, connectivity=args.connectivity,
                     expansion_add=args.expansion_add, expansion_search=args.expansion_search,
                     threads=args.threads)
    labels = np.arange(n, dtype=np.int64)
    t = time.perf_counter()
    index.add(labels, data)
    build = time.perf_counter() - t
    r = measure_search(index, data, queries, truth, args.k)
    lines.append(
        f"| {kind} | {n:,} | {build:.1f} s ({n / build:,.0f}/s) | {r['p50']:.2f} / {r['p95']:.2f} "
        f"| {r['r100']:.4f} / {r['r200']:.4f} / {r['r400']:.4f} | {r['rescore_p50']:.2f} "
        f"| {index.memory_bytes / 2**20:.0f} MiB ({index.memory_bytes / n:.0f} B/vector) |")

    other_k = []
    for k in (100, 1600):
        ts = []
        for q in queries[:50]:
            t = time.perf_counter()
            index.search(q, k)
            ts.append(time.perf_counter() - t)
        other_k.append(f"k={k} p50 {pct(ts, 50):.2f} ms")
    wide = measure_search(index, data, queries, truth, 2 * args.k, tops=(2 * args.k,))
    other_k.append(f"recall@100 of the top {2 * args.k} {wide[f'r{2 * args.k}']:.4f}")
    # the store's write path: one vector at a time (new labels; replacing existing ones)
    fresh_v = GENERATORS[kind](100, rng)
    new_add, replace, after_remove = [], [], []
    for i in range(100):
        t = time.perf_counter()
        index.add(np.array([n + i]), fresh_v[i:i + 1])
        new_add.append(time.perf_counter() - t)
    for i in range(50):
        row = int(rng.integers(0, n))
        t = time.perf_counter()
        index.add(np.array([row]), data[row:row + 1])  # replace = remove + add
        replace.append(time.perf_counter() - t)
        index.remove(np.array([n + i]))
        t = time.perf_counter()
        index.search(queries[i], args.k)
        after_remove.append(time.perf_counter() - t)
    index.remove(np.arange(n, n + 100))  # back to the n rows of ``data``
    lines.append(f"search {', '.join(other_k)}; add one new vector p50 {pct(new_add, 50):.2f} ms"
                 f" (p95 {pct(new_add, 95):.2f}), replace one p50 {pct(replace, 50):.2f} ms; "
                 f"first search after a remove p50 {pct(after_remove, 50):.2f} ms")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = Path(tmp) / "ann.bin"
        t = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - t
        size = path.stat().st_size
        t = time.perf_counter()
        loaded = AnnIndex.load(path, DIM)
        load_s = time.perf_counter() - t
        same = np.array_equal(loaded.search(queries[0], args.k)[0],
                              index.search(queries[0], args.k)[0])
        del loaded
    lines.append(f"save "
                 f"{save_s:.2f} s, load {load_s:.2f} s (CRC check included), file "
                 f"{size / 2**20:.0f} MiB; loaded index answers the same: {same}")

    if churn:
        # replace 10% of rows with new vectors, remove another 10%: recall over what is left
        m = n // 10
        perm = rng.permutation(n)
        replaced, removed = perm[:m], perm[m:2 * m]
        fresh = GENERATORS[kind](m, rng)
        t = time.perf_counter()
        index.add(replaced, fresh)
        index.remove(removed)
        churn_s = time.perf_counter() - t
        data2 = data.copy()
        data2[replaced] = fresh
        keep = np.ones(n, dtype=bool)
        keep[removed] = False
        live = np.flatnonzero(keep)
        truth2, _ = exact_truth(data2[live], queries, TRUE_K)
        row_of_label = np.full(n, -1, dtype=np.int64)
        row_of_label[live] = np.arange(len(live))
        r2 = measure_search(index, data2[live], queries, truth2, args.k, row_of_label)
        lines.append(
            f"after replacing 10% and removing 10% ({churn_s:.1f} s): search p50 "
            f"{r2['p50']:.2f} ms, recall@100 top100/200/400 {r2['r100']:.4f} / "
            f"{r2['r200']:.4f} / {r2['r400']:.4f}; {len(index):,} live, memory "
            f"{index.memory_bytes / 2**20:.0f} MiB")
    del index, data, allv
    gc.collect()
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kinds", nargs="+", default=["clustered", "random"], choices=GENERATORS)
    p.add_argument("--sizes", nargs="+", type=int, default=[100_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=400)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default=DEFAULTS["dtype"])
    p.add_argument("--connectivity", type=int, default=DEFAULTS["connectivity"])
    p.add_argument("--expansion-add", type=int, default=DEFAULTS["expansion_add"])
    p.add_argument("--expansion-search", type=int, default=DEFAULTS["expansion_search"])
    p.add_argument("--churn", choices=["first", "all", "none"], default="first")
    p.add_argument("--tmp", default=None, help="folder for the save/load files")
    args = p.parse_args()
    print(f"AnnIndex: dtype {args.dtype}, connectivity {args.connectivity}, expansion_add "
          f"{args.expansion_add}, expansion_search {args.expansion_search}, {args.threads} "
          f"threads to build; {args.queries} queries, k={args.k}")
    print("| data | rows | build | search p50 / p95 ms | recall@100 top100 / 200 / 400 "
          "| rescore p50 ms | index memory |\n|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        for i, n in enumerate(args.sizes):
            churn = args.churn == "all" or (args.churn == "first" and i == 0)
            for line in run(kind, n, args, churn):
                print(line, flush=True)


if __name__ == "__main__":
    main()
