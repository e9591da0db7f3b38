"""The community YAML file read by ``lec registry load``: validated, with line numbers in errors."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from lec.errors import RegistryFileError
from lec.registry.settlement import PerimeterDoc, PlantDoc, StatuteDoc, check_settlement

IDENT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"   # safe in MQTT topics, folder names and SQL
WALLET = r"^0x[0-9a-fA-F]{40}$"
MAX_FILE_BYTES = 16 * 1024 * 1024


class _Model(BaseModel):
    model_config = {"extra": "forbid"}


class CommunityDoc(_Model):
    id: str = Field(pattern=IDENT)
    name: str
    kind: Literal["CER", "CEC"] = "CER"
    description: str = ""
    timezone: str = "Europe/Rome"
    primary_substation: str | None = None
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)


class UserDoc(_Model):
    id: str = Field(pattern=IDENT)
    name: str
    email: str | None = None
    wallet: str = Field(pattern=WALLET)
    role: Literal["member", "admin", "stakeholder"] = "member"
    roles: list[Literal["platform_admin", "community_admin", "oracle_admin", "token_admin", "member",
                        "stakeholder"]] = []


class SupplierDoc(_Model):
    id: str = Field(pattern=IDENT)
    name: str
    kind: Literal["vendor", "utility", "dso", "external"] = "vendor"
    contact_email: str | None = None
    password: str | None = Field(None, min_length=8, description="hashed on load, never stored in clear")
    password_hash: str | None = None
    ssh_public_keys: list[str] = []


class DeviceDoc(_Model):
    id: str = Field(pattern=IDENT)
    user: str | None = None
    supplier: str
    name: str = ""
    status: Literal["active", "inactive"] = "active"
    usetype: Literal["residential", "commercial", "public", "industrial"] = "residential"
    identificationmethod: Literal["pod", "serial", "mac"] = "pod"
    manufacturer: str | None = None
    model: str | None = None
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    altitude: float | None = None
    address: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    perimeters: list[PerimeterDoc] = []      # settlement: dated substation / zone / region
    plant: PlantDoc | None = None            # settlement: the device is a renewable plant
    rated_power_w: float | None = Field(None, gt=0, le=1e9, description="bounds each reading's energy and power")


class FlowDoc(_Model):
    id: str = Field(pattern=IDENT)
    device: str
    supplier: str
    name: str = ""
    channel: Literal["mqtt", "sftp", "http", "camel"]
    syntax: Literal["json", "csv", "xml", "chain2", "dso-curve-csv", "dso-curve-xml"]
    format_reference: str = ""
    measurement: Literal["load", "production", "grid", "storage"]
    account: Literal["consumption", "production", "none"] = "none"
    send_frequency: str | None = None
    send_cron: str | None = None
    measure_frequency: str | None = None
    measure_cron: str | None = None
    derogation_s: int = Field(0, ge=0)
    gdprclass: Literal["personal", "anonymous", "aggregate"] = "personal"
    use_rights: str = ""
    on_error: Literal["deadletter", "reject_batch"] = "deadletter"
    start: datetime | None = None
    end: datetime | None = None
    active: bool = True
    interval_s: int = Field(900, gt=0, le=31 * 86400)
    value_kind: Literal["interval", "cumulative", "instant"] = "interval"
    sign_convention: Literal["consumer", "generator"] = "consumer"
    units: dict[str, str] = {}
    mapping: dict[str, str] = {}
    ts_format: str = "iso"
    timezone: str = "UTC"
    limits: dict[str, list[float]] = {}
    syntax_options: dict[str, Any] = {}
    counter_max_mwh: int | None = Field(None, gt=0)
    max_lateness_s: int | None = Field(None, ge=0, description="readings older than the flow's latest by more "
                                       "than this are refused (default: send frequency + derogation + margin)")

    @field_validator("units")
    @classmethod
    def _known_units(cls, v: dict[str, str]) -> dict[str, str]:
        allowed = {"energy": {"mWh", "Wh", "kWh", "MWh"}, "power": {"W", "kW", "MW"},
                   "reactive": {"var", "kvar"}, "current": {"A", "mA"}, "voltage": {"V", "kV"},
                   "charge": {"pct", "ratio"}}
        for quantity, unit in v.items():
            if quantity not in allowed:
                raise ValueError(f"unknown quantity '{quantity}' (known: {', '.join(sorted(allowed))})")
            if unit not in allowed[quantity]:
                raise ValueError(f"unit '{unit}' of {quantity} must be one of {sorted(allowed[quantity])}")
        return v

    @model_validator(mode="after")
    def _named_format(self) -> FlowDoc:
        """Named formats (docs/formats.md) fix mapping, units, value kind and time format: fill them in."""
        from lec.formats import completed, format_problems

        declared = {k: getattr(self, k) for k in self.model_fields_set}
        problems = format_problems(self.syntax, declared)
        if problems:
            raise ValueError(problems[0][1])
        for name, value in completed(self.syntax, declared).items():
            object.__setattr__(self, name, value)
        return self


class CommunityFile(_Model):
    community: CommunityDoc
    users: list[UserDoc] = []
    suppliers: list[SupplierDoc] = []
    devices: list[DeviceDoc] = []
    flows: list[FlowDoc] = []
    statute: list[StatuteDoc] = []           # settlement: repartition rule versions

    def check_references(self) -> list[tuple[tuple[Any, ...], str]]:
        """Cross-references the schema cannot see; returns (location, message) pairs."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        for section in ("users", "suppliers", "devices", "flows"):
            seen: set[str] = set()
            for i, item in enumerate(getattr(self, section)):
                if item.id in seen:
                    problems.append(((section, i, "id"), f"duplicate id '{item.id}'"))
                seen.add(item.id)
        users = {u.id for u in self.users}
        sups = {s.id for s in self.suppliers}
        devs = {d.id: d for d in self.devices}
        wallets: set[str] = set()
        for i, u in enumerate(self.users):
            if u.wallet.lower() in wallets:
                problems.append((("users", i, "wallet"), f"wallet {u.wallet} is already used by another member"))
            wallets.add(u.wallet.lower())
        for i, d in enumerate(self.devices):
            if d.user is not None and d.user not in users:
                problems.append((("devices", i, "user"), f"unknown user '{d.user}'"))
            if d.supplier not in sups:
                problems.append((("devices", i, "supplier"), f"unknown supplier '{d.supplier}'"))
        routed: set[tuple[str, ...]] = set()
        for i, f in enumerate(self.flows):
            if f.syntax in ("chain2", "dso-curve-csv", "dso-curve-xml"):   # rows routed by sign (streams/formats)
                key = (f.device, f.supplier, f.channel, f.syntax, f.sign_convention)
                if key in routed:
                    problems.append((("flows", i, "sign_convention"), f"device '{f.device}' already has a {f.syntax} "
                                     f"flow with sign_convention {f.sign_convention}: one flow per direction "
                                     "(consumer = withdrawal, generator = injection)"))
                routed.add(key)
            if f.device not in devs:
                problems.append((("flows", i, "device"), f"unknown device '{f.device}'"))
            elif devs[f.device].supplier != f.supplier:
                problems.append((("flows", i, "supplier"),
                                 f"supplier '{f.supplier}' does not supply device '{f.device}'"))
            if f.supplier not in sups:
                problems.append((("flows", i, "supplier"), f"unknown supplier '{f.supplier}'"))
            if f.timezone != "UTC" and not re.match(r"^[A-Za-z_]+(/[A-Za-z_+-]+)*$", f.timezone):
                problems.append((("flows", i, "timezone"), f"'{f.timezone}' is not an IANA time zone"))
        return problems + check_settlement(self)


# libyaml's parser when PyYAML was built with it (the wheels are): ~10x faster than the pure-Python
# one on a community of 1,000 meters, same safe constructors.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each path in the YAML document to its 1-based line."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            nested = _line_index(value, sub)
            nested[sub] = key.start_mark.line + 1
            lines.update(nested)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            lines.update(_line_index(value, path + (i,)))
    return lines


def _line_for(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def parse_community_text(text: str, name: str = "<file>") -> CommunityFile:
    """Parse and validate a community file; errors name the line and field."""
    if len(text.encode()) > MAX_FILE_BYTES:
        raise RegistryFileError(f"{name} is larger than {MAX_FILE_BYTES} bytes")
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)  # a safe loader: libyaml's when PyYAML has it
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise RegistryFileError(f"{name}: not valid YAML: {exc.problem}", line=line) from exc
    if not isinstance(data, dict):
        raise RegistryFileError(f"{name}: the file must be a mapping with a 'community' section", line=1)
    try:
        doc = CommunityFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc)
        raise RegistryFileError(f"{name}: {err['msg']}", line=_line_for(_lines(text), loc), field=field) from exc
    problems = doc.check_references()
    if problems:
        loc, msg = problems[0]
        raise RegistryFileError(f"{name}: {msg}", line=_line_for(_lines(text), loc), field=".".join(map(str, loc)))
    return doc


def _lines(text: str) -> dict[tuple[Any, ...], int]:
    """Line numbers, only when an error needs one: composing the node tree costs as much as the parse."""
    return _line_index(yaml.compose(text, Loader=SAFE_LOADER))


def read_community_file(path: Path) -> CommunityFile:
    if not path.exists():
        raise RegistryFileError(f"{path} does not exist")
    return parse_community_text(path.read_text(encoding="utf-8"), str(path))
