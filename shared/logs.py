"""Logging to files in the data dir: nothing sessiond logs may reach the MCP stdio channel."""

from __future__ import annotations

import logging
import sys
import threading
import time

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


class LimitedWarnings:
    """Warnings a peer can cause (a refused connection, a bad token), at most ``limit`` per
    ``window_s``: a flood of refused peers must not fill the disk with log lines. What was held
    back is counted and said with the next line logged after the window."""

    def __init__(self, logger: logging.Logger, limit: int = 30, window_s: float = 60.0,
                 clock=time.monotonic) -> None:
        self.logger, self.limit, self.window_s, self.clock = logger, limit, window_s, clock
        self._lock = threading.Lock()
        self._window_start = float("-inf")
        self._logged = self._held = 0

    def warning(self, msg: str, *args: object) -> None:
        now = self.clock()
        with self._lock:
            if now - self._window_start >= self.window_s:
                held, self._held = self._held, 0
                self._window_start, self._logged = now, 0
                if held:
                    self.logger.warning("%d more like the next were not logged in the last "
                                        "%.0f s", held, self.window_s)
            if self._logged >= self.limit:
                self._held += 1
                return
            self._logged += 1
        self.logger.warning(msg, *args)
