# -*- test-case-name: tests.unit.gossip.test_serf -*-
"""
Serf's internal queries (names starting ``_serf_``), answered by the layer
itself and never shown to subscribers.

- ``_serf_ping``: nothing to do; the ack (sent by the query layer when
  asked for) is the answer.
- ``_serf_conflict``: our view of the disputed member, unless the name is
  our own (then the disputed node answers for itself by not answering).
- ``_serf_install-key``, ``_serf_use-key``, ``_serf_remove-key``,
  ``_serf_list-keys``: key rotation against the memberlist keyring; a node
  without one answers ``Result: false`` so that ``serf keys`` can count it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from consul_tw.gossip.gomsgpack import WireError
from consul_tw.gossip.memberlist.keyring import InvalidKey, Keyring, KeyringError
from consul_tw.gossip.memberlist.state import text_to_addr
from consul_tw.gossip.serf.codec import (
    decode_key_request,
    encode_conflict_response,
    encode_key_response,
    encode_serf,
)
from consul_tw.gossip.serf.messages import ConflictMember, KeyResponse, QueryResponse
from consul_tw.gossip.serf.queries import INTERNAL_QUERY_PREFIX, QueryError, QueryReceived

if TYPE_CHECKING:
    from consul_tw.gossip.serf.serf import Serf

NO_KEYRING = "No keyring to modify (encryption not enabled)"
EMPTY_KEYRING = "Keyring is empty (encryption not enabled)"


def _answer_size(q: QueryReceived, name: str, response: KeyResponse) -> int:
    payload = encode_key_response(response)
    return len(encode_serf(QueryResponse(ltime=q.ltime, id=q.id, from_node=name, payload=payload)))


@attrs.define(eq=False)
class InternalQueries:
    serf: Serf

    def handle(self, q: QueryReceived) -> None:
        handlers: dict[str, Callable[[QueryReceived], None]] = {
            "ping": lambda q: None,
            "conflict": self._conflict,
            "install-key": lambda q: self._change_key(
                q, "install", Keyring.install, "Failed to install key"
            ),
            "use-key": lambda q: self._change_key(
                q, "use", Keyring.use, "Failed to change primary key"
            ),
            "remove-key": lambda q: self._change_key(
                q, "remove", Keyring.remove, "Failed to remove key"
            ),
            "list-keys": self._list_keys,
        }
        name = q.name[len(INTERNAL_QUERY_PREFIX) :]
        handler = handlers.get(name)
        if handler is None:
            self.serf.logger.warn(f"serf: Unhandled internal query '{name}'")
            return
        handler(q)

    def _respond(self, q: QueryReceived, payload: bytes, what: str) -> None:
        try:
            q.respond(payload)
        except QueryError as e:
            self.serf.logger.error(f"serf: Failed to respond to {what}: {e}")

    def _conflict(self, q: QueryReceived) -> None:
        serf = self.serf
        node = q.payload.decode("utf-8", "replace")
        if node == serf.name:
            return
        serf.logger.debug(f"serf: Got conflict resolution query for '{node}'")
        state = serf.table.get(node)
        out = None
        if state is not None:
            m = state.member()
            out = ConflictMember(
                name=m.name,
                addr=text_to_addr(m.addr),
                port=m.port,
                tags=m.tags,
                status=int(m.status),
                protocol_min=m.protocol_min,
                protocol_max=m.protocol_max,
                protocol_cur=m.protocol_cur,
                delegate_min=m.delegate_min,
                delegate_max=m.delegate_max,
                delegate_cur=m.delegate_cur,
            )
        self._respond(q, encode_conflict_response(out), "conflict query")

    def _change_key(
        self, q: QueryReceived, verb: str, change: Callable[[Keyring, bytes], None], failed: str
    ) -> None:
        serf, log = self.serf, self.serf.logger
        response = KeyResponse(result=False)
        try:
            key = decode_key_request(q.payload)
        except WireError as e:
            log.error(f"serf: Failed to decode key request: {e}")
        else:
            if serf.keyring is None:
                log.error(f"serf: {NO_KEYRING}")
                response = KeyResponse(result=False, message=NO_KEYRING)
            else:
                log.info(f"serf: Received {verb}-key query")
                try:
                    change(serf.keyring, key)
                except (InvalidKey, KeyringError) as e:
                    log.error(f"serf: {failed}: {e}")
                    response = KeyResponse(result=False, message=str(e))
                else:
                    response = KeyResponse(result=True)
        self._respond(q, encode_key_response(response), "key query")

    def _list_keys(self, q: QueryReceived) -> None:
        serf, log = self.serf, self.serf.logger
        keyring = serf.keyring
        if keyring is None:
            log.error(f"serf: {EMPTY_KEYRING}")
            response = KeyResponse(result=False, message=EMPTY_KEYRING)
        else:
            log.info("serf: Received list-keys query")
            keys = keyring.keys_base64()
            response = KeyResponse(result=True, keys=keys, primary_key=keyring.primary_base64())
            limit = serf.config.query_response_size_limit
            # Keep within the response limit, which respond() enforces.
            while _answer_size(q, serf.name, response) > limit and len(keys) > 1:
                keys = keys[:-1]
                response = KeyResponse(
                    result=True,
                    keys=keys,
                    primary_key=keyring.primary_base64(),
                    message=f"truncated key list response, showing first {len(keys)} of"
                    f" {len(keyring.keys)} keys",
                )
        self._respond(q, encode_key_response(response), "key query")
