"""A registry view never goes back to an older registry (issue 9, registry ordering).

Snapshots carry the database's ``revision`` (a counter bumped by every change). A process that read
the database at start while the topic still held an older snapshot (a change committed but not yet
published, or a publish that failed) used to apply that older snapshot, since a content digest has
no order: here the view must keep the newer registry and still follow later changes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lec.config import Settings
from lec.kafka import ensure_topics
from lec.registry import Registry, SecretStore
from lec.registry.view import RegistryView, publish
from tests.conftest import EXAMPLE_COMMUNITY


def _until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    return None


def _renamed(reg: Registry, tmp_path: Path, name: str) -> None:
    """Load the example community again with another community name (a change of the registry)."""
    text = EXAMPLE_COMMUNITY.read_text()
    first_name = next(line for line in text.splitlines() if line.strip().startswith("name:"))
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(first_name, first_name.split("name:")[0] + f"name: {name}", 1))
    reg.load_file(path)


def test_an_older_snapshot_is_never_applied_after_a_newer_one(tmp_path: Path, kafka_bootstrap: str) -> None:
    settings = Settings(run_dir=tmp_path / "run", kafka_bootstrap=kafka_bootstrap)
    reg = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    old = reg.snapshot()
    _renamed(reg, tmp_path, "Second")
    new = reg.snapshot()
    assert new.revision == old.revision + 1 and new.version != old.version
    (cid,) = new.communities
    assert new.communities[cid].name == "Second"

    topic = f"lec.registry.test-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, (topic,), partitions=1)  # one partition, as lec.registry has
    publish(kafka_bootstrap, old, topic)            # the topic is behind the database: only the old one
    view = RegistryView(settings, registry=reg, bootstrap=kafka_bootstrap, topic=topic).start()
    try:
        assert _until(lambda: view._follower.position >= 0), "the view did not read the topic"
        assert view.snapshot().revision == new.revision
        assert view.snapshot().communities[cid].name == "Second"   # not back to the old registry

        _renamed(reg, tmp_path, "Third")            # a later change still reaches the view
        publish(kafka_bootstrap, reg.snapshot(), topic)
        assert _until(lambda: view.snapshot().communities[cid].name == "Third")
        third = view.snapshot().revision

        publish(kafka_bootstrap, new, topic)        # an old snapshot published after a newer one
        assert _until(lambda: view._follower.position >= 2)
        assert view.snapshot().revision == third and view.snapshot().communities[cid].name == "Third"
    finally:
        view.stop()


def test_every_change_bumps_the_revision(tmp_path: Path) -> None:
    run = tmp_path / "run"
    reg = Registry(f"sqlite:///{run / 'registry.db'}", SecretStore(f"sqlite:///{run / 'secrets.db'}"))
    reg.migrate()
    assert reg.snapshot().revision == 0
    reg.load_file(EXAMPLE_COMMUNITY)
    first = reg.snapshot().revision
    device = next(iter(reg.snapshot().devices))
    reg.erase_device(device)
    assert reg.snapshot().revision == first + 1
