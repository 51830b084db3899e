"""``export_memories`` and ``sessiond export`` never clobber: not an existing file unless asked,
never anything inside the data dir (the live database, its WAL and journal, logs, sockets),
even through a symlink; exports are created readable by the user only."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, Stack, base_env, call, call_error, gateway_client, kill_stack_processes

OLD_MTIME_NS = 1_600_000_000 * 10**9  # files the test plants are dated 2020


@pytest.fixture(scope="module")
def user():
    """A stack whose user home is a temp dir holding the data dir, as a real install has it
    (``~/.local/share/sessiond``): the home is an allowed place, the data dir inside it is not."""
    user_home = Path(tempfile.mkdtemp(prefix="sdu-"))
    data = user_home / ".local" / "share" / "sessiond"
    data.mkdir(parents=True)
    env = base_env(data, HOME=str(user_home))
    env.pop("SESSIOND_IO_ROOTS")
    stack = Stack(data, env)
    try:
        yield env, user_home, data
    finally:
        stack.stop()
        kill_stack_processes(data)


def plant(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    return path


def fingerprint(path: Path) -> tuple:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest()


def jsonl_ids(path: Path) -> set[str]:
    return {json.loads(line)["id"] for line in path.read_text().splitlines()}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def stored_and_idle(client, project: str, n: int = 3) -> set[str]:
    """Store ``n`` memories and wait until they are embedded and flushed, so the store writes
    nothing while the test compares files."""
    ids = {(await call(client, "store_reflection", {"content": f"{project} memory {i}",
                                                    "project": project}))["id"]
           for i in range(n)}
    for _ in range(600):
        if (await call(client, "reflection_stats"))["pending_embeddings"] == 0:
            return ids
        await asyncio.sleep(0.1)
    raise AssertionError("embeddings still pending")


def test_export_tool_refuses_to_clobber_and_writes_private_files(user):
    env, user_home, data = user
    bashrc = plant(user_home / ".bashrc", "export PATH=$HOME/bin:$PATH\n")
    link_to_bashrc = user_home / "innocent.jsonl"
    link_to_bashrc.symlink_to(bashrc)
    link_to_db = user_home / "db-link.jsonl"
    link_to_db.symlink_to(data / "memory.duckdb")
    own_file = plant(data / "notes.jsonl", "mine\n")

    async def scenario():
        async with gateway_client(env) as client:
            tool = next(t for t in await client.list_tools() if t.name == "export_memories")
            assert tool.annotations.destructive_hint is True
            assert tool.annotations.idempotent_hint is False
            assert tool.input_schema["properties"]["overwrite"]["default"] is False
            ids = await stored_and_idle(client, "p-safe")

            data_files = [data / "memory.duckdb", data / "memory.duckdb.journal",
                          data / "run" / "stack.json", own_file]
            data_files += [f for f in (data / "memory.duckdb.wal",) if f.exists()]
            before = {f: fingerprint(f) for f in [bashrc, *data_files]}
            logs = {f: f.stat().st_ino for f in (data / "logs").iterdir()}
            assert logs, "the stack writes its logs in the data dir"

            refusals = [({"path": str(bashrc)}, "already exists"),
                        ({"path": str(link_to_bashrc)}, "already exists")]
            refusals += [({"path": str(f), "overwrite": True}, "inside the data dir")
                         for f in [*data_files, *logs, data / "fresh.jsonl",
                                   data / "memory.duckdb.index.npz"]]
            refusals += [({"path": str(link_to_db), "overwrite": True}, "inside the data dir")]
            for args, message in refusals:
                text = await call_error(client, "export_memories", {**args, "project": "p-safe"})
                assert message in text, (args, text)
            assert {f: fingerprint(f) for f in before} == before
            assert {f: f.stat().st_ino for f in logs} == logs  # appended to, never replaced
            assert not (data / "fresh.jsonl").exists()
            assert not (data / "memory.duckdb.index.npz").exists()

            new = user_home / "exports" / "safe.jsonl"
            new.parent.mkdir()
            done = await call(client, "export_memories", {"path": str(new), "project": "p-safe"})
            assert done["count"] == 3 and jsonl_ids(new) == ids
            assert mode_of(new) == 0o600
            text = await call_error(client, "export_memories", {"path": str(new)})
            assert "already exists" in text

            # Replacing a file needs the user's permission: refused (this client cannot ask
            # the user) with the tool call that grants it; the file is untouched.
            old = plant(user_home / "old.jsonl", "stale export\n")
            replace = {"path": str(old), "project": "p-safe", "overwrite": True}
            text = await call_error(client, "export_memories", replace)
            assert 'permissions(action="trust", operation="export_overwrite"' in text
            assert old.read_text() == "stale export\n"
            await call(client, "permissions", {"action": "trust",
                                               "operation": "export_overwrite"})
            await call(client, "export_memories", replace)
            assert jsonl_ids(old) == ids and mode_of(old) == 0o600
            # overwrite=true onto a new file replaces nothing: no permission needed
            await call(client, "permissions", {"action": "revoke_all"})
            fresh = user_home / "exports" / "fresh.jsonl"
            await call(client, "export_memories", {**replace, "path": str(fresh)})
            assert jsonl_ids(fresh) == ids
            leftovers = [p for p in user_home.rglob(".*.tmp")]
            assert leftovers == []

    asyncio.run(scenario())


def sessiond(env, *args):
    return subprocess.run([sys.executable, "-m", "sessiond", *args], env=env, cwd=REPO,
                          check=False, capture_output=True, text=True, timeout=90)


def test_export_command_refuses_to_clobber(user):
    env, user_home, data = user
    profile = plant(user_home / ".profile", "umask 022\n")
    journal = data / "memory.duckdb.journal"
    before = {f: fingerprint(f) for f in (profile, journal)}

    out = sessiond(env, "export", str(profile))
    assert out.returncode == 1 and "already exists" in out.stderr and "overwrite" in out.stderr
    for target in (journal, data / "memory.duckdb", data / "new.jsonl"):
        out = sessiond(env, "export", str(target), "--overwrite")
        assert out.returncode == 1 and "inside the data dir" in out.stderr, out.stderr
    assert {f: fingerprint(f) for f in before} == before
    assert not (data / "new.jsonl").exists()

    out = sessiond(env, "export", str(profile), "--overwrite")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("exported ")
    assert mode_of(profile) == 0o600
    assert all(json.loads(line)["id"] for line in profile.read_text().splitlines())
    fresh = user_home / "cli.jsonl"
    out = sessiond(env, "export", str(fresh))
    assert out.returncode == 0 and mode_of(fresh) == 0o600
