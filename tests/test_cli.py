"""The ``sessiond`` command, run as a user would from a terminal."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, stack_info


def sessiond(env, *args, timeout=90):
    return subprocess.run([sys.executable, "-m", "sessiond", *args], env=env, cwd=REPO, check=False,
                          capture_output=True, text=True, timeout=timeout)


def test_version(env):
    out = sessiond(env, "--version")
    assert out.returncode == 0 and out.stdout.startswith("sessiond ")


def test_call_status_health_stop(env, home):
    out = sessiond(env, "call", "ping")
    assert out.returncode == 0, out.stderr
    pong = json.loads(out.stdout)
    assert pong["ok"] is True and pong["stack_pid"] == stack_info(home)["pid"]

    out = sessiond(env, "health")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "overall: healthy" in out.stdout

    out = sessiond(env, "status", "--json")
    assert out.returncode == 0
    assert json.loads(out.stdout)["stack"]["stack_pid"] == pong["stack_pid"]
    out = sessiond(env, "status")
    assert out.returncode == 0, out.stderr
    assert f"stack pid {pong['stack_pid']}" in out.stdout
    assert "this window's session: none" in out.stdout and "workers:" in out.stdout

    out = sessiond(env, "stop")
    assert out.returncode == 0 and "stack stopped" in out.stdout
    assert stack_info(home) is None
    assert "no stack running" in sessiond(env, "stop").stdout


def test_call_reports_bad_usage(env):
    out = sessiond(env, "call", "ping", "{not json")
    assert out.returncode == 2 and "not JSON" in out.stderr
    out = sessiond(env, "call", "no_such_tool")
    assert out.returncode == 1 and "no_such_tool" in out.stderr


def test_unknown_setting_is_a_config_error(env):
    out = sessiond({**env, "SESSIOND_NO_SUCH_THING": "1"}, "status")
    assert out.returncode == 3 and "SESSIOND_NO_SUCH_THING" in out.stderr
