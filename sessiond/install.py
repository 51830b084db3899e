"""``sessiond install [--scope user|project] [--dry-run]`` and ``sessiond uninstall``: register
sessiond with Claude Code in one step, and take back exactly that.

What install does (``sessiond.claude_config`` holds the JSON it adds):

- the **hooks** (SessionStart, PreCompact, SessionEnd, Stop) are merged into the scope's
  ``settings.json`` (user: ``~/.claude/settings.json``; project: ``<dir>/.claude/settings.json``),
  next to whatever is there; an event that already runs ``sessiond hook`` is left alone;
- the **MCP server**: with the ``claude`` CLI on PATH, ``claude mcp add --scope <scope>``; else
  the documented file is edited (user: ``~/.claude.json``'s ``mcpServers``; project:
  ``<dir>/.mcp.json``); an existing ``sessiond`` entry is never replaced.

Before a file is first changed, its bytes are copied to ``<data dir>/install/backups/``, and a
record of what was added (``<data dir>/install/<scope>-<hash of the settings path>.json``) lets
``uninstall`` remove exactly that: our hooks and server entry, and containers left empty that
install created. When the file is then what it was before install, its original bytes are put
back (byte for byte); when something else changed it meanwhile, that change stays. A second
install changes nothing. A file that is not a JSON object is refused, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessiond import claude_config as cc
from shared.config import Config, make_private_dir
from shared.exitcodes import ExitCode

CLI_TIMEOUT_S = 60


class InstallError(Exception):
    """A reason install or uninstall cannot go on; nothing more is changed."""


@dataclass
class Target:
    scope: str
    settings: Path
    server_file: Path
    cwd: Path  # where ``claude mcp`` runs (the project, for --scope project)


def target(scope: str, project_dir: str | None) -> Target:
    home = Path(os.path.expanduser("~"))
    if scope == "user":
        return Target(scope, home / ".claude" / "settings.json", home / ".claude.json", home)
    root = Path(os.path.abspath(project_dir or os.getcwd()))
    if not root.is_dir():
        raise InstallError(f"{root} is not a directory")
    return Target(scope, root / ".claude" / "settings.json", root / ".mcp.json", root)


def run_install(cfg: Config, command: str, scope: str, project_dir: str | None, *,
                dry_run: bool) -> int:
    try:
        where = target(scope, project_dir)
        lines = (install if command == "install" else uninstall)(cfg, where, dry_run=dry_run)
    except InstallError as exc:
        print(f"sessiond: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    for line in lines:
        print(("would: " if dry_run else "") + line)
    return ExitCode.OK


# ----------------------------------------------------------------- files
def read_json(path: Path) -> tuple[bytes | None, dict[str, Any]]:
    """A JSON object file's bytes and value (None and {} when it does not exist)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    except OSError as exc:
        raise InstallError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw.strip():
        return raw, {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InstallError(f"{path} is not valid JSON ({exc}); fix it first, nothing was "
                           "changed") from None
    if not isinstance(value, dict):
        raise InstallError(f"{path} is not a JSON object; nothing was changed")
    return raw, value


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically, keeping its mode (0600 for a new file: it may hold env)."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600 if path.name == ".claude.json" else 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.sessiond-{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def dump(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def backup(cfg: Config, path: Path, raw: bytes) -> str:
    folder = cfg.home_path / "install" / "backups"
    make_private_dir(folder)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = folder / f"{path.name.lstrip('.')}-{digest}-{stamp}"
    write_bytes(name, raw)
    os.chmod(name, 0o600)
    return str(name)


def record_path(cfg: Config, where: Target) -> Path:
    digest = hashlib.sha256(str(where.settings).encode()).hexdigest()[:12]
    return cfg.home_path / "install" / f"{where.scope}-{digest}.json"


def load_record(cfg: Config, where: Target) -> dict[str, Any] | None:
    try:
        return json.loads(record_path(cfg, where).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InstallError(f"cannot read {record_path(cfg, where)}: {exc}") from None


def save_record(cfg: Config, where: Target, record: dict[str, Any]) -> None:
    make_private_dir(record_path(cfg, where).parent)
    write_bytes(record_path(cfg, where), dump(record))


# --------------------------------------------------------------- install
def install(cfg: Config, where: Target, *, dry_run: bool) -> list[str]:
    env = cc.carried_env()
    record = load_record(cfg, where) or {"scope": where.scope}
    lines = []
    raw, settings = read_json(where.settings)
    try:
        merged, added = cc.with_hooks(settings, env)
    except ValueError as exc:
        raise InstallError(f"{where.settings}: {exc}; nothing was changed") from None
    part = record.setdefault("settings", {"path": str(where.settings), "hooks": []})
    if added:
        lines.append(f"add hooks {', '.join(added)} to {where.settings}")
        if not dry_run:
            if not part["hooks"]:  # the file as it was before sessiond touched it
                part.update(existed=raw is not None,
                            backup=backup(cfg, where.settings, raw) if raw is not None else "",
                            created_dir=not where.settings.parent.exists())
            write_bytes(where.settings, dump(merged))
            part["hooks"] = sorted(set(part["hooks"]) | set(added))
    else:
        lines.append(f"hooks already in {where.settings}")
    lines.append(_install_server(cfg, where, env, record, dry_run))
    if not dry_run and (added or record.get("server", {}).get("added")):
        save_record(cfg, where, record)
    return lines


def _claude_cli() -> str | None:
    return shutil.which("claude")


def _cli(cli: str, where: Target, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([cli, "mcp", *args], check=False, cwd=where.cwd,
                              capture_output=True,
                              text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"claude mcp {args[0]} failed: {exc}") from None


def _install_server(cfg: Config, where: Target, env: dict[str, str], record: dict[str, Any],
                    dry_run: bool) -> str:
    if record.get("server", {}).get("added"):
        return "MCP server already registered by an earlier install"
    cli = _claude_cli()
    if cli is not None:
        if _cli(cli, where, "get", cc.SERVER_NAME).returncode == 0:
            return f"MCP server {cc.SERVER_NAME!r} already known to claude (kept)"
        cmd = cc.sessiond_command()
        args = ["add", "--scope", where.scope, *(f"--env={k}={v}" for k, v in env.items()),
                cc.SERVER_NAME, "--", *cmd, "serve"]
        if dry_run:
            return f"run claude mcp {shlex.join(args)}"
        done = _cli(cli, where, *args)
        if done.returncode != 0:
            raise InstallError(f"claude mcp add failed: {(done.stderr or done.stdout).strip()}")
        record["server"] = {"how": "cli", "added": True}
        return f"registered the MCP server with claude mcp add --scope {where.scope}"
    raw, config = read_json(where.server_file)
    try:
        merged, added = cc.with_server(config, env)
    except ValueError as exc:
        raise InstallError(f"{where.server_file}: {exc}; nothing more was changed") from None
    if not added:
        return f"MCP server {cc.SERVER_NAME!r} already in {where.server_file} (kept)"
    if not dry_run:
        record["server"] = {"how": "file", "added": True, "path": str(where.server_file),
                            "existed": raw is not None,
                            "backup": (backup(cfg, where.server_file, raw)
                                       if raw is not None else "")}
        write_bytes(where.server_file, dump(merged))
    return f"add the MCP server {cc.SERVER_NAME!r} to {where.server_file}"


# ------------------------------------------------------------- uninstall
def uninstall(cfg: Config, where: Target, *, dry_run: bool) -> list[str]:
    record = load_record(cfg, where)
    if record is None:
        return [f"nothing to remove: no install recorded for {where.settings}"]
    lines = []
    part = record.get("settings") or {}
    if part.get("hooks"):
        lines.append(_take_back(where.settings, part, dry_run, lambda value, original:
                                cc.without_hooks(value, part["hooks"], original),
                                f"hooks {', '.join(part['hooks'])}"))
    server = record.get("server") or {}
    if server.get("how") == "cli":
        cli = _claude_cli()
        if cli is None:
            lines.append("claude is no longer on PATH: remove the server with "
                         f"`claude mcp remove --scope {where.scope} {cc.SERVER_NAME}`")
        elif dry_run:
            lines.append(f"run claude mcp remove --scope {where.scope} {cc.SERVER_NAME}")
        else:
            done = _cli(cli, where, "remove", "--scope", where.scope, cc.SERVER_NAME)
            lines.append("removed the MCP server with claude mcp remove" if done.returncode == 0
                         else f"claude mcp remove failed: {(done.stderr or done.stdout).strip()}")
    elif server.get("how") == "file":
        lines.append(_take_back(Path(server["path"]), server, dry_run, cc.without_server,
                                f"the MCP server {cc.SERVER_NAME!r}"))
    if not dry_run:
        record_path(cfg, where).unlink(missing_ok=True)
    return lines


def _take_back(path: Path, part: dict[str, Any], dry_run: bool, remove, what: str) -> str:
    """Remove what install added to ``path``; put back the original bytes when nothing else
    changed since (delete the file when install created it)."""
    raw, value = read_json(path)
    if raw is None:
        return f"{path} is gone; nothing to remove"
    original_raw = Path(part["backup"]).read_bytes() if part.get("backup") else None
    original = json.loads(original_raw) if original_raw and original_raw.strip() else {}
    result = remove(value, original if part.get("existed") else None)
    if dry_run:
        return f"remove {what} from {path}"
    if not part.get("existed") and result == {}:
        path.unlink()
        if part.get("created_dir"):
            try:
                path.parent.rmdir()
            except OSError:
                pass  # something else is in it now
        return f"removed {path} (install created it)"
    if part.get("existed") and original_raw is not None and result == original:
        write_bytes(path, original_raw)
        return f"restored {path} as it was before install"
    write_bytes(path, dump(result))
    return f"removed {what} from {path} (other changes made since install kept)"
