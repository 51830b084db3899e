"""A full disk (ENOSPC) while appending to the journal and while flushing it into DuckDB: the
tool call fails with a clear error, nothing acknowledged is lost, and the store resumes when
space returns.

The real thing first: the data dir is a 16 MB tmpfs (mounting one needs root; the test is
skipped with the reason where that is not allowed), with ``logs/`` and ``run/`` bind-mounted
from an ordinary directory so that only the database files live on the small disk and the
space left can be set to the byte. Where it cannot run, the journal's own write path is tested
with a writer that fails as a full disk does (``test_journal_append_on_a_full_disk``), through
the ``write`` a ``Journal`` takes: the one fault path that runs on every machine.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import (
    REPO,
    Stack,
    base_env,
    call,
    call_error,
    gateway_client,
    kill_stack_processes,
    wait_all_ready,
)

from shared.errors import StorageError
from store_worker.memory_store import MemoryStore

from .support import report

pytestmark = pytest.mark.faults

DISK_BYTES = 16 * 1024 * 1024
PAGE = 4096


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


@pytest.fixture
def small_disk():
    """A data dir on a 16 MB tmpfs, its logs/ and run/ on the ordinary disk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the journal's write path is tested "
                    "with a failing writer instead (test_journal_append_on_a_full_disk)")
    home = Path(tempfile.mkdtemp(prefix="sd-"))
    side = Path(tempfile.mkdtemp(prefix="sd-side-"))
    mounted: list[Path] = []
    try:
        try:
            _mount("-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(home))
        except (subprocess.CalledProcessError, OSError) as exc:
            reason = getattr(exc, "stderr", b"") or str(exc)
            pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): "
                        f"{reason!r}")
        mounted.append(home)
        for name in ("logs", "run"):
            (side / name).mkdir(mode=0o700)
            (home / name).mkdir(mode=0o700)
            _mount("--bind", str(side / name), str(home / name))
            mounted.append(home / name)
        yield home
    finally:
        kill_stack_processes(home)
        for path in reversed(mounted):
            _umount(path)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(side, ignore_errors=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(home: Path, leave: int = 0) -> Path:
    """Take all the free space of the disk holding ``home`` but ``leave`` bytes."""
    filler = home / f"filler-{time.monotonic_ns()}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = free_bytes(home) - leave
        while size > 0:
            try:
                os.posix_fallocate(fd, 0, size)
                break
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size -= PAGE
    finally:
        os.close(fd)
    assert free_bytes(home) <= leave + PAGE, (free_bytes(home), leave)
    return filler


async def wait_idle(client) -> dict:
    """Wait until every memory is embedded (the filler no longer writes); returns the stats."""
    deadline = time.monotonic() + 60
    while True:
        stats = await call(client, "reflection_stats")
        if stats["pending_embeddings"] == 0:
            return stats
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.1)


def test_a_full_disk_fails_writes_clearly_and_loses_nothing(small_disk, tmp_path):
    home = small_disk
    env = base_env(home, SESSIOND_RESTART_BACKOFF_MAX_S="0.5", SESSIOND_LOG_LEVEL="INFO",
                   SESSIOND_QUALITY_PARK_AFTER_S="0")  # every worker running, checked for crashes
    stack = Stack(home, env)
    acked: dict[str, str] = {}

    async def store(client, content: str) -> dict:
        stored = await call(client, "store_reflection", {"content": content, "project": "disk"})
        acked[stored["id"]] = content
        return stored

    async def scenario():
        async with gateway_client(env) as client:
            workers = {w["name"]: w["pid"] for w in (await wait_all_ready(client))["workers"]}
            for i in range(20):
                await store(client, f"memory {i} stored before the disk filled up")
            await wait_idle(client)

            # 1. No room even for the journal: the store call fails, saying why.
            filler = fill(home)
            t0 = time.monotonic()
            append_error = await call_error(client, "store_reflection", {
                "content": "this one cannot be written anywhere", "project": "disk"})
            append_error_s = time.monotonic() - t0
            found = await call(client, "get_memory", {"ids": list(acked)})
            assert [m["content"] for m in found["memories"]] == list(acked.values())
            stats = await call(client, "reflection_stats")
            assert stats["memories"] == len(acked)  # nothing half-written
            filler.unlink()
            await store(client, "stored once space came back")

            # 2. Room for the journal but not for DuckDB: the store is acknowledged from the
            # journal; the flush into the table fails and is retried.
            await wait_idle(client)
            big = "a long memory written while the database could not grow " * 700
            filler = fill(home, leave=(len(big) // PAGE + 2) * PAGE)
            journaled = await store(client, big)
            await asyncio.sleep(0.3)  # the idle flush runs and fails
            got = await call(client, "get_memory", {"ids": [journaled["id"]]})
            assert got["memories"][0]["content"] == big.strip()
            flush_error = await call_error(client, "reflection_stats")  # it flushes first

            # A store killed meanwhile restarts from the journal once the disk has room.
            os.kill(workers["store"], signal.SIGKILL)
            await asyncio.sleep(1.0)  # it tries to replay the journal into DuckDB and fails
            filler.unlink()
            t0 = time.monotonic()
            stats = await wait_idle(client)
            resume_s = time.monotonic() - t0
            after = await store(client, "stored after the disk had room again")
            found = await call(client, "get_memory", {"ids": list(acked)})
            status = (await call(client, "status"))["stack"]
        return (append_error, append_error_s, flush_error, stats, after, found, status,
                resume_s)

    try:
        (append_error, append_error_s, flush_error, stats, after, found, status,
         resume_s) = asyncio.run(scenario())
    finally:
        code = stack.stop(timeout=30)
    store_log = (home / "logs" / "store.log").read_text()
    print(f"\nappend error: {append_error}\nflush error: {flush_error}")
    assert "No space left on device" in append_error, append_error
    assert "nothing was stored" in append_error, append_error
    assert "No space left on device" in flush_error, flush_error
    assert "could not write journaled memories into the table" in store_log
    assert not after["duplicate"]
    assert {m["id"]: m["content"] for m in found["memories"]} == \
           {i: c.strip() for i, c in acked.items()}
    assert stats["memories"] == len(acked) - 1  # all but the one stored after
    store_worker = next(w for w in status["workers"] if w["name"] == "store")
    assert store_worker["restarts"] >= 1 and store_worker["state"] in ("ready", "busy")
    assert code == 0
    report(tmp_path, "full_disk", {
        "acked_writes": len(acked), "lost": len(acked) - len(found["memories"]),
        "append_error_s": round(append_error_s, 3), "resumed_after_space_s": round(resume_s, 3),
        "append_error": append_error, "flush_error": flush_error})


def test_journal_append_on_a_full_disk(tmp_path):
    """The journal's write path with a writer that fails as a full disk does (the fault a
    machine without a small filesystem to fill cannot cause): the add fails with a clear error,
    the journal is left as it was, and adds resume when writes do."""
    full = {"on": False}

    def write(fd: int, data: bytes) -> int:
        if full["on"]:
            written = os.write(fd, data[: len(data) // 2])  # a short write, then the error
            assert written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    db = tmp_path / "m.duckdb"
    with MemoryStore(db, journal_write=write) as store:
        kept = store.add("note", "written before the disk filled", "p").id
        size = Path(f"{db}.journal").stat().st_size
        full["on"] = True
        with pytest.raises(StorageError) as caught:
            store.add("note", "written while the disk is full", "p")
        assert "No space left on device" in str(caught.value)
        assert "nothing was stored" in str(caught.value)
        assert Path(f"{db}.journal").stat().st_size == size  # the torn part cut off
        assert store.count == 1
        full["on"] = False
        resumed = store.add("note", "written while the disk is full", "p")
        assert not resumed.duplicate
    with MemoryStore(db) as store:
        assert [m["id"] for m in store.get([kept, resumed.id])] == [kept, resumed.id]


_SNAPSHOT_ON_A_FULL_DISK = """
import sys
import numpy as np
from pathlib import Path
from store_worker.indexes import snapshot
from store_worker.memory_store import MemoryStore

db, target = sys.argv[1], Path(sys.argv[2])
with MemoryStore(db, snapshot_min_rows=10**9) as store:  # its own snapshot: none
    store.add_many({"kind": "note", "content": f"memory {i}", "project": "p"}
                   for i in range(400))
    keys = [k for k, _ in store.pending_embeddings(1000)]
    store.set_embeddings(keys, np.random.default_rng(0).standard_normal(
        (len(keys), 384)).astype(np.float32))
    try:
        snapshot.save(target, "f" * 32, store.catalog, store.text_index, store.vectors)
    except OSError as exc:
        print("OSError", exc.errno, sorted(p.name for p in target.parent.glob("m.duckdb*")))
    else:
        print("saved")
"""


def test_a_snapshot_that_does_not_fit_is_an_error_not_a_crash(small_disk, tmp_path):
    """The snapshot's arrays are written with plain writes: on a full disk the save raises
    OSError (the close then skips the snapshot) and leaves no partial file. Written through a
    mapping, as they first were, the store died of SIGBUS instead (exit -7)."""
    fill(small_disk, leave=16 * 1024)  # the vector matrix alone is ~0.6 MB
    done = subprocess.run(
        [sys.executable, "-c", _SNAPSHOT_ON_A_FULL_DISK, str(tmp_path / "m.duckdb"),
         str(small_disk / "m.duckdb.index.npz")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == f"OSError {errno.ENOSPC} []", done.stdout
