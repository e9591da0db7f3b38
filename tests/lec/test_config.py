"""Settings: defaults work with no configuration; file and LEC_* variables override; bad values are explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from lec.config import Settings, load_settings, settings_reference
from lec.errors import ConfigError


def test_defaults_need_no_configuration(tmp_path: Path) -> None:
    s = load_settings(environ={}, config_file=None)
    assert s.kafka_bootstrap == "" and s.oracle_grace_s == 300
    assert s.resolved_registry_url().startswith("sqlite:///")
    assert s.resolved_secrets_url() != s.resolved_registry_url()


def test_file_then_environment_win(tmp_path: Path) -> None:
    cfg = tmp_path / "lec.yaml"
    cfg.write_text("oracle_grace_s: 120\nkafka_bootstrap: kafka-a:9092\n")
    s = load_settings(environ={"LEC_KAFKA_BOOTSTRAP": "kafka-b:9092"}, config_file=cfg)
    assert s.oracle_grace_s == 120
    assert s.kafka_bootstrap == "kafka-b:9092"


def test_bad_values_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LEC_ORACLE_GRACE_S"):
        load_settings(environ={"LEC_ORACLE_GRACE_S": "soon"})
    bad = tmp_path / "lec.yaml"
    bad.write_text("colour: red\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings(environ={}, config_file=bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"LEC_CONFIG": str(tmp_path / "missing.yaml")})


def test_secrets_are_masked() -> None:
    s = Settings(mqtt_password="hunter2")
    assert "hunter2" not in str(s.public_dict())


def test_reference_page_is_current() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert page.read_text() == settings_reference()
