"""Secret redaction applied to content before it is hashed, indexed or stored.

``redact(text) -> (text, kinds)`` replaces each secret with ``[REDACTED:kind]`` (a password in a URL
becomes ``scheme://user:[REDACTED]@host``) and lists the kinds found, in first-found order.
Markers never match a pattern again, so redacting twice changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MARKER = "[REDACTED:{}]"

_Rule = tuple[str, re.Pattern[str], Callable[[re.Match[str]], str]]


def _whole(kind: str) -> Callable[[re.Match[str]], str]:
    return lambda m: MARKER.format(kind)


def _keep_prefix(kind: str) -> Callable[[re.Match[str]], str]:
    """Keep group 1 (a key name, a scheme) and replace the rest."""
    return lambda m: m.group(1) + MARKER.format(kind)


_VALUE_CHARS = r"[A-Za-z0-9_\-+/=!@#$%^&*~.]"

# Order matters: whole structures (PEM blocks, JWTs, URLs) before the token shapes inside them,
# and specific token shapes before the generic ``key = value`` rule.
_RULES: list[_Rule] = [
    (
        "private_key",
        re.compile(
            r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----.*?"
            r"(?:-----END \1PRIVATE KEY( BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
        _whole("private_key"),
    ),
    (
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        _whole("jwt"),
    ),
    (
        "url_password",
        re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@\[\]]+:)(?!\[REDACTED)[^\s@/]+(?=@)"),
        lambda m: m.group(1) + "[REDACTED]",
    ),
    (
        "bearer_token",
        re.compile(r"(?i)(\bbearer\s+)(?!\[REDACTED)[A-Za-z0-9._~+/=-]{16,}"),
        _keep_prefix("bearer_token"),
    ),
    (
        "basic_auth",
        re.compile(r"(?i)(\bauthorization\s*[:=]\s*[\"']?basic\s+)[A-Za-z0-9+/=]{8,}"),
        _keep_prefix("basic_auth"),
    ),
    (
        "anthropic_key",
        re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
        _whole("anthropic_key"),
    ),
    (
        "openai_key",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
        _whole("openai_key"),
    ),
    (
        "stripe_key",
        re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),
        _whole("stripe_key"),
    ),
    (
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
        _whole("github_token"),
    ),
    (
        "aws_access_key",
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b"),
        _whole("aws_access_key"),
    ),
    (
        "slack_token",
        re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        _whole("slack_token"),
    ),
    (
        "google_api_key",
        re.compile(r"\bAIza[0-9A-Za-z_-]{35}"),
        _whole("google_api_key"),
    ),
    # key = "quoted value" (any value of 6+ characters)
    (
        "secret",
        re.compile(
            r"(?i)(\b[\w.-]*(?:api[_-]?key|apikey|secret|token|password|passwd|pwd|"
            r"access[_-]?key|private[_-]?key|credentials?)\b[\"']?\s*[:=]\s*([\"']))"
            r"(?!\[REDACTED)[^\"'\n]{6,}?(?=\2)"
        ),
        _keep_prefix("secret"),
    ),
    # key = bare_value (6+ characters with a digit, or 16+ characters)
    (
        "secret",
        re.compile(
            r"(?i)(\b[\w.-]*(?:api[_-]?key|apikey|secret|token|password|passwd|pwd|"
            r"access[_-]?key|private[_-]?key|credentials?)\b\s*[:=]\s*)"
            rf"(?!\[REDACTED)(?=[^\s\"',;]*\d|{_VALUE_CHARS}{{16}}){_VALUE_CHARS}{{6,}}"
            rf"(?!{_VALUE_CHARS}|\()"
        ),
        _keep_prefix("secret"),
    ),
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
    for kind, pattern, repl in _RULES:
        text, n = pattern.subn(repl, text)
        if n and kind not in kinds:
            kinds.append(kind)
    return text, kinds
