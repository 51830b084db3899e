"""Which files import and export may touch: only below the data dir, the user's home dir and
the configured ``io_roots``; checked after resolving ``..`` and symlinks."""

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
    if not raw or "\x00" in raw:
        raise BadRequest("path must be a non-empty string without NUL characters")
    path = Path(os.path.expanduser(raw))
    if not path.is_absolute():
        raise BadRequest(f"path must be absolute (got {raw!r})")
    resolved = path.resolve()
    roots = allowed_roots(cfg)
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        raise BadRequest(f"{raw} is outside the allowed places ({', '.join(map(str, roots))}); "
                         "set SESSIOND_IO_ROOTS to allow more")
    if must_exist and not resolved.is_file():
        raise BadRequest(f"{raw} is not a file")
    if not must_exist and resolved.is_dir():
        raise BadRequest(f"{raw} is a directory; give a file name")
    return resolved
