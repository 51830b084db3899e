"""Named exit codes of every sessiond process and command."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the command ran and the answer is "no" (e.g. `sessiond health` not healthy)
    USAGE = 2
    CONFIG = 3  # configuration or data dir unusable
    ALREADY_RUNNING = 4  # another stack owns this data dir
    STARTUP_FAILED = 5  # a worker could not load what it needs
    UNREACHABLE = 6  # no stack answers and none could be started
    CRASHED = 7  # the stack stopped because a part of it failed for good (its hub thread died)
