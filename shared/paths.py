"""Which files import and export may touch: only below the data dir, the user's home dir and
the configured ``io_roots``; checked after resolving ``..`` and symlinks. An export never writes
inside the data dir (the live database, its WAL and journal, the index snapshot, logs and
sockets are there) and never replaces an existing file unless asked to. The quality worker looks
only into project directories under the same places."""

from __future__ import annotations

import os
from pathlib import Path

from shared.config import Config
from shared.errors import BadRequest


def allowed_roots(cfg: Config) -> list[Path]:
    roots = [cfg.home_path, Path(os.path.expanduser("~"))]
    roots += [Path(r) for r in cfg.io_roots.split(os.pathsep) if r.strip()]
    return [r.resolve() for r in roots]


def check_io_path(cfg: Config, raw: str, *, must_exist: bool) -> Path:
    """The resolved path, or ``BadRequest`` saying why it is refused."""
    try:
        return _check_io_path(cfg, raw, must_exist=must_exist)
    except OSError as exc:  # a name too long for the file system, ...
        raise BadRequest(f"cannot use {raw}: {exc.strerror or exc}") from exc
    except RuntimeError as exc:  # what Path.resolve raises on a loop of symlinks
        raise BadRequest(f"cannot use {raw}: {exc}") from exc


def _resolve_allowed(cfg: Config, raw: str, what: str) -> Path:
    """``raw`` resolved (``~``, ``..``, symlinks), or ``BadRequest`` when it is empty, holds a
    NUL, is relative or lies outside the allowed roots (checked before anything else about the
    path is revealed)."""
    if not raw or "\x00" in raw:
        raise BadRequest(f"{what} must be a non-empty path without NUL characters")
    path = Path(os.path.expanduser(raw))
    if not path.is_absolute():
        raise BadRequest(f"{what} must be an absolute path (got {raw!r})")
    resolved = path.resolve()
    roots = allowed_roots(cfg)
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        raise BadRequest(f"{raw} is outside the allowed places ({', '.join(map(str, roots))}); "
                         "set SESSIOND_IO_ROOTS to allow more")
    return resolved


def _check_io_path(cfg: Config, raw: str, *, must_exist: bool) -> Path:
    resolved = _resolve_allowed(cfg, raw, "path")
    if must_exist and not resolved.is_file():
        raise BadRequest(f"{raw} is not a file")
    if not must_exist and resolved.is_dir():
        raise BadRequest(f"{raw} is a directory; give a file name")
    return resolved


def check_export_path(cfg: Config, raw: str, *, overwrite: bool) -> Path:
    """Where an export may be written (resolved), or ``BadRequest`` saying why not: outside the
    allowed places, inside the data dir (whether named directly or through a symlink), or an
    existing file when ``overwrite`` is false."""
    path = check_io_path(cfg, raw, must_exist=False)
    try:
        return _check_export_path(cfg, raw, path, overwrite=overwrite)
    except OSError as exc:
        raise BadRequest(f"cannot use {raw}: {exc.strerror or exc}") from exc


def _check_export_path(cfg: Config, raw: str, path: Path, *, overwrite: bool) -> Path:
    named = Path(os.path.abspath(os.path.expanduser(raw)))
    data = {cfg.home_path.absolute(), cfg.home_path.resolve()}
    if any(p == d or p.is_relative_to(d) for p in (named, path) for d in data):
        raise BadRequest(f"{raw} is inside the data dir ({cfg.home_path}), which holds the live "
                         "database, its journal and logs; export to a file elsewhere")
    if not overwrite and (path.exists() or named.is_symlink()):
        raise BadRequest(f"{raw} already exists; pass overwrite=true to replace it, or choose "
                         "another name")
    return path


def check_project_dir(cfg: Config, raw: str) -> Path:
    """A project directory the quality worker may look into (resolved), or ``BadRequest``
    saying why not: not absolute, outside the allowed places (checked before anything about the
    path is revealed), missing, a file, or unreadable."""
    resolved = _resolve_allowed(cfg, raw, "the project directory")
    if not resolved.exists():
        raise BadRequest(f"{raw} does not exist")
    if not resolved.is_dir():
        raise BadRequest(f"{raw} is a file, not a directory; give the project's directory")
    try:
        with os.scandir(resolved) as entries:
            next(entries, None)
    except OSError as exc:
        raise BadRequest(f"{raw} cannot be read: {exc.strerror or exc}") from None
    return resolved
