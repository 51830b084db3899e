"""Secret redaction applied to content before it is hashed, indexed or stored.

``redact(text) -> (text, kinds)`` replaces each secret with ``[REDACTED:kind]`` (a password in a URL
becomes ``scheme://user:[REDACTED]@host``) and lists the kinds found, in first-found order.
Markers never match a pattern again, so redacting twice changes nothing.

Every rule runs in time linear in the text: it sees up to 100 KB of user content on the store's
only thread, and a quadratic rule there stops the store's heartbeats (``tests/test_regex_linear.py``
holds each rule to it). A regex is linear here when no two of its attempts read the same long run
of characters: each rule starts at a literal (a key name, ``sk-``, ``-----BEGIN``) followed by runs
no later attempt starts inside, or, where a secret may start anywhere in a run (a JWT, a URL's
scheme), at the run's start, committing atomically to its first candidate (every candidate in one
run shares the run's end, so the first one decides). ``name=value`` without quotes cannot be
written so (in ``token=token=...`` every later key is inside the earlier one's value): it is a
scan in code that measures each run of value characters once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

MARKER = "[REDACTED:{kind}]"

# (kind, substitute): ``substitute(text) -> (text, count)``.
_Rule = tuple[str, Callable[[str], tuple[str, int]]]
# A regex rule's replacement is a ``re`` template in which ``{kind}`` stands for the rule's kind:
# WHOLE replaces the whole match; KEEP_PREFIX keeps group 1 (what precedes the secret: a key name,
# a scheme and user).
WHOLE = MARKER
KEEP_PREFIX = r"\g<1>" + MARKER

# The name of a secret in ``name = value``. A longer name that ends with one
# (``AWS_SECRET_ACCESS_KEY``, ``db.password``) is found by its ending; the rest stays in place.
_SECRET_NAME = (
    r"(?:api[_-]?key|apikey|secret|token|password|passwd|pwd|access[_-]?key|private[_-]?key"
    r"|credentials?)\b"
)
_VALUE_CHARS = r"[A-Za-z0-9_\-+/=!@#$%^&*~.]"
_BARE_KEY = re.compile(rf"(?i){_SECRET_NAME}\s*+[:=]\s*+")
_VALUE_RUN = re.compile(rf"{_VALUE_CHARS}*+")
_WORD_RUN = re.compile(r"[^\s\"',;]*+")  # a bare value's digit may be anywhere in this run
_DIGIT = re.compile(r"\d")


def _regex(kind: str, pattern: str, replacement: str, flags: int = 0) -> _Rule:
    return kind, partial(re.compile(pattern, flags).subn, replacement.format(kind=kind))


def _substitute_bare_values(text: str) -> tuple[str, int]:
    """``name = value`` without quotes: a value of 6+ characters from ``_VALUE_CHARS``, the whole
    run of them, not followed by ``(`` (a call, ``token = get_token()``) and either 16+ long or
    with a digit before the next space, quote, comma or semicolon.

    As a regex this is quadratic: in ``token=token=...token=(`` each key's value is the rest of
    the run, re-read from every key. Keys come in order, so the run around each value start is
    measured once and reused while the starts stay inside it.
    """
    out: list[str] = []
    done = 0  # text[:done] is in out
    found = 0
    search_at = 0
    run_end = 0  # end of the last measured run of value characters
    word_end = 0  # end of the last measured run that a digit may be in
    digit_at = -1  # first digit at or after the last start inside that run; word_end if none
    while key := _BARE_KEY.search(text, search_at):
        start = search_at = key.end()
        if start >= run_end:
            run_end = _VALUE_RUN.match(text, start).end()
        if run_end - start < 6 or text.startswith("(", run_end):
            continue  # (a "[REDACTED" marker is no value run: ``[`` is not a value character)
        if run_end - start < 16:
            if start >= word_end:
                word_end = _WORD_RUN.match(text, start).end()
                digit_at = -1
            if digit_at < start:
                digit = _DIGIT.search(text, start, word_end)
                digit_at = digit.start() if digit else word_end
            if digit_at >= word_end:
                continue
        out += (text[done:start], MARKER.format(kind="secret"))
        done = search_at = run_end
        found += 1
    if not found:
        return text, 0
    out.append(text[done:])
    return "".join(out), found


# Order matters: whole structures (PEM blocks, JWTs, URLs) before the token shapes inside them,
# and specific token shapes before the generic ``name = value`` rules.
_RULES: list[_Rule] = [
    _regex(
        "private_key",
        r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----.*?"
        r"(?:-----END \1PRIVATE KEY( BLOCK)?-----|\Z)",
        WHOLE,
        re.DOTALL,
    ),
    # A JWT starts at a word start (after ``-`` too) inside a run of base64url characters, and
    # every start in one run shares the run's end, so only the run's first start can match: the
    # atomic group commits to it (``eyJ-eyJ-...`` is then one attempt, not one per ``eyJ``).
    _regex(
        "jwt",
        r"(?<![A-Za-z0-9_-])(?>([A-Za-z0-9_-]*?)\beyJ)"
        r"[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}",
        KEEP_PREFIX,
    ),
    # The same for a URL's scheme: the first word start in a run of scheme characters.
    _regex(
        "url_password",
        r"(?<![a-zA-Z0-9+.-])((?>[a-zA-Z0-9+.-]*?\b[a-zA-Z])[a-zA-Z0-9+.-]*+"
        r"://[^\s:/@\[\]]++:)(?!\[REDACTED)[^\s@/]++(?=@)",
        r"\g<1>[REDACTED]",
    ),
    _regex("bearer_token", r"(?i)(\bbearer\s++)(?!\[REDACTED)[A-Za-z0-9._~+/=-]{16,}", KEEP_PREFIX),
    _regex(
        "basic_auth",
        r"(?i)(\bauthorization\s*+[:=]\s*+[\"']?basic\s++)[A-Za-z0-9+/=]{8,}",
        KEEP_PREFIX,
    ),
    _regex("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}", WHOLE),
    _regex("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", WHOLE),
    _regex("stripe_key", r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}", WHOLE),
    _regex("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})", WHOLE),
    _regex("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b", WHOLE),
    _regex("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", WHOLE),
    _regex("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}", WHOLE),
    # name = "quoted value" (any value of 6+ characters). A value holds no quote, so no later
    # attempt starts inside one.
    _regex(
        "secret",
        rf"(?i)({_SECRET_NAME}[\"']?\s*+[:=]\s*+([\"']))(?!\[REDACTED)[^\"'\n]{{6,}}?(?=\2)",
        KEEP_PREFIX,
    ),
    ("secret", _substitute_bare_values),
]


# Every rule needs one of these substrings to match; text without any skips the rules (one scan
# instead of thirteen for the usual memory).
_TRIGGER = re.compile(
    r"-----BEGIN|eyJ|://|bearer|authorization|sk-|[rs]k_|gh[pousr]_|github_pat_|AKIA|ASIA|AGPA"
    r"|AIDA|AROA|ANPA|xox|AIza|key|secret|token|passw|pwd|credential",
    re.IGNORECASE,
)


def redact(text: str) -> tuple[str, list[str]]:
    """Replace secrets in ``text``; return the new text and the kinds redacted."""
    kinds: list[str] = []
    if not _TRIGGER.search(text):
        return text, kinds
    for kind, substitute in _RULES:
        text, n = substitute(text)
        if n and kind not in kinds:
            kinds.append(kind)
    return text, kinds
