"""A worker process for tests only: serves "quality", logs each request it handles to a file,
and dies (``os._exit``) when it is asked to embed the text "poison".

No request of the real workers kills them deterministically once their regexes are linear, so
the poison-request test needs a worker that really dies on one body: this process is that
worker, built on the production ``shared.worker.Worker`` and talking to a real hub.

Usage: python tests/helpers/poison_worker.py LOG_FILE   (config from SESSIOND_* env vars)
"""

from __future__ import annotations

import os
import sys

from shared import protocol as p
from shared.config import load_config
from shared.worker import Worker


class PoisonWorker(Worker):
    service = p.SERVICE_QUALITY

    def __init__(self, cfg, log_path: str) -> None:
        super().__init__(cfg)
        self.log_path = log_path

    def handle(self, body: p.RequestBody) -> p.ReplyBody:
        text = body.texts[0] if isinstance(body, p.Embed) and body.texts else ""
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {text}\n")
            f.flush()
            os.fsync(f.fileno())
        if text == "poison":
            os._exit(9)
        return self.pong()


if __name__ == "__main__":
    raise SystemExit(PoisonWorker(load_config(), sys.argv[1]).run())
