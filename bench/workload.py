"""The benchmarks' synthetic workload: realistic developer memories and queries from a fixed
seed, a data dir pre-populated through ``MemoryStore`` (random unit vectors), disk fsync cost."""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.harness import percentiles
from store_worker.memory_store import DIM, MemoryStore

POPULATE_BATCH = 2000

# ----------------------------------------------------------------------------- synthetic text
_PROJECT_A = ["acme", "photon", "harbor", "quill", "nimbus", "atlas", "ember", "orbit", "cobalt",
              "lumen"]
_PROJECT_B = ["api", "cli", "web", "billing", "search"]
_LIBS = [
    "postgres", "redis", "sqlite", "duckdb", "kafka", "nginx", "docker", "kubernetes", "terraform",
    "react", "vue", "svelte", "django", "flask", "fastapi", "celery", "pytest", "numpy", "pandas",
    "grpc", "protobuf", "webpack", "vite", "eslint", "mypy", "ruff", "poetry", "node", "typescript",
    "tokio", "serde", "graphql", "elasticsearch", "s3", "oauth", "jwt", "openssl", "zeromq",
    "rabbitmq", "prometheus", "grafana", "sentry", "bazel", "cmake", "sqlalchemy", "alembic",
    "pydantic", "httpx", "aiohttp", "uvicorn", "gunicorn", "tailwind", "nextjs", "prisma",
    "playwright", "selenium", "airflow", "spark", "onnxruntime", "pytorch",
]
_COMPONENTS = [
    "auth", "billing", "search", "ingest", "scheduler", "cache", "api", "cli", "worker", "router",
    "parser", "exporter", "importer", "notifier", "uploader", "session", "config", "metrics",
    "logging", "storage", "queue", "gateway", "frontend", "migrations", "payments", "reports",
    "dashboard", "sync", "webhooks", "permissions", "onboarding", "admin", "search_index",
]
_NOUNS = [
    "user", "token", "order", "invoice", "event", "batch", "record", "file", "request", "response",
    "job", "task", "message", "cursor", "snapshot", "index", "query", "schema", "tenant",
    "account", "profile", "report", "chunk", "page", "item", "handler", "client", "connection",
    "pool", "lock", "retry", "timeout", "limit", "buffer", "stream", "transaction", "checkpoint",
    "certificate", "webhook", "migration", "manifest", "artifact", "credential", "payload",
]
_VERBS = [
    "load", "parse", "fetch", "build", "validate", "resolve", "flush", "merge", "render", "encode",
    "decode", "retry", "normalize", "serialize", "dispatch", "schedule", "compact", "refresh",
    "sync", "upload", "migrate", "hydrate", "paginate", "throttle", "invalidate", "reconcile",
]
_ERRORS = [
    "TypeError", "KeyError", "ValueError", "TimeoutError", "ConnectionResetError",
    "PermissionError", "IntegrityError", "OperationalError", "UnicodeDecodeError",
    "RecursionError", "MemoryError", "AssertionError", "ECONNREFUSED", "ETIMEDOUT", "ENOSPC",
    "segfault", "deadlock", "OOMKilled", "SIGPIPE", "HTTP 502", "HTTP 429", "NullPointerException",
    "IndexError", "AttributeError", "FileNotFoundError", "JSONDecodeError", "SSLError",
]
_CONDITIONS = [
    "on a cold start", "under heavy load", "when the disk is full", "on the second run",
    "with an empty input", "behind the corporate proxy", "in the nightly job", "during deploys",
    "when two users edit the same record", "on Windows only", "in CI but not locally",
    "after a restart", "with unicode file names", "when the network drops", "at midnight UTC",
    "for tenants with more than 10k rows", "right after the schema migration", "on ARM runners",
]
_CAUSES = [
    "a stale connection left in the pool", "a missing index on the foreign key",
    "the retry loop not backing off", "a race between the cache refresh and the write",
    "timezone-naive timestamps", "the default page size being far too large",
    "an unpinned transitive dependency", "reading the whole file into memory",
    "the lock being held across an await", "a wrong default in the config loader",
    "the mock hiding a real network call", "duplicate events from the webhook sender",
    "integer overflow in the byte counter", "the worker ignoring SIGTERM",
]
_FIXES = [
    "pinning the version", "adding a composite index", "exponential backoff with jitter",
    "moving the write into the same transaction", "storing everything as UTC",
    "streaming the rows in pages of 500", "releasing the lock before the network call",
    "validating the config at start-up", "an idempotency key on every request",
    "a bounded queue with back-pressure", "closing connections idle for more than 30 s",
    "a regression test with the exact payload", "reverting to the previous release",
]
_DECISIONS = [
    "keep the public API unchanged until the next major version",
    "prefer small pull requests with one migration each", "log the request id on every line",
    "never call the payment provider from a request handler", "run the slow tests nightly only",
    "store money as integer cents", "use feature flags for anything user-visible",
    "write the changelog entry in the same PR", "treat warnings as errors in CI",
    "keep secrets out of environment dumps", "review query plans for anything on the hot path",
]
_DETAILS = [
    "The stack trace pointed at the connection pool.",
    "Nobody could reproduce it locally until we copied the production settings.",
    "Latency p95 dropped from about {n} ms to {m} ms after the change.",
    "It affected roughly {n} requests per hour before the fix.",
    "The user confirmed the fix on build {n}.",
    "A follow-up ticket tracks the cleanup (#{n}).",
    "The same request succeeds when it is retried a few seconds later.",
    "We added a test that covers the empty case.",
    "Memory stayed flat at {n} MB during the soak test.",
    "Code review suggested splitting the function so each part can be tested alone.",
    "The dashboard showed a spike at the same minute every hour.",
    "Document the limit so the next person does not hit the same wall.",
]


class Corpus:
    """Synthetic but realistic developer memories and queries, from a fixed seed."""

    def __init__(self, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.projects = [f"{a}-{b}" for a in _PROJECT_A for b in _PROJECT_B]  # 50
        self.project_weights = [1.0 / (i + 1) ** 0.8 for i in range(len(self.projects))]
        self.tags = ["bug", "decision", "perf", "security", "ci", "deploy", "db", "api", "ux",
                     "tests", "refactor", "docs", "infra", "oncall", "debt", "lesson"]
        self.serial = 0

    def _path(self) -> str:
        r = self.rng
        ext = r.choice([".py", ".py", ".ts", ".go", ".rs", ".sql", ".yaml"])
        return f"{r.choice(_COMPONENTS)}/{r.choice(_NOUNS)}_{r.choice(_VERBS)}{ext}"

    def _ident(self) -> str:
        r = self.rng
        if r.random() < 0.5:
            return f"{r.choice(_VERBS)}_{r.choice(_NOUNS)}"
        return f"{r.choice(_NOUNS).title()}{r.choice(_COMPONENTS).split('_')[0].title()}"

    def _detail(self) -> str:
        r = self.rng
        return r.choice(_DETAILS).format(n=r.randint(2, 9000), m=r.randint(1, 400))

    def text(self) -> str:
        """One memory: 40-120 tokens, distinct (a serial number at the end)."""
        r = self.rng
        shape = r.randrange(6)
        if shape == 0:
            head = (f"{r.choice(_ERRORS)} in {self._path()} {r.choice(_CONDITIONS)}: the root "
                    f"cause was {r.choice(_CAUSES)}. Fixed by {r.choice(_FIXES)} in "
                    f"{self._ident()}().")
        elif shape == 1:
            a, b = r.sample(_LIBS, 2)
            head = (f"Switched the {r.choice(_COMPONENTS)} from {a} to {b} because "
                    f"{r.choice(_CAUSES)} kept biting us {r.choice(_CONDITIONS)}.")
        elif shape == 2:
            head = (f"Decision for the {r.choice(_COMPONENTS)}: {r.choice(_DECISIONS)}. "
                    f"Context: {self._ident()} in {self._path()} had to "
                    f"{r.choice(_VERBS)} every {r.choice(_NOUNS)} twice.")
        elif shape == 3:
            head = (f"Lesson learned: {r.choice(_FIXES)} is the answer to {r.choice(_CAUSES)}. "
                    f"Hit it again with {r.choice(_LIBS)} while working on "
                    f"{self._ident()}.")
        elif shape == 4:
            head = (f"Conversation summary: we discussed how {self._ident()} should "
                    f"{r.choice(_VERBS)} the {r.choice(_NOUNS)}, agreed to "
                    f"{r.choice(_DECISIONS)}, and left {self._path()} for the next session.")
        else:
            head = (f"Performance note on {r.choice(_LIBS)}: {self._ident()} was slow "
                    f"{r.choice(_CONDITIONS)}; {r.choice(_FIXES)} helped.")
        details = " ".join(self._detail() for _ in range(r.randint(0, 3)))
        self.serial += 1
        return f"{head} {details} (ref {self.serial})".replace("  ", " ")

    def item(self, now: datetime) -> dict:
        r = self.rng
        return {
            "kind": r.choice(["reflection", "reflection", "conversation", "note", "checkpoint"]),
            "content": self.text(),
            "project": r.choices(self.projects, weights=self.project_weights)[0],
            "tags": r.sample(self.tags, r.randint(0, 3)),
            "created_at": now - timedelta(days=r.random() ** 1.5 * 365),
        }

    def query(self) -> str:
        r = self.rng
        shape = r.randrange(6)
        if shape == 0:
            return f"{r.choice(_ERRORS)} {r.choice(_CONDITIONS)}"
        if shape == 1:
            return f"why did we switch from {r.choice(_LIBS)}"
        if shape == 2:
            return f"how do we {r.choice(_VERBS)} the {r.choice(_NOUNS)} in {r.choice(_COMPONENTS)}"
        if shape == 3:
            return self._path()
        if shape == 4:
            return f"{self._ident()} {r.choice(_NOUNS)} {r.choice(_ERRORS)}"
        return f"what did we decide about {r.choice(_NOUNS)} {r.choice(_VERBS)} and {r.choice(_LIBS)}"

    def queries(self, n: int) -> list[str]:
        out: dict[str, None] = {}
        while len(out) < n:
            out.setdefault(self.query())
        return list(out)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def populate(db_path: Path, n: int, corpus: Corpus, engine_calls: int) -> dict:
    """``n`` memories with random unit vectors, written with MemoryStore while no stack runs.

    The last ``engine_calls`` memories are added one by one, timed, and as many hybrid searches
    (random unit query vectors) are timed too: the engine's own cost, in process, for diagnosis.
    """
    now = datetime.now(UTC)
    vrng = np.random.default_rng(n)
    bulk = max(0, n - engine_calls)
    t0 = time.perf_counter()
    with MemoryStore.open(db_path) as store:
        for lo in range(0, bulk, POPULATE_BATCH):
            results = store.add_many(corpus.item(now)
                                     for _ in range(min(POPULATE_BATCH, bulk - lo)))
            assert not any(r.duplicate for r in results), "synthetic texts must be distinct"
        t_add = time.perf_counter() - t0
        while pending := store.pending_embeddings(5000):
            store.set_embeddings([i for i, _ in pending], _unit(vrng, len(pending)))
        store.checkpoint()
        seconds = time.perf_counter() - t0

        queries = corpus.queries(engine_calls)
        qvecs = _unit(vrng, len(queries))
        engine: dict = {}
        for limit in (5, 10):
            samples = []
            for q, v in zip(queries, qvecs, strict=True):
                ts = time.perf_counter()
                store.search(q, query_vector=v, limit=limit)
                samples.append(time.perf_counter() - ts)
            engine[f"search_limit{limit}"] = percentiles(samples)
        samples, flushes = [], []
        for _ in range(n - bulk):  # as in the worker: each add (the ack), then its idle flush
            item = corpus.item(now)
            ts = time.perf_counter()
            store.add(item["kind"], item["content"], item["project"], item["tags"])
            tf = time.perf_counter()
            store.flush()
            flushes.append(time.perf_counter() - tf)
            samples.append(tf - ts)
        engine["add"] = percentiles(samples)
        engine["flush"] = percentiles(flushes)
        while pending := store.pending_embeddings(5000):
            store.set_embeddings([i for i, _ in pending], _unit(vrng, len(pending)))
        stats = store.stats()
    assert stats["memories"] == n and stats["pending_embeddings"] == 0, stats
    return {"seconds": round(seconds, 1), "add_seconds": round(t_add, 1),
            "db_mb": round(db_path.stat().st_size / 1e6, 1), "projects": len(stats["by_project"]),
            "distinct_terms": stats["distinct_terms"], "engine": engine}


def fsync_latency(workdir: Path, n: int = 100) -> dict:
    """The disk's own commit cost: append 4 KiB + fsync, as a DuckDB commit does."""
    path = workdir / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        samples = []
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            samples.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return percentiles(samples)
