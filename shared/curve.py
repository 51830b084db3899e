"""CurveZMQ for a stack whose processes run apart: the keys, the hub's ZAP authenticator, and
the log line of every refused peer.

A keys dir (``sessiond keys init`` writes one: files 0600, the dir 0700) holds, under the names
the compose file mounts its secrets as:

  hub.key             the hub's public key: every worker and client needs it
  hub.key_secret      the hub's keypair: the hub only
  worker.key_secret   a worker's keypair (store, embed, quality)
  client.key_secret   a client's keypair (a gateway, ``sessiond import``; the store's embed filler,
                      which asks the embed pool for vectors as a client does)
  allowed_workers     public keys the hub accepts on its worker endpoint: one a line, perhaps
                      followed by a space and a note; a line starting "# " is a comment (Z85
                      keys may hold "#" but never a space)
  allowed_clients     public keys the hub accepts on its client endpoint

Key files are ZeroMQ certificates (``zmq.auth.create_certificates``). The hub's two endpoints
are separate ZAP domains, each checked against its own list, so a client key cannot register as
a worker and a worker key cannot send requests. A list is read again when its file changes
(``sessiond keys allow`` takes effect without a restart). A refused peer gets no reply and
reaches no worker (libzmq closes the connection before any message); the hub logs it with the
peer's address and counts it (``auth_refused`` in ``status``).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zmq
import zmq.auth
from zmq.utils import z85

from shared.config import Config
from shared.errors import ConfigError
from shared.logs import LimitedWarnings

log = logging.getLogger("sessiond.curve")
refusals = LimitedWarnings(log)  # a flood of refused peers must not fill the disk

Role = Literal["worker", "client"]
ROLES: tuple[Role, ...] = ("worker", "client")
HUB_PUBLIC = "hub.key"
HUB_SECRET = "hub.key_secret"
DOMAINS = {"worker": "workers", "client": "clients"}  # ZAP domain of each hub endpoint


def secret_file(role: str) -> str:
    return f"{role}.key_secret"


def public_file(role: str) -> str:
    return f"{role}.key"


def allow_file(role: Role) -> str:
    return f"allowed_{role}s"


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes
    keys_dir: Path


@dataclass(frozen=True)
class ClientKeys:
    server_public: bytes
    public: bytes
    secret: bytes


def _read_cert(path: Path, *, secret: bool, what: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise ConfigError(f"no {path.name} in {path.parent} ({what}; `sessiond keys init` "
                          "writes it)")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if secret and not secret_key:
        raise ConfigError(f"{path} holds no secret key ({what})")
    for key in (public, secret_key):
        if key is not None and len(key) != 40:
            raise ConfigError(f"{path} holds a malformed key (Z85 keys are 40 characters)")
    return public, secret_key


def server_keys(cfg: Config) -> ServerKeys | None:
    """The hub's keypair, or None when CURVE is off."""
    if not cfg.curve_keys_dir:
        return None
    keys_dir = Path(cfg.curve_keys_dir)
    public, secret = _read_cert(keys_dir / HUB_SECRET, secret=True, what="the hub's keypair")
    for role in ROLES:
        AllowList(keys_dir / allow_file(role)).current()  # a missing or bad list fails at start
    return ServerKeys(public, secret, keys_dir)


def client_keys(cfg: Config, role: Role) -> ClientKeys | None:
    """This process's keypair for ``role`` and the hub's public key, or None when CURVE is off."""
    if not cfg.curve_keys_dir:
        return None
    keys_dir = Path(cfg.curve_keys_dir)
    server, _ = _read_cert(keys_dir / HUB_PUBLIC, secret=False, what="the hub's public key")
    public, secret = _read_cert(keys_dir / secret_file(role), secret=True,
                                what=f"this {role}'s keypair")
    return ClientKeys(server, public, secret)


def apply_server(sock: zmq.Socket, keys: ServerKeys, domain: str) -> None:
    sock.curve_server = True
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret
    sock.zap_domain = domain.encode()
    # Without this, libzmq lets any client that knows the hub's public key in whenever no ZAP
    # handler answers (before the authenticator starts, or after it died).
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


def apply_client(sock: zmq.Socket, keys: ClientKeys) -> None:
    sock.curve_serverkey = keys.server_public
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret


def parse_public_key(text: str) -> str:
    """A Z85 public key as given (40 characters that decode to 32 bytes); ValueError if not."""
    key = text.strip()
    try:
        ok = len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ValueError(f"not a CURVE public key: {key[:60]!r} (40 Z85 characters expected)")
    return key


def key_word(line: str) -> str | None:
    """The key on one line of an allow list, or None for a blank line or a comment."""
    words = line.split()
    if not words or words[0] == "#":
        return None
    return words[0]


class AllowList:
    """The public keys in one allow file; read again when the file's mtime or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._keys: frozenset[str] = frozenset()

    def current(self) -> frozenset[str]:
        try:
            st = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"cannot read the allow list {self.path}: {exc}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._keys = frozenset(self._parse(self.path.read_text(encoding="utf-8")))
            self._stamp = stamp
        return self._keys

    def _parse(self, text: str) -> list[str]:
        keys = []
        for number, line in enumerate(text.splitlines(), 1):
            word = key_word(line)
            if word is None:
                continue
            try:
                keys.append(parse_public_key(word))
            except ValueError as exc:
                raise ConfigError(f"{self.path} line {number}: {exc}") from None
        return keys


def peer_address(fd: int) -> str:
    """The remote address of a connection's file descriptor ("unknown" once it is closed)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            peer = sock.getpeername()
    except OSError:
        return "unknown (the connection closed first)"
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return peer or "a local socket"


WATCHED = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
           | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class HandshakeWatch:
    """Logs the peers a CURVE endpoint refused before ZAP could see them: a peer without CURVE
    (mechanism mismatch) or one that does not know the hub's public key. The hub polls
    ``socket`` and calls ``read`` (a ZAP refusal is logged by the authenticator instead).

    libzmq's events name no peer: its address is read from the connection's descriptor when
    the connection is accepted; a peer refused and gone before that is logged as "unknown"."""

    def __init__(self, router: zmq.Socket, name: str) -> None:
        self.socket = router.get_monitor_socket(WATCHED)
        self.name = name
        self.refused = 0
        self._peers: dict[int, str] = {}
        self._failure = ""

    def read(self) -> None:
        from zmq.utils.monitor import parse_monitor_message  # (it imports asyncio and ssl)

        while True:
            try:
                event = parse_monitor_message(self.socket.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            kind, value = event["event"], event["value"]
            if kind == zmq.EVENT_ACCEPTED:
                self._peers[value] = peer_address(value)
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._failure = ""  # the ZAP handler logged it with the address
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                          zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self._failure = _describe(kind, value)
            elif kind == zmq.EVENT_DISCONNECTED:
                peer = self._peers.pop(value, "unknown")
                if self._failure:
                    self.refused += 1
                    refusals.warning("refused a peer at %s on the %s endpoint: %s", peer,
                                     self.name, self._failure)
                self._failure = ""

    def close(self) -> None:
        self.socket.close(0)


def _describe(kind: int, value: int) -> str:
    if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and \
            value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "it does not use CURVE (no keys)"
    if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return "its handshake failed (no CURVE keys, or not the hub's public key)"
    return f"its handshake failed (ZMTP protocol error {value:#x})"


def handshake_refusal(event: dict) -> str:
    """For a connecting socket's monitor event: why the hub refused it, or ""."""
    kind = event["event"]
    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"the hub refused this process's CURVE key (ZAP status {event['value']}); "
                "add its public key to the hub's allow list with `sessiond keys allow`")
    if kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
        return ("the CURVE handshake with the hub failed (is hub.key the hub's public key, and "
                "do both sides use CURVE?)")
    return ""
