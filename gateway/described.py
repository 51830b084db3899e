"""Tools and prompts registered with their docstring handed to fastmcp as their description.

fastmcp reads a tool's or prompt's description from its docstring by parsing it with griffe
(Google, NumPy and Sphinx styles in turn) to split off sections such as ``Args:``; importing
griffe and parsing every docstring took ~30 ms of each gateway start. sessiond's docstrings are
plain prose (each parameter is described by its ``Field``), so the docstring is the description
as it stands: ``tool`` and ``prompt`` pass it as ``description`` and hide the docstring from
fastmcp while it registers the function, which then has nothing to parse. The listed
descriptions are the same as griffe's reading of these docstrings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastmcp import FastMCP


def tool(mcp: FastMCP, fn: Callable | None = None, **options: Any) -> Any:
    """``mcp.tool(fn, **options)``, or a decorator doing it, with the docstring as the
    description (unless ``options`` give one)."""
    if fn is None:
        return lambda f: _register(mcp.tool, f, options)
    return _register(mcp.tool, fn, options)


def prompt(mcp: FastMCP, **options: Any) -> Callable[[Callable], Any]:
    """A decorator: ``mcp.prompt(**options)`` with the docstring as the description."""
    return lambda f: _register(mcp.prompt, f, options)


def _register(register: Callable, fn: Callable, options: dict[str, Any]) -> Any:
    options = {"description": inspect.getdoc(fn), **options}
    doc, fn.__doc__ = fn.__doc__, None
    try:
        return register(fn, **options)
    finally:
        fn.__doc__ = doc
