"""Settlement data in the community YAML and the registry: dated perimeters, plants, statute versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, inspect

from lec.errors import RegistryFileError
from lec.registry import Registry
from lec.registry.community_file import parse_community_text
from lec.registry.migrate import upgrade_to_head
from tests.conftest import EXAMPLE_COMMUNITY

TEXT = EXAMPLE_COMMUNITY.read_text()


def test_example_loads_and_exports_round_trip(registry: Registry) -> None:
    out = registry.export("cer-example")
    pv = next(d for d in out["devices"] if d["id"] == "PV-0001")
    assert pv["plant"] == {"power_kw": 6.0, "type": "pv", "commissioned": "2024-03-15", "grant": False}
    assert pv["perimeters"] == [{"from": "2024-01-01", "substation": "AC001E00123", "zone": "CNOR",
                                 "region": "Lazio"}]
    assert out["statute"] == [{"version": 1, "from": "2024-01-01", "producers": 40.0, "consumers": 45.0,
                               "fund": 10.0, "costs": 3.0, "social": 2.0}]
    again = parse_community_text(yaml.safe_dump(out, sort_keys=False))   # export is a valid file
    assert again.statute[0].bps()["consumers"] == 4500
    registry.load(again)
    assert registry.export("cer-example") == out


def _bad(old: str, new: str) -> RegistryFileError:
    assert old in TEXT
    with pytest.raises(RegistryFileError) as info:
        parse_community_text(TEXT.replace(old, new, 1), "c.yaml")
    return info.value


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_errors_name_line_and_field() -> None:
    e = _bad("zone: CNOR, region: Lazio}]}\n  - {id: IT001E00000002", "zone: CENTRO, region: Lazio}]}\n  - {id: IT001E00000002")
    assert e.field == "devices.0.perimeters.0.zone" and e.line == line_of(TEXT, "AC001E00123")
    e = _bad("region: Lazio}]}\n  - {id: PV-0001", "region: Lazium}]}\n  - {id: PV-0001")
    assert e.field == "devices.1.perimeters.0.region" and "unknown region 'Lazium'" in str(e)
    e = _bad("power_kw: 6,", "power_kw: -6,")
    assert e.field == "devices.2.plant.power_kw" and e.line == line_of(TEXT, "power_kw")
    e = _bad("consumers: 45,", "consumers: 44,")
    assert e.field == "statute.0" and "add up to 99%" in str(e) and e.line == line_of(TEXT, "version: 1")
    e = _bad("commissioned: 2024-03-15", "commissioned: someday")
    assert e.field == "devices.2.plant.commissioned"


def test_overlapping_perimeters_are_refused() -> None:
    old = "[{from: 2024-01-01, substation: AC001E00123, zone: CNOR, region: Lazio}],\n     plant:"
    assert old in TEXT
    text = TEXT.replace(old, (
        "[{from: 2024-01-01, to: 2026-05-15, substation: AC001E00123, zone: CNOR, region: Lazio},\n"
        "                  {from: 2026-05-10, substation: AC001E00999, zone: CNOR, region: Lazio}],\n     plant:"), 1)
    with pytest.raises(RegistryFileError) as info:
        parse_community_text(text, "c.yaml")
    assert info.value.field == "devices.2.perimeters.1.from" and "overlaps" in str(info.value)
    assert info.value.line == line_of(text, "AC001E00999")
    ok = text.replace("from: 2026-05-10", "from: 2026-05-15")
    assert len(parse_community_text(ok).devices[2].perimeters) == 2


def test_migration_adds_the_tables_to_an_old_database(tmp_path: Path) -> None:
    from alembic import command

    from lec.registry.migrate import _config

    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    cfg = _config(engine)
    command.upgrade(cfg, "0001")
    for name in ("device_perimeters", "plants", "statute_rules"):   # 0001 builds today's metadata...
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {name}")              # ...so drop them to be a pre-0002 db
    from alembic.script import ScriptDirectory

    from lec.registry.migrate import MIGRATIONS

    assert upgrade_to_head(engine) == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert {"device_perimeters", "plants", "statute_rules"} <= set(inspect(engine).get_table_names())
    command.downgrade(cfg, "0001")
    assert "plants" not in inspect(engine).get_table_names()


def test_erasing_a_device_removes_its_settlement_rows(registry: Registry) -> None:
    registry.erase_device("PV-0001")
    out = registry.export("cer-example")
    assert "PV-0001" not in {d["id"] for d in out["devices"]}
    with registry.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM plants").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM device_perimeters WHERE device_id = 'PV-0001'").scalar() == 0
    assert out["statute"][0]["version"] == 1
