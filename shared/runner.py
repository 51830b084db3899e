"""Entry point shared by the worker processes: ``python -m <worker_pkg> --name NAME`` (started by
the supervisor) and ``sessiond worker SERVICE`` (started alone, joining a hub; ``start_worker``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from shared.config import Config, load_config
from shared.errors import ConfigError, SessiondError
from shared.exitcodes import ExitCode
from shared.logs import setup_logging
from shared.worker import Worker

SWITCH_INTERVAL_S = 0.0005


def run_worker(worker_cls: type[Worker], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"sessiond {worker_cls.service} worker")
    parser.add_argument("--name", default=worker_cls.service)
    parser.add_argument("--standalone", action="store_true",
                        help="keep running if the process that started this one exits")
    args = parser.parse_args(argv)
    try:
        cfg = load_config()
    except ConfigError as exc:
        logging.basicConfig()
        logging.getLogger("sessiond").error("%s", exc)
        return ExitCode.CONFIG
    return start_worker(cfg, worker_cls, args.name, standalone=args.standalone)


def start_worker(cfg: Config, worker_cls: type[Worker], name: str, *, standalone: bool,
                 log_stderr: bool = False) -> int:
    """Run one worker until it stops. ``standalone``: it outlives whatever started it and keeps
    a liveness file for ``sessiond health --service``."""
    # Hand the GIL over sooner (default 5 ms): the IO thread must send replies and heartbeats
    # while the compute thread and the store's embed filler run Python code.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    setup_logging(cfg, name, also_stderr=log_stderr)
    log = logging.getLogger(f"sessiond.{name}")
    log.info("starting")
    try:
        code = worker_cls(cfg, exit_with_parent=not standalone, liveness=standalone).run()
    except SessiondError as exc:
        log.error("cannot start: %s", exc)
        if standalone and not log_stderr:
            print(f"sessiond: {name} cannot start: {exc}", file=sys.stderr)
        return ExitCode.CONFIG if isinstance(exc, ConfigError) else ExitCode.STARTUP_FAILED
    log.info("stopped")
    return code
