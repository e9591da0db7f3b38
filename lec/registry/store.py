"""Registry access: migrations, loading community files, export, summaries and snapshots."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, delete, func, insert, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from lec.errors import RegistryError
from lec.registry import schema as t
from lec.registry import settlement
from lec.registry.community_file import CommunityFile, read_community_file
from lec.registry.passwords import hash_password, needs_rehash, verify_password
from lec.registry.secrets import SecretStore
from lec.registry.snapshot import (
    ACCOUNT_CONSUMPTION,
    ACCOUNT_NONE,
    ACCOUNT_PRODUCTION,
    Community,
    Device,
    Flow,
    Member,
    RegistrySnapshot,
    Supplier,
)

ACCOUNT_CODES = {"none": ACCOUNT_NONE, "consumption": ACCOUNT_CONSUMPTION, "production": ACCOUNT_PRODUCTION}
ACCOUNT_NAMES = {v: k for k, v in ACCOUNT_CODES.items()}


def _private_sqlite_file(path: Path) -> None:
    """The registry holds password hashes: its SQLite file (and SQLite's journals, which copy the
    file's mode) is readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)


def unknown_community(community_id: str, known: Iterable[str]) -> str:
    """The one message for a community id the registry lacks: which run dir was looked in, and what to do."""
    from lec.config import settings

    names = ", ".join(sorted(known)) or "none"
    return (f"community '{community_id}' is not in the registry of run dir {settings().resolved_run_dir()} "
            f"(known: {names}); run `lec demo` or `lec registry load FILE`, or point LEC_RUN_DIR at the run dir "
            "that holds it")


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class Registry:
    """The registry database (SQLite by default, PostgreSQL in production)."""

    def __init__(self, url: str, secrets: SecretStore | None = None) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            _private_sqlite_file(Path(url.removeprefix("sqlite:///")))
        self.engine: Engine = create_engine(url, future=True)
        self.secrets = secrets

    def __repr__(self) -> str:
        return f"Registry({self.engine.url.render_as_string(hide_password=True)})"

    # -- schema ---------------------------------------------------------------------------
    def migrate(self) -> str:
        """Bring the schema to the newest migration; returns the revision."""
        from lec.registry.migrate import upgrade_to_head

        return upgrade_to_head(self.engine)

    def table_names(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    # -- load -----------------------------------------------------------------------------
    def load_file(self, path: Path) -> CommunityFile:
        doc = read_community_file(path)
        self.load(doc)
        return doc

    def load_steps(self, doc: CommunityFile) -> int:
        """How many times :meth:`load` calls ``advance``: one per user, supplier, device and flow row,
        and one per device secret (the total of a progress bar)."""
        secrets = len(doc.devices) if self.secrets is not None else 0
        return len(doc.users) + len(doc.suppliers) + len(doc.devices) + len(doc.flows) + secrets

    def load(self, doc: CommunityFile, advance: Callable[[int], None] | None = None) -> None:
        """Insert or replace one community and everything it owns, in one transaction.

        ``advance(n)`` is told of each row written (a progress bar: a large community takes a while)."""
        cid = doc.community.id
        step = advance or (lambda n: None)
        try:
            with self.engine.begin() as conn:
                self._refuse_foreign_ids(conn, doc)
                kept = self._kept_credentials(conn, doc)
                self._delete_community_rows(conn, cid, doc)
                self._insert(conn, doc, kept, step)
                bump_revision(conn)
        except SQLAlchemyError as exc:
            raise RegistryError(f"could not load community '{cid}': {exc.orig if hasattr(exc, 'orig') else exc}") from exc
        if self.secrets is not None:
            self.secrets.ensure_many([dev.id for dev in doc.devices])
            step(len(doc.devices))

    def _refuse_foreign_ids(self, conn: Connection, doc: CommunityFile) -> None:
        """A community file may only name ids that are new or already its own (multi-tenant isolation):
        otherwise loading it would move another community's meter, or reset a supplier's password
        for every community it serves."""
        cid = doc.community.id
        taken: list[str] = []

        def check(kind: str, owners: dict[str, set[str]]) -> None:
            for oid, communities in sorted(owners.items()):
                others = sorted(communities - {cid})
                if others:
                    taken.append(f"{kind} '{oid}' (community {', '.join(repr(o) for o in others)})")

        def owners(rows: Any) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for oid, owner in rows:
                out.setdefault(oid, set()).add(owner)
            return out

        user_ids = [u.id for u in doc.users]
        sup_ids = [s.id for s in doc.suppliers]
        dev_ids = [d.id for d in doc.devices]
        flow_ids = [f.id for f in doc.flows]
        check("user", owners(conn.execute(select(t.users_communities.c.user_id, t.users_communities.c.community_id)
                                          .where(t.users_communities.c.user_id.in_(user_ids)))))
        check("supplier", owners(conn.execute(
            select(t.suppliers_communities.c.supplier_id, t.suppliers_communities.c.community_id)
            .where(t.suppliers_communities.c.supplier_id.in_(sup_ids)))))
        check("device", owners(conn.execute(select(t.devices.c.id, t.devices.c.community_id)
                                            .where(t.devices.c.id.in_(dev_ids)))))
        flow_owner = (select(t.flows.c.id, t.devices.c.community_id)
                      .join(t.devices, t.devices.c.id == t.flows.c.device_id).where(t.flows.c.id.in_(flow_ids)))
        check("flow", owners(conn.execute(flow_owner)))
        check("flow", owners(conn.execute(select(t.flows_communities.c.flow_id, t.flows_communities.c.community_id)
                                          .where(t.flows_communities.c.flow_id.in_(flow_ids)))))
        if taken:
            raise RegistryError(f"community '{cid}' names ids that belong to other communities: "
                                f"{'; '.join(dict.fromkeys(taken))}. Ids are global: choose other ids, or "
                                "remove them from the other community first")

    def _kept_credentials(self, conn: Connection, doc: CommunityFile) -> dict[str, str]:
        """Stored password hashes a reload keeps: when the file gives none (an export carries none), or
        its password is the one already stored (no new hash, so verified-login caches stay valid)."""
        ids = [s.id for s in doc.suppliers if not s.password_hash]
        stored = {r.id: r.password_hash for r in conn.execute(
            select(t.suppliers.c.id, t.suppliers.c.password_hash).where(t.suppliers.c.id.in_(ids)))
            if r.password_hash}
        kept = {}
        for s in doc.suppliers:
            old = stored.get(s.id)
            if old and (s.password is None or (not needs_rehash(old) and verify_password(s.password, old))):
                kept[s.id] = old
        return kept

    def _delete_community_rows(self, conn: Connection, cid: str, doc: CommunityFile) -> None:
        flow_ids = [f.id for f in doc.flows]
        dev_ids = [d.id for d in doc.devices]
        old_flows = select(t.flows_communities.c.flow_id).where(t.flows_communities.c.community_id == cid)
        old_devs = select(t.devices.c.id).where(t.devices.c.community_id == cid)
        for table, col in ((t.flows_communities, "flow_id"), (t.signallabels, "flow_id"),
                           (t.measurementstables, "flow_id")):
            conn.execute(delete(table).where(table.c[col].in_(flow_ids) | table.c[col].in_(old_flows)))
        conn.execute(delete(t.flows).where(t.flows.c.id.in_(flow_ids) | t.flows.c.device_id.in_(old_devs)))
        settlement.delete_rows(conn, cid, dev_ids)
        conn.execute(delete(t.devices).where(t.devices.c.id.in_(dev_ids) | (t.devices.c.community_id == cid)))
        conn.execute(delete(t.users_communities).where(t.users_communities.c.community_id == cid))
        conn.execute(delete(t.users_roles).where(t.users_roles.c.community_id == cid))
        conn.execute(delete(t.suppliers_communities).where(t.suppliers_communities.c.community_id == cid))
        conn.execute(delete(t.communities).where(t.communities.c.id == cid))

    def _insert(self, conn: Connection, doc: CommunityFile, kept: dict[str, str] | None = None,
                step: Callable[[int], None] = lambda n: None) -> None:
        c = doc.community
        cid = c.id
        conn.execute(insert(t.communities).values(**c.model_dump()))
        role_ids = {r.code: r.id for r in conn.execute(select(t.roles)).all()}
        now = datetime.now(UTC)
        for u in doc.users:
            conn.execute(delete(t.users).where(t.users.c.id == u.id))
            conn.execute(insert(t.users).values(id=u.id, name=u.name, email=u.email, active=True, created_at=now))
            conn.execute(insert(t.users_communities).values(
                user_id=u.id, community_id=cid, wallet=u.wallet, member_role=u.role, joined_at=now, active=True))
            for role in sorted(set(u.roles) | {"member"}):
                conn.execute(insert(t.users_roles).values(user_id=u.id, role_id=role_ids[role], community_id=cid))
            step(1)
        for s in doc.suppliers:
            pw_hash = s.password_hash or (kept or {}).get(s.id) or (hash_password(s.password) if s.password else None)
            conn.execute(delete(t.suppliers).where(t.suppliers.c.id == s.id))
            conn.execute(insert(t.suppliers).values(
                id=s.id, name=s.name, kind=s.kind, contact_email=s.contact_email, password_hash=pw_hash,
                ssh_public_keys="\n".join(s.ssh_public_keys), active=True))
            conn.execute(insert(t.suppliers_communities).values(supplier_id=s.id, community_id=cid))
            step(1)
        # Devices and flows as one executemany each (a statement per row cost ~1 ms of SQLAlchemy
        # compilation: seconds for a distributor's thousands of meters).
        devices = [dict(
            id=d.id, community_id=cid, user_id=d.user, supplier_id=d.supplier, name=d.name,
            devicestatus=d.status, usetype=d.usetype, identificationmethod=d.identificationmethod,
            manufacturer=d.manufacturer, model=d.model, latitude=d.latitude, longitude=d.longitude,
            altitude=d.altitude, address=d.address, start_ts=_utc(d.start), end_ts=_utc(d.end),
            rated_power_w=d.rated_power_w) for d in doc.devices]
        if devices:
            conn.execute(insert(t.devices), devices)
            step(len(devices))
        flows = [dict(
            id=f.id, device_id=f.device, supplier_id=f.supplier, name=f.name, channel=f.channel,
            datasyntax=f.syntax, format_reference=f.format_reference, send_frequency=f.send_frequency,
            send_cron=f.send_cron, measure_frequency=f.measure_frequency, measure_cron=f.measure_cron,
            derogation_s=f.derogation_s, measurementtype=f.measurement, gdprclass=f.gdprclass,
            use_rights=f.use_rights, on_error=f.on_error, start_ts=_utc(f.start), end_ts=_utc(f.end),
            active=f.active, interval_s=f.interval_s, value_kind=f.value_kind,
            sign_convention=f.sign_convention, units=f.units, mapping=f.mapping, ts_format=f.ts_format,
            timezone=f.timezone, limits=f.limits, syntax_options=f.syntax_options,
            counter_max_mwh=f.counter_max_mwh, max_lateness_s=f.max_lateness_s) for f in doc.flows]
        if flows:
            conn.execute(insert(t.flows), flows)
            conn.execute(insert(t.flows_communities), [
                {"flow_id": f.id, "community_id": cid, "accountconsumption": ACCOUNT_CODES[f.account]} for f in doc.flows])
            conn.execute(insert(t.measurementstables), [{"flow_id": f.id, "table_name": "readings"} for f in doc.flows])
            labels = [{"flow_id": f.id, "label": f.mapping.get(quantity, quantity), "quantity": quantity, "unit": unit}
                      for f in doc.flows for quantity, unit in f.units.items()]
            if labels:
                conn.execute(insert(t.signallabels), labels)
            step(len(flows))
        settlement.insert_rows(conn, doc)

    # -- read -----------------------------------------------------------------------------
    def community_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(t.communities.c.id).order_by(t.communities.c.id))]

    def summary(self) -> dict[str, Any]:
        """Counts per community, for ``lec registry show``."""
        out: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for cid, name in conn.execute(select(t.communities.c.id, t.communities.c.name)):
                def count(table: Any, col: Any, cid: str = cid) -> int:
                    return conn.execute(select(func.count()).select_from(table).where(col == cid)).scalar_one()
                out[cid] = {
                    "name": name,
                    "members": count(t.users_communities, t.users_communities.c.community_id),
                    "suppliers": count(t.suppliers_communities, t.suppliers_communities.c.community_id),
                    "devices": count(t.devices, t.devices.c.community_id),
                    "flows": count(t.flows_communities, t.flows_communities.c.community_id),
                }
        return out

    def export(self, community_id: str) -> dict[str, Any]:
        """The community as a dict in the ``lec registry load`` format (no secrets, no hashes)."""
        snap = self.snapshot()
        if community_id not in snap.communities:
            raise RegistryError(unknown_community(community_id, snap.communities))
        with self.engine.connect() as conn:
            crow = {str(k): v for k, v in conn.execute(select(t.communities).where(t.communities.c.id == community_id)).one()._mapping.items()}
            crow.pop("active", None)
            users = conn.execute(
                select(t.users, t.users_communities.c.wallet, t.users_communities.c.member_role)
                .join(t.users_communities, t.users_communities.c.user_id == t.users.c.id)
                .where(t.users_communities.c.community_id == community_id).order_by(t.users.c.id)).all()
            roles = conn.execute(
                select(t.users_roles.c.user_id, t.roles.c.code).join(t.roles)
                .where(t.users_roles.c.community_id == community_id)).all()
            sups = conn.execute(
                select(t.suppliers).join(t.suppliers_communities)
                .where(t.suppliers_communities.c.community_id == community_id).order_by(t.suppliers.c.id)).all()
            devs = conn.execute(select(t.devices).where(t.devices.c.community_id == community_id)
                                .order_by(t.devices.c.id)).all()
            flows = conn.execute(
                select(t.flows, t.flows_communities.c.accountconsumption).join(t.flows_communities)
                .where(t.flows_communities.c.community_id == community_id).order_by(t.flows.c.id)).all()
        user_roles: dict[str, list[str]] = {}
        for uid, code in roles:
            user_roles.setdefault(uid, []).append(code)

        def drop_none(d: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in d.items() if v is not None and v != "" and v != {} and v != []}

        out = {
            "community": drop_none(crow),
            "users": [drop_none({"id": u.id, "name": u.name, "email": u.email, "wallet": u.wallet,
                                 "role": u.member_role,
                                 "roles": sorted(set(user_roles.get(u.id, [])) - {"member"})}) for u in users],
            "suppliers": [drop_none({"id": s.id, "name": s.name, "kind": s.kind, "contact_email": s.contact_email,
                                     "ssh_public_keys": [k for k in (s.ssh_public_keys or "").splitlines() if k]})
                          for s in sups],
            "devices": [drop_none({
                "id": d.id, "user": d.user_id, "supplier": d.supplier_id, "name": d.name, "status": d.devicestatus,
                "usetype": d.usetype, "identificationmethod": d.identificationmethod,
                "manufacturer": d.manufacturer, "model": d.model, "latitude": d.latitude,
                "longitude": d.longitude, "altitude": d.altitude, "address": d.address,
                "start": _utc(d.start_ts), "end": _utc(d.end_ts), "rated_power_w": d.rated_power_w}) for d in devs],
            "flows": [drop_none({
                "id": f.id, "device": f.device_id, "supplier": f.supplier_id, "name": f.name,
                "channel": f.channel, "syntax": f.datasyntax, "format_reference": f.format_reference,
                "measurement": f.measurementtype, "account": ACCOUNT_NAMES[f.accountconsumption],
                "send_frequency": f.send_frequency, "send_cron": f.send_cron,
                "measure_frequency": f.measure_frequency, "measure_cron": f.measure_cron,
                "derogation_s": f.derogation_s, "gdprclass": f.gdprclass, "use_rights": f.use_rights,
                "on_error": f.on_error, "start": _utc(f.start_ts), "end": _utc(f.end_ts), "active": f.active,
                "interval_s": f.interval_s, "value_kind": f.value_kind, "sign_convention": f.sign_convention,
                "units": f.units, "mapping": f.mapping, "ts_format": f.ts_format, "timezone": f.timezone,
                "limits": f.limits, "syntax_options": f.syntax_options, "counter_max_mwh": f.counter_max_mwh,
                "max_lateness_s": f.max_lateness_s,
            }) for f in flows],
        }
        with self.engine.connect() as conn:
            extra = settlement.read(conn, community_id)
        for d in out["devices"]:
            if d["id"] in extra["perimeters"]:
                d["perimeters"] = [drop_none(p) for p in extra["perimeters"][d["id"]]]
            if d["id"] in extra["plants"]:
                d["plant"] = drop_none(extra["plants"][d["id"]])
        if extra["statute"]:
            out["statute"] = extra["statute"]
        return out

    def supplier_password_hashes(self) -> dict[str, str]:
        """Supplier id -> password hash, for generating broker/SSH credentials."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.suppliers.c.id, t.suppliers.c.password_hash)
                                .where(t.suppliers.c.active.is_(True))).all()
        return {r.id: r.password_hash for r in rows if r.password_hash}

    def replace_password_hash(self, supplier_id: str, old_hash: str, new_hash: str) -> bool:
        """Compare-and-set a supplier's hash (transparent rehash at login); False if it changed meanwhile."""
        with self.engine.begin() as conn:
            done = conn.execute(t.suppliers.update().where(
                (t.suppliers.c.id == supplier_id) & (t.suppliers.c.password_hash == old_hash))
                .values(password_hash=new_hash)).rowcount
            if done:
                bump_revision(conn)  # the credentials digest of the next snapshot changes
        return bool(done)

    def supplier_ssh_keys(self) -> dict[str, list[str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.suppliers.c.id, t.suppliers.c.ssh_public_keys)).all()
        return {r.id: [k for k in (r.ssh_public_keys or "").splitlines() if k.strip()] for r in rows}

    def snapshot(self) -> RegistrySnapshot:
        """Read the whole registry into memory for the hot paths."""
        snap = RegistrySnapshot()
        freq = {}
        with self.engine.connect() as conn:
            # read first, in the same transaction as the rest: the content is at least this revision
            snap.revision = conn.execute(select(t.registry_revision.c.revision)).scalar() or 0
            freq = {r.code: r.seconds for r in conn.execute(select(t.t_frequence))}
            for r in conn.execute(select(t.communities)):
                snap.communities[r.id] = Community(id=r.id, name=r.name, timezone=r.timezone, kind=r.kind)
            links: dict[str, list[str]] = {}
            for r in conn.execute(select(t.suppliers_communities)):
                links.setdefault(r.supplier_id, []).append(r.community_id)
            creds = hashlib.sha256()
            for r in conn.execute(select(t.suppliers).order_by(t.suppliers.c.id)):
                creds.update(orjson.dumps([r.id, r.password_hash, r.ssh_public_keys, r.active]))
                snap.suppliers[r.id] = Supplier(id=r.id, name=r.name, communities=tuple(sorted(links.get(r.id, []))),
                                                active=r.active)
            snap.credentials_version = creds.hexdigest()[:16]
            for r in conn.execute(select(t.devices)):
                snap.devices[r.id] = Device(id=r.id, community_id=r.community_id, supplier_id=r.supplier_id,
                                            user_id=r.user_id, status=r.devicestatus, start_ts=_utc(r.start_ts),
                                            end_ts=_utc(r.end_ts), rated_power_w=r.rated_power_w)
            for r in conn.execute(select(t.users_communities)):
                snap.members[(r.community_id, r.user_id)] = Member(
                    user_id=r.user_id, community_id=r.community_id, wallet=r.wallet, role=r.member_role,
                    active=r.active)
            for r in conn.execute(select(t.flows, t.flows_communities.c.community_id,
                                         t.flows_communities.c.accountconsumption).join(t.flows_communities)):
                snap.flows[r.id] = Flow(
                    id=r.id, device_id=r.device_id, supplier_id=r.supplier_id, community_id=r.community_id,
                    channel=r.channel, syntax=r.datasyntax, measurement=r.measurementtype,
                    account=r.accountconsumption, interval_s=r.interval_s, value_kind=r.value_kind,
                    sign_convention=r.sign_convention, units=dict(r.units or {}), mapping=dict(r.mapping or {}),
                    ts_format=r.ts_format, timezone=r.timezone, limits=dict(r.limits or {}),
                    syntax_options=dict(r.syntax_options or {}),
                    send_frequency_s=freq.get(r.send_frequency) if r.send_frequency else None,
                    derogation_s=r.derogation_s, start_ts=_utc(r.start_ts), end_ts=_utc(r.end_ts),
                    active=r.active, counter_max_mwh=r.counter_max_mwh, on_error=r.on_error,
                    max_lateness_s=r.max_lateness_s)
        return snap

    # -- erase (GDPR art. 17) ---------------------------------------------------------------
    def erase_device(self, device_id: str) -> None:
        """Delete a device, its flows and its secret from the registry."""
        with self.engine.begin() as conn:
            flow_ids = select(t.flows.c.id).where(t.flows.c.device_id == device_id)
            for table in (t.flows_communities, t.signallabels, t.measurementstables, t.derivedtimeseries_sources):
                conn.execute(delete(table).where(table.c.flow_id.in_(flow_ids)))
            conn.execute(delete(t.flows).where(t.flows.c.device_id == device_id))
            conn.execute(delete(t.anomalies).where(t.anomalies.c.device_id == device_id))
            settlement.delete_rows(conn, "", [device_id])  # perimeters and plant terms (SQLite has no cascade)
            conn.execute(delete(t.devices).where(t.devices.c.id == device_id))
            bump_revision(conn)
        if self.secrets is not None:
            self.secrets.delete(device_id)

    def devices_of_user(self, user_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(t.devices.c.id).where(t.devices.c.user_id == user_id))]

    def erase_user(self, user_id: str) -> list[str]:
        """Delete a user, their devices (with secrets) and memberships; returns the device ids."""
        devices = self.devices_of_user(user_id)
        for dev in devices:
            self.erase_device(dev)
        with self.engine.begin() as conn:
            for table in (t.users_communities, t.users_roles, t.clusters_users):
                conn.execute(delete(table).where(table.c.user_id == user_id))
            conn.execute(delete(t.users).where(t.users.c.id == user_id))
            bump_revision(conn)
        return devices


def bump_revision(conn: Connection) -> int:
    """Add one to the registry's revision inside the caller's transaction; returns the new revision."""
    if not conn.execute(t.registry_revision.update().where(t.registry_revision.c.id == 1)
                        .values(revision=t.registry_revision.c.revision + 1)).rowcount:
        conn.execute(t.registry_revision.insert().values(id=1, revision=1))
    return int(conn.execute(select(t.registry_revision.c.revision)).scalar_one())


def open_registry(settings: Any = None, *, migrate: bool = True) -> Registry:
    """The registry and its secret store as the settings describe them."""
    from lec.config import settings as current

    s = settings or current()
    reg = Registry(s.resolved_registry_url(), SecretStore(s.resolved_secrets_url()))
    if migrate:
        reg.migrate()
    return reg
