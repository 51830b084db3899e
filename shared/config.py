"""Configuration: defaults, then an optional TOML file, then ``SESSIOND_*`` environment variables.

The data dir comes from platformdirs unless ``SESSIOND_HOME`` names one; it and its ``run`` and
``logs`` sub-dirs are created with mode 0700. ``SESSIOND_CONFIG`` names the TOML file (default
``<home>/config.toml``); its keys are the field names below.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from shared.errors import ConfigError
from shared.limits import MAX_TRUST_MINUTES

ENV_PREFIX = "SESSIOND_"


def _default_bulk_lanes() -> int:
    # One bulk lane per core, capped: more threads than cores only adds contention.
    return max(1, min(4, os.cpu_count() or 1))


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    home: str = ""
    transport: Literal["ipc", "tcp"] = "ipc"
    tcp_host: str = "127.0.0.1"
    tcp_client_port: int = 47811
    tcp_worker_port: int = 47812
    # The host of a hub this process joins instead of its data dir's own stack (a worker or a
    # gateway on another machine or container); empty: this machine's stack. Implies tcp.
    hub_host: str = ""
    # CurveZMQ keys (shared.curve; `sessiond keys init`): with it, every connection to the hub is
    # encrypted and the hub accepts only the listed public keys. Required beyond loopback.
    curve_keys_dir: str = ""
    # The bearer token of `sessiond serve --http` (`sessiond keys token`); required when the
    # HTTP gateway binds beyond loopback, checked whenever it is set.
    http_token_file: str = ""
    # Embed worker processes. One is enough on one machine: a backlog is spread over its bulk
    # lanes (below), which share its one model. A second process doubled the backfill's speed
    # on 2 cores too, but held ~150 MB more while it ran; two lanes hold ~50 MB more.
    embed_workers: int = 1
    # Threads of an embed worker that embed a backlog's chunks side by side, at a lower OS
    # priority; a lane beyond the first runs only while more than one chunk waits.
    embed_bulk_lanes: int = msgspec.field(default_factory=_default_bulk_lanes)
    # ... and only for a backlog of at least this many texts (queued at the worker plus those
    # its sender says still wait): a few hundred take seconds on one lane, which holds ~35 MB
    # less than two while it runs. 0: whenever more than one chunk waits.
    embed_lanes_min_backlog: int = 512
    embed_threads: int = 1  # ONNX intra-op threads per embed worker
    # Embed workers that run while nothing is to embed; the rest start with a backlog and
    # stop again after it (shared/supervisor.py).
    embed_workers_at_rest: int = 1
    embed_park_after_s: float = 30.0  # without embed requests: the extra workers stop
    # Model files; empty means the ones shipped in the packages (checked by sha256 either way).
    embed_model_path: str = ""
    embed_tokenizer_path: str = ""
    # Run the MatMulNBits build of the model (embed_worker.fast_model), made once into
    # model_cache_dir (empty: the platform's user cache dir); false runs the int8 file as is.
    embed_fast_model: bool = True
    # onnxruntime's CPU memory arena and memory patterns in the embed workers: off keeps them
    # ~50-70 MB smaller after bulk work and ~20-40 MB during it, at the same speed
    # (see Embedder.load).
    embed_memory_arena: bool = False
    model_cache_dir: str = ""
    heartbeat_interval_s: float = 0.25
    heartbeat_liveness: int = 4  # missed heartbeats before a peer is declared dead
    request_timeout_s: float = 10.0
    idle_timeout_s: float = 900.0  # stack exits after this long with no gateway traffic
    drain_grace_s: float = 2.0
    stop_grace_s: float = 1.5
    restart_backoff_s: float = 0.1
    restart_backoff_max_s: float = 5.0
    log_level: str = "INFO"
    project: str = ""  # default project name; empty: the gateway's working directory's name
    # Half-life of the explicit time decay (a search with decay=true); the default ranking only
    # uses age to break near-ties.
    decay_half_life_days: float = 30.0
    # IANA time zone in which "today", "yesterday", "last week" are meant; empty: the machine's.
    timezone: str = ""
    # Import/export may touch files only under the data dir, the user's home dir and these
    # (os.pathsep-separated) directories; an export never writes inside the data dir.
    io_roots: str = ""
    # Permissions (gateway.permissions): after this many approvals in a row of the same
    # operation, asking the user also offers to trust it for permission_trust_minutes (0: never
    # offer); permission_trust_minutes is also the default length of a `permissions trust`.
    permission_offer_trust_after: int = 3
    permission_trust_minutes: float = 30.0
    # Sessions (gateway.sessions): the checkpoint commits the project's tracked changes (gated by
    # the git_commit permission) unless checkpoint_commit is false; untracked files only with
    # checkpoint_include_untracked. A score change of at least quality_threshold points between
    # checkpoints makes an automatic reflection.
    checkpoint_commit: bool = True
    checkpoint_include_untracked: bool = False
    checkpoint_commit_timeout_s: float = 30.0  # staging and the commit with its hooks
    quality_threshold: float = 10.0
    # The quality worker starts at its first request (which waits for it, ~0.3 s) and stops
    # after this long without one; 0 keeps it running from the stack's start.
    quality_park_after_s: float = 120.0
    # Automatic capture (sessiond.hooks, shared.privacy): the session-start hook's context
    # budget in tokens (~4 characters each; 0: print nothing); whether the Stop hook imports
    # the transcript's new turns (the PreCompact and SessionEnd hooks always do); project
    # directories never captured (os.pathsep-separated; a .sessiond-ignore file in a project
    # does the same); lines never stored (shell-style patterns, one a line; a TOML list too).
    hook_context_tokens: int = 1500
    capture_on_stop: bool = True
    capture_exclude: str = ""
    private_patterns: str = ""

    # ------------------------------------------------------------- paths
    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def run_dir(self) -> Path:
        return self.home_path / "run"

    @property
    def log_dir(self) -> Path:
        return self.home_path / "logs"

    @property
    def db_path(self) -> Path:
        return self.home_path / "memory.duckdb"

    @property
    def handoff_dir(self) -> Path:
        return self.home_path / "handoffs"

    @property
    def heartbeat_expiry_s(self) -> float:
        return self.heartbeat_interval_s * self.heartbeat_liveness


def default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("sessiond", appauthor=False))


def _env_overrides(environ: dict[str, str]) -> dict[str, str]:
    fields = set(Config.__struct_fields__)
    out: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in fields:
            raise ConfigError(f"unknown setting {key}; known: {', '.join(sorted(fields))}")
        out[name] = value
    return out


def load_config(environ: dict[str, str] | None = None, *, create_dirs: bool = True) -> Config:
    """Build the config for this process and make sure its directories exist (mode 0700)."""
    environ = dict(os.environ if environ is None else environ)
    env = _env_overrides(environ)
    home = Path(env.pop("home", "") or default_home()).expanduser().absolute()
    file_path = Path(environ.get(ENV_PREFIX + "CONFIG") or home / "config.toml")
    values: dict[str, object] = {}
    if file_path.is_file():
        try:
            values.update(tomllib.loads(file_path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file_path}: {exc}") from exc
    values.update(env)
    values["home"] = str(home)
    if isinstance(values.get("private_patterns"), list):  # TOML: a list of patterns
        values["private_patterns"] = "\n".join(map(str, values["private_patterns"]))
    if values.get("hub_host"):
        values["transport"] = "tcp"  # a hub elsewhere is only reached over TCP
    try:
        cfg = msgspec.convert(values, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from exc
    _validate(cfg)
    if create_dirs:
        for path in (cfg.home_path, cfg.run_dir, cfg.log_dir):
            make_private_dir(path)
    return cfg


def _validate(cfg: Config) -> None:
    if min(cfg.embed_workers, cfg.embed_threads, cfg.embed_workers_at_rest,
           cfg.embed_bulk_lanes) < 1:
        raise ConfigError("embed_workers, embed_workers_at_rest, embed_bulk_lanes and "
                          "embed_threads must be at least 1")
    if cfg.embed_lanes_min_backlog < 0:
        raise ConfigError("embed_lanes_min_backlog must be 0 or more")
    if cfg.heartbeat_interval_s <= 0 or cfg.heartbeat_liveness < 2:
        raise ConfigError("heartbeat_interval_s must be > 0 and heartbeat_liveness >= 2")
    if cfg.decay_half_life_days <= 0:
        raise ConfigError("decay_half_life_days must be positive")
    if cfg.permission_offer_trust_after < 0:
        raise ConfigError("permission_offer_trust_after must be 0 (never offer) or more")
    if not 0 < cfg.permission_trust_minutes <= MAX_TRUST_MINUTES:
        raise ConfigError(f"permission_trust_minutes must be more than 0 and at most "
                          f"{MAX_TRUST_MINUTES}")
    if not 1 <= cfg.checkpoint_commit_timeout_s <= 300:
        raise ConfigError("checkpoint_commit_timeout_s must be 1..300 seconds")
    if cfg.quality_park_after_s < 0:
        raise ConfigError("quality_park_after_s must be 0 (always running) or more")
    if not 0 < cfg.quality_threshold <= 100:
        raise ConfigError("quality_threshold must be more than 0 and at most 100 (points)")
    if not 0 <= cfg.hook_context_tokens <= 20_000:
        raise ConfigError("hook_context_tokens must be 0..20000")
    from shared.privacy import check_patterns

    if (why := check_patterns(cfg.private_patterns)) is not None:
        raise ConfigError(why)
    if cfg.timezone:
        try:
            zone_of(cfg.timezone)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if cfg.transport == "tcp" and not cfg.curve_keys_dir:
        _refuse_plain_tcp(cfg)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: a loopback IP or ``localhost``. A wildcard
    (``0.0.0.0``, ``*``, ``::``) and any other name reach beyond it."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_plain_tcp(cfg: Config) -> None:
    fix = ("run `sessiond keys init DIR` and set curve_keys_dir (SESSIOND_CURVE_KEYS_DIR=DIR), "
           "or use 127.0.0.1")
    if cfg.hub_host and not is_loopback(cfg.hub_host):
        raise ConfigError(f"refusing to connect to the hub at {cfg.hub_host} without CURVE: "
                          f"requests and memories would cross the network in clear; {fix}")
    if not cfg.hub_host and not is_loopback(cfg.tcp_host):
        raise ConfigError(f"refusing to bind tcp_host={cfg.tcp_host} without CURVE: anyone who "
                          "reaches its ports could read, import, export and delete memories "
                          f"or register as a worker; {fix}")


def zone_of(name: str = "") -> tzinfo:
    """The time zone called ``name`` (IANA), or, for "", the machine's: ``TZ``, else the zone
    ``/etc/localtime`` links to, else the current UTC offset."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (an IANA name like "
                             "Europe/Berlin is expected)") from None
    for candidate in (os.environ.get("TZ", "").lstrip(":"), _localtime_link()):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return datetime.now().astimezone().tzinfo or UTC


def _localtime_link() -> str:
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return ""
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else ""


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it 0700; refuse one owned by another user."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
        if st.st_uid != os.getuid():
            raise ConfigError(f"{path} belongs to another user")
        if st.st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create data directory {path}: {exc}") from exc


def to_environ(cfg: Config) -> dict[str, str]:
    """The env vars that make a child process load exactly this config."""
    out = {}
    for name in Config.__struct_fields__:
        value = getattr(cfg, name)
        out[ENV_PREFIX + name.upper()] = str(value)
    return out
