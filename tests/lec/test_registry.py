"""The registry round-trips on SQLite and on a real PostgreSQL; bad files name line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lec.errors import RegistryFileError
from lec.registry import MissingSecretError, Registry, SecretStore, parse_community_text
from lec.registry.community_file import CommunityFile
from tests.conftest import EXAMPLE_COMMUNITY

SEED_TABLES = {
    "users", "roles", "communities", "users_communities", "flows_communities", "suppliers_communities", "flows",
    "devices", "suppliers", "measurementstables", "signallabels", "anomalies", "derivedtimeseries",
    "derivedtimeseries_sources", "derivedtimeseries_schedules", "derivedtimeseries_values", "clustergroups",
    "clusters", "clusters_days", "clusters_users", "clustergroups_idx", "t_frequence", "t_datasyntax",
    "t_measurementtype", "t_gdprclassification", "t_devicestatus", "t_usetype", "t_identificationmethod",
    "t_periodtype", "t_derivedtimeseriestype",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_url")


def test_migrations_create_every_seed_table(db_url: str, tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    from lec.registry.migrate import MIGRATIONS

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # the newest migration
    reg = Registry(db_url)
    assert reg.migrate() == head
    assert SEED_TABLES <= set(reg.table_names())
    assert reg.migrate() == head  # idempotent


@pytest.mark.integration  # six Python processes
def test_commands_started_together_on_a_new_registry_all_migrate_it(db_url: str) -> None:
    """Two `lec` commands started at once on a new run dir both migrate: the seed rows went in twice
    (UNIQUE constraint failed: t_frequence.code) before migrations took a lock."""
    import subprocess
    import sys

    code = "import sys; from lec.registry import Registry; print(Registry(sys.argv[1]).migrate())"
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(6)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [r[0] for r in results] == [0] * 6, "\n".join(r[2][-600:] for r in results if r[0])
    assert len({r[1] for r in results}) == 1  # every one ends at the same head


def test_migration_0003_adds_rated_power_and_lateness_to_an_older_registry(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from lec.registry.migrate import _config

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(_config(engine), "0002")
    with engine.begin() as conn:          # a registry created before 0003 lacks the columns
        conn.exec_driver_sql("ALTER TABLE devices DROP COLUMN rated_power_w")
        conn.exec_driver_sql("ALTER TABLE flows DROP COLUMN max_lateness_s")
    command.upgrade(_config(engine), "head")
    insp = inspect(engine)
    assert "rated_power_w" in {c["name"] for c in insp.get_columns("devices")}
    assert "max_lateness_s" in {c["name"] for c in insp.get_columns("flows")}


def test_round_trip(db_url: str, tmp_path: Path) -> None:
    reg = Registry(db_url, SecretStore(f"sqlite:///{tmp_path / 's' / 'secrets.db'}"))
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    exported = reg.export("cer-example")
    # export -> load -> export is a fixed point
    reg.load(CommunityFile.model_validate(exported))
    assert reg.export("cer-example") == exported
    snap = reg.snapshot()
    assert snap.flows["f-bruno-pv"].sign_factor == -1
    assert snap.flows["f-anna-load"].account == 1 and snap.flows["f-bruno-pv"].account == 2
    assert snap.supplier_owns("sup-home", "IT001E00000001", "f-anna-load")
    assert not snap.supplier_owns("sup-home", "IT001E00000002")
    assert snap.member_of_device("PV-0001").wallet.endswith("02")
    assert reg.summary()["cer-example"]["devices"] == 3
    # passwords are hashed, never exported
    text = yaml.safe_dump(exported)
    assert "home-box-secret" not in text and "$7$" not in text


def test_snapshot_json_round_trip(registry: Registry) -> None:
    from lec.registry import RegistrySnapshot

    snap = registry.snapshot()
    again = RegistrySnapshot.from_json(snap.to_json())
    assert again.version == snap.version
    assert again.flows == snap.flows


def test_device_secrets_are_apart_and_erasable(registry: Registry) -> None:
    secret = registry.secrets.get("PV-0001")
    assert len(secret) == 32
    assert secret != registry.secrets.get("IT001E00000001")
    assert "secret" not in repr(registry.secrets).lower().replace("secretstore", "")
    assert "device_secrets" not in registry.table_names()
    registry.erase_device("PV-0001")
    with pytest.raises(MissingSecretError):
        registry.secrets.get("PV-0001")
    assert "PV-0001" not in registry.snapshot().devices


BAD_FILES = [
    ("syntax: csv", "syntax: csvx", "flows.1.syntax"),
    ('wallet: "0x1000000000000000000000000000000000000002"', 'wallet: "0x12"', "users.1.wallet"),
    ("supplier: sup-home, name: Anna's meter", "supplier: sup-nobody, name: x", "devices.0.supplier"),
    ("units: {energy: kWh}", "units: {energy: kJ}", "flows.1.units"),
    ("interval_s: 900", "interval_s: 900", None),
]


@pytest.mark.parametrize("old,new,field", [b for b in BAD_FILES if b[2]])
def test_bad_files_name_line_and_field(old: str, new: str, field: str) -> None:
    text = EXAMPLE_COMMUNITY.read_text()
    assert old in text
    bad = text.replace(old, new)
    with pytest.raises(RegistryFileError) as err:
        parse_community_text(bad)
    assert err.value.field == field
    expected_line = next(i for i, ln in enumerate(bad.splitlines(), 1) if new.split(",")[0] in ln)
    assert err.value.line == expected_line, str(err.value)


def test_unknown_field_and_bad_yaml() -> None:
    with pytest.raises(RegistryFileError, match="line 2"):
        parse_community_text("community:\n\tid: c1\n")
    with pytest.raises(RegistryFileError) as err:
        parse_community_text("community: {id: c1, name: C, colour: red}\n")
    assert err.value.field == "community.colour"
