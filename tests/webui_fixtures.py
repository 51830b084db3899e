"""The dashboard for tests: a real ``sessiond ui`` process on a free loopback port, and a real
headless Chromium (Debian's ``chromium`` package) driven by Playwright through
``executable_path`` (Playwright's own browser download is never used).

Where Chromium or Playwright is missing the browser tests are skipped with the reason, except
in CI (``CI`` set, as ``.ci/run`` runs), where they fail: ``.ci/run`` installs Chromium, so a
missing one there is a broken set-up, not a reason to pass.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS_ENV = "UI_SCREENSHOTS_DIR"  # where the tests save each page (the README's images)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), shutil.which("chromium"),
                      "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def unavailable(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {why} (.ci/run installs chromium; "
                    "see its output)", pytrace=False)
    pytest.skip(f"browser tests need {why}")


@contextlib.contextmanager
def browser():
    """A headless Chromium (Playwright gives each launch a fresh temporary profile); yields
    the Playwright ``Browser``, from which each test opens its own context."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package (a dev dependency: uv sync)")
    path = chromium_path()
    if path is None:
        unavailable("Chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Dashboard:
    """``sessiond ui --port 0`` started with ``env``; ``url`` is the address it printed."""

    def __init__(self, env: dict[str, str], *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sessiond", "ui", "--port", "0", *extra], env=env, cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = self._printed_address(timeout=30)
        self.base = self.url.split("?", 1)[0].rstrip("/")  # http://127.0.0.1:PORT
        self._wait_ready(timeout=30)

    def _printed_address(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("sessiond dashboard: "):
                    return line.split(": ", 1)[1].strip()
            if self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"sessiond ui printed no address: {self.proc.stderr.read()}")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.request("/stack"), timeout=10):
                    return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def token(self) -> str | None:
        return self.url.split("?token=", 1)[1] if "?token=" in self.url else None

    def request(self, path: str, **kwargs) -> urllib.request.Request:
        """A request for ``path`` carrying the token (if the dashboard has one)."""
        req = urllib.request.Request(self.base + path, **kwargs)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        return req

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def screenshot_dir(fallback: Path) -> Path:
    path = Path(os.environ.get(SCREENSHOTS_ENV) or fallback)
    path.mkdir(parents=True, exist_ok=True)
    return path
