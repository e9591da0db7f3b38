"""One settings object for the whole platform.

Sources, later ones winning: built-in defaults (the embedded stack, no configuration needed),
an optional config file (YAML; path from ``LEC_CONFIG`` or ``./lec.yaml``), then environment
variables ``LEC_<FIELD>`` (upper case, e.g. ``LEC_KAFKA_BOOTSTRAP``). ``docs/configuration.md``
documents every field.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from lec.errors import ConfigError


class Settings(BaseModel):
    """Every setting of the platform, with embedded-stack defaults."""

    model_config = {"extra": "forbid"}

    run_dir: Path = Field(Path(".lec/run"), description="Logs, pids, ports and state of `lec up`.")
    registry_url: str = Field("", description="SQLAlchemy URL of the registry; default SQLite in run_dir.")
    secrets_url: str = Field("", description="SQLAlchemy URL of the device-secret store, kept apart.")
    kafka_bootstrap: str = Field("", description="Kafka bootstrap servers; empty = the embedded broker.")
    kafka_engine: Literal["kafka", "tansu"] = Field(
        "kafka", description="Embedded broker: 'kafka' (Apache Kafka, KRaft, needs Java) or 'tansu' (pip-only).")
    kafka_port: int = Field(0, description="Port of the embedded Kafka broker; 0 = a free port.")
    kafka_retention_hours: int = Field(168, ge=1, description="Retention bound of the topics that carry readings: "
                                       "the longest an erased member's records stay in Kafka (docs/gdpr.md).")
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host.")
    mqtt_port: int = Field(0, description="Embedded MQTT broker port; 0 = a free port.")
    mqtt_broker: Literal["mosquitto", "amqtt"] = Field(
        "mosquitto", description="Embedded MQTT broker: 'mosquitto' (apt) or 'amqtt' (pip-only fallback, MQTT 3.1.1).")
    mqtt_username: str = Field("lec-bridge", description="Bridge account on the MQTT broker.")
    mqtt_password: str = Field("", description="Bridge password (never logged).")
    sftp_port: int = Field(0, description="Embedded SFTP server port; 0 = a free port.")
    sftp_root: Path = Field(Path(""), description="Root of the per-supplier triage areas; default run_dir/sftp.")
    sftp_schedule: str = Field("immediate", description="'immediate' or an off-peak window 'HH:MM-HH:MM'.")
    http_port: int = Field(0, description="HTTP ingest port; 0 = a free port.")
    http_max_body_bytes: int = Field(8 * 1024 * 1024, description="Largest accepted HTTP body.")
    jwt_issuer: str = Field("", description="Issuer URL of supplier JWTs; empty = the embedded issuer.")
    jwks_url: str = Field("", description="JWKS URL; empty = the embedded issuer's keys.")
    keycloak: bool = Field(False, description="`lec up` starts Keycloak (realm 'lec': one client per supplier) and "
                           "HTTP ingest verifies its tokens; same as `lec up --keycloak` (docs/keycloak.md).")
    keycloak_port: int = Field(0, description="Embedded Keycloak HTTP port; 0 = a free port.")
    max_payload_bytes: int = Field(1024 * 1024, description="Largest single source message accepted.")
    lake_uri: str = Field("", description="Delta lake root (path or hdfs:// URI); default run_dir/lake.")
    webhdfs_url: str = Field("", description="WebHDFS URL of the lake's NameNode (http://host:9870) for "
                             "the raw zone when lake_uri is hdfs://.")
    lake_hdfs: bool = Field(False, description="`lec up` runs an HDFS 3 NameNode + DataNode (data under "
                            "run_dir/hdfs) and puts the lake on it (hdfs://) when lake_uri is empty.")
    hdfs_port: int = Field(0, description="RPC port of the embedded NameNode (lake_hdfs); 0 = a free port.")
    hdfs_http_port: int = Field(0, description="HTTP port (JMX, WebHDFS) of the embedded NameNode; 0 = a free port.")
    spark_remote: str = Field("", description="Spark Connect URL; empty = a local server of spark_engine.")
    spark_engine: Literal["sail", "jvm"] = Field("sail", description="Local Spark when spark_remote is empty: "
                                                 "'sail' (in-process, no JVM) or 'jvm' (Spark + delta-spark).")
    chain_rpc: str = Field("", description="EVM JSON-RPC URL; empty = the embedded anvil.")
    chain_port: int = Field(0, description="Embedded anvil port; 0 = a free port.")
    chain_id: int = Field(31337, description="Chain id of the embedded anvil.")
    oracle_grace_s: int = Field(300, description="Seconds after a QH's end before it is anchored (oracle.md §9).")
    oracle_silence_s: int = Field(300, description="Wall-clock seconds the oracle waits for an expected flow that "
                                  "sends nothing, once its declared lateness has passed in event time (docs/oracle.md).")
    oracle_claim_interval_s: int = Field(60, description="How often the oracle claims rewards for members.")
    clock_skew_s: int = Field(300, description="How far in the future a reading's timestamp may be.")
    streams_default_rated_power_w: float = Field(
        1_000_000, description="Rated power assumed for a device that declares none (W; 1 MW, the CER plant cap).")
    streams_power_margin: float = Field(
        1.5, description="A reading may exceed its device's rated power x interval by this factor, no more.")
    streams_lateness_margin_s: int = Field(
        86400, description="Added to a flow's send frequency + derogation: its default maximum lateness.")
    streams_max_lateness_s: int = Field(
        35 * 86400, description="Maximum lateness of a flow declaring no send frequency nor max_lateness_s "
                                "(s; 35 days: a monthly settlement + slack; 0 = unbounded).")
    streams_deadletter_bytes_per_s: int = Field(
        1024 * 1024, description="Per-supplier budget of original bytes copied into dead letters (burst 16x).")
    search_url: str = Field("", description="Elasticsearch/OpenSearch URL; empty = indexing off.")
    log_level: str = Field("INFO", description="Log level of every worker (INFO keeps Faust's spinner off).")

    def resolved_run_dir(self) -> Path:
        return self.run_dir.expanduser().resolve()

    def resolved_registry_url(self) -> str:
        return self.registry_url or f"sqlite:///{self.resolved_run_dir() / 'registry.db'}"

    def resolved_secrets_url(self) -> str:
        return self.secrets_url or f"sqlite:///{self.resolved_run_dir() / 'secrets' / 'device-secrets.db'}"

    def resolved_lake_uri(self) -> str:
        return self.lake_uri or str(self.resolved_run_dir() / "lake")

    def resolved_sftp_root(self) -> Path:
        return self.sftp_root if str(self.sftp_root) not in ("", ".") else self.resolved_run_dir() / "sftp"

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to print: secrets masked, also credentials inside URLs (``user:***@host``)."""
        data = self.model_dump(mode="json")
        for key in data:
            if "password" in key or "secret" in key:
                data[key] = "***" if data[key] else ""
            elif isinstance(data[key], str):
                data[key] = mask_url_credentials(data[key])
        return data


# scheme://user:password@host (and several comma-separated URLs): the password part; also a token
# given as the user alone (https://TOKEN@host) and query parameters that carry secrets.
_URL_PASSWORD = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@,]*:)(?P<secret>[^@\s/,]*)(?=@)")
_URL_TOKEN = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://)(?P<secret>[^/\s:@,]+)(?=@)")
_QUERY_SECRET = re.compile(r"(?P<pre>[?&](?:password|passwd|pwd|secret|token|access_token|api_key|apikey|key|sig)=)"
                           r"(?P<secret>[^&\s#]+)", re.IGNORECASE)


def mask_url_credentials(text: str) -> str:
    """``text`` with every password (or bare token) inside a URL replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: m["pre"] + "***", text)
    text = _URL_TOKEN.sub(lambda m: m["pre"] + "***", text)
    return _QUERY_SECRET.sub(lambda m: m["pre"] + "***", text)


def write_private(path: Path, text: str) -> None:
    """Write a state file readable by its owner only (0600), atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)   # an existing temp file keeps its old mode through O_CREAT
    tmp.replace(path)


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting names to values")
    return data


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        env_name = f"LEC_{name.upper()}"
        if env_name in environ:
            values[name] = environ[env_name]
    return values


def load_settings(environ: dict[str, str] | None = None, config_file: Path | None = None) -> Settings:
    """Build the settings from defaults, an optional YAML file and ``LEC_*`` variables."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    path = config_file or (Path(env["LEC_CONFIG"]) if env.get("LEC_CONFIG") else Path("lec.yaml"))
    if path.exists():
        values.update(_from_file(path))
    elif config_file is not None or env.get("LEC_CONFIG"):
        raise ConfigError(f"config file {path} does not exist")
    values.update(_from_env(env))
    try:
        loaded = Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"setting '{field}' (env LEC_{field.upper()}): {first['msg']}") from exc
    return _with_running_stack(loaded, set(values))


# What a running `lec up` chose (its free ports) fills the settings a command did not set, so
# `lec registry load`, `lec audit ...` or `lec kpi` in another shell talk to that stack.
STACK_FILLED = ("kafka_bootstrap", "mqtt_port", "sftp_port", "http_port", "chain_rpc", "lake_uri", "webhdfs_url")


def running_stack_env(run_dir: Path) -> dict[str, str] | None:
    """The LEC_* variables of the `lec up` running on ``run_dir``, or None if none runs."""
    import json

    from lec.procs import pid_running

    try:
        state = json.loads((run_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return None
    if not state.get("running") or not pid_running(int(state.get("supervisor_pid", 0))):
        return None
    return dict(state.get("env", {}))


def _with_running_stack(s: Settings, explicit: set[str]) -> Settings:
    env = running_stack_env(s.resolved_run_dir())
    if not env:
        return s
    update = {name: env[f"LEC_{name.upper()}"] for name in STACK_FILLED
              if name not in explicit and f"LEC_{name.upper()}" in env}
    return Settings(**{**s.model_dump(), **update}) if update else s


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()


def settings_reference() -> str:
    """The Markdown table of every setting, as published in docs/configuration.md."""
    lines = [
        "# Configuration",
        "",
        "One settings object (`lec/config.py`, `Settings`). Sources, later ones winning: the defaults below",
        "(the embedded stack: no configuration needed), an optional YAML file (`LEC_CONFIG` or `./lec.yaml`),",
        "then environment variables `LEC_<NAME>`. `lec config` prints the settings in force (secrets masked,",
        "also passwords and tokens inside URLs).",
        "This page is generated from the code (`lec config --reference`); a test keeps it current.",
        "",
        "| setting | environment variable | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, f in Settings.model_fields.items():
        default = f.default
        shown = "" if default in ("", None) else str(default)
        lines.append(f"| `{name}` | `LEC_{name.upper()}` | `{shown}` | {f.description or ''} |")
    return "\n".join(lines) + "\n"
