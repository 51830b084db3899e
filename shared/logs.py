"""Logging to files in the data dir: nothing sessiond logs may reach the MCP stdio channel."""

from __future__ import annotations

import logging
import sys

from shared.config import Config

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def setup_logging(cfg: Config, name: str, *, also_stderr: bool = False) -> None:
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.FileHandler(cfg.log_dir / f"{name}.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    if also_stderr:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(err)
    root.setLevel(cfg.log_level.upper())
