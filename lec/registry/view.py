"""One registry view per process: a snapshot at start, then every change published on ``lec.registry``.

Why: every component (MQTT broker and bridge, SFTP server and watcher, HTTP ingest, streams,
oracle) must see a registry change within a second or two, and none should poll the database on
its own timer. ``lec registry load`` commits to the database and then publishes the new
:class:`RegistrySnapshot` on the compacted topic (``publish_registry``); each process holds one
:class:`RegistryView` that follows the topic in a thread and swaps the snapshot in. Processes that
authenticate suppliers (brokers, SFTP) ask for ``credentials=True``: the snapshot carries only a
digest of the credentials (``credentials_version``), so a change of it makes the view re-read the
password hashes and SSH keys from the database; hashes never travel on Kafka.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from lec import topics
from lec.kafka import consumer_config, ensure_topics
from lec.registry.snapshot import RegistrySnapshot

log = logging.getLogger("lec.registry.view")
SNAPSHOT_KEY = b"snapshot"
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024


def publish(bootstrap: str, snapshot: RegistrySnapshot, topic: str = topics.REGISTRY, timeout_s: float = 30.0) -> str:
    """Publish the snapshot; returns its version."""
    from confluent_kafka import KafkaException

    from lec.errors import ServiceError
    from lec.io import DeliveryFailed, Producer

    try:
        ensure_topics(bootstrap, (topic,))
    except KafkaException as exc:
        raise ServiceError(f"Kafka at {bootstrap} is not reachable to publish the registry: {exc}") from exc
    producer = Producer(bootstrap, **{"message.max.bytes": MAX_SNAPSHOT_BYTES})
    producer.produce(topic, snapshot.to_json(), SNAPSHOT_KEY)
    try:
        producer.flush_or_raise(timeout_s, "registry snapshots")
    except DeliveryFailed as exc:
        raise ServiceError(f"the registry snapshot was not acknowledged by Kafka ({bootstrap}) within "
                           f"{timeout_s:.0f} s: {exc}") from exc
    return snapshot.version


def publish_registry(settings: Any, registry: Any = None) -> str | None:
    """Publish the database's registry to the running components; None when no Kafka is configured."""
    from lec.registry.store import open_registry

    bootstrap = known_bootstrap(settings)
    if not bootstrap:
        return None
    return publish(bootstrap, (registry or open_registry(settings)).snapshot())


def known_bootstrap(settings: Any) -> str:
    """Kafka bootstrap from the settings, else the one a running ``lec up`` recorded; '' if none."""
    if settings.kafka_bootstrap:
        return str(settings.kafka_bootstrap)
    for name in ("kafka.bootstrap", "kafka_bootstrap"):
        path = settings.resolved_run_dir() / name
        if path.exists():
            return path.read_text().strip()
    return ""


class RegistryFollower:
    """Reads ``lec.registry`` in a thread and calls ``on_snapshot`` for each new snapshot version.

    When it starts (or catches up) it applies only the newest snapshot of what is already on the
    topic, so a view never steps back to an older registry on its way to the current one; the view
    also refuses a snapshot of a lower ``revision`` than its own (the topic may be behind the database).
    ``position`` is the offset of the last message read (-1 before the first).
    """

    def __init__(self, bootstrap: str, on_snapshot: Callable[[RegistrySnapshot], None],
                 topic: str = topics.REGISTRY, version: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.on_snapshot = on_snapshot
        self.version: str | None = version
        self.position = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)

    def start(self) -> RegistryFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:
                log.exception("registry follower failed; retrying in 2 s")
                self._stop.wait(2.0)

    def _follow(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(consumer_config(self.bootstrap, f"lec-registry-{uuid.uuid4().hex}",
                                            **{"fetch.max.bytes": MAX_SNAPSHOT_BYTES,
                                               "max.partition.fetch.bytes": MAX_SNAPSHOT_BYTES}))
        try:
            ensure_topics(self.bootstrap, (self.topic,))
            consumer.assign([TopicPartition(self.topic, 0, 0)])
            while not self._stop.is_set():
                newest = None
                for msg in consumer.consume(100, timeout=0.2):
                    if msg.error() is None and msg.value():
                        newest = msg
                if newest is None:
                    continue
                try:
                    snap = RegistrySnapshot.from_json(newest.value())
                except Exception:
                    log.exception("ignoring an unreadable registry snapshot at offset %s", newest.offset())
                    self.position = newest.offset()
                    continue
                if snap.version != self.version:
                    self.version = snap.version
                    self.on_snapshot(snap)
                    log.info("registry snapshot %s (revision %d): %d suppliers, %d devices, %d flows", snap.version,
                             snap.revision, len(snap.suppliers), len(snap.devices), len(snap.flows))
                self.position = newest.offset()
        finally:
            consumer.close()


class RegistryView:
    """The registry as this process sees it: ``view.snapshot`` (or ``view()``), and with
    ``credentials=True`` the suppliers' password hashes and SSH keys.

    It offers the read side of :class:`Registry` (``snapshot()``, ``supplier_password_hashes()``,
    ``supplier_ssh_keys()``), so a component takes a view where it took a registry.
    ``on_change(fn)`` registers ``fn(view)``, called on the follower thread after each change.
    Without a Kafka bootstrap the view is the start-up snapshot (a standalone tool).
    """

    def __init__(self, settings: Any, *, credentials: bool = False, registry: Any = None,
                 bootstrap: str | None = None, topic: str = topics.REGISTRY) -> None:
        from lec.registry.store import open_registry

        self.settings = settings
        self.registry = registry if registry is not None else open_registry(settings)
        self._snapshot: RegistrySnapshot = self.registry.snapshot()
        self._with_credentials = credentials
        self._passwords: dict[str, str] = {}
        self._ssh_keys: dict[str, list[str]] = {}
        if credentials:
            self._load_credentials()
        self.bootstrap = known_bootstrap(settings) if bootstrap is None else bootstrap
        self.topic = topic
        self._listeners: list[Callable[[RegistryView], None]] = []
        self._follower: RegistryFollower | None = None
        self._lock = threading.Lock()

    def start(self) -> RegistryView:
        if self.bootstrap and self._follower is None:
            self._follower = RegistryFollower(self.bootstrap, self._apply, topic=self.topic,
                                              version=self._snapshot.version).start()
        elif not self.bootstrap:
            log.warning("no Kafka bootstrap: registry changes reach this process only at its next start")
        return self

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    # the read side of ``Registry``, from memory: a view can stand in wherever a component reads the registry
    def snapshot(self) -> RegistrySnapshot:
        return self._snapshot

    def __call__(self) -> RegistrySnapshot:
        return self._snapshot

    def supplier_password_hashes(self) -> dict[str, str]:
        return self._passwords

    def supplier_ssh_keys(self) -> dict[str, list[str]]:
        return self._ssh_keys

    def replace_password_hash(self, supplier_id: str, old_hash: str, new_hash: str) -> bool:
        self.rehashed(supplier_id, old_hash, new_hash)
        return self._passwords.get(supplier_id) == new_hash

    def on_change(self, fn: Callable[[RegistryView], None]) -> None:
        self._listeners.append(fn)

    # -- credentials (processes that authenticate suppliers) -------------------------------------
    def password_hash(self, supplier_id: str) -> str | None:
        return self._passwords.get(supplier_id)

    def ssh_keys(self, supplier_id: str) -> list[str]:
        return self._ssh_keys.get(supplier_id, [])

    def is_active(self, supplier_id: str) -> bool:
        sup = self._snapshot.suppliers.get(supplier_id)
        return sup is not None and sup.active

    def rehashed(self, supplier_id: str, old_hash: str, new_hash: str) -> None:
        """Store a stronger hash computed at a successful login (``LoginCache.on_rehash``)."""
        if self.registry.replace_password_hash(supplier_id, old_hash, new_hash):
            with self._lock:
                self._passwords = {**self._passwords, supplier_id: new_hash}
            log.info("password hash of '%s' upgraded to the current cost", supplier_id)

    def _load_credentials(self) -> None:
        passwords = self.registry.supplier_password_hashes()
        keys = self.registry.supplier_ssh_keys()
        self._passwords, self._ssh_keys = passwords, keys   # swapped whole: readers never see a mix

    # -- follower thread ------------------------------------------------------------------------
    def _apply(self, snap: RegistrySnapshot) -> None:
        if snap.revision < self._snapshot.revision:
            # e.g. at start: the database was read after a change whose snapshot is not on the topic yet
            # (or a publish failed), and the topic's newest is older. The database decides: a replaced
            # database restarts its count (apply what it holds now), otherwise the topic is behind.
            current = self.registry.snapshot()
            if current.revision >= self._snapshot.revision:
                log.info("ignoring registry snapshot of revision %d: this process has revision %d",
                         snap.revision, self._snapshot.revision)
                return
            log.warning("the registry database's revision went back to %d (replaced?): applying it", current.revision)
            snap = current
        with self._lock:
            changed = not snap.credentials_version or snap.credentials_version != self._snapshot.credentials_version
            if self._with_credentials and changed:   # hashes come from the database, never from Kafka
                try:
                    self._load_credentials()
                except Exception:  # keep the last good credentials; the snapshot still applies
                    log.exception("could not re-read supplier credentials from the registry database")
            self._snapshot = snap
        for fn in self._listeners:
            try:
                fn(self)
            except Exception:
                log.exception("a registry change listener failed")
