"""The wheel a user installs: its top-level packages and its ``sessiond`` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import REPO


def _uv() -> str:
    """``uv run`` names itself in ``UV``; else the one on PATH."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        pytest.skip("uv is not available to build the wheel")
    return uv


def test_wheel_installs_no_generic_cli_package(tmp_path: Path):
    out = subprocess.run([_uv(), "build", "--wheel", "--out-dir", str(tmp_path), str(REPO)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("sessiond-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        top = {n.split("/", 1)[0] for n in names if "/" in n}
        entry_points = next(zf.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    packages = {t for t in top if not t.endswith(".dist-info")}
    assert "cli" not in packages
    assert "sessiond" in packages
    assert {"sessiond/__main__.py", "sessiond/main.py"} <= set(names)
    assert "sessiond = sessiond.main:main" in entry_points
    # the dashboard ships every asset it serves (nothing is fetched from a CDN)
    assert {"webui/templates/base.html", "webui/static/app.css", "webui/static/app.js"} <= set(
        names)
