"""The embedded MQTT broker of ``lec up``: amqtt (MQTT 3.1.1), with the registry's passwords and ACL.

The same rules as the generated Mosquitto ACL: suppliers publish only under
``lec/+/{supplier}/#`` and subscribe only to ``lec-feedback/{supplier}``; the bridge account
reads ``lec/#`` and writes ``lec-feedback/#``. Passwords are checked against the ``$7$`` hashes
of the registry, re-read every 30 s so new suppliers can connect without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.plugins.topic_checking import TopicAccessControlListPlugin

from connectors.mqtt_topics import BRIDGE_FILTER, FEEDBACK_PREFIX, PREFIX, feedback_topic
from lec.registry.passwords import verify_password

log = logging.getLogger("lec.connectors.mqtt_broker")

_users: dict[str, str] = {}          # username -> $7$ hash, refreshed by the broker command
_bridge_user = "lec-bridge"


def allowed_filters(username: str | None, action: Action) -> list[str]:
    """Topic filters a user may use for an action (the Mosquitto acl_file's rules)."""
    if not username:
        return []
    if username == _bridge_user:
        return [BRIDGE_FILTER] if action in (Action.SUBSCRIBE, Action.RECEIVE) else [f"{FEEDBACK_PREFIX}/#"]
    if action == Action.PUBLISH:
        return [f"{PREFIX}/+/{username}/#"]
    return [feedback_topic(username)]


class RegistryAuthPlugin(BaseAuthPlugin):
    """Username/password against the registry's Mosquitto-format hashes."""

    @dataclass
    class Config:
        pass

    async def authenticate(self, *, session: Any) -> bool | None:
        username, password = session.username, session.password
        if not username or password is None:
            return False
        ok = verify_password(password if isinstance(password, str) else password.decode(), _users.get(username))
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


def refresh_users(settings: Any) -> None:
    from connectors.mqtt_config import bridge_password
    from lec.registry import open_registry
    from lec.registry.passwords import hash_password

    global _bridge_user
    users = dict(open_registry(settings).supplier_password_hashes())
    _bridge_user = settings.mqtt_username
    if _bridge_user not in _users:
        users[_bridge_user] = hash_password(bridge_password(settings, create=True))
    else:
        users[_bridge_user] = _users[_bridge_user]
    _users.clear()
    _users.update(users)


def lossless_broker_class() -> type:
    """amqtt's Broker, fixed so that QoS 1 messages it already acknowledged are never dropped.

    amqtt 0.12 PUBACKs a message when it enters the publisher's session queue, but abandons what
    is still queued there when that publisher disconnects; drain and route it instead.
    """
    from amqtt.broker import Broker

    class LosslessBroker(Broker):
        async def _client_message_loop(self, client_session: Any, handler: Any) -> None:
            await super()._client_message_loop(client_session, handler)
            queue = client_session.delivered_message_queue
            while not queue.empty():
                delivered = asyncio.get_running_loop().create_future()
                delivered.set_result(queue.get_nowait())
                await self._handle_message_delivery(client_session, handler, delivered)

    return LosslessBroker


def broker_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 1000}},
        "plugins": {
            "connectors.mqtt_broker.RegistryAuthPlugin": {},
            "connectors.mqtt_broker.RegistryAclPlugin": {},
        },
    }


async def serve(settings: Any, stop: asyncio.Event, refresh_s: float = 30.0) -> None:
    from lec.errors import ConfigError

    if not settings.mqtt_port:
        raise ConfigError("set LEC_MQTT_PORT: the port the embedded MQTT broker listens on")
    refresh_users(settings)
    broker = lossless_broker_class()(broker_config(settings.mqtt_host, settings.mqtt_port))
    await broker.start()
    log.info("embedded MQTT broker (MQTT 3.1.1) on %s:%d, %d accounts", settings.mqtt_host,
             settings.mqtt_port, len(_users))
    last = time.monotonic()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            pass
        if time.monotonic() - last > refresh_s:
            await asyncio.to_thread(refresh_users, settings)
            last = time.monotonic()
    await broker.shutdown()


def run_broker() -> None:
    """Foreground embedded broker until SIGTERM/SIGINT."""
    from lec.config import settings as current

    s = current()
    logging.basicConfig(level=s.log_level, format="%(asctime)s mqtt-broker %(levelname)s %(message)s")
    logging.getLogger("amqtt").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(s, stop)

    asyncio.run(main())
