"""``sessiond keys``: the CURVE keys and the HTTP token of a stack run apart (``shared.curve``
describes the files). Needs no configuration: it only writes files.

  sessiond keys init DIR                 every keypair, both allow lists and an HTTP token
  sessiond keys new --role ROLE DIR      one more keypair (a worker or client on another host)
  sessiond keys allow KEY --role ROLE    let that public key (Z85, or a .key file) in
  sessiond keys token [DIR] [--new]      print the HTTP bearer token (make one if missing)
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import zmq.auth

from shared.curve import (
    HUB_PUBLIC,
    ROLES,
    allow_file,
    key_word,
    parse_public_key,
    public_file,
    secret_file,
)
from shared.exitcodes import ExitCode

TOKEN_FILE = "http.token"


def add_parser(sub) -> None:
    keys = sub.add_parser("keys", help="CURVE keys and the HTTP token for a stack run apart")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    init = ksub.add_parser("init", help="write every keypair, both allow lists and an HTTP token")
    init.add_argument("dir", nargs="?", help="the keys dir (default: $SESSIOND_CURVE_KEYS_DIR)")
    new = ksub.add_parser("new", help="one more keypair, e.g. for a worker on another host")
    new.add_argument("--role", choices=ROLES, required=True)
    new.add_argument("dir", help="where to write it (a new dir for that host)")
    allow = ksub.add_parser("allow", help="let a public key in on the hub's worker or client "
                            "endpoint (takes effect without a restart)")
    allow.add_argument("key", help="a Z85 public key, or a .key file holding one")
    allow.add_argument("--role", choices=ROLES, required=True)
    allow.add_argument("--dir", help="the hub's keys dir (default: $SESSIOND_CURVE_KEYS_DIR)")
    token = ksub.add_parser("token", help="print the HTTP gateway's bearer token (made if "
                            "missing)")
    token.add_argument("dir", nargs="?", help="the keys dir (default: $SESSIOND_CURVE_KEYS_DIR)")
    token.add_argument("--new", action="store_true", help="replace it with a new one")


def run(args: argparse.Namespace) -> int:
    try:
        match args.keys_command:
            case "init":
                return _init(_dir(args.dir))
            case "new":
                return _new(Path(args.dir), args.role)
            case "allow":
                return _allow(_dir(args.dir), args.key, args.role)
            case "token":
                return _token(_dir(args.dir), replace=args.new)
    except (OSError, ValueError) as exc:
        print(f"sessiond keys: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.USAGE


def _dir(given: str | None) -> Path:
    raw = given or os.environ.get("SESSIOND_CURVE_KEYS_DIR", "")
    if not raw:
        raise ValueError("give the keys dir (or set SESSIOND_CURVE_KEYS_DIR)")
    return Path(raw).expanduser().absolute()


@contextmanager
def _private():
    """Files created meanwhile are readable by their owner only, from their first byte."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _private_dir(path: Path) -> None:
    with _private():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def _write(path: Path, text: str) -> None:
    with _private():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    path.chmod(0o600)


def _keypair(keys_dir: Path, name: str) -> str:
    with _private():
        public_path, secret_path = zmq.auth.create_certificates(keys_dir, name)
    for path in (public_path, secret_path):
        os.chmod(path, 0o600)
    return zmq.auth.load_certificate(public_path)[0].decode()


def _init(keys_dir: Path) -> int:
    taken = [n for n in (HUB_PUBLIC, secret_file("hub"), *map(secret_file, ROLES))
             if (keys_dir / n).exists()]
    if taken:
        print(f"sessiond keys: {keys_dir} already holds {', '.join(taken)}; not overwriting "
              "(`sessiond keys new` makes one more keypair)", file=sys.stderr)
        return ExitCode.FAILED
    _private_dir(keys_dir)
    _keypair(keys_dir, "hub")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for role in ROLES:
        public = _keypair(keys_dir, role)
        _write(keys_dir / allow_file(role),
               f"# public keys the hub accepts on its {role} endpoint, one a line\n"
               f"{public}  # {role}.key, made {stamp}\n")
    _write(keys_dir / TOKEN_FILE, secrets.token_urlsafe(32) + "\n")
    print(f"""wrote CURVE keys and an HTTP token to {keys_dir} (dir 0700, files 0600):
  the hub        hub.key_secret, allowed_workers, allowed_clients
  every worker   hub.key, worker.key_secret        (store, embed, quality)
  every client   hub.key, client.key_secret        (gateway, sessiond import/export, and the
                                                   store, whose embed filler is a client)
  HTTP gateway   http.token                        (MCP clients send it as a bearer token)
Give each process SESSIOND_CURVE_KEYS_DIR={keys_dir} (or those files in /run/secrets, as
docker-compose.yml mounts them) and the gateway SESSIOND_HTTP_TOKEN_FILE={keys_dir / TOKEN_FILE}.
A worker or client elsewhere: `sessiond keys new --role worker DIR2` there, copy hub.key into
DIR2, and `sessiond keys allow DIR2/worker.key --role worker` here.""")
    return ExitCode.OK


def _new(keys_dir: Path, role: str) -> int:
    if (keys_dir / secret_file(role)).exists():
        print(f"sessiond keys: {keys_dir / secret_file(role)} exists; not overwriting",
              file=sys.stderr)
        return ExitCode.FAILED
    _private_dir(keys_dir)
    public = _keypair(keys_dir, role)
    print(f"wrote {keys_dir / secret_file(role)} (keep it there) and {public_file(role)}\n"
          f"public key: {public}\n"
          f"on the hub: sessiond keys allow {public} --role {role}\n"
          f"and copy the hub's hub.key into {keys_dir}")
    return ExitCode.OK


def _allow(keys_dir: Path, given: str, role: str) -> int:
    path = Path(given).expanduser()
    if path.is_file():
        key = parse_public_key(zmq.auth.load_certificate(path)[0].decode())
    else:
        key = parse_public_key(given)
    allowed = keys_dir / allow_file(role)
    if not allowed.is_file():
        raise ValueError(f"no {allowed.name} in {keys_dir} (is it the hub's keys dir? "
                         "`sessiond keys init` writes it)")
    text = allowed.read_text(encoding="utf-8")
    if key in (key_word(line) for line in text.splitlines()):
        print(f"{key} is already allowed as a {role}")
        return ExitCode.OK
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    tmp = allowed.with_name(allowed.name + ".tmp")
    _write(tmp, text + ("" if text.endswith("\n") or not text else "\n")
           + f"{key}  # added {stamp}\n")
    tmp.replace(allowed)
    print(f"allowed {key} as a {role} (in {allowed}; the hub reads it again by itself)")
    return ExitCode.OK


def _token(keys_dir: Path, *, replace: bool) -> int:
    path = keys_dir / TOKEN_FILE
    if replace or not path.is_file():
        _private_dir(keys_dir)
        _write(path, secrets.token_urlsafe(32) + "\n")
    token = path.read_text(encoding="utf-8").strip()
    print(token)
    print(f"(in {path}; connect with: claude mcp add --transport http sessiond "
          f"http://HOST:PORT/mcp --header \"Authorization: Bearer {token}\")", file=sys.stderr)
    return ExitCode.OK
