"""The hub's ZAP handler: CURVE keys checked against one allow list per endpoint.

Apart from ``shared.curve`` because pyzmq's ``ThreadAuthenticator`` imports asyncio (and with it
ssl, ~8 MB of a process's RSS): only a hub that uses CURVE imports this module, not every worker
and supervisor of a local stack.
"""

from __future__ import annotations

import logging

import zmq
from zmq.auth.thread import ThreadAuthenticator

from shared import curve
from shared.curve import DOMAINS, ROLES, AllowList, Role, ServerKeys, allow_file
from shared.errors import ConfigError

log = logging.getLogger("sessiond.curve")


class _DomainKeys:
    """The credentials provider of one ZAP domain (pyzmq calls ``callback``)."""

    def __init__(self, auth: HubAuthenticator, role: Role, allowed: AllowList) -> None:
        self.auth, self.role, self.allowed = auth, role, allowed

    def callback(self, domain: str, key: bytes) -> bool:
        z85_key = key.decode("ascii", "replace")
        try:
            known = z85_key in self.allowed.current()
        except ConfigError as exc:  # the list became unreadable: refuse, say why
            log.error("refusing every %s: %s", self.role, exc)
            known = False
        if not known:
            self.auth.refuse(f"CURVE key {z85_key} is not in {self.allowed.path.name}", domain)
        return known


class HubAuthenticator(ThreadAuthenticator):
    """The hub's ZAP handler: CURVE keys checked against one allow list per endpoint.

    Runs in its own thread (pyzmq's), bound to the hub's context. The hub checks ``is_alive``
    on every tick and stops (taking the stack down) if it died: no peer could connect then.
    """

    def __init__(self, ctx: zmq.Context, keys: ServerKeys) -> None:
        super().__init__(ctx, log=logging.getLogger("sessiond.zap"))
        self.refused = 0
        self._peer = "?"
        for role in ROLES:
            self.configure_curve_callback(
                DOMAINS[role], _DomainKeys(self, role, AllowList(keys.keys_dir / allow_file(role))))

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # One request at a time on the ZAP thread: the address is that of the peer in hand.
        self._peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        try:
            await super().handle_zap_message(msg)
        except Exception:
            log.exception("ZAP request from %s failed; refusing it", self._peer)
            if len(msg) > 1:
                self._send_zap_reply(msg[1], b"500", b"internal error")

    def refuse(self, why: str, domain: str) -> None:
        self.refused += 1
        curve.refusals.warning("refused a peer at %s on the %s endpoint: %s", self._peer, domain, why)
