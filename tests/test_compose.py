"""docker-compose.yml, checked without a Docker engine: it is parsed (PyYAML), every service's
command and health check must be a ``sessiond`` entry point with options it accepts, every
secret and volume it names must be defined; then the same topology runs here as separate local
processes over TCP on 127.0.0.1 with CURVE, each with the environment the compose file (and the
Dockerfile's ENV) gives its service and only the secrets it lists, and a real MCP client over
HTTP stores and searches through it while every service's health check is green.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from apart import Proc, free_port, http_client, init_keys
from conftest import REPO, call, kill_stack_processes, wait_embedded

from shared.config import Config

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
SERVICES = {"hub", "store", "embed", "quality", "gateway"}
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def interpolate(value, variables: dict[str, str]):
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}``."""
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        name, op, arg = m.groups()
        if variables.get(name):
            return variables[name]
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(one, value)


def image_env() -> dict[str, str]:
    """The SESSIOND_* settings the Dockerfile's ENV gives every container."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    blocks = re.findall(r"^ENV ((?:.*\\\n)*.*)$", text, re.MULTILINE)
    return dict(re.findall(r"\b(SESSIOND_\w+)=(\S+)", "\n".join(blocks)))


def parse_command(args: list[str]):
    from sessiond.main import _parser

    try:
        return _parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"sessiond does not accept {args}") from exc


def test_every_service_is_a_sessiond_command_with_defined_secrets_and_volumes():
    spec = compose()
    services = spec["services"]
    assert set(services) == SERVICES
    fields = set(Config.__struct_fields__)
    for name, svc in services.items():
        command = svc["command"]
        assert command[0] == "sessiond", name
        args = parse_command(command[1:])
        assert args.command in ("hub", "worker", "serve"), name
        test = svc["healthcheck"]["test"]
        assert test[:2] == ["CMD", "sessiond"], name
        assert parse_command(test[2:]).command == "health", name
        assert svc["restart"] in ("unless-stopped", "always", "on-failure"), name
        for key in svc.get("environment", {}):
            if key.startswith("SESSIOND_"):
                assert key[len("SESSIOND_"):].lower() in fields, f"{name}: unknown {key}"
        for secret in svc.get("secrets", []):
            assert secret["source"] in spec["secrets"], f"{name}: undefined {secret}"
            assert "file" in spec["secrets"][secret["source"]]
        for volume in svc.get("volumes", []):
            source = interpolate(volume, {"PROJECTS_DIR": "/w"}).split(":")[0]
            if not source.startswith(("/", ".")):
                assert source in spec["volumes"], f"{name}: undefined volume {source}"
    assert services["embed"]["deploy"]["replicas"] == 2
    assert parse_command(services["embed"]["command"][1:]).service == "embed"
    # The gateway publishes the port it serves HTTP on; the store keeps its data dir in a volume.
    http_port = parse_command(services["gateway"]["command"][1:]).http.rsplit(":", 1)[1]
    assert any(str(p).endswith(f":{http_port}") for p in services["gateway"]["ports"])
    assert image_env()["SESSIOND_HOME"] == "/data"
    assert any(v.endswith(":/data") for v in services["store"]["volumes"])
    assert any("PROJECTS_DIR" in v for v in services["quality"]["volumes"])
    # The secrets are the files `sessiond keys init` writes.
    written = {"hub.key", "hub.key_secret", "worker.key_secret", "client.key_secret",
               "allowed_workers", "allowed_clients", "http.token"}
    assert {Path(s["file"]).name for s in spec["secrets"].values()} == written


def test_the_dockerfile_is_slim_uv_non_root_with_a_data_volume():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)
    assert "uv sync --frozen --no-dev" in text
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^VOLUME \["/data"\]', text, re.MULTILINE)
    assert "fast_model_path" in text  # the model's faster build is made in the image


def _localize(value: str, ports: dict[str, str], paths: dict[str, Path]) -> str:
    """A container's value as it is on this machine: service names and 0.0.0.0 are 127.0.0.1,
    the compose ports are free ones, container paths are the test's dirs."""
    value = value.replace("tcp://hub:", "tcp://127.0.0.1:").replace("0.0.0.0", "127.0.0.1")
    for container, local in ports.items():
        value = value if value != container else local
        value = value.replace(f":{container}", f":{local}")
    for container, local in paths.items():
        if value == container or value.startswith(container + "/"):
            value = str(local) + value[len(container):]
    return value


@pytest.fixture
def topology(tmp_path):
    """The compose services as processes; yields (gateway URL, token, envs by name)."""
    from embed_worker.fast_model import default_cache_dir

    spec = compose()
    keys = init_keys(tmp_path / "keys")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    variables = {"PROJECTS_DIR": str(workspace), "APP_UID": str(os.getuid())}
    ports = {"47811": str(free_port()), "47812": str(free_port()), "8765": str(free_port())}
    base = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    procs: list[Proc] = []
    envs: dict[str, dict[str, str]] = {}
    order = ["hub"] + sorted(SERVICES - {"hub"})  # depends_on: hub first
    try:
        for name in order:
            svc = spec["services"][name]
            replicas = svc.get("deploy", {}).get("replicas", 1)
            for i in range(replicas):
                instance = f"{name}-{i}" if replicas > 1 else name
                root = tmp_path / instance
                secrets = root / "secrets"
                secrets.mkdir(parents=True)
                for secret in svc.get("secrets", []):  # only what the service lists
                    src = REPO / spec["secrets"][secret["source"]]["file"]
                    target = secrets / secret["target"]
                    shutil.copy(keys / Path(src).name, target)
                    target.chmod(0o600)
                paths = {"/run/secrets": secrets, "/data": root / "data",
                         "/opt/sessiond/model-cache": default_cache_dir()}
                env = {**base}
                raw = {**image_env(), **svc.get("environment", {})}
                for key, value in raw.items():
                    env[key] = _localize(interpolate(str(value), variables), ports, paths)
                if env.get("SESSIOND_HUB_HOST") in SERVICES:  # the hub's service name
                    env["SESSIOND_HUB_HOST"] = "127.0.0.1"
                envs[instance] = env
                args = [_localize(interpolate(a, variables), ports, paths)
                        for a in svc["command"][1:]]
                procs.append(Proc(instance, args, env, tmp_path))
        url = f"http://127.0.0.1:{ports['8765']}/mcp"
        token = (keys / "http.token").read_text().strip()
        yield url, token, envs, spec, (ports, variables)
    finally:
        codes = {proc.name: proc.stop() for proc in reversed(procs)}  # the hub last
        for env in envs.values():
            kill_stack_processes(Path(env["SESSIOND_HOME"]))
    assert set(codes.values()) == {0}, {p.name: p.output()[-2000:] for p in procs
                                        if codes[p.name] != 0}


def healthcheck(spec, name: str, env: dict[str, str], ports, variables) -> subprocess.Popen:
    service = name.rsplit("-", 1)[0] if name.startswith("embed-") else name
    test = [_localize(interpolate(a, variables), ports, {})
            for a in spec["services"][service]["healthcheck"]["test"][2:]]
    return subprocess.Popen([sys.executable, "-m", "sessiond", *test], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def test_the_compose_topology_runs_apart_over_tcp_with_curve(topology):
    url, token, envs, spec, (ports, variables) = topology

    deadline = time.monotonic() + 90
    while True:  # the services' own health checks, run as a container runs them; the
        # gateway's too, so the client below never races its HTTP listener
        checks = {name: healthcheck(spec, name, env, ports, variables)
                  for name, env in envs.items()}
        results = {name: (p.wait(60), p.stdout.read()) for name, p in checks.items()}
        if all(code == 0 for code, _ in results.values()):
            break
        usage = any(code in (2, 3) for code, _ in results.values())  # usage, config
        assert not usage and time.monotonic() < deadline, f"health checks not green: {results}"
        time.sleep(0.5)

    async def scenario():
        async with http_client(url, token) as client:
            stored = await call(client, "store_reflection", {
                "content": "In the compose stack the embed pool runs as two replicas over TCP"
                           " with CURVE", "tags": ["compose"]})
            await wait_embedded(client)
            found = await call(client, "quick_search", {"query": "embedding replicas apart"})
            for query in ("curve keys", "two replicas", "hub over tcp", "compose secrets"):
                await call(client, "quick_search", {"query": query})  # one query vector each
            health = await call(client, "health_check")
            await asyncio.sleep(1.0)  # the workers' next heartbeats carry their counters
            status = await call(client, "status")
            return stored, found, health, status

    stored, found, health, status = asyncio.run(scenario())
    assert found["mode"] == "hybrid" and found["results"][0]["id"] == stored["id"]
    assert health["status"] == "healthy", health
    stack = status["stack"]
    assert stack["transport"] == "tcp" and stack["idle_timeout_s"] == 0  # never idles out
    services = sorted(w["service"] for w in stack["workers"] if w["state"] in ("ready", "busy"))
    assert services == ["embed", "embed", "quality", "store"], stack["workers"]
    embedded = [w["stats"]["texts_embedded"] for w in stack["workers"] if w["service"] == "embed"]
    assert all(n > 0 for n in embedded), embedded  # both replicas take part
    assert stack["auth_refused"] == 0
    gateway_check = healthcheck(spec, "gateway", envs["gateway"], ports, variables)
    assert gateway_check.wait(90) == 0, gateway_check.stdout.read()
    # the gateway also serves the dashboard (--ui), behind the same token: its stack page
    # lists every worker it reaches over TCP
    dashboard = url.removesuffix("/mcp") + "/stack"
    request = urllib.request.Request(dashboard, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        page = reply.read().decode()
    assert page.count("data-worker=") == 4, page
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(dashboard, timeout=30)
    assert refused.value.code == 401
