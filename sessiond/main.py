"""The ``sessiond`` command: the terminal face of sessiond. (The MCP server it starts with
``serve`` lives in ``gateway/``; there, stdout belongs to MCP and nothing prints.)"""

from __future__ import annotations

import json
import logging
import os
import sys

from shared.config import load_config
from shared.errors import ConfigError, StackError
from shared.exitcodes import ExitCode
from shared.logs import setup_logging

HOOK_EVENTS = ("session-start", "pre-compact", "session-end", "stop")


def _run(coro):
    """``asyncio.run``, imported here: ``sessiond stack`` (the supervisor) never needs asyncio,
    nor the ~3 MB it and ssl hold."""
    import asyncio

    return asyncio.run(coro)


def _parser():
    import argparse  # here: a hook command starts without it (see main)

    from sessiond import keys, services
    from shared.version import VERSION
    from webui import DEFAULT_PORT

    parser = argparse.ArgumentParser(prog="sessiond", description=(
        "Session management and memory for coding assistants, over MCP."))
    parser.add_argument("--version", action="version", version=f"sessiond {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    services.extend_serve(sub.add_parser("serve", help="run the MCP gateway on stdio (what "
                                         "Claude Code starts), or over HTTP"))
    stack = sub.add_parser("stack", help="run the stack (hub, supervisor, workers) in the foreground")
    stack.add_argument("--log-stderr", action="store_true", help="also log to stderr")
    sub.add_parser("stop", help="stop the running stack")
    status = sub.add_parser("status", help="sessions, the project here and the stack's "
                            "status (through a real gateway)")
    status.add_argument("directory", nargs="?", help="the project (default: this directory)")
    status.add_argument("--json", action="store_true", help="print the status tool's result")
    services.extend_health(sub.add_parser("health", help="probe every component; exit 0 if "
                                          "healthy, 1 if not"))
    metrics = sub.add_parser("metrics", help="tool calls, workers, backlog and memory as JSON "
                             "or Prometheus text (through a real gateway)")
    services.extend_client(metrics)
    metrics.add_argument("--prometheus", action="store_true",
                         help="the Prometheus text format instead of JSON")
    call = sub.add_parser("call", help="call any MCP tool through a real gateway")
    services.extend_client(call)
    call.add_argument("tool")
    call.add_argument("arguments", nargs="?", default="{}", help="JSON object of arguments")
    sub.add_parser("demo", help="start the stack, call the tools through MCP, stop")
    ui = sub.add_parser("ui", help="serve the web dashboard (memories, projects, sessions, "
                        "the stack) on 127.0.0.1")
    ui.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free one)")
    ui.add_argument("--host", default="127.0.0.1",
                    help="address to bind; anything but loopback requires the token")
    ui.add_argument("--open", action="store_true", help="open it in the default browser")
    ui.add_argument("--require-token", action="store_true",
                    help="ask for the token on loopback too (a machine shared with others)")
    imp = sub.add_parser("import", help="import a sessiond export, or Claude Code transcripts "
                         "(a .jsonl file or a directory such as ~/.claude/projects)")
    imp.add_argument("path")
    imp.add_argument("--project", help="put every transcript turn in this project")
    exp = sub.add_parser("export", help="write memories to a JSONL file, one memory a line")
    exp.add_argument("path")
    exp.add_argument("--project", help="only this project's memories")
    exp.add_argument("--overwrite", action="store_true",
                     help="replace PATH if it exists (it is never replaced otherwise)")
    hook = sub.add_parser("hook", help="what Claude Code runs at a hook event (JSON on stdin; "
                          "always exits 0)")
    hook.add_argument("event", choices=HOOK_EVENTS)
    for name, what in (("install", ("register sessiond with Claude Code: the MCP server and "
                                    "its hooks")),
                       ("uninstall", "remove exactly what install added")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("--scope", choices=("user", "project"), default="user",
                         help="user: ~/.claude (every project); project: this directory's "
                         ".claude/settings.json and .mcp.json")
        cmd.add_argument("--project-dir", help="the project for --scope project (default: "
                         "this directory)")
        cmd.add_argument("--dry-run", action="store_true", help="say what would change; "
                         "change nothing")
    services.add_commands(sub)
    keys.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "hook" and argv[1] in HOOK_EVENTS:
        # Claude Code starts one per hook event: no argument parser, no package metadata; and
        # it never fails the user's session, not even on a bad config.
        from sessiond.hooks import run_hook

        return run_hook(argv[1])
    args = _parser().parse_args(argv)
    from sessiond import keys, services
    if args.command == "keys":  # writes files only; needs no (and may precede any) config
        return keys.run(args)
    try:
        os.environ.update(services.environ_overrides(args))
        cfg = load_config()
    except ConfigError as exc:
        print(f"sessiond: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    match args.command:
        case "serve":
            if args.ui and not args.http:
                print("sessiond serve: --ui serves the dashboard beside MCP over HTTP: give "
                      "--http HOST:PORT too (or run `sessiond ui`)", file=sys.stderr)
                return ExitCode.USAGE
            return services.serve_http(cfg, args) if args.http else _serve(cfg, args.log_stderr)
        case "hub":
            return services.run_hub(cfg, args)
        case "worker":
            return services.run_worker(cfg, args)
        case "stack":
            return _stack(cfg, args)
        case "stop":
            return _stop(cfg)
        case "status":
            return _status(cfg, args)
        case "health":
            if args.service:
                return services.service_health(cfg, args.service)
            return _health(cfg, args.url)
        case "metrics":
            return _metrics(cfg, args)
        case "call":
            try:
                arguments = json.loads(args.arguments)
            except json.JSONDecodeError as exc:
                print(f"sessiond: arguments are not JSON: {exc}", file=sys.stderr)
                return ExitCode.USAGE
            return _print_tool(cfg, args.tool, arguments, args.url)
        case "demo":
            from sessiond.demo import run_demo

            return _run(run_demo(cfg))
        case "ui":
            setup_logging(cfg, "ui")
            from webui.server import serve

            return serve(cfg, args.host, args.port, args.open, args.require_token)
        case "import":
            from sessiond.importer import run_import

            return run_import(cfg, args.path, args.project)
        case "export":
            from sessiond.importer import run_export

            return run_export(cfg, args.path, args.project, overwrite=args.overwrite)
        case "install" | "uninstall":
            from sessiond.install import run_install

            return run_install(cfg, args.command, args.scope, args.project_dir,
                               dry_run=args.dry_run)
    return ExitCode.USAGE


def _serve(cfg, log_stderr: bool = False) -> int:
    setup_logging(cfg, "gateway", also_stderr=log_stderr)
    from shared import heap

    with heap.start_up():  # fastmcp, the MCP SDK and the tools' schemas: kept for good
        import anyio

        from gateway.server import build_server
        from gateway.stdio import run_stdio

        server = build_server(cfg)
    anyio.run(run_stdio, server)
    return ExitCode.OK


def _stack(cfg, args) -> int:
    setup_logging(cfg, "stack", also_stderr=args.log_stderr)
    from shared.supervisor import Supervisor

    return Supervisor(cfg).run()


def _stop(cfg) -> int:
    from gateway.stack_control import stop_stack

    try:
        stopped = stop_stack(cfg)
    except StackError as exc:
        print(f"sessiond: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    print("stack stopped" if stopped else "no stack running")
    return ExitCode.OK


async def _call(cfg, tool: str, arguments: dict, url: str | None = None):
    from sessiond.mcp_client import connect, result_payload

    async with connect(cfg, url=url) as client:
        result = await client.call_tool(tool, arguments, raise_on_error=False)
    return result.is_error, result_payload(result)


def _print_tool(cfg, tool: str, arguments: dict, url: str | None = None) -> int:
    logging.disable(logging.WARNING)
    is_error, payload = _run(_call(cfg, tool, arguments, url))
    text = payload if isinstance(payload, str) else json.dumps(payload, indent=2)
    print(text, file=sys.stderr if is_error else sys.stdout)
    return ExitCode.FAILED if is_error else ExitCode.OK


def _status(cfg, args) -> int:
    arguments = {"working_directory": os.path.abspath(args.directory)} if args.directory else {}
    if args.json:
        return _print_tool(cfg, "status", arguments)
    from sessiond.status_view import render

    logging.disable(logging.WARNING)
    is_error, payload = _run(_call(cfg, "status", arguments))
    if is_error or not isinstance(payload, dict):
        print(f"sessiond: status failed: {payload}", file=sys.stderr)
        return ExitCode.FAILED
    print(render(payload))
    return ExitCode.OK


def _metrics(cfg, args) -> int:
    if not args.prometheus:
        return _print_tool(cfg, "metrics", {}, args.url)
    logging.disable(logging.WARNING)
    is_error, payload = _run(_call(cfg, "metrics", {"format": "prometheus"}, args.url))
    if is_error or not isinstance(payload, dict):
        print(f"sessiond: metrics failed: {payload}", file=sys.stderr)
        return ExitCode.FAILED
    print(payload["prometheus"], end="")
    return ExitCode.OK


def _health(cfg, url: str | None = None) -> int:
    try:
        is_error, payload = _run(_call(cfg, "health_check", {}, url))
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is "unhealthy"
        print(f"sessiond: health_check failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    if is_error or not isinstance(payload, dict):
        print(f"sessiond: health_check failed: {payload}", file=sys.stderr)
        return ExitCode.FAILED
    for c in payload["components"]:
        print(f"{c['status']:<10} {c['name']:<10} {c['latency_ms']:>8.1f} ms  {c['reason']}")
    print(f"overall: {payload['status']}")
    return ExitCode.OK if payload["status"] == "healthy" else ExitCode.FAILED
