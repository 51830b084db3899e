"""``sessiond stack`` (the real supervisor) with one fault added for a test: on SIGUSR1 the hub
thread raises, as a bug in it would.

Nothing a client or worker can send makes the hub thread raise (it drops malformed frames and
answers its own errors), so the test that the supervisor notices a dead hub needs this hook.

Usage: python tests/helpers/stack_with_hub_fault.py   (config from SESSIOND_* env vars)
"""

from __future__ import annotations

import signal
import threading

from shared.config import load_config
from shared.hub import Hub
from shared.logs import setup_logging
from shared.supervisor import Supervisor

crash = threading.Event()
real_tick = Hub._tick


def faulty_tick(self: Hub) -> None:
    if crash.is_set():
        raise RuntimeError("injected hub fault")
    real_tick(self)


if __name__ == "__main__":
    Hub._tick = faulty_tick
    signal.signal(signal.SIGUSR1, lambda *_: crash.set())
    cfg = load_config()
    setup_logging(cfg, "stack")
    raise SystemExit(Supervisor(cfg).run())
