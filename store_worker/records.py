"""Input validation, ids, timestamps and the result types of the store."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from shared.limits import (
    MAX_CONTENT_BYTES,
    MAX_ID_LEN,
    MAX_KIND_LEN,
    MAX_METADATA_BYTES,
    MAX_PROJECT_LEN,
    MAX_SESSION_ID_LEN,
    MAX_TAG_LEN,
    MAX_TAGS,
)
from shared.privacy import Privacy
from store_worker.indexes import chunks
from store_worker.redact import redact
from store_worker.search.mentions import files_mentioned, is_error

KNOWN_KINDS = ("reflection", "conversation", "checkpoint", "handoff", "note")
_KIND_RE = re.compile(rf"[a-z][a-z0-9_-]{{0,{MAX_KIND_LEN - 1}}}")
_ID_RE = re.compile(rf"[0-9A-Za-z_-]{{1,{MAX_ID_LEN}}}")


class InvalidInput(ValueError):
    """A caller error: the message says what to fix. Nothing was written."""


@dataclass(frozen=True, slots=True)
class AddResult:
    id: str
    duplicate: bool
    redacted: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SearchResult:
    hits: list[dict[str, Any]]
    mode: str  # "hybrid" | "keyword"
    total_candidates: int


@dataclass(slots=True)
class Record:
    """A validated, redacted memory ready to be written."""

    id: str
    kind: str
    content: str
    content_hash: str
    project: str
    tags: list[str]
    session_id: str | None
    created_at: datetime
    metadata: str  # JSON text
    redacted: list[str]
    files: list[str] = field(default_factory=list)  # file paths the content names
    is_error: bool = False  # the content is about an error (``mentions.is_error``)
    n_chunks: int = 0  # embedded in this many chunks besides whole (``indexes.chunks``)

    @classmethod
    def derive(cls, id: str, kind: str, content: str, content_hash: str, project: str,
               tags: list[str], session_id: str | None, created_at: datetime, metadata: str,
               redacted: list[str]) -> Record:
        """A record with what search needs derived from its content (files named,
        error-ness, chunk count): the same whether it is made now or read from the journal."""
        return cls(id, kind, content, content_hash, project, tags, session_id, created_at,
                   metadata, redacted, files_mentioned(content), is_error(content),
                   chunks.count(content))


def new_id(at: datetime | None = None) -> str:
    """A UUIDv7-layout id as 32 hex digits: 48-bit Unix milliseconds, then random bits."""
    ms = int(at.timestamp() * 1000) if at is not None else time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | ((rand >> 62) & 0xFFF) << 64
        | 0b10 << 62
        | (rand & ((1 << 62) - 1))
    )
    return f"{value:032x}"


def to_utc(value: datetime | str, what: str = "timestamp") -> datetime:
    """An aware UTC datetime from a datetime (naive means UTC) or an ISO-8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(f"{what} is not an ISO-8601 datetime: {value!r}") from None
    if not isinstance(value, datetime):
        raise InvalidInput(f"{what} must be a datetime or an ISO-8601 string")
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is a year before the calendar's first
        raise InvalidInput(f"{what} {value.isoformat()} is out of range in UTC") from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def epoch_us(value: datetime) -> int:
    return (value - _EPOCH) // _US


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _text(value: Any, what: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}")
    value = value.strip()
    if not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > max_len:
        raise InvalidInput(f"{what} is {len(value)} characters; at most {max_len} allowed")
    if "\x00" in value:
        raise InvalidInput(f"{what} must not contain NUL characters")
    return value


def check_project(project: Any) -> str:
    return _text(project, "project", MAX_PROJECT_LEN)


def check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise InvalidInput(
            f"kind must be a lowercase word of 1-{MAX_KIND_LEN} characters "
            f"(e.g. {', '.join(KNOWN_KINDS)}), not {kind!r}"
        )
    return kind


def check_id(value: Any) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidInput(f"id must be 1-{MAX_ID_LEN} characters of [0-9A-Za-z_-], not {value!r}")
    return value


def check_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise InvalidInput("tags must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"{len(tags)} tags given; at most {MAX_TAGS} allowed")
    out = [_text(t, "each tag", MAX_TAG_LEN) for t in tags]
    return list(dict.fromkeys(out))


def check_content(content: Any) -> str:
    if not isinstance(content, str):
        raise InvalidInput(f"content must be a string, not {type(content).__name__}")
    if "\x00" in content:
        raise InvalidInput("content must not contain NUL characters")
    size = len(content.encode("utf-8", errors="surrogatepass"))
    if size > MAX_CONTENT_BYTES:
        raise InvalidInput(f"content is {size} bytes of UTF-8; at most {MAX_CONTENT_BYTES} allowed")
    content = content.strip()
    if not content:
        raise InvalidInput("content must not be empty")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("content is not valid Unicode (lone surrogate)") from None
    return content


def _redact_json(value: Any, kinds: list[str]) -> Any:
    if isinstance(value, str):
        text, found = redact(value)
        kinds.extend(k for k in found if k not in kinds)
        return text
    if isinstance(value, dict):
        return {k: _redact_json(v, kinds) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v, kinds) for v in value]
    return value


def without_private(content: Any, privacy: Privacy) -> Any:
    """``content`` without its private parts (``shared.privacy``); ``InvalidInput`` when
    nothing else was in it. Anything but a string is left for ``check_content`` to refuse."""
    if not isinstance(content, str):
        return content
    public = privacy.filter(content)
    if public is not content and content.strip() and not public.strip():
        raise InvalidInput("content held only private parts (<private>...</private> or lines "
                           "matching private_patterns); nothing was stored")
    return public


def public_items(items: Iterable[Any], privacy: Privacy) -> list[Any]:
    """``items`` (mappings of ``add``'s arguments) with their content ``without_private``."""
    out = []
    for n, item in enumerate(items):
        if isinstance(item, Mapping) and isinstance(item.get("content"), str):
            try:
                item = {**item, "content": without_private(item["content"], privacy)}
            except InvalidInput as exc:
                raise InvalidInput(f"item {n}: {exc}") from None
        out.append(item)
    return out


def check_metadata(metadata: Any, kinds: list[str]) -> str:
    """JSON text of ``metadata`` (an object; None means {}), string values redacted."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be a JSON object (a dict)")
    try:
        text = json.dumps(
            _redact_json(metadata, kinds), ensure_ascii=False, separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metadata is not JSON-serialisable: {exc}") from None
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} allowed")
    if "\\u0000" in text:
        raise InvalidInput("metadata must not contain NUL characters")
    return text


def make_record(
    kind: Any,
    content: Any,
    project: Any,
    tags: Any = None,
    session_id: Any = None,
    metadata: Any = None,
    created_at: datetime | str | None = None,
    id: str | None = None,
) -> Record:
    """Validate, normalise and redact one memory. Raises ``InvalidInput``."""
    kind = check_kind(kind)
    text = check_content(content)
    project = check_project(project)
    tag_list = check_tags(tags)
    if isinstance(session_id, str) and not session_id.strip():
        session_id = None
    if session_id is not None:
        session_id = _text(session_id, "session_id", MAX_SESSION_ID_LEN)
    text, kinds = redact(text)
    meta = check_metadata(metadata, kinds)
    when = to_utc(created_at, "created_at") if created_at is not None else datetime.now(UTC)
    return Record.derive(
        id=check_id(id) if id is not None else new_id(when),
        kind=kind,
        content=text,
        content_hash=content_hash(text),
        project=project,
        tags=tag_list,
        session_id=session_id,
        created_at=when,
        metadata=meta,
        redacted=kinds,
    )


def check_vector(vector: Any, dim: int, what: str = "query_vector") -> np.ndarray:
    """A finite, non-zero vector of length ``dim``, returned unit length."""
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != (dim,):
        raise InvalidInput(f"{what} must have shape ({dim},), not {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(f"{what} contains NaN or infinity")
    norm = float(np.linalg.norm(arr))
    if norm == 0 or not math.isfinite(norm):
        raise InvalidInput(f"{what} must not be the zero vector")
    return arr / norm


_ITEM_FIELDS = frozenset({"kind", "content", "project", "tags", "session_id", "metadata",
                          "created_at"})


def records_from_items(items: Iterable[Any], importing: bool) -> list[Record]:
    """Validate every item (mappings of ``add``'s arguments; exported rows when ``importing``,
    which must carry ``id`` and ``created_at``) before anything is written."""
    recs = []
    for n, item in enumerate(items):
        try:
            recs.append(record_from_item(item, importing))
        except InvalidInput as exc:
            raise InvalidInput(f"item {n}: {exc}") from None
    return recs


def record_from_item(item: Any, importing: bool) -> Record:
    """One item of ``records_from_items``, validated. Raises ``InvalidInput``."""
    if not isinstance(item, Mapping):
        raise InvalidInput("must be a mapping")
    fields = dict(item)
    if importing:
        if "id" not in fields or "created_at" not in fields:
            raise InvalidInput("id and created_at are required")
        if isinstance(fields.get("metadata"), str):
            try:
                fields["metadata"] = json.loads(fields["metadata"])
            except ValueError:
                raise InvalidInput("metadata is not valid JSON") from None
    unknown = set(fields) - (_ITEM_FIELDS | {"id"} if importing else _ITEM_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown fields {sorted(unknown)}")
    try:
        return make_record(**fields)
    except TypeError as exc:
        raise InvalidInput(str(exc)) from None


def str_list(value: Any, what: str) -> list[str] | None:
    """``None``, or a list of strings (a bare string is refused: it is a common slip)."""
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{what} must be a list of strings")
    return list(value)
