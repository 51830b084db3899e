"""The wire protocol: every message between sessiond processes, as tagged msgspec Structs.

Frames on the wire (all msgpack):

* client -> hub:   ``[RequestHeader, body]``            body is one of ``RequestBody``
* hub -> worker:   ``[Deliver, RequestHeader, body]``
* worker -> hub:   ``[Reply, ReplyHeader, body]``       body is one of ``ReplyBody``
                   ``[Ready | Heartbeat | Disconnect]``
* hub -> worker:   ``[Heartbeat | Disconnect]``
* hub -> client:   ``[ReplyHeader, body]``

The hub decodes only headers and control frames; bodies pass through untouched and are decoded
once, by the process that acts on them. Messages evolve only by adding fields with defaults.
Vectors travel as little-endian float32 bytes, never as lists of floats.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shared.protocol_browse import (  # noqa: F401  (re-exported: the dashboard's store messages)
    MAX_NEIGHBOURS,
    MAX_OVERVIEW_TAGS,
    MAX_OVERVIEW_WEEKS,
    Neighbours,
    ProjectOverview,
)
from shared.protocol_quality import (  # noqa: F401  (re-exported: the quality service's messages)
    ASSESS_BUDGET_S,
    COMMIT_TIMEOUT_S,
    MAX_COMMIT_TIMEOUT_S,
    PROBED_TOOLS,
    AssessQuality,
    Category,
    CategoryScore,
    CheckpointCommit,
    CommitResult,
    GitState,
    GitStatus,
    ProbeTools,
    QualityReport,
    Signal,
    SignalStatus,
    SkipCode,
    ToolInfo,
    ToolsReport,
)
from shared.protocol_sessions import (  # noqa: F401  (re-exported: the store's session messages)
    CheckpointRecord,
    CloseSession,
    OpenSession,
    RecordCheckpoint,
    SessionList,
    SessionQuery,
    SessionRecord,
)

EMBEDDING_DIM = 384  # the length of every vector (all-MiniLM-L6-v2)
ErrorCode = Literal["bad_request", "not_found", "unavailable", "timeout", "internal"]
EmbedKind = Literal["query", "document"]
Health = Literal["healthy", "degraded", "unhealthy"]
# How dangerous an operation is (the gateway classifies; high and critical need a grant).
PermissionLevel = Literal["low", "medium", "high", "critical"]
# What happened when an operation needed permission: the user was asked and approved or denied;
# a grant was made (trusted), used (allowed), revoked or expired; or nobody could be asked and
# there was no grant (refused).
PermissionDecision = Literal["asked", "approved", "denied", "trusted", "allowed", "refused",
                             "expired", "revoked"]
# Who made a grant: the permissions tool (tool), that tool with the user's confirmation asked
# through MCP elicitation (tool-confirmed), or the user choosing "trust for M minutes" when
# asked about an operation (elicitation).
GrantVia = Literal["tool", "tool-confirmed", "elicitation"]

SERVICE_HUB = "hub"
SERVICE_STORE = "store"
SERVICE_EMBED = "embed"
SERVICE_QUALITY = "quality"
WORKER_SERVICES = (SERVICE_STORE, SERVICE_EMBED, SERVICE_QUALITY)


# ---------------------------------------------------------------- envelopes
class RequestHeader(msgspec.Struct, array_like=True, frozen=True):
    id: int
    service: str
    deadline: float  # absolute time.time() after which nobody waits for the answer
    idempotent: bool = False  # the hub may re-send it (once) to another worker if one dies
    kind: str = ""  # the body's type name ("Remember"): the hub names the request in errors


class ReplyHeader(msgspec.Struct, array_like=True, frozen=True):
    id: int


# ------------------------------------------------------ worker <-> hub control
class Ready(msgspec.Struct, tag=True):
    service: str
    pid: int
    capacity: int = 1  # how many requests the worker accepts at once
    host: str = ""  # the worker's host name (pids repeat across hosts and containers)


Stats = dict[str, str | int | float | bool]


class Heartbeat(msgspec.Struct, tag=True):
    inflight: int = 0
    stats: Stats = {}  # the worker's own counters (cache hit rate, ...), shown in status
    # The worker may fall silent for up to this long from now (a call that holds the GIL, e.g.
    # loading a large index): the hub waits that long, not heartbeat_expiry_s, before purging.
    quiet_s: float = 0.0


class Disconnect(msgspec.Struct, tag=True):
    reason: str = ""


class Deliver(msgspec.Struct, tag=True):
    client: bytes


class Reply(msgspec.Struct, tag=True):
    client: bytes


WorkerControl = Ready | Heartbeat | Disconnect | Reply
HubControl = Heartbeat | Disconnect | Deliver


# ------------------------------------------------------------ request bodies
class Ping(msgspec.Struct, tag=True):
    """Liveness probe; any service (and the hub itself) answers with ``Pong``."""


class StackStatus(msgspec.Struct, tag=True):
    """Ask the hub for the state of the whole stack."""


class Embed(msgspec.Struct, tag=True):
    texts: list[str]
    kind: EmbedKind = "document"
    # Texts the sender still has waiting besides these and those it has in flight (the store's
    # filler: memories without a vector). A hint: an embed worker runs its extra bulk lanes only
    # for a large backlog.
    backlog: int = 0


# --- store requests (service "store")
class Remember(msgspec.Struct, tag=True):
    """Store one memory; durable when the reply comes."""
    kind: str
    content: str
    project: str
    tags: list[str] = []
    session_id: str | None = None
    metadata: dict[str, Any] = {}
    created_at: str | None = None  # ISO-8601; now when absent


class RememberMany(msgspec.Struct, tag=True):
    """Store many memories in one transaction (all or nothing on invalid input)."""
    items: list[Remember]


class Search(msgspec.Struct, tag=True):
    query: str
    query_vector: bytes | None = None  # float32 x EMBEDDING_DIM; None: keyword-only
    projects: list[str] | None = None
    kinds: list[str] | None = None
    tags_any: list[str] | None = None
    tags_all: list[str] | None = None
    since: str | None = None
    until: str | None = None
    time_expression: str | None = None  # "last week", "past 3 days", ... (sets since/until)
    limit: int = 10
    offset: int = 0
    min_score: float = 0.0  # on the final score (a relevance in 0..1)
    # None: relevance with a slight recency tie-break and the question's own time cues ("now",
    # "last week"); True: relevance x 0.5 ** (age / half_life_days); False: no time preference
    decay: bool | None = None
    half_life_days: float | None = None  # None: the store's configured default
    errors_only: bool = False  # only memories about an error (found at store time)
    file_path: str | None = None  # only memories naming this file (found at store time)
    must_contain: str | None = None  # only memories holding every word of this
    session_id: str | None = None  # only memories stored in this session
    order: Literal["relevance", "newest"] = "relevance"  # no query at all: newest
    fusion: Literal["relevance", "rrf", "vector", "keyword"] = "relevance"  # for comparisons


class GetMemories(msgspec.Struct, tag=True):
    ids: list[str]


class DeleteMemories(msgspec.Struct, tag=True):
    ids: list[str] | None = None
    project: str | None = None
    before: str | None = None


class StoreStats(msgspec.Struct, tag=True):
    session_id: str | None = None  # also the counts of this session's memories


class AddDependency(msgspec.Struct, tag=True):
    source: str
    target: str
    dependency_type: str
    description: str = ""


class ListDependencies(msgspec.Struct, tag=True):
    project: str


class ExportMemories(msgspec.Struct, tag=True):
    path: str  # checked against the allowed roots by the store
    project: str | None = None
    overwrite: bool = False  # replace an existing file (never one inside the data dir)


class ImportMemories(msgspec.Struct, tag=True):
    path: str


# --- permission requests (service "store": the gateway decides, the store remembers)
class CheckPermission(msgspec.Struct, tag=True):
    """Is there an unexpired grant for ``operation``? The reply's ``allowed`` says; when it is
    true the store has logged an ``allowed`` decision. Grants past their expiry are ended and
    logged as ``expired`` first (by every permission request)."""
    operation: str
    level: PermissionLevel
    detail: str = ""  # what the operation is about to do ("3 memories by id")
    gateway_pid: int = 0


class GrantPermission(msgspec.Struct, tag=True):
    """Trust ``operation`` for ``ttl_s`` seconds (it replaces an active grant of it); logged as
    ``trusted``."""
    operation: str
    level: PermissionLevel
    ttl_s: float
    via: GrantVia = "tool"
    detail: str = ""
    gateway_pid: int = 0


class RevokePermission(msgspec.Struct, tag=True):
    """End the active grant of ``operation`` (None: of every operation); logged as ``revoked``.
    The reply's ``count`` is how many grants ended."""
    operation: str | None = None
    level: PermissionLevel | None = None  # the operation's (logged when it had no grant)
    gateway_pid: int = 0


class LogPermission(msgspec.Struct, tag=True):
    """Record a decision the gateway made (asked, approved, denied, refused)."""
    operation: str
    level: PermissionLevel
    decision: PermissionDecision
    detail: str = ""
    gateway_pid: int = 0


class PermissionStatus(msgspec.Struct, tag=True):
    """The active grants and the ``limit`` most recent decisions (of ``operation``, or all);
    with an ``operation``, also its approvals in a row (as ``CheckPermission`` gives them, but
    logging nothing)."""
    operation: str | None = None
    limit: int = 20


RequestBody = (Ping | StackStatus | Embed | Remember | RememberMany | Search | GetMemories
               | DeleteMemories | StoreStats | AddDependency | ListDependencies
               | ExportMemories | ImportMemories | CheckPermission | GrantPermission
               | RevokePermission | LogPermission | PermissionStatus | ProbeTools | AssessQuality
               | GitStatus | CheckpointCommit | OpenSession | RecordCheckpoint | CloseSession
               | SessionQuery | ProjectOverview | Neighbours)


# -------------------------------------------------------------- reply bodies
class Error(msgspec.Struct, tag=True):
    code: ErrorCode
    message: str


class Pong(msgspec.Struct, tag=True):
    service: str
    pid: int
    uptime_s: float
    health: Health = "healthy"
    reason: str = ""
    detail: Stats = {}


class WorkerInfo(msgspec.Struct):
    name: str  # e.g. "embed-0"; stable across restarts
    service: str
    pid: int | None
    state: str  # ready | busy | starting | restarting | parked | lost | stopped
    restarts: int
    last_heartbeat_age_s: float | None
    inflight: int
    stats: Stats = {}


class StackInfo(msgspec.Struct, tag=True):
    pid: int
    version: str
    uptime_s: float
    transport: str
    workers: list[WorkerInfo]
    queued: int
    requests_total: int
    requests_failed: int
    requests_timed_out: int
    malformed_dropped: int
    gateways: int
    idle_timeout_s: float  # 0: never idles out (a hub alone)
    idle_s: float
    auth_refused: int = 0  # peers refused by CURVE/ZAP


class Vectors(msgspec.Struct, tag=True):
    data: bytes  # float32, row-major, count x dim
    count: int
    dim: int
    model_id: str


class Stored(msgspec.Struct, tag=True):
    id: str
    duplicate: bool
    redacted: list[str] = []  # kinds of secrets replaced by a marker


class StoredMany(msgspec.Struct, tag=True):
    results: list[Stored]


class Memory(msgspec.Struct):
    id: str
    kind: str
    content: str
    project: str
    tags: list[str]
    session_id: str | None
    created_at: str
    metadata: dict[str, Any]
    files: list[str] = []  # file paths the content names (search results only)
    # Supersession links (GetMemories only; a search's Hit carries its own): the older memories
    # this one restates with a new fact, and the newer memory that restates this one.
    supersedes: list[str] = []
    superseded_by: str | None = None


class Hit(msgspec.Struct):
    memory: Memory
    snippet: str
    score: float  # the final score, 0..1 (relevance adjusted for time)
    bm25: float
    vector: float | None  # best cosine (whole or chunk); None in keyword mode or not embedded
    rrf: float  # 0 unless fusion="rrf"
    decay: float  # the recency factor 0..1 (1 = now)
    keyword: float = 0.0  # share of the query's information matched, 0..1
    relevance: float = 0.0  # before time adjustments, 0..1
    chunk: int = -1  # the chunk of a long memory whose vector matched best; -1 the whole
    supersedes: list[str] = []  # ids of older memories this one restates with a new fact
    superseded_by: str | None = None  # id of a newer memory that supersedes this one


class SearchHits(msgspec.Struct, tag=True):
    hits: list[Hit]
    mode: Literal["hybrid", "keyword", "recent"]  # recent: no query, newest first
    total_candidates: int
    since: str | None = None  # the time range applied, if any
    until: str | None = None


class Memories(msgspec.Struct, tag=True):
    items: list[Memory]


class Count(msgspec.Struct, tag=True):
    count: int
    skipped: int = 0
    path: str = ""


class Dependency(msgspec.Struct):
    source: str
    target: str
    type: str
    description: str
    created_at: str
    created: bool = False
    direction: str = ""


class Dependencies(msgspec.Struct, tag=True):
    items: list[Dependency]


class StoreInfo(msgspec.Struct, tag=True):
    data: dict[str, Any]


class Grant(msgspec.Struct):
    operation: str
    level: PermissionLevel
    via: GrantVia
    granted_at: str  # ISO-8601, UTC
    expires_at: str
    expires_in_s: float  # from the store's clock when it answered
    gateway_pid: int  # the gateway that made it


class DecisionRecord(msgspec.Struct):
    at: str  # ISO-8601, UTC
    decision: PermissionDecision
    operation: str  # "*" for a revoke_all that found nothing to end
    level: PermissionLevel | None
    detail: str
    gateway_pid: int | None  # None for an expiry (no gateway decided it)


class PermissionState(msgspec.Struct, tag=True):
    """The answer to every permission request."""
    allowed: bool = False  # CheckPermission: an unexpired grant covers the operation
    grants: list[Grant] = []  # active grants (of the operation asked about, or all)
    decisions: list[DecisionRecord] = []  # PermissionStatus: newest first
    # Consecutive approvals of the operation by the user since it was last denied, trusted,
    # revoked or expired (the gateway offers "trust for M minutes" after enough of them).
    approvals_in_row: int = 0
    count: int = 0  # RevokePermission: grants ended


ReplyBody = (Error | Pong | StackInfo | Vectors | Stored | StoredMany | SearchHits | Memories
             | Count | Dependencies | StoreInfo | PermissionState | ToolsReport | QualityReport
             | GitState | CommitResult | SessionList)


# ------------------------------------------------------------------ codecs
# Built once per process; each socket uses the decoder for what arrives on it.
encoder = msgspec.msgpack.Encoder()
request_header_decoder = msgspec.msgpack.Decoder(RequestHeader)
reply_header_decoder = msgspec.msgpack.Decoder(ReplyHeader)
request_body_decoder = msgspec.msgpack.Decoder(RequestBody)
reply_body_decoder = msgspec.msgpack.Decoder(ReplyBody)
worker_control_decoder = msgspec.msgpack.Decoder(WorkerControl)
hub_control_decoder = msgspec.msgpack.Decoder(HubControl)

# What decoding a malformed frame raises. Besides its DecodeError, msgspec raises
# UnicodeDecodeError for invalid UTF-8 inside a string and RecursionError for a value nested
# too deep (in a free-form field such as Remember.metadata). Every receiver catches all three:
# one frame must never stop a receiving thread.
DecodeErrors = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
