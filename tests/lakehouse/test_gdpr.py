"""`lec gdpr erase`: rows gone from every lake table, old versions unreadable, registry and secret gone."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from deltalake.exceptions import DeltaError

from lakehouse.gdpr.erase import ErasureError, erase
from lakehouse.sink.config import SinkConfig
from lakehouse.sink.worker import DeltaSink
from lakehouse.tables import ANOMALIES, DEADLETTER, READINGS, open_table, query, table_uri
from lec.registry.secrets import MissingSecretError
from tests.support.sink_sample import produce, sample_anomaly, sample_deadletter, sample_readings

DEVICES = ["IT001E00000001", "IT001E00000002", "PV-0001"]  # examples/community.yaml: anna, bruno, bruno


def _fill_lake(bootstrap: str, root: Path) -> None:
    """Readings, anomalies, dead letters of the example devices, a KPI table and anchored leaves."""
    tag = uuid.uuid4().hex[:8]
    specs = tuple(replace(s, topic=f"{s.topic}.{tag}") for s in (READINGS, DEADLETTER, ANOMALIES))
    readings = [dict(r, device_id=DEVICES[i % 3]) for i, r in enumerate(sample_readings(300))]
    produce(bootstrap, readings, specs[0].topic)
    produce(bootstrap, [sample_deadletter(i, device=DEVICES[i % 3]) for i in range(6)], specs[1].topic)
    produce(bootstrap, [sample_anomaly(i, device=DEVICES[i % 3]) for i in range(6)], specs[2].topic)
    DeltaSink(bootstrap, str(root), SinkConfig(commit_interval_s=0.2, commit_rows=100, maintain_interval_s=0),
              tables=specs).run(max_idle_s=10)  # a busy broker may take seconds to serve the first fetch
    write_deltalake(f"{root}/kpi/member_daily", pa.table({  # the KPI layout: member_id = user or device:<id>
        "member_id": ["u-anna", "u-bruno", "u-anna", "device:PV-0001"], "day": ["2024-01-01"] * 4,
        "kwh": [1.0, 2.0, 3.0, 4.0]}))
    write_deltalake(f"{root}/oracle_leaves", pa.table({  # anchored Merkle leaves (the oracle's layout)
        "qh": [1, 1, 1], "device_id": DEVICES, "flow_id": ["f1", "f2", "f3"], "device_key": ["k1", "k2", "k3"],
        "energy_mwh": [5, 6, 7], "leaf_hash": ["h1", "h2", "h3"]}))
    write_deltalake(f"{root}/kpi/community_daily", pa.table({"community_id": ["cer-a"], "kwh": [6.0]}))


def _rows_of(root: Path, name: str, devices: list[str], version: int | None = None) -> int:
    dt = open_table(table_uri(name, root=str(root)), version=version)
    ids = ", ".join(f"'{d}'" for d in devices)
    return query(f"SELECT count(*) n FROM t WHERE device_id IN ({ids})", {"t": dt}).column("n")[0].as_py()


def _old_version_gone_or_clean(root: Path, name: str, version: int, devices: list[str]) -> None:
    try:
        n = _rows_of(root, name, devices, version=version)
    except DeltaError:  # version or files gone: time travel fails, as intended
        return
    assert n == 0, f"version {version} of {name} still returns {n} rows of {devices}"


def test_erase_device_everywhere(kafka_bootstrap: str, settings, registry) -> None:
    root = Path(settings.resolved_lake_uri())
    _fill_lake(kafka_bootstrap, root)
    versions = {n: open_table(table_uri(n, root=str(root))).version() for n in ("readings", "deadletter", "anomalies")}
    assert versions["readings"] > 0  # several commits: older versions hold the device's files too
    assert _rows_of(root, "readings", ["PV-0001"]) == 100

    report = erase(settings, device="PV-0001")
    assert report["tables"] == {"readings": 100, "deadletter": 2, "anomalies": 2, "oracle_leaves": 1,
                                "kpi/member_daily": 1}
    leaves = query("SELECT device_id, flow_id, device_key, leaf_hash FROM t ORDER BY leaf_hash",
                   {"t": open_table(f"{root}/oracle_leaves")}).to_pylist()
    # the leaf stays (other members' proofs need it), without anything that identifies the device
    assert leaves[2] == {"device_id": None, "flow_id": None, "device_key": None, "leaf_hash": "h3"}
    assert leaves[0]["device_id"] == "IT001E00000001"
    for name, version in versions.items():
        assert _rows_of(root, name, ["PV-0001"]) == 0
        for v in range(version + 1):
            _old_version_gone_or_clean(root, name, v, ["PV-0001"])
    assert _rows_of(root, "readings", ["IT001E00000001", "IT001E00000002"]) == 200  # others untouched
    assert registry.devices_of_user("u-bruno") == ["IT001E00000002"]
    with pytest.raises(MissingSecretError):
        registry.secrets.get("PV-0001")
    registry.secrets.get("IT001E00000002")  # other devices keep their secret


def test_erase_user_with_cli(kafka_bootstrap: str, settings, registry, tmp_path: Path) -> None:
    root = Path(settings.resolved_lake_uri())
    _fill_lake(kafka_bootstrap, root)
    kpi_version = open_table(f"{root}/kpi/member_daily").version()
    env = {"LEC_RUN_DIR": str(settings.resolved_run_dir()), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "lakehouse.cli", "gdpr", "erase", "--user", "u-bruno"],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["registry_devices"]) == ["IT001E00000002", "PV-0001"]
    assert report["tables"]["readings"] == 200 and report["tables"]["kpi/member_daily"] == 2
    assert "kpi/community_daily" not in report["tables"]  # no device_id/user_id column: not touched
    assert _rows_of(root, "readings", ["IT001E00000002", "PV-0001"]) == 0
    assert _rows_of(root, "readings", ["IT001E00000001"]) == 100
    kpi = query("SELECT member_id FROM t", {"t": open_table(f"{root}/kpi/member_daily")}).column("member_id").to_pylist()
    assert kpi == ["u-anna", "u-anna"]
    try:
        old = query("SELECT count(*) n FROM t WHERE member_id = 'u-bruno'",
                    {"t": open_table(f"{root}/kpi/member_daily", version=kpi_version)}).column("n")[0].as_py()
    except DeltaError:  # time travel to the erased version fails
        old = 0
    assert old == 0
    assert registry.devices_of_user("u-bruno") == []


def test_erase_needs_exactly_one_target(settings) -> None:
    with pytest.raises(ErasureError, match="exactly one"):
        erase(settings)
    with pytest.raises(ErasureError, match="exactly one"):
        erase(settings, user="u-anna", device="PV-0001")


def _configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    from confluent_kafka.admin import AdminClient

    from lakehouse.gdpr.kafka import topic_configs

    return topic_configs(AdminClient({"bootstrap.servers": bootstrap}), names)


def test_erase_bounds_kafka_retention_and_tombstones_compacted_keys(fresh_kafka, settings, registry) -> None:
    """Reading topics keep records at most kafka_retention_hours (stated in the receipt); compacted
    topics keyed by device get a tombstone; the registry snapshot is republished without the device."""
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient, NewTopic

    from lec import topics
    from lec.io import Producer
    from lec.kafka import consumer_config, ensure_topics
    from streams.registry_sync import publish

    _, bootstrap = fresh_kafka
    admin = AdminClient({"bootstrap.servers": bootstrap})
    changelog = "lec-streams-state-changelog"
    for fut in admin.create_topics([NewTopic(topics.RAW, 1, 1),  # an old topic: created without a bound
                                    NewTopic(changelog, 1, 1, config={"cleanup.policy": "compact"})]).values():
        fut.result(15)
    ensure_topics(bootstrap, (topics.READINGS, topics.REGISTRY), retention_hours=24 * 30)  # longer than the bound
    publish(bootstrap, registry.snapshot())
    p = Producer(bootstrap)
    for key in ("PV-0001", "IT001E00000001"):
        p.produce(changelog, b'{"state": 1}', key.encode())
    p.produce(topics.READINGS, b'{"device_id": "PV-0001"}', b"PV-0001")
    p.flush(10)

    s = settings.model_copy(update={"kafka_bootstrap": bootstrap, "kafka_retention_hours": 24})
    receipt = erase(s, device="PV-0001")
    kafka = receipt["kafka"]
    assert kafka["residual_window"][topics.RAW] == "24h" and kafka["residual_window"][topics.READINGS] == "24h"
    assert set(kafka["retention_set"]) == {topics.RAW, topics.READINGS}
    conf = _configs(bootstrap, [topics.RAW, topics.READINGS])
    assert {t: c["retention.ms"] for t, c in conf.items()} == {topics.RAW: "86400000", topics.READINGS: "86400000"}
    assert kafka["tombstones"][changelog] >= 1 and "compaction" in kafka["residual_window"][changelog]

    c = Consumer(consumer_config(bootstrap, "gdpr-check"))
    c.subscribe([changelog, topics.REGISTRY])
    last: dict[tuple[str, bytes], bytes | None] = {}
    idle = 0
    while idle < 5:
        msg = c.poll(1.0)
        if msg is None:
            idle += 1
            continue
        if not msg.error():
            last[(msg.topic(), msg.key())] = msg.value()
    c.close()
    assert last[(changelog, b"PV-0001")] is None  # tombstone
    assert last[(changelog, b"IT001E00000001")] is not None  # other devices untouched
    snapshot = last[(topics.REGISTRY, b"snapshot")]
    assert b"PV-0001" not in snapshot and b"IT001E00000001" in snapshot

    log = (settings.resolved_run_dir() / "gdpr" / "erasure-log.jsonl").read_text()
    assert receipt["request_id"] in log and "PV-0001" not in log and "u-bruno" not in log
    assert '"24h"' in log  # the residual window is in the register


def test_new_reading_topics_are_created_with_the_bound(fresh_kafka) -> None:
    from lec import topics
    from lec.kafka import ensure_topics

    _, bootstrap = fresh_kafka
    ensure_topics(bootstrap, retention_hours=168)
    conf = _configs(bootstrap, [topics.READINGS, topics.FEEDBACK, topics.REGISTRY])
    assert conf[topics.READINGS]["retention.ms"] == conf[topics.FEEDBACK]["retention.ms"] == str(168 * 3_600_000)
    assert conf[topics.REGISTRY]["cleanup.policy"] == "compact"


def test_erased_leaves_of_one_supplier_all_stay(settings, registry) -> None:
    """Two erased devices of the same supplier leave two blanked leaves, not one: the anchored root
    of the quarter-hour must still rebuild for the other members' take-outs (bug: they collapsed)."""
    from oracle.store import LeafRow, OracleLake

    root = settings.resolved_lake_uri()
    lake = OracleLake(root)
    lake.append_leaves([LeafRow("cer-a", 900, 1, "sup-1", d, f"f-{d}", 1, f"k-{d}", 5, "0xw", f"h-{d}")
                        for d in ("IT001E00000001", "IT001E00000002", "PV-0001")])
    erase(settings, user="u-bruno")  # IT001E00000002 and PV-0001: both sup-1 here
    leaves = lake.leaves("cer-a", 900, 1)
    assert sorted(r.leaf_hash for r in leaves) == ["h-IT001E00000001", "h-IT001E00000002", "h-PV-0001"]
    assert sorted(str(r.device_id) for r in leaves) == ["IT001E00000001", "None", "None"]


def test_sftp_erasure_keeps_other_members_rows_of_a_shared_file(tmp_path: Path) -> None:
    """A utility's daily file carries every POD: erasing one POD's flow removes its rows only; the
    folder named after the erased flow goes; a file of that POD alone is deleted."""
    from lakehouse.gdpr.files import Subject, erase_sftp, scan

    root = tmp_path / "sftp"
    folder = root / "sup-utility" / "processed" / "f-IT001E00000004-load"
    folder.mkdir(parents=True)
    (folder / "curva_20160326.csv").write_text("POD;DATA\nIT001E00000004;1,0\nIT001E00000005;2,0\n")
    (folder / "curva_20160327.csv").write_text("POD;DATA\nIT001E00000004;3,0\n")
    other = root / "sup-utility" / "processed" / "f-IT001E00000005-load"
    other.mkdir(parents=True)
    (other / "curva_20160328.csv").write_text("POD;DATA\nIT001E00000004;5,0\nIT001E00000005;6,0\n")
    counts = erase_sftp(root, Subject(None, ["IT001E00000004"], ["f-IT001E00000004-load"]))
    assert scan(root, ["IT001E00000004", "f-IT001E00000004-load"]) == []
    kept = sorted(p.read_text() for p in root.rglob("*.csv"))
    assert kept == ["POD;DATA\nIT001E00000005;2,0\n", "POD;DATA\nIT001E00000005;6,0\n"]
    assert counts["files"] == 1 and counts["folders"] == 1 and counts["lines"] == 2


def _raw_erasure_checks(raw: Any) -> None:
    """Archive a shared curve file and a POD-only file of an erased flow plus another flow's shared
    file, erase the POD: its lines and files are gone, other PODs' lines stay with a consistent index."""
    import hashlib
    import tempfile

    from lakehouse.gdpr.files import Subject
    from lakehouse.rawzone import erase_raw

    files = [("f-IT001E00000004-load", "curva_20160326.csv", "POD;DATA\nIT001E00000004;1,0\nIT001E00000005;2,0\n"),
             ("f-IT001E00000004-load", "curva_20160327.csv", "POD;DATA\nIT001E00000004;3,0\n"),
             ("f-IT001E00000005-load", "curva_20160328.csv", "POD;DATA\nIT001E00000004;5,0\nIT001E00000005;6,0\n"),
             ("f-IT001E00000005-load", "curva_20160329.csv", "POD;DATA\nIT001E00000005;7,0\n")]
    for flow, name, text in files:
        with tempfile.TemporaryFile() as fh:
            fh.write(text.encode())
            fh.flush()
            raw.archive_fd("sup-utility", flow, name, fh.fileno(), hashlib.sha256(text.encode()).hexdigest())
    names: list[str] = []
    subject = Subject(None, ["IT001E00000004"], ["f-IT001E00000004-load"])
    counts = erase_raw(raw, subject.flow_ids, subject.pattern(), names)
    assert counts == {"files": 1, "lines": 2, "kept_files": 2, "folders": 1}
    assert names == ["curva_20160327.csv"]
    everything = list(raw.store.walk(""))
    assert not [p for p in everything if "IT001E00000004" in p]
    entries = raw.ls("sup-utility")
    got = {}
    for e in entries:  # every original verifies against its sidecar and is the one its marker names
        dest = Path(tempfile.mkdtemp()) / "x"
        assert raw.get(e.path, dest) == e.sha256
        got[e.path.rsplit("/", 1)[1]] = dest.read_text()
        flow_dir = "/".join(e.path.split("/")[:2])
        with raw.store.read(f"{flow_dir}/_sha256/{e.sha256}") as fh:
            assert fh.read().decode() == e.path
        assert "IT001E00000004" not in dest.read_text()
    assert got == {"curva_20160326.csv": "POD;DATA\nIT001E00000005;2,0\n",
                   "curva_20160328.csv": "POD;DATA\nIT001E00000005;6,0\n",
                   "curva_20160329.csv": "POD;DATA\nIT001E00000005;7,0\n"}
    markers = [p for p in everything if "/_sha256/" in p]
    assert len(markers) == 3  # the erased originals' fingerprints went with them



def test_raw_zone_erasure_keeps_other_members_rows_local(tmp_path: Path) -> None:
    from lakehouse.rawzone import RawZone

    raw = RawZone(str(tmp_path / "lake"))
    _raw_erasure_checks(raw)
    from lakehouse.gdpr.files import scan

    assert scan(tmp_path / "lake", ["IT001E00000004", "f-IT001E00000004-load"]) == []
    assert not [p for p in (tmp_path / "lake" / "raw").rglob("*") if p.is_dir() and not any(p.iterdir())]


@pytest.mark.slow
def test_raw_zone_erasure_on_hdfs() -> None:
    from lakehouse.rawzone import RawZone
    from tests.support.hdfs import shared_hdfs

    cluster = shared_hdfs()
    _raw_erasure_checks(RawZone(f"{cluster.url}/lake-{uuid.uuid4().hex[:6]}", cluster.webhdfs_url))
