"""The store worker: the only process that opens the DuckDB file."""

from __future__ import annotations

import logging

import duckdb

from shared import protocol as p
from shared.errors import SessiondError
from shared.worker import Worker

log = logging.getLogger("sessiond.store")


class StoreWorker(Worker):
    service = p.SERVICE_STORE
    capacity = 2  # one running, one queued: the hub holds the rest, so a crash loses little

    def setup(self) -> None:
        try:
            self.db = duckdb.connect(str(self.cfg.db_path))
        except duckdb.Error as exc:
            raise SessiondError(f"cannot open {self.cfg.db_path}: {exc}") from exc

    def pong(self) -> p.Pong:
        pong = super().pong()
        pong.detail = {"db_path": str(self.cfg.db_path)}
        return pong

    def teardown(self) -> None:
        self.db.execute("CHECKPOINT")
        self.db.close()
        log.info("database checkpointed and closed")
