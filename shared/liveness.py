"""Liveness files: how a service started on its own (``sessiond hub``, ``sessiond worker``)
shows a container's health check that it is up and in touch with its hub, without keys.

The process rewrites ``<run dir>/alive-<service>.json`` about once a second; ``sessiond health
--service NAME`` reads it (``check_alive``): healthy when it is fresh, its process runs and (for
a worker) the hub was heard from lately.
"""

from __future__ import annotations

import json
import os
import time

from shared.config import Config

FRESH_S = 10.0  # a file older than this: the process is stuck or gone


def alive_path(cfg: Config, service: str):
    return cfg.run_dir / f"alive-{service}.json"


def write_alive(cfg: Config, service: str, info: dict) -> None:
    path = alive_path(cfg, service)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), **info}),
                       encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a full disk must not stop the service; the health check then reports it stale


def check_alive(cfg: Config, service: str) -> tuple[bool, str]:
    """Whether ``service`` runs here and is in touch with its hub, and why not."""
    path = alive_path(cfg, service)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        pid, stamp = int(info["pid"]), float(info["time"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"no liveness file {path}: {type(exc).__name__}: {exc}"
    age = time.time() - stamp
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"{service} (pid {pid}) is not running"
    except PermissionError:
        pass
    if age > FRESH_S:
        return False, f"{service} (pid {pid}) last wrote {path.name} {age:.0f}s ago"
    if "hub_seen_age_s" in info and info["hub_seen_age_s"] is None:
        return False, f"{service} (pid {pid}) has not heard from its hub yet ({info.get('hub')})"
    seen = info.get("hub_seen_age_s")
    if seen is not None and seen > info.get("hub_expiry_s", FRESH_S):
        return False, f"{service} (pid {pid}) has not heard from its hub for {seen:.0f}s"
    detail = ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("pid", "time"))
    return True, f"{service} (pid {pid}) up; {detail}"
