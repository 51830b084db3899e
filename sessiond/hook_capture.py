"""The importing hooks (``pre-compact``, ``session-end``, ``stop``): a Claude Code transcript's
new turns into memory, as ``conversation`` memories of the project, with the session's id.

Incremental by a cursor per transcript file (``<data dir>/hooks/cursors/<sha256 of the
path>.json``: the file's device and inode and the byte offset read so far), so a hook reads
only what was written since the last one: the Stop hook after every answer costs a few turns,
not the whole file. Only whole lines are read: a last line without its newline (Claude Code
still writing it, or a crash mid-write) is left for the next hook. The cursor moves only once
the store has acknowledged every turn read; if anything fails before, the next hook reads the
same lines again, and the store keeps one copy of a turn it already holds (same content in the
same project). A file replaced (another inode) or shorter than the cursor is read from the
start. One hook at a time reads a given file (a lock beside its cursor).

Besides ``transcript_path``, the session's sub-agent transcripts
(``<project dir>/<session>/subagents/*.jsonl``) are read the same way. Turns are read by
``sessiond.transcripts`` (text blocks only: no tool calls, tool results or thinking) with their
private parts dropped (``shared.privacy``); the store drops them again and redacts secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path

from sessiond.hooks import HookInput, stack_pid_runs
from sessiond.transcripts import FileStats, Turn, read_turns
from shared import protocol as p
from shared.client import HubClient
from shared.config import Config, make_private_dir
from shared.errors import BadRequest, Unreachable
from shared.paths import check_io_path
from shared.privacy import Privacy

log = logging.getLogger("sessiond.hooks")

# Per request to the store. Large: the store's embed filler starts once writes pause, and a
# 5 MB transcript (~1,700 turns) sent as one batch is stored in ~0.6 s where four batches of
# 500 took 1.3 s, the filler's embedding taking both cores from the second batch on.
BATCH_TURNS = 2000
BATCH_BYTES = 4 * 1024 * 1024  # of content
BATCH_TIMEOUT_S = 30.0
LOCK_TIMEOUT_S = 20.0
MAX_SUBAGENT_FILES = 200


def capture(cfg: Config, hook: HookInput) -> str:
    files = transcript_files(cfg, hook)
    if not files:
        return "no transcript to read"
    project = hook.project_dir.resolve().name or "claude-code"
    return asyncio.run(_capture(cfg, hook, files, project, Privacy.from_config(cfg)))


def transcript_files(cfg: Config, hook: HookInput) -> list[Path]:
    """The session's transcript and its sub-agents' (each checked like an import path)."""
    if not hook.transcript_path or not os.path.lexists(hook.transcript_path):
        return []  # nothing written yet (a session ended before its first turn)
    main = check_io_path(cfg, hook.transcript_path, must_exist=True)
    files = [main]
    if hook.session_id and "/" not in hook.session_id and hook.session_id not in (".", ".."):
        sub = main.parent / hook.session_id / "subagents"
        if sub.is_dir():
            found = sorted(f for f in sub.glob("*.jsonl") if f.is_file())
            files += [check_io_path(cfg, str(f), must_exist=True)
                      for f in found[:MAX_SUBAGENT_FILES]]
    return files


class Cursor:
    """How far a transcript file has been read (see the module's docstring)."""

    def __init__(self, cfg: Config, path: Path) -> None:
        folder = cfg.home_path / "hooks" / "cursors"
        make_private_dir(folder)
        name = hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:32]
        self.file = folder / f"{name}.json"
        self.lock_file = folder / f"{name}.lock"
        self.path = path

    @contextlib.contextmanager
    def locked(self, timeout_s: float = LOCK_TIMEOUT_S):
        """Hold the file's lock (another hook reading the same transcript waits)."""
        with open(self.lock_file, "a") as f:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.path} is being read by another hook for "
                                           f"over {timeout_s:.0f} s") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def offset(self, st: os.stat_result) -> int:
        try:
            saved = json.loads(self.file.read_text(encoding="utf-8"))
            same = (saved["dev"], saved["ino"]) == (st.st_dev, st.st_ino)
            offset = int(saved["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        return offset if same and 0 <= offset <= st.st_size else 0

    def save(self, st: os.stat_result, offset: int) -> None:
        tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"path": str(self.path), "dev": st.st_dev, "ino": st.st_ino,
                                   "offset": offset}), encoding="utf-8")
        tmp.replace(self.file)


async def _capture(cfg: Config, hook: HookInput, files: list[Path], project: str,
                   privacy: Privacy) -> str:
    client = HubClient.for_config(cfg)
    tally = {"turns": 0, "added": 0, "present": 0, "refused": 0, "malformed": 0}
    ready = False
    reading = storing = 0.0
    try:
        for path in files:
            cursor = Cursor(cfg, path)
            with cursor.locked():
                t0 = time.perf_counter()
                st = path.stat()
                stats = FileStats()
                turns = list(read_turns(path, project, stats=stats, start=cursor.offset(st),
                                        whole_lines=True, privacy=privacy))
                tally["malformed"] += stats.malformed
                t1 = time.perf_counter()
                if turns:
                    if not ready and not stack_pid_runs(cfg):
                        await _ensure_stack(cfg, client)
                    ready = True
                    try:
                        await _store(client, turns, hook.session_id, tally)
                    except Unreachable:  # a stack still starting, or one that just went away
                        await _ensure_stack(cfg, client)
                        await _store(client, turns, hook.session_id, tally)
                cursor.save(st, stats.end)
                reading += t1 - t0
                storing += time.perf_counter() - t1
    finally:
        client.close()
    return (f"{len(files)} file(s): {tally['turns']} new turns, added {tally['added']}, "
            f"already present {tally['present']}, refused {tally['refused']}, "
            f"malformed lines {tally['malformed']}; reading {reading * 1000:.0f} ms, storing "
            f"{storing * 1000:.0f} ms")


async def _ensure_stack(cfg: Config, client: HubClient) -> None:
    """Start a stack if none runs; wait for its hub (not for the embedding model)."""
    from gateway.stack_control import ensure_stack  # psutil: only when it is needed

    await ensure_stack(cfg, client)


def _item(turn: Turn, session_id: str) -> p.Remember:
    return p.Remember(kind="conversation", content=turn.content, project=turn.project,
                      session_id=turn.session_id or session_id or None,
                      metadata=turn.metadata, created_at=turn.created_at)


async def _send(client: HubClient, body: p.RequestBody) -> p.ReplyBody:
    return await client.request(p.SERVICE_STORE, body, timeout_s=BATCH_TIMEOUT_S,
                                idempotent=True, retry_unavailable=True)


def _batches(turns: list[Turn]) -> list[list[Turn]]:
    out: list[list[Turn]] = [[]]
    size = 0
    for turn in turns:
        if len(out[-1]) >= BATCH_TURNS or (out[-1] and size + len(turn.content) > BATCH_BYTES):
            out.append([])
            size = 0
        out[-1].append(turn)
        size += len(turn.content)
    return out


async def _store(client: HubClient, turns: list[Turn], session_id: str,
                 tally: dict[str, int]) -> None:
    for batch in _batches(turns):
        items = [_item(t, session_id) for t in batch]
        try:
            reply = await _send(client, p.RememberMany(items=items))
            results: list[p.Stored | None] = list(reply.results)
        except BadRequest:  # one refused turn refuses the batch: store the others
            results = [await _one(client, item) for item in items]
        tally["turns"] += len(items)
        for stored in results:
            key = "refused" if stored is None else "present" if stored.duplicate else "added"
            tally[key] += 1


async def _one(client: HubClient, item: p.Remember) -> p.Stored | None:
    try:
        return await _send(client, item)
    except BadRequest as exc:
        log.warning("the store refused a turn (uuid %s): %s", item.metadata.get("uuid"), exc)
        return None
