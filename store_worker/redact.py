"""Secret redaction applied to content before it is hashed, indexed or stored.

``redact(text) -> (text, kinds)`` replaces each secret with ``[REDACTED:kind]`` (a password in a URL
becomes ``scheme://user:[REDACTED]@host``) and lists the kinds found, in first-found order.
Markers never match a pattern again, so redacting twice changes nothing.
"""

from __future__ import annotations

import re

MARKER = "[REDACTED:{kind}]"

# (kind, pattern, replacement): a ``re`` replacement template in which ``{kind}`` stands for the
# rule's kind. WHOLE replaces the whole match; KEEP_PREFIX keeps group 1 (a key name, a scheme).
_Rule = tuple[str, re.Pattern[str], str]
WHOLE = MARKER
KEEP_PREFIX = r"\g<1>" + MARKER


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
        WHOLE,
    ),
    (
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        WHOLE,
    ),
    (
        "url_password",
        re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@\[\]]+:)(?!\[REDACTED)[^\s@/]+(?=@)"),
        r"\g<1>[REDACTED]",
    ),
    (
        "bearer_token",
        re.compile(r"(?i)(\bbearer\s+)(?!\[REDACTED)[A-Za-z0-9._~+/=-]{16,}"),
        KEEP_PREFIX,
    ),
    (
        "basic_auth",
        re.compile(r"(?i)(\bauthorization\s*[:=]\s*[\"']?basic\s+)[A-Za-z0-9+/=]{8,}"),
        KEEP_PREFIX,
    ),
    (
        "anthropic_key",
        re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
        WHOLE,
    ),
    (
        "openai_key",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
        WHOLE,
    ),
    (
        "stripe_key",
        re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),
        WHOLE,
    ),
    (
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
        WHOLE,
    ),
    (
        "aws_access_key",
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b"),
        WHOLE,
    ),
    (
        "slack_token",
        re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        WHOLE,
    ),
    (
        "google_api_key",
        re.compile(r"\bAIza[0-9A-Za-z_-]{35}"),
        WHOLE,
    ),
    # key = "quoted value" (any value of 6+ characters)
    (
        "secret",
        re.compile(
            r"(?i)(\b[\w.-]*(?:api[_-]?key|apikey|secret|token|password|passwd|pwd|"
            r"access[_-]?key|private[_-]?key|credentials?)\b[\"']?\s*[:=]\s*([\"']))"
            r"(?!\[REDACTED)[^\"'\n]{6,}?(?=\2)"
        ),
        KEEP_PREFIX,
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
        KEEP_PREFIX,
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
    for kind, pattern, replacement in _RULES:
        text, n = pattern.subn(replacement.format(kind=kind), text)
        if n and kind not in kinds:
            kinds.append(kind)
    return text, kinds
