"""Which project a session tool is about: the client's MCP roots when it offers them, else the
directory the assistant gave, else the gateway's working directory (never a fixed path).

When the client offers roots (a handshake-era connection with the ``roots`` capability; the
2026-07-28 protocol has none), they are the boundaries the user gave this server: a directory
given by the assistant must lie inside one of them (a more precise place, e.g. one package of
a monorepo), and without one the first root is the project. The directory must then be one the
quality worker may look into (``shared.paths.check_project_dir``: absolute, under the home dir,
the data dir or ``io_roots``, existing, a directory, readable); otherwise ``ToolError`` says
which.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from fastmcp import Context
from fastmcp.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from shared.config import Config
from shared.errors import BadRequest
from shared.paths import check_project_dir

log = logging.getLogger("sessiond.gateway.project")

ROOTS_TIMEOUT_S = 2.0
MAX_ROOTS = 64


@dataclass(frozen=True)
class ProjectDir:
    root: Path  # resolved
    detected_from: str  # roots | argument | cwd

    @property
    def name(self) -> str:
        return self.root.name or str(self.root)


async def client_roots(ctx: Context | None) -> list[Path] | None:
    """The client's roots as local directories, or None when it offers none (no capability,
    the 2026-07-28 protocol, or no answer in time: logged)."""
    if ctx is None:
        return None
    try:
        session = ctx.session
        caps = session.client_capabilities
        modern = session.protocol_version in MODERN_PROTOCOL_VERSIONS
    except RuntimeError:  # not inside a client's request
        return None
    if caps is None or caps.roots is None or modern:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # roots end with 2026-07-28
            result = await asyncio.wait_for(session.list_roots(), ROOTS_TIMEOUT_S)
    except (TimeoutError, MCPError) as exc:
        log.warning("the client offers roots but did not list them: %s", exc)
        return None
    paths = []
    for root in result.roots[:MAX_ROOTS]:
        url = urlparse(str(root.uri))
        if url.scheme == "file" and url.netloc in ("", "localhost"):
            paths.append(Path(unquote(url.path)))
    return paths or None


async def detect(cfg: Config, ctx: Context | None, given: str | None) -> ProjectDir:
    """The project directory a call is about, checked (``ToolError`` saying why not)."""
    roots = await client_roots(ctx)
    if given is not None and given.strip():
        raw = os.path.expanduser(given.strip())
        if not os.path.isabs(raw):
            base = roots[0] if roots else Path.cwd()
            raw = str(base / raw)
        place = await asyncio.to_thread(checked, cfg, raw)
        if roots and not any(_inside(place, r) for r in roots):
            raise ToolError(f"{given} is outside the client's roots "
                            f"({', '.join(map(str, roots))}); give a directory inside one")
        return ProjectDir(place, "argument")
    if roots:
        return ProjectDir(await asyncio.to_thread(checked, cfg, str(roots[0])), "roots")
    return ProjectDir(await asyncio.to_thread(checked, cfg, str(Path.cwd())), "cwd")


def checked(cfg: Config, raw: str) -> Path:
    try:
        return check_project_dir(cfg, raw)
    except BadRequest as exc:
        raise ToolError(f"cannot use this project directory: {exc.message}") from None


def _inside(path: Path, root: Path) -> bool:
    try:
        resolved = root.resolve()
    except OSError:
        return False
    return path == resolved or path.is_relative_to(resolved)
