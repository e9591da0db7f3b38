"""An immutable in-memory view of the registry, for hot paths (no query per message).

Streams, connectors and the oracle build one at start-up (``Registry.snapshot()``) and swap it
when the registry changes (``version`` changes). It serialises to JSON so it can travel on the
compacted ``lec.registry`` topic.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson

ACCOUNT_NONE, ACCOUNT_CONSUMPTION, ACCOUNT_PRODUCTION = 0, 1, 2


@dataclass(frozen=True)
class Member:
    user_id: str
    community_id: str
    wallet: str
    role: str = "member"
    active: bool = True


@dataclass(frozen=True)
class Supplier:
    id: str
    name: str
    communities: tuple[str, ...] = ()
    active: bool = True


@dataclass(frozen=True)
class Device:
    id: str
    community_id: str
    supplier_id: str
    user_id: str | None = None
    status: str = "active"
    start_ts: datetime | None = None
    end_ts: datetime | None = None
    rated_power_w: float | None = None     # None: streams use their default ceiling


@dataclass(frozen=True)
class Flow:
    """One data stream and everything streams need to normalise it."""

    id: str
    device_id: str
    supplier_id: str
    community_id: str
    channel: str
    syntax: str
    measurement: str                      # load | production | grid | storage
    account: int = ACCOUNT_NONE           # flows_communities.accountconsumption
    interval_s: int = 900
    value_kind: str = "interval"          # interval | cumulative | instant
    sign_convention: str = "consumer"     # consumer: + = into the device (Table 13); generator: + = out
    units: dict[str, str] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)
    ts_format: str = "iso"
    timezone: str = "UTC"
    limits: dict[str, list[float]] = field(default_factory=dict)
    syntax_options: dict[str, Any] = field(default_factory=dict)
    send_frequency_s: int | None = None
    derogation_s: int = 0
    start_ts: datetime | None = None
    end_ts: datetime | None = None
    active: bool = True
    counter_max_mwh: int | None = None
    on_error: str = "deadletter"
    max_lateness_s: int | None = None     # None: send frequency + derogation + the streams' margin

    @property
    def sign_factor(self) -> int:
        """Multiply source values by this to reach the seed's Table 13 convention."""
        return 1 if self.sign_convention == "consumer" else -1


@dataclass(frozen=True)
class Community:
    id: str
    name: str
    timezone: str = "Europe/Rome"
    kind: str = "CER"


@dataclass
class RegistrySnapshot:
    communities: dict[str, Community] = field(default_factory=dict)
    suppliers: dict[str, Supplier] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)
    members: dict[tuple[str, str], Member] = field(default_factory=dict)  # (community_id, user_id)
    # digest of the suppliers' password hashes and SSH keys (never the hashes themselves): a
    # password change is a new version, so processes that authenticate re-read the credentials
    credentials_version: str = ""
    # the database's change counter when this was read (registry_revision): a process following
    # lec.registry never applies a snapshot older than the one it holds (0: unknown, older publishers)
    revision: int = 0

    def flows_of_device(self, device_id: str) -> list[Flow]:
        return [f for f in self.flows.values() if f.device_id == device_id]

    def member_of_device(self, device_id: str) -> Member | None:
        dev = self.devices.get(device_id)
        if dev is None or dev.user_id is None:
            return None
        return self.members.get((dev.community_id, dev.user_id))

    def supplier_owns(self, supplier_id: str, device_id: str, flow_id: str | None = None) -> bool:
        """A supplier may write a device (and flow) only if the registry says it supplies it."""
        dev = self.devices.get(device_id)
        if dev is None or dev.supplier_id != supplier_id:
            return False
        if flow_id is None:
            return True
        flow = self.flows.get(flow_id)
        return flow is not None and flow.device_id == device_id and flow.supplier_id == supplier_id

    def to_json(self) -> bytes:
        return orjson.dumps({
            "communities": [asdict(c) for c in self.communities.values()],
            "suppliers": [asdict(s) for s in self.suppliers.values()],
            "devices": [asdict(d) for d in self.devices.values()],
            "flows": [asdict(f) for f in self.flows.values()],
            "members": [asdict(m) for m in self.members.values()],
            "credentials_version": self.credentials_version,
            "revision": self.revision,
        }, option=orjson.OPT_SORT_KEYS)

    @property
    def version(self) -> str:
        return hashlib.sha256(self.to_json()).hexdigest()[:16]

    @classmethod
    def from_json(cls, data: bytes) -> RegistrySnapshot:
        doc = orjson.loads(data)

        def dt(v: Any) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        snap = cls(credentials_version=doc.get("credentials_version", ""), revision=int(doc.get("revision", 0)))
        for c in doc["communities"]:
            snap.communities[c["id"]] = Community(**c)
        for s in doc["suppliers"]:
            snap.suppliers[s["id"]] = Supplier(**{**s, "communities": tuple(s["communities"])})
        for d in doc["devices"]:
            snap.devices[d["id"]] = Device(**{**d, "start_ts": dt(d["start_ts"]), "end_ts": dt(d["end_ts"])})
        for f in doc["flows"]:
            snap.flows[f["id"]] = Flow(**{**f, "start_ts": dt(f["start_ts"]), "end_ts": dt(f["end_ts"])})
        for m in doc["members"]:
            snap.members[(m["community_id"], m["user_id"])] = Member(**m)
        return snap
