"""Finding 9: a second community's file can neither take another community's ids nor change its credentials."""

from __future__ import annotations

import pytest
import yaml

from lec.errors import RegistryError
from lec.registry import Registry, parse_community_text
from lec.registry.passwords import verify_password
from tests.conftest import EXAMPLE_COMMUNITY

OTHER = {
    "community": {"id": "cer-other", "name": "CER Other"},
    "users": [{"id": "u-anna", "name": "Not Anna", "wallet": "0x2000000000000000000000000000000000000001"}],
    "suppliers": [{"id": "sup-home", "name": "Hijacker", "password": "attacker-password"},
                  {"id": "sup-other", "name": "Other Srl", "password": "other-password"}],
    "devices": [{"id": "IT001E00000001", "user": "u-anna", "supplier": "sup-home", "name": "stolen meter"},
                {"id": "IT009E00000009", "user": "u-anna", "supplier": "sup-other", "name": "own meter"}],
    "flows": [{"id": "f-anna-load", "device": "IT001E00000001", "supplier": "sup-home", "channel": "mqtt",
               "syntax": "json", "measurement": "load", "account": "consumption"}],
}


def test_foreign_ids_are_refused_and_nothing_changes(registry: Registry) -> None:
    before = registry.snapshot()
    hash_before = registry.supplier_password_hashes()["sup-home"]
    with pytest.raises(RegistryError) as err:
        registry.load(parse_community_text(yaml.safe_dump(OTHER)))
    msg = str(err.value)
    for named in ("device 'IT001E00000001'", "supplier 'sup-home'", "user 'u-anna'", "flow 'f-anna-load'"):
        assert named in msg
    assert "cer-example" in msg and "IT009E00000009" not in msg and "sup-other" not in msg
    after = registry.snapshot()
    assert after.to_json() == before.to_json()                 # nothing moved, nothing added
    assert "cer-other" not in after.communities
    assert registry.supplier_password_hashes()["sup-home"] == hash_before
    assert verify_password("home-box-secret", hash_before)


def test_own_reload_without_password_keeps_credentials(registry: Registry, tmp_path) -> None:
    hashes = registry.supplier_password_hashes()
    doc = yaml.safe_load(EXAMPLE_COMMUNITY.read_text())
    for s in doc["suppliers"]:
        s.pop("password", None)                                 # as `lec registry export` writes it
    registry.load(parse_community_text(yaml.safe_dump(doc)))
    assert registry.supplier_password_hashes() == hashes
    registry.load_file(EXAMPLE_COMMUNITY)                       # same passwords: same hashes
    assert registry.supplier_password_hashes() == hashes


def test_a_new_community_with_its_own_ids_loads(registry: Registry) -> None:
    mine = {**OTHER, "users": [{"id": "u-carla", "name": "Carla",
                                "wallet": "0x2000000000000000000000000000000000000003"}],
            "suppliers": [OTHER["suppliers"][1]],
            "devices": [{**OTHER["devices"][1], "user": "u-carla"}], "flows": []}
    registry.load(parse_community_text(yaml.safe_dump(mine)))
    snap = registry.snapshot()
    assert snap.devices["IT009E00000009"].community_id == "cer-other"
    assert snap.devices["IT001E00000001"].community_id == "cer-example"
