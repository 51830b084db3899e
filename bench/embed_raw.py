"""Raw in-process embedding throughput (tokenise + model + pool), no hub, no IPC.

Imported by ``bench/embed_throughput.py``; run alone it prints a table:

    uv run python -m bench.embed_raw            # 1 and 2 intra-op threads, short + medium
    uv run python -m bench.embed_raw --sweep    # try several batch budgets instead

The text sets are generated from fixed word lists with a fixed seed, so every run embeds
the same texts: :func:`short_texts` (~12 tokens each, [CLS]/[SEP] included) and
:func:`medium_texts` (~60 tokens). No two texts of a set are identical.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from embed_worker.batching import DEFAULT_MAX_BATCH, DEFAULT_MAX_TOKENS_PER_BATCH
from embed_worker.model import Embedder

SEED = 20240611

_SUBJECTS = [
    "the build", "the parser", "our cache", "the test suite", "the server", "this query",
    "the migration", "the scheduler", "the worker", "the client", "the index", "the logger",
    "the config loader", "the release", "my branch", "the database", "the tokenizer",
    "the deploy script", "the login page", "the API", "the search service", "the gateway",
    "the queue", "the benchmark", "the linter", "the compiler", "the importer", "the router",
]
_VERBS = [
    "fails", "hangs", "crashes", "slows down", "times out", "leaks memory", "retries",
    "returns stale data", "drops requests", "skips a step", "logs an error", "runs twice",
    "locks the file", "rejects the token", "ignores the flag", "loses the session",
]
_CONDITIONS = [
    "after the upgrade", "on a cold start", "under heavy load", "when the disk is full",
    "on the second run", "with an empty input", "behind the proxy", "in the nightly job",
    "during the checkpoint", "when two users connect", "on Windows only", "in CI",
    "after a restart", "with unicode paths", "when the network drops", "at midnight",
]
_FIXES = [
    "pinning the version fixed it", "a longer timeout helped", "we added a retry",
    "the lock is now released early", "the cache key includes the user id",
    "the config is validated at start", "the query uses an index now",
    "we reverted the change", "a smaller batch size works", "the path is normalised first",
    "the worker restarts on error", "we log the request id", "the flag defaults to off",
]
_DETAILS = [
    "The stack trace points at the connection pool and the error only shows up in production.",
    "Nobody could reproduce it locally until we copied the exact environment variables.",
    "It started after we moved the service to a new host with less memory and slower disks.",
    "The fix needs a test that covers the empty case and a note in the changelog.",
    "We measured the latency before and after the change and the median dropped by half.",
    "The same request succeeds when it is sent again a few seconds later.",
    "The logs show the worker picked up the job but never acknowledged it.",
    "Rolling back the dependency made the warning disappear without any other change.",
    "The user reported it twice, with screenshots, from two different browsers.",
    "A code review suggested splitting the function so each part can be tested alone.",
    "The metrics dashboard shows a spike in retries at the same minute every hour.",
    "We should document the limit so the next person does not hit the same wall.",
]


def _unique(make, n: int, rng: random.Random) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        text = make(rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


_OPENERS = ["", "", "Again,", "Today", "Sometimes", "Since Monday", "Oddly,", "Still,"]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _short(rng: random.Random) -> str:
    opener = rng.choice(_OPENERS)
    subject = f"{opener} {rng.choice(_SUBJECTS)}" if opener else _cap(rng.choice(_SUBJECTS))
    return f"{subject} {rng.choice(_VERBS)} {rng.choice(_CONDITIONS)}."


def _medium(rng: random.Random) -> str:
    first = (
        f"{_cap(rng.choice(_SUBJECTS))} {rng.choice(_VERBS)} {rng.choice(_CONDITIONS)}, "
        f"and {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_CONDITIONS)}."
    )
    details = " ".join(rng.sample(_DETAILS, 2))
    return f"{first} {details} In the end {rng.choice(_FIXES)}."


def short_texts(n: int = 2000, seed: int = SEED) -> list[str]:
    """``n`` distinct short texts (~12 tokens each), the same for a given seed."""
    return _unique(_short, n, random.Random(seed))


def medium_texts(n: int = 500, seed: int = SEED) -> list[str]:
    """``n`` distinct medium texts (~60 tokens each), the same for a given seed."""
    return _unique(_medium, n, random.Random(seed + 1))


def raw_throughput(
    texts: Sequence[str],
    threads: int,
    *,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    max_batch: int = DEFAULT_MAX_BATCH,
    repeats: int = 3,
    embedder: Embedder | None = None,
) -> dict:
    """Sentences/s of ``Embedder.embed`` (tokenise + plan + model + pool) over ``texts``.

    Loads a model with ``threads`` intra-op threads unless ``embedder`` is given (it must
    have been loaded with the same thread count). One warm-up pass over the first 64 texts,
    then ``repeats`` timed passes over all of them; reports the best and the median pass.
    """
    emb = embedder if embedder is not None else Embedder.load(intra_op_threads=threads)
    lengths = emb.token_lengths(texts)
    emb.embed(list(texts[:64]), max_tokens_per_batch, max_batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        emb.embed(texts, max_tokens_per_batch, max_batch)
        times.append(time.perf_counter() - start)
    best, median = min(times), statistics.median(times)
    return {
        "threads": threads,
        "n": len(texts),
        "mean_tokens": round(statistics.fmean(lengths), 1),
        "max_tokens_per_batch": max_tokens_per_batch,
        "max_batch": max_batch,
        "seconds_best": round(best, 4),
        "sentences_per_s": round(len(texts) / best, 1),
        "sentences_per_s_median": round(len(texts) / median, 1),
    }


def text_sets() -> dict[str, list[str]]:
    return {"short": short_texts(), "medium": medium_texts()}


def _reference_sets(emb: Embedder) -> dict[str, list[str]]:
    """The test corpus (mixed lengths) and its texts over 128 tokens, if the file is there."""
    path = Path(__file__).resolve().parent.parent / "tests/data/minilm/corpus.json"
    if not path.is_file():
        return {}
    corpus = json.loads(path.read_text())["texts"]
    lengths = emb.token_lengths(corpus)
    return {"corpus": corpus, "long": [t for t, n in zip(corpus, lengths) if n > 128]}


SWEEP_CONFIGS = [(256, 32), (512, 32), (1024, 32), (2048, 32), (1024, 64), (1 << 20, 32),
                 (1, 1)]


def sweep(threads: int, rounds: int = 3) -> list[dict]:
    """Sentences/s for every (budget, max_batch) in SWEEP_CONFIGS and every text set.

    Configurations are interleaved round by round so that load from other processes
    spreads over all of them; each result has the best and the median round.
    """
    emb = Embedder.load(intra_op_threads=threads)
    sets = text_sets() | _reference_sets(emb)
    emb.embed(sets["short"][:64])
    times: dict[tuple, list[float]] = {}
    for _ in range(rounds):
        for name, texts in sets.items():
            for config in SWEEP_CONFIGS:
                start = time.perf_counter()
                emb.embed(texts, *config)
                times.setdefault((name, config), []).append(time.perf_counter() - start)
    results = []
    for (name, (budget, max_batch)), ts in times.items():
        n = len(sets[name])
        results.append({
            "set": name, "threads": threads, "n": n,
            "max_tokens_per_batch": budget, "max_batch": max_batch,
            "sentences_per_s": round(n / min(ts), 1),
            "sentences_per_s_median": round(n / statistics.median(ts), 1),
        })
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="try several batch budgets")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    args = parser.parse_args(argv)

    if not args.json:
        print(f"{'set':<8} {'threads':>7} {'budget':>8} {'max_b':>5} {'tokens':>6} "
              f"{'sent/s':>8} {'median':>8}")
    for threads in args.threads:
        if args.sweep:
            results = sweep(threads, args.repeats)
        else:
            emb = Embedder.load(intra_op_threads=threads)
            results = []
            for name, texts in text_sets().items():
                r = raw_throughput(texts, threads, repeats=args.repeats, embedder=emb)
                results.append(r | {"set": name})
        for r in results:
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                print(f"{r['set']:<8} {threads:>7} {r['max_tokens_per_batch']:>8} "
                      f"{r['max_batch']:>5} {r.get('mean_tokens', ''):>6} "
                      f"{r['sentences_per_s']:>8} {r['sentences_per_s_median']:>8}", flush=True)


if __name__ == "__main__":
    main()
