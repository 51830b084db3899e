"""Every regular expression that sees user input runs in time linear in it (issue 9, defect 2a).

Each case applies one module's patterns, the way that module does, to a generated worst case:
runs of a pattern's own prefix and separator characters, near misses that fail late, long runs of
word characters, dots, slashes, ``key=`` fragments, unclosed PEM headers. Each is timed at 8 KB and
at 64 KB. Linear work grows 8x between the two and quadratic work 64x: a case must stay under
SECONDS_PER_KB at both sizes (0.5 s per 100 KB of content, several times what the machine needs)
and grow less than MAX_GROWTH. Before the fix, an 8 KB dotted string containing "key" took 7.6 s
to redact, so the 8 KB timing fails at once, before the 64 KB one is tried.

The end-to-end test stores such strings through a real MCP gateway: the store answers and is
never restarted (a store busy for seconds misses its heartbeats and the supervisor kills it).
"""

from __future__ import annotations

import asyncio
import gc
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from conftest import call, gateway_client, private_stack

from gateway.stdio import sanitize_line
from gateway.unreadable import request_of
from sessiond import transcripts
from shared import protocol as p
from shared.client import HubClient
from shared.config import load_config
from shared.errors import BadRequest
from shared.transport import endpoints
from store_worker import records
from store_worker.indexes import chunks, text_index
from store_worker.indexes.text_index import best_term_position, snippet, tokens
from store_worker.redact import redact
from store_worker.search import intent, mentions, supersession, timeexpr

KB = 1024
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SMALL, LARGE = 8 * KB, 64 * KB
SECONDS_PER_KB = 0.005
MAX_GROWTH = 20  # time(64 KB) / time(8 KB): 8 when linear, 64 when quadratic


def fill(unit: str, n: int) -> str:
    """``unit`` repeated to exactly ``n`` characters."""
    return (unit * (n // len(unit) + 1))[:n]


def ends(unit: str, tail: str) -> Callable[[int], str]:
    return lambda n: fill(unit, n - len(tail)) + tail


def starts(head: str, unit: str) -> Callable[[int], str]:
    return lambda n: head + fill(unit, n - len(head))


def _seconds(fn: Callable[[str], object], arg: str, limit: float, trials: int) -> float:
    """The fastest of ``trials`` timings of ``fn(arg)``, each repeated to at least 10 ms; stops
    at the first timing over ``limit`` (quadratic work is not run again)."""
    best = math.inf
    gc.disable()
    try:
        for _ in range(trials):
            calls, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < 0.01:
                fn(arg)
                calls += 1
            best = min(best, elapsed / calls)
            if best > limit:
                break
    finally:
        gc.enable()
    return best


def assert_linear(fn: Callable[[str], object], make: Callable[[int], str]) -> None:
    small, large = make(SMALL), make(LARGE)
    assert len(small) == SMALL and len(large) == LARGE
    small_budget, large_budget = SECONDS_PER_KB * SMALL / KB, SECONDS_PER_KB * LARGE / KB
    t_small = _seconds(fn, small, small_budget, trials=3)
    assert t_small <= small_budget, f"{t_small * 1000:.0f} ms for 8 KB"
    timings = []
    for _ in range(3):  # a busy machine can slow one timing; quadratic work is slow every time
        t_large = _seconds(fn, large, large_budget, trials=1)
        timings.append(t_large)
        if t_large <= large_budget and t_large / t_small < MAX_GROWTH:
            return
    raise AssertionError(f"8 KB: {t_small * 1000:.1f} ms, 64 KB: "
                         f"{', '.join(f'{t * 1000:.1f}' for t in timings)} ms")


def _timeexpr_patterns(text: str) -> None:
    for pattern in vars(timeexpr).values():
        if isinstance(pattern, re.Pattern):
            pattern.match(text)


def _check_kind(text: str) -> None:
    with pytest.raises(records.InvalidInput):
        records.check_kind(text)


def _check_id(text: str) -> None:
    with pytest.raises(records.InvalidInput):
        records.check_id(text)


REDACT_CASES = {
    "dotted name containing key": ends("a.", "key"),
    "dotted name then a key name": ends("a.", "api_key"),
    "unicode dotted name containing key": ends("\u00e9.", "key"),
    "word run then a key name": ends("a", "_password"),
    "key= fragments": lambda n: fill("key=", n),
    "api_key= fragments": lambda n: fill("api_key=", n),
    "token= chain ending in a call": ends("token=", "("),
    "token= chain of short values": lambda n: fill("token=abcde,", n),
    "password: chain": lambda n: fill("password: ", n),
    "key name then spaces": starts("token", " "),
    "key name then a long value and a call": lambda n: "token=" + fill("a", n - 7) + "(",
    "quoted values never closed": lambda n: fill('token="abcde', n),
    "one quoted value never closed": starts('password: "', "a"),
    "mixed quotes": lambda n: fill("secret='\"", n),
    "eyJ runs": lambda n: fill("eyJ-", n),
    "eyJ runs after a word": starts("x", "-eyJ"),
    "JWT near misses (one segment)": lambda n: fill("eyJaaaaaaaa.", n),
    "JWT near misses (two segments)": lambda n: fill("eyJaaaaaaaa.aaaaaaaa ", n),
    "dotted scheme": ends("a.", "://"),
    "scheme chars without a word start": ends("1+", "://"),
    "schemes": lambda n: fill("a://", n),
    "URL user without @": lambda n: "http://user:" + fill("p", n - 12),
    "URL near misses": lambda n: fill("x://u:p", n),
    "unclosed PEM block": starts("-----BEGIN RSA PRIVATE KEY-----\n", "MIIE"),
    "PEM header near misses": lambda n: fill("-----BEGIN A A A ", n),
    "PEM END near misses": starts("-----BEGIN " + "A" * 100 + " PRIVATE KEY-----",
                                  "-----END " + "A" * 99 + " "),
    "PEM headers": lambda n: fill("-----BEGIN PRIVATE KEY-----", n),
    "bearer chain": lambda n: fill("bearer ", n),
    "bearer then spaces": starts("Bearer", " "),
    "authorization chain": lambda n: fill("authorization: basic ", n),
    "sk- chain": lambda n: fill("sk-", n),
    "short sk-ant- keys": lambda n: fill("sk-ant-abc ", n),
    "stripe prefixes": lambda n: fill("sk_live_", n),
    "github prefixes": lambda n: fill("ghp_", n),
    "aws prefixes": lambda n: fill("AKIA", n),
    "slack prefixes": lambda n: fill("xoxb-", n),
    "google prefixes": lambda n: fill("AIza-", n),
    "slashes": ends("/", "key"),
    "backslashes": ends("\\", "token"),
}

OTHER_CASES = {
    # the keyword index: tokeniser and snippets (content up to 100 KB)
    "tokens: dotted": (tokens, lambda n: fill("a.", n)),
    "tokens: separator runs": (tokens, starts("a", "./:-\\")),
    "tokens: separators without a word after": (tokens, lambda n: fill("a" * 10 + ":" * 10, n)),
    "tokens: path": (tokens, lambda n: fill("a/", n)),
    "tokens: one long word": (tokens, lambda n: fill("a", n)),
    "tokens: CamelCase": (tokens, lambda n: fill("aB", n)),
    "tokens: upper-case run": (tokens, starts("a", "A")),
    "tokens: upper case and digits": (tokens, starts("a", "AAAAAAA1")),
    "tokens: mixed identifier": (tokens, lambda n: fill("aB1_c.D-", n)),
    "tokens: unicode": (tokens, lambda n: fill("\u00e9\u00c9.", n)),
    "best_term_position: near misses": (
        lambda s: best_term_position(s, ["aab", "ab"]), lambda n: fill("a", n)),
    "best_term_position: inside words": (
        lambda s: best_term_position(s, ["ab"]), lambda n: fill("xab", n)),
    "snippet": (lambda s: snippet(s, ["zz", "aa"]), lambda n: fill("aa ", n)),
    # time expressions: parse refuses more than 200 characters; its patterns stay linear anyway
    "timeexpr: words": (_timeexpr_patterns, lambda n: fill("a ", n)),
    "timeexpr: to chain": (_timeexpr_patterns, lambda n: fill("to ", n)),
    "timeexpr: dots": (_timeexpr_patterns, lambda n: fill(".", n)),
    "timeexpr: between and": (_timeexpr_patterns, starts("between ", "and ")),
    "timeexpr: from to": (_timeexpr_patterns, starts("from ", "to from ")),
    "timeexpr: digits": (_timeexpr_patterns, ends("1", " days ago")),
    "timeexpr: past": (_timeexpr_patterns, starts("past ", "1 ")),
    "timeexpr: dates": (_timeexpr_patterns, lambda n: fill("2026-01-01 ", n)),
    # store input checks
    "records: kind": (_check_kind, lambda n: fill("a", n)),
    "records: id": (_check_id, ends("a", "!")),
    # the gateway's stdin lines (unpaired surrogate escapes)
    "stdio: backslashes": (lambda s: sanitize_line(s.encode()), ends("\\", "u")),
    "stdio: escaped backslashes before u": (lambda s: sanitize_line(s.encode()),
                                            lambda n: fill("\\\\u", n)),
    "stdio: lone surrogates": (lambda s: sanitize_line(s.encode()), lambda n: fill("\\ud800", n)),
    "stdio: surrogate pairs": (lambda s: sanitize_line(s.encode()),
                               lambda n: fill("\\ud800\\udc00", n)),
    "stdio: low surrogates": (lambda s: sanitize_line(s.encode()), lambda n: fill("\\udc00", n)),
    # the id of a line the SDK could not parse (gateway.unreadable)
    "unreadable: nesting": (request_of, starts('{"a":', "[")),
    "unreadable: escaped quotes": (request_of, starts('{"a":"', '\\"')),
    "unreadable: backslash runs": (request_of, lambda n: "{" + fill('"\\\\\\" ', n - 1)),
    "unreadable: names then blanks": (request_of, lambda n: "{" + fill('"a"    ', n - 1)),
    "unreadable: digits": (request_of, starts('{"id":', "1")),
    # what a memory mentions, found at store time (replaced the gateway's FILE_RE/ERROR_RE,
    # which took seconds on one long word)
    "mentions: one long word": (mentions.files_mentioned, lambda n: fill("a", n)),
    "mentions: word then extension near miss": (mentions.files_mentioned, ends("a", ".")),
    "mentions: dotted": (mentions.files_mentioned, lambda n: fill("a.", n)),
    "mentions: path": (mentions.files_mentioned, lambda n: fill("src/", n)),
    "mentions: many files": (mentions.files_mentioned, lambda n: fill("a.py ", n)),
    "mentions: error word run": (mentions.is_error, lambda n: fill("a", n)),
    "mentions: Error suffix near miss": (mentions.is_error, lambda n: fill("Erro", n)),
    "chunks: words": (chunks.spans, lambda n: fill("word ", n)),
    "chunks: one long word": (chunks.spans, lambda n: fill("a", n)),
    "identifier_terms: backticks": (text_index.identifier_terms, lambda n: fill("`a ", n)),
    "identifier_terms: camel": (text_index.identifier_terms, lambda n: fill("aaB", n)),
    "identifier_terms: dotted": (text_index.identifier_terms, lambda n: fill("a.", n)),
    "query terms": (text_index.query_terms, lambda n: fill("how did a.b ", n)),
    # what a question says about time, and the change cue of supersession
    "intent: words": (lambda s: intent.read(s, NOW, UTC), lambda n: fill("last ", n)),
    "intent: near misses": (lambda s: intent.read(s, NOW, UTC), lambda n: fill("a few day ", n)),
    "intent: digits": (lambda s: intent.read(s, NOW, UTC), lambda n: fill("12 ", n)),
    "supersession cue: words": (supersession.change_cue, lambda n: fill("switch ", n)),
    "supersession cue: arrows": (supersession.change_cue, lambda n: fill("-", n)),
    # imported transcripts (a turn's text has no size limit before it is cut)
    "transcripts: interrupted marker": (transcripts._NOISE.match,
                                        starts("[Request interrupted by user", "]")),
    "transcripts: command tag": (transcripts._NOISE.match, starts("<command-name>", "x\n")),
}


@pytest.mark.parametrize("make", REDACT_CASES.values(), ids=REDACT_CASES.keys())
def test_redaction_is_linear(make):
    assert_linear(redact, make)


@pytest.mark.parametrize(("fn", "make"), OTHER_CASES.values(), ids=OTHER_CASES.keys())
def test_other_patterns_are_linear(fn, make):
    assert_linear(fn, make)


POISON = {
    "dotted key": ends("a.", "key"),
    "token chain": ends("token=", "("),
    "eyJ runs": lambda n: fill("eyJ-", n),
    "dotted scheme": ends("a.", "://"),
}


@pytest.fixture(scope="module")
def stack_env():
    with private_stack() as (env, _):
        yield env


def test_poison_content_through_the_gateway_neither_stalls_nor_restarts_the_store(stack_env):
    env = stack_env

    async def timed(client, tool: str, args: dict) -> dict:
        t0 = time.perf_counter()
        result = await call(client, tool, args)
        assert time.perf_counter() - t0 < 5, f"{tool} took {time.perf_counter() - t0:.1f} s"
        return result

    async def scenario():
        async with gateway_client(env) as client:
            await call(client, "ping")
            for name, make in POISON.items():
                for size in (8 * KB, 99_000):
                    stored = await timed(client, "store_reflection", {
                        "content": make(size), "project": "p-poison", "tags": [f"s{size}"]})
                    assert stored["id"] and not stored["duplicate"], name
            await timed(client, "store_conversation", {
                "content": "metadata poison", "project": "p-poison",
                "metadata": {"note": ends("a.", "key")(15 * KB)}})
            await timed(client, "quick_search", {"query": ends("a.", "key")(1900),
                                                 "project": "p-poison"})
            status = (await call(client, "status"))["stack"]
            store = [w for w in status["workers"] if w["service"] == "store"]
            assert store and all(w["restarts"] == 0 and w["state"] == "ready" for w in store), store

    asyncio.run(scenario())


def test_the_store_refuses_an_over_long_time_expression(stack_env):
    """The gateway caps time_expression at 200 characters; the store holds its own limit."""
    cfg = load_config(stack_env)

    async def scenario():
        client = HubClient(endpoints(cfg).clients, default_timeout_s=30)
        try:
            with pytest.raises(BadRequest, match="time expression too long"):
                await client.request(p.SERVICE_STORE, p.Search(
                    query="", time_expression=fill("from 2026 to ", 64 * KB)))
        finally:
            client.close()

    asyncio.run(scenario())
