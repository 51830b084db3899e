"""Configuration from defaults, a TOML file and SESSIOND_* variables."""

from __future__ import annotations

import stat

import pytest

from shared.config import load_config, to_environ
from shared.errors import ConfigError
from shared.transport import Endpoints, bind_endpoints, endpoints


def test_env_overrides_file_and_dirs_are_private(tmp_path):
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.toml").write_text("embed_workers = 3\nidle_timeout_s = 60\n")
    cfg = load_config({"SESSIOND_HOME": str(home), "SESSIOND_EMBED_WORKERS": "2"})
    assert cfg.embed_workers == 2 and cfg.idle_timeout_s == 60.0
    for d in (cfg.home_path, cfg.run_dir, cfg.log_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert load_config(to_environ(cfg)) == cfg


@pytest.mark.parametrize("environ, message", [
    ({"SESSIOND_BOGUS": "1"}, "unknown setting SESSIOND_BOGUS"),
    ({"SESSIOND_EMBED_WORKERS": "lots"}, "invalid setting"),
    ({"SESSIOND_EMBED_WORKERS": "0"}, "at least 1"),
    ({"SESSIOND_TRANSPORT": "carrier-pigeon"}, "invalid setting"),
    ({"SESSIOND_TRANSPORT": "tcp", "SESSIOND_TCP_HOST": "0.0.0.0"},
     "refusing to bind tcp_host=0.0.0.0 without CURVE"),
    ({"SESSIOND_TRANSPORT": "tcp", "SESSIOND_TCP_HOST": "192.168.1.20"}, "without CURVE"),
    ({"SESSIOND_HUB_HOST": "hub.example"}, "refusing to connect to the hub at hub.example"),
])
def test_bad_settings_are_clear_errors(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"SESSIOND_HOME": str(tmp_path), **environ})


def test_bad_toml_is_a_clear_error(tmp_path):
    (tmp_path / "config.toml").write_text("embed_workers = [")
    with pytest.raises(ConfigError, match="config.toml"):
        load_config({"SESSIOND_HOME": str(tmp_path)})


def test_long_home_gets_short_ipc_paths_and_tcp_is_configurable(tmp_path):
    deep = tmp_path / ("x" * 90)
    cfg = load_config({"SESSIOND_HOME": str(deep)})
    eps = endpoints(cfg)
    assert eps.clients.startswith("ipc://") and len(eps.workers) - len("ipc://") <= 100
    tcp = load_config({"SESSIOND_HOME": str(tmp_path), "SESSIOND_TRANSPORT": "tcp",
                       "SESSIOND_TCP_CLIENT_PORT": "5555"})
    assert endpoints(tcp).clients == "tcp://127.0.0.1:5555"


def test_loopback_tcp_needs_no_keys_and_a_hub_elsewhere_means_tcp(tmp_path):
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        cfg = load_config({"SESSIOND_HOME": str(tmp_path), "SESSIOND_TRANSPORT": "tcp",
                           "SESSIOND_TCP_HOST": host})
        assert cfg.tcp_host == host
    joined = load_config({"SESSIOND_HOME": str(tmp_path), "SESSIOND_HUB_HOST": "hub.example",
                          "SESSIOND_CURVE_KEYS_DIR": str(tmp_path / "keys")})
    assert joined.transport == "tcp"
    assert endpoints(joined) == Endpoints("tcp://hub.example:47811", "tcp://hub.example:47812")
    wild = load_config({"SESSIOND_HOME": str(tmp_path), "SESSIOND_TRANSPORT": "tcp",
                        "SESSIOND_TCP_HOST": "::", "SESSIOND_CURVE_KEYS_DIR": "/k"})
    assert bind_endpoints(wild).clients == "tcp://*:47811"  # libzmq's wildcard
    assert endpoints(wild).clients == "tcp://127.0.0.1:47811"  # reached locally
