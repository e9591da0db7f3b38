"""The embedded MQTT broker of ``lec up``: amqtt (MQTT 3.1.1), with the registry's passwords and ACL.

The same rules as the generated Mosquitto ACL: suppliers publish only under
``lec/+/{supplier}/#`` and subscribe only to ``lec-feedback/{supplier}``; the bridge account
reads ``lec/#`` and writes ``lec-feedback/#`` (and the liveness probe's ``lec/_probe/#``).
Passwords are checked against the registry's hashes through the process's registry view (a
change applies within a second or two), with a cache of verified logins; a client id is its
account's name or starts with ``<account>-`` and no longer account name owns it; packets over the
payload limit plus overhead are refused.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.plugins.topic_checking import TopicAccessControlListPlugin

from connectors.mqtt.topics import (
    BRIDGE_FILTER,
    FEEDBACK_PREFIX,
    PREFIX,
    PROBE_PREFIX,
    feedback_topic,
    max_packet_bytes,
)
from lec.io import configure_logging
from lec.registry.passwords import LoginCache

log = logging.getLogger("lec.connectors.mqtt_broker")

class _Accounts:
    """What the broker checks logins against: the process's registry view and verified-login cache."""

    view: Any = None                 # lec.registry.view.RegistryView(credentials=True)
    logins: LoginCache = LoginCache()
    bridge_user = "lec-bridge"
    bridge_hash = ""


_accounts = _Accounts()


def client_id_owner(client_id: str, accounts: Iterable[str]) -> str | None:
    """The account that owns ``client_id``: the longest account name it equals or starts with plus
    '-' (the rule of Mosquitto's clientid_prefix plugin, so both brokers bind ids alike)."""
    owners = [a for a in accounts if a and (client_id == a or client_id.startswith(f"{a}-"))]
    return max(owners, key=len, default=None)


def client_id_allowed(username: str | None, client_id: str | None, accounts: Iterable[str]) -> bool:
    """A client id is its account's name or ``<account>-...``, and no longer account name owns it:
    ``sup-home`` may not use ``sup-home2-gw`` (sup-home2's) nor ``sup-homeX`` (nobody's)."""
    if not username or not client_id:
        return False
    return client_id_owner(client_id, accounts) == username


def allowed_filters(username: str | None, action: Action) -> list[str]:
    """Topic filters a user may use for an action (the Mosquitto acl_file's rules)."""
    if not username:
        return []
    if username == _accounts.bridge_user:
        if action in (Action.SUBSCRIBE, Action.RECEIVE):
            return [BRIDGE_FILTER]
        return [f"{FEEDBACK_PREFIX}/#", f"{PROBE_PREFIX}/#"]
    if action == Action.PUBLISH:
        return [f"{PREFIX}/+/{username}/#"]
    return [feedback_topic(username)]


def check_login(username: str, password: str) -> bool:
    """Blocking (a hash verification on a cache miss): call it off the event loop."""
    a = _accounts
    if username == a.bridge_user:
        return a.logins.verify(username, password, a.bridge_hash)
    if a.view is None or not a.view.is_active(username):
        return False
    return a.logins.verify(username, password, a.view.password_hash(username))


class RegistryAuthPlugin(BaseAuthPlugin):
    """Username/password against the registry's hashes, and the client id bound to the user."""

    @dataclass
    class Config:
        pass

    async def authenticate(self, *, session: Any) -> bool | None:
        username, password = session.username, session.password
        if not username or password is None:
            return False
        accounts = [_accounts.bridge_user, *(_accounts.view.supplier_password_hashes() if _accounts.view else ())]
        if not client_id_allowed(username, session.client_id, accounts):
            log.info("refused MQTT login of '%s': client id %r is not one of its own (use '%s' or start it "
                     "with '%s-')", username, session.client_id, username, username)
            return False
        pw = password if isinstance(password, str) else password.decode(errors="replace")
        ok = await asyncio.to_thread(check_login, username, pw)
        if not ok:
            log.info("refused MQTT login of '%s'", username)
        return ok


class RegistryAclPlugin(BaseTopicPlugin):
    """Per-user topic rules derived from the username (no ACL file to keep in sync)."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:
        if not topic or action is None:
            return False
        username = session.username if session else None
        ok = any(TopicAccessControlListPlugin.topic_ac(topic, f) for f in allowed_filters(username, action))
        if not ok and action != Action.RECEIVE:
            log.info("denied %s of '%s' on %s", action.value, username, topic)
        return ok


def use_registry(settings: Any, view: Any) -> None:
    """Check logins against ``view`` (a RegistryView with credentials) and the bridge account."""
    from connectors.mqtt.config import bridge_password
    from lec.registry.passwords import hash_password

    a = _accounts
    a.view = view
    if a.bridge_user != settings.mqtt_username or not a.bridge_hash:
        a.bridge_user = settings.mqtt_username
        a.bridge_hash = hash_password(bridge_password(settings, create=True))
    view.on_change(lambda v: log.info("registry changed: %d supplier accounts", len(v.supplier_password_hashes())))
    a.logins.on_rehash = view.rehashed


class PacketTooLarge(Exception):
    """An MQTT packet longer than the broker's limit: the connection is closed before reading it."""


class BoundedReader:
    """amqtt reads each packet's body with one ``read(remaining_length)``; refuse lengths over the limit
    before a byte of it is buffered (two 100 MiB publishes took the broker to 580 MB)."""

    def __init__(self, reader: Any, limit: int) -> None:
        self._reader, self.limit = reader, limit

    async def read(self, n: int = -1) -> bytes:
        if n > self.limit or n < 0:
            raise PacketTooLarge(f"MQTT packet of {n} bytes is over the limit of {self.limit} bytes")
        return await self._reader.read(n)

    def feed_eof(self) -> None:
        self._reader.feed_eof()


def broker_class(max_packet: int) -> type:
    """amqtt's Broker with the platform's fixes:

    - authentication (password and client id) happens before any existing session is looked at:
      amqtt 0.12 discards a session on a clean-session CONNECT, or swaps its username on a resumed
      one, before checking the password, so an unauthenticated CONNECT with the bridge's id silently
      stopped all ingestion; and a session is never taken over by another user;
    - packets larger than ``max_packet`` close the connection unread;
    - QoS 1 messages it already acknowledged are never dropped (amqtt PUBACKs a message when it enters
      the publisher's session queue, but abandons what is still queued when that publisher leaves).
    """
    from amqtt.broker import Broker
    from amqtt.errors import AMQTTError, MQTTError, NoDataError
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
    from amqtt.utils import gen_client_id

    class LecBroker(Broker):
        async def _client_connected(self, listener_name: str, reader: Any, writer: Any) -> None:
            await super()._client_connected(listener_name, BoundedReader(reader, max_packet), writer)

        async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                             remote_port: int) -> tuple[Any, Any]:
            try:
                handler, session = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
            except (AMQTTError, NoDataError, PacketTooLarge) as exc:
                raise AMQTTError(f"{remote_address}:{remote_port}: no valid CONNECT ({exc})") from exc
            except MQTTError:
                await writer.close()
                raise
            refusal = None
            if not await self._authenticate(session, None):
                refusal = "bad credentials or client id"
            elif session.client_id and session.client_id in self._sessions:
                owner = self._sessions[session.client_id][0].username
                if owner is not None and owner != session.username:
                    refusal = f"client id {session.client_id!r} belongs to another account"
            if refusal is not None:
                handler.attach(session, reader, writer)
                await handler.mqtt_connack_authorize(False)
                await writer.close()
                raise AMQTTError(f"refused CONNECT from {remote_address}:{remote_port}: {refusal}")
            if session.clean_session:
                if session.client_id:
                    await self._delete_session(session.client_id)
                else:
                    session.client_id = gen_client_id()
                session.parent = 0
            elif session.client_id in self._sessions:
                existing, _ = self._sessions[session.client_id]   # same account (checked above)
                for attr in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive", "password"):
                    setattr(existing, attr, getattr(session, attr))
                session = existing
                session.parent = 1
            else:
                session.parent = 0
            delay = self.config.get("timeout-disconnect-delay", 0)
            if session.keep_alive > 0 and isinstance(delay, int):
                session.keep_alive += delay
            return handler, session

        async def _client_message_loop(self, client_session: Any, handler: Any) -> None:
            await super()._client_message_loop(client_session, handler)
            queue = client_session.delivered_message_queue
            while not queue.empty():
                delivered = asyncio.get_running_loop().create_future()
                delivered.set_result(queue.get_nowait())
                await self._handle_message_delivery(client_session, handler, delivered)

    return LecBroker


def broker_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 1000}},
        "plugins": {
            "connectors.mqtt.broker.RegistryAuthPlugin": {},
            "connectors.mqtt.broker.RegistryAclPlugin": {},
        },
    }


async def serve(settings: Any, stop: asyncio.Event, view: Any = None) -> None:
    """Run the broker until ``stop``; logins follow the registry view (changes apply within a second or two)."""
    from lec.errors import ConfigError
    from lec.registry.view import RegistryView

    if not settings.mqtt_port:
        raise ConfigError("set LEC_MQTT_PORT: the port the embedded MQTT broker listens on")
    own_view = view is None
    if own_view:
        view = await asyncio.to_thread(lambda: RegistryView(settings, credentials=True).start())
    await asyncio.to_thread(use_registry, settings, view)
    limit = max_packet_bytes(settings.max_payload_bytes)
    broker = broker_class(limit)(broker_config(settings.mqtt_host, settings.mqtt_port))
    await broker.start()
    log.info("embedded MQTT broker (MQTT 3.1.1) on %s:%d, %d supplier accounts, packets up to %d bytes",
             settings.mqtt_host, settings.mqtt_port, len(view.supplier_password_hashes()), limit)
    await stop.wait()
    await broker.shutdown()
    if own_view:
        view.stop()


def run_broker() -> None:
    """Foreground embedded broker until SIGTERM/SIGINT."""
    from lec.config import settings as current

    s = current()
    configure_logging("mqtt-broker", level=s.log_level)
    logging.getLogger("amqtt").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(s, stop)

    asyncio.run(main())
