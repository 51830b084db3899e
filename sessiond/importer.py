"""``sessiond import`` and ``sessiond export``: bulk moves of memory, straight to the store.

Both find or start the stack and talk to the store through the hub (no MCP in between). Paths
are checked against the same allowed places as the store's (the data dir, the home dir and
``SESSIOND_IO_ROOTS``; an export never inside the data dir, and never over an existing file
without ``--overwrite``) before anything starts, so a refused path fails fast and the same way
whichever format it holds.

``import`` takes a ``sessiond export`` file (the store reads it itself: ids and timestamps kept,
re-importing adds nothing) or Claude Code transcripts (a file, or a directory searched
recursively). Transcript turns (see ``sessiond.transcripts``) go to the store in batches of
``BATCH_TURNS``, one transaction each; the store skips content already stored in the project,
so a second run adds only new turns. Private parts never leave this process
(``shared.privacy``), and a transcript recorded in a project that opted out of capture
(``.sessiond-ignore``, ``capture_exclude``) is skipped with a warning. Only the summary line
goes to stdout; progress (a bar when
stderr is a terminal), warnings and errors go to stderr.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from gateway.stack_control import ensure_stack
from sessiond.transcripts import (
    FileStats,
    Turn,
    display,
    find_transcripts,
    first_cwd,
    is_export_file,
    read_turns,
)
from shared import protocol as p
from shared.client import HubClient
from shared.config import Config
from shared.errors import BadRequest, ServiceError, SessiondError, StackError
from shared.exitcodes import ExitCode
from shared.limits import MAX_PROJECT_LEN
from shared.paths import allowed_roots, check_export_path
from shared.privacy import Privacy, ignored

BATCH_TURNS = 500
BATCH_BYTES = 8 * 1024 * 1024  # and at most this much content per batch
BATCH_TIMEOUT_S = 120.0
FILE_TIMEOUT_S = 600.0  # a whole export or import of an export file


class UsageError(SessiondError):
    """A bad argument: exit code 2."""


class Failed(SessiondError):
    """A clear reason the command could not do its job: exit code 1."""


# ------------------------------------------------------------------- entry points
def run_export(cfg: Config, raw_path: str, project: str | None, *, overwrite: bool = False) -> int:
    """``sessiond export PATH [--project P] [--overwrite]``."""
    return _run(cfg, lambda client: _export(cfg, client, _absolute(raw_path), project,
                                            overwrite))


def run_import(cfg: Config, raw_path: str, project: str | None) -> int:
    """``sessiond import PATH [--project P]``."""
    return _run(cfg, lambda client: _import(cfg, client, _absolute(raw_path), project))


def _run(cfg: Config, job) -> int:
    try:
        summary = asyncio.run(_with_stack(cfg, job))
    except UsageError as exc:
        _warn(f"sessiond: {exc}")
        return ExitCode.USAGE
    except (Failed, ServiceError) as exc:
        _warn(f"sessiond: {exc}")
        return ExitCode.FAILED
    except StackError as exc:
        _warn(f"sessiond: {exc}")
        return ExitCode.UNREACHABLE
    except KeyboardInterrupt:
        _warn("sessiond: interrupted; what was stored so far stays (re-run to continue)")
        return 130
    print(summary)
    return ExitCode.OK


async def _with_stack(cfg: Config, job):
    client = HubClient.for_config(cfg)
    try:
        return await job(client)
    finally:
        client.close()


def _absolute(raw: str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(raw)))


def _check_place(cfg: Config, path: Path) -> None:
    """The store's rule (``shared.paths``), applied here too: also to transcripts, which this
    process reads itself, and before a stack is started for nothing."""
    resolved = path.resolve()
    roots = allowed_roots(cfg)
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        raise Failed(f"{path} is outside the allowed places ({', '.join(map(str, roots))}); "
                     "set SESSIOND_IO_ROOTS to allow more")


def _check_project(project: str | None) -> str | None:
    if project is None:
        return None
    project = project.strip()
    if not project or len(project) > MAX_PROJECT_LEN or "\x00" in project:
        raise UsageError(f"--project must be 1-{MAX_PROJECT_LEN} characters")
    return project


async def _store(client: HubClient, body: p.RequestBody, timeout_s: float) -> p.ReplyBody:
    return await client.request(p.SERVICE_STORE, body, timeout_s=timeout_s, idempotent=True,
                                retry_unavailable=True)


# ------------------------------------------------------------------------ export
async def _export(cfg: Config, client: HubClient, path: Path, project: str | None,
                  overwrite: bool) -> str:
    project = _check_project(project)
    try:  # the store checks again: this only fails fast, before starting a stack
        check_export_path(cfg, str(path), overwrite=overwrite)
    except BadRequest as exc:
        raise Failed(str(exc)) from None
    if not path.parent.is_dir():
        raise Failed(f"{path.parent}: no such directory")
    await ensure_stack(cfg, client)
    reply = await _store(client, p.ExportMemories(path=str(path), project=project,
                                                  overwrite=overwrite), FILE_TIMEOUT_S)
    assert isinstance(reply, p.Count)
    return f"exported {reply.count} memories to {reply.path or path}"


# ------------------------------------------------------------------------ import
async def _import(cfg: Config, client: HubClient, path: Path, project: str | None) -> str:
    project = _check_project(project)
    _check_place(cfg, path)
    if not path.exists():
        raise Failed(f"{path}: no such file or directory")
    if path.is_file() and is_export_file(path):
        if project is not None:
            raise UsageError("--project applies to transcripts only; an export keeps each "
                             "memory's own project")
        await ensure_stack(cfg, client)
        reply = await _store(client, p.ImportMemories(path=str(path)), FILE_TIMEOUT_S)
        assert isinstance(reply, p.Count)
        return (f"imported {reply.path or path}: added: {reply.count}, "
                f"already present: {reply.skipped}")
    files = find_transcripts(path)
    if path.is_dir():
        exports = [f for f in files if is_export_file(f)]
        for f in exports:
            _warn(f"sessiond: skipping {display(f)}: a sessiond export; import it on its own")
        files = [f for f in files if f not in exports]
    if not files:
        raise Failed(f"no *.jsonl transcripts under {path}")
    files = [f for f in files if _captured(cfg, f)]
    if not files:
        return "files: 0 (capture is off for every project they belong to)"
    await ensure_stack(cfg, client)
    tally = await _import_transcripts(client, files, project, Privacy.from_config(cfg))
    if tally.turns == 0 and tally.lines and tally.lines == tally.malformed:
        raise Failed(f"{path}: not a Claude Code transcript or a sessiond export "
                     f"(no line is a JSON object)")
    return tally.summary()


def _captured(cfg: Config, f: Path) -> bool:
    """Whether the project a transcript was recorded in allows capture (``shared.privacy``)."""
    cwd = first_cwd(f)
    why = ignored(cfg, cwd) if cwd else None
    if why is not None:
        _warn(f"sessiond: skipping {display(f)}: capture is off for its project ({why})")
    return why is None


@dataclass
class Tally:
    files: int = 0
    lines: int = 0
    turns: int = 0
    malformed: int = 0
    added: int = 0
    present: int = 0
    repeated: int = 0  # same text as a turn added earlier in this run (the store keeps one)
    refused: int = 0
    added_ids: set[str] = field(default_factory=set)

    def summary(self) -> str:
        text = (f"files: {self.files}, turns read: {self.turns}, added: {self.added}, "
                f"already present: {self.present}, skipped lines: {self.malformed}")
        if self.repeated:
            text += f", repeated in this import: {self.repeated}"
        if self.refused:
            text += f", refused by the store: {self.refused}"
        return text

    def count(self, stored: p.Stored | None) -> None:
        if stored is None:
            self.refused += 1
        elif not stored.duplicate:
            self.added += 1
            self.added_ids.add(stored.id)
        elif stored.id in self.added_ids:
            self.repeated += 1
        else:
            self.present += 1


async def _import_transcripts(client: HubClient, files: list[Path], project: str | None,
                              privacy: Privacy) -> Tally:
    run = _TranscriptImport(client, files, project, privacy)
    try:
        await run.read_and_send()
    except ServiceError as exc:
        raise Failed(f"{exc} (the turns stored so far stay; re-run to add the rest)") from None
    finally:
        run.close()
    return run.tally


class _TranscriptImport:
    """Reads the files in order and keeps one batch at the store while it reads the next."""

    def __init__(self, client: HubClient, files: list[Path], project: str | None,
                 privacy: Privacy) -> None:
        self.client = client
        self.privacy = privacy
        self.files = files
        self.project = project
        self.tally = Tally(files=len(files))
        self.bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True,
                        unit_divisor=1024, desc="importing", file=sys.stderr,
                        disable=not sys.stderr.isatty(), leave=False)
        self.in_flight: asyncio.Task | None = None

    async def read_and_send(self) -> None:
        batch: list[Turn] = []
        size = 0
        for f in self.files:
            stats = FileStats()
            try:
                for turn in read_turns(f, self.project, progress=self.bar.update, stats=stats,
                                       privacy=self.privacy):
                    batch.append(turn)
                    size += len(turn.content)
                    if len(batch) >= BATCH_TURNS or size >= BATCH_BYTES:
                        await self.flush(batch)
                        batch, size = [], 0
            except OSError as exc:
                _warn(f"sessiond: cannot read {display(f)}: {exc}", self.bar)
            self.tally.lines += stats.lines
            self.tally.turns += stats.turns
            self.tally.malformed += stats.malformed
            if stats.malformed:
                where = "; ".join(f"line {n}: {why}" for n, why in stats.examples)
                _warn(f"sessiond: {display(f)}: skipped {stats.malformed} malformed "
                      f"line{'s' if stats.malformed != 1 else ''} ({where})", self.bar)
        await self.flush(batch)
        await self.flush([])

    async def flush(self, batch: list[Turn]) -> None:
        """Wait for the batch at the store, then send ``batch`` (if any) without waiting."""
        if self.in_flight is not None:
            task, self.in_flight = self.in_flight, None
            await task
        if batch:
            self.in_flight = asyncio.create_task(self.send(batch))
            await asyncio.sleep(0)  # let it go out before reading on

    async def send(self, batch: list[Turn]) -> None:
        items = [p.Remember(kind="conversation", content=t.content, project=t.project,
                            session_id=t.session_id, metadata=t.metadata,
                            created_at=t.created_at) for t in batch]
        try:
            reply = await _store(self.client, p.RememberMany(items=items), BATCH_TIMEOUT_S)
            assert isinstance(reply, p.StoredMany)
            results: list[p.Stored | None] = list(reply.results)
        except BadRequest:
            # One turn the store refuses would refuse the whole batch: keep the others.
            results = [await self.send_one(turn, item) for turn, item in zip(batch, items,
                                                                             strict=True)]
        for stored in results:
            self.tally.count(stored)
        self.bar.set_postfix(added=self.tally.added, refresh=False)

    async def send_one(self, turn: Turn, item: p.Remember) -> p.Stored | None:
        try:
            reply = await _store(self.client, item, BATCH_TIMEOUT_S)
        except BadRequest as exc:
            _warn(f"sessiond: the store refused a turn of {turn.metadata.get('file')} "
                  f"(uuid {turn.metadata.get('uuid')}): {exc}", self.bar)
            return None
        assert isinstance(reply, p.Stored)
        return reply

    def close(self) -> None:
        if self.in_flight is not None:
            self.in_flight.cancel()
        self.bar.close()


def _warn(message: str, bar: tqdm | None = None) -> None:
    if bar is not None and not bar.disable:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)
