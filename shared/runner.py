"""Entry point shared by the worker processes: ``python -m <worker_pkg> --name NAME``."""

from __future__ import annotations

import argparse
import logging
import sys

from shared.config import load_config
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
    # Hand the GIL over sooner (default 5 ms): the IO thread must send replies and heartbeats
    # while the compute thread and the store's embed filler run Python code.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    setup_logging(cfg, args.name)
    log = logging.getLogger(f"sessiond.{args.name}")
    log.info("starting")
    try:
        code = worker_cls(cfg, exit_with_parent=not args.standalone).run()
    except SessiondError as exc:
        log.error("cannot start: %s", exc)
        return ExitCode.STARTUP_FAILED
    log.info("stopped")
    return code
