"""Mosquitto credentials and ACL generated from the registry (``lec connectors mqtt-config``).

Supplier password hashes are stored in Mosquitto's ``$7$`` format, so the ``password_file`` is
a plain copy; the bridge account gets a random password kept in the run dir (or
``Settings.mqtt_password``). The ACL lets each supplier publish only under its own prefix and
read only its own feedback topic.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import signal
import threading
import time
from pathlib import Path

from connectors.mqtt.topics import (
    BRIDGE_FILTER,
    FEEDBACK_PREFIX,
    PREFIX,
    PROBE_PREFIX,
    feedback_topic,
    max_packet_bytes,
)
from lec.config import Settings
from lec.errors import ConfigError
from lec.registry.passwords import hash_password

BRIDGE_PASSWORD_FILE = "mqtt-bridge.password"
# Mosquitto auth plugin binding client ids to accounts (connectors/mqtt/plugin/clientid_prefix.c),
# compiled by scripts/build-mosquitto-plugin.sh (called from scripts/setup.sh).
CLIENTID_PLUGIN = Path(__file__).resolve().parents[2] / ".cache" / "mosquitto" / "clientid_prefix.so"


def clientid_plugin() -> Path:
    """The compiled client-id plugin; a clear error when setup has not built it."""
    if not CLIENTID_PLUGIN.exists():
        raise ConfigError(f"Mosquitto client-id plugin {CLIENTID_PLUGIN} is missing: run "
                          f"scripts/build-mosquitto-plugin.sh (needs apt mosquitto-dev libmosquitto-dev gcc)")
    return CLIENTID_PLUGIN


def bridge_password(settings: Settings, *, create: bool = False) -> str:
    """The bridge account's password: the setting, else the one kept in the run dir's secrets."""
    if settings.mqtt_password:
        return settings.mqtt_password
    path = settings.resolved_run_dir() / "secrets" / BRIDGE_PASSWORD_FILE
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise ConfigError(f"no MQTT bridge password: set LEC_MQTT_PASSWORD or run `lec connectors mqtt-config` "
                          f"(it creates {path})")
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker created it first
        time.sleep(0.2)
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    return password


def bridge_client_id(settings: Settings, index: int | str, password: str | None = None) -> str:
    """The client id of bridge process ``index`` (or "relay"): unguessable without the bridge password.

    Why: Mosquitto 2.0 alone lets any authenticated user take over a client id's session; both
    brokers now bind ids to accounts (the clientid_prefix plugin, the embedded broker's plugin), and
    the tag keeps the bridge's ids secret should that binding ever be missing.
    """
    key = (password or bridge_password(settings)).encode()
    tag = hmac.new(key, f"lec-bridge-client-id/{index}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"{settings.mqtt_username}-{index}-{tag}"


def password_lines(supplier_hashes: dict[str, str], bridge_user: str, bridge_hash: str) -> str:
    lines = [f"{bridge_user}:{bridge_hash}"]
    lines += [f"{sid}:{h}" for sid, h in sorted(supplier_hashes.items()) if sid != bridge_user]
    return "\n".join(lines) + "\n"


def acl_text(supplier_ids: list[str], bridge_user: str) -> str:
    """Mosquitto acl_file: the bridge reads every reading topic and writes feedback; suppliers their own."""
    blocks = [f"user {bridge_user}\ntopic read {BRIDGE_FILTER}\ntopic write {FEEDBACK_PREFIX}/#\n"
              f"topic write {PROBE_PREFIX}/#\n"]
    for sid in sorted(supplier_ids):
        if sid == bridge_user:
            continue
        blocks.append(f"user {sid}\ntopic write {PREFIX}/+/{sid}/#\ntopic read {feedback_topic(sid)}\n")
    return "\n".join(blocks)


def mosquitto_conf(out: Path, port: int, *, persistence_dir: Path | None = None,
                   max_packet: int | None = None) -> str:
    """A minimal broker config using the generated files; settings that make the bridge lossless."""
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {out / 'password_file'}",
        f"acl_file {out / 'acl_file'}",
        # a supplier may only use client ids "<account>" or "<account>-...": no session takeover
        # (the plugin defers to password_file for the password)
        f"plugin {clientid_plugin()}",
        f"plugin_opt_password_file {out / 'password_file'}",
        # a persistent session must keep everything queued while a bridge is down (default 1000 drops)
        "max_queued_messages 0",
        "max_queued_bytes 0",
        # QoS1 messages in flight per MQTT 3.1.1 client (MQTT 5 clients send their receive maximum)
        "max_inflight_messages 1000",
        "per_listener_settings false",
        # larger packets disconnect their sender unread (MQTT 5 clients are told in CONNACK)
        f"max_packet_size {max_packet or max_packet_bytes(Settings().max_payload_bytes)}",
    ]
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    return "\n".join(lines) + "\n"


def write_mqtt_config(settings: Settings, supplier_hashes: dict[str, str], out: Path,
                      port: int | None = None, persistence_dir: Path | None = None,
                      bridge_hash: str | None = None) -> dict[str, Path]:
    """Write password_file, acl_file and mosquitto.conf into ``out`` (readable by user mosquitto)."""
    out.mkdir(parents=True, exist_ok=True)
    bridge_hash = bridge_hash or hash_password(bridge_password(settings, create=True))
    files = {
        "password_file": out / "password_file",
        "acl_file": out / "acl_file",
        "mosquitto.conf": out / "mosquitto.conf",
    }
    _write_replacing(files["password_file"], password_lines(supplier_hashes, settings.mqtt_username, bridge_hash))
    _write_replacing(files["acl_file"], acl_text(list(supplier_hashes), settings.mqtt_username))
    _write_replacing(files["mosquitto.conf"], mosquitto_conf(out, port or settings.mqtt_port or 1883,
                                                             persistence_dir=persistence_dir,
                                                             max_packet=max_packet_bytes(settings.max_payload_bytes)))
    return files


def _write_replacing(path: Path, text: str) -> None:
    """Write via a temporary file and rename: the clientid_prefix plugin reads the password_file at
    every CONNECT, so it must never see a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    _readable_by_mosquitto(tmp)
    os.replace(tmp, path)


def follow_registry(settings: Settings, out: Path, stop: threading.Event, *, mosquitto_pid: int | None = None,
                    port: int | None = None, persistence_dir: Path | None = None) -> None:
    """Keep Mosquitto's password_file and acl_file in step with the registry until ``stop``.

    Each change published on ``lec.registry`` rewrites both files and sends SIGHUP to Mosquitto,
    which re-reads them (Mosquitto 2.0): a new supplier can log in within a second or two.
    """
    from lec.registry.view import RegistryView

    bridge_hash = hash_password(bridge_password(settings, create=True))

    def write(view: RegistryView) -> None:
        write_mqtt_config(settings, view.supplier_password_hashes(), out, port, persistence_dir, bridge_hash)
        if mosquitto_pid:
            os.kill(mosquitto_pid, signal.SIGHUP)

    view = RegistryView(settings, credentials=True)
    write(view)
    view.on_change(write)
    view.start()
    try:
        stop.wait()
    finally:
        view.stop()


def _readable_by_mosquitto(path: Path) -> None:
    """Mosquitto started as root drops to user ``mosquitto``: give that group read access only."""
    import grp

    try:
        gid = grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        path.chmod(0o600)  # no such group: the broker runs as the current user
        return
    if os.geteuid() == 0:
        os.chown(path, -1, gid)
        path.chmod(0o640)
    else:
        path.chmod(0o600)  # not root: Mosquitto runs as this user and needs nobody else
