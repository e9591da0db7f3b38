"""The ftp-poll route on ftp:// and ftps:// executed for real on Apache Camel 4 against a real FTP server.

The vendor is pyftpdlib (tests/support/ftpd.py) on a loopback free port with one account logging in
with a password that the route takes from its secret; the drop folder is read in passive mode and the
vendor writes each file under a hidden name, then renames it. The same checks as the SFTP drop
(tests/connectors/test_camel_drop.py): files land once on lec.raw and as readings, the garbage is
dead-lettered, a restart neither loses nor resends a file. FTPS: the route checks the vendor's
certificate (JVM trust store, or the flow's ``trust_cert``) and its name; a certificate it does not
trust is refused before the password is sent.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.camel.run import routes_yaml
from lec import topics
from lec.procs import wait_until
from tests.connectors.test_camel_drop import (
    FLOW,
    PASSWORD_PROPERTY,
    SECRET,
    DropFolder,
    drop_lands_once_across_restart,
    readings_file,
)
from tests.connectors.test_camel_routes_run import camel_registry, flow_records, start_camel
from tests.support.ftpd import Ftpd, real_ftpd, self_signed_cert
from tests.support.streams import log_contains

pytestmark = pytest.mark.slow


@dataclass
class FtpDrop(DropFolder):
    out: Path          # the drop folder on this machine (the vendor account sees it as /out)
    ftpd: Ftpd

    def drop(self, name: str, body: bytes) -> None:
        """Upload the way a vendor should: under a hidden name (never read), then renamed."""
        with self.ftpd.client() as ftp:
            ftp.cwd("/out")
            ftp.storbinary(f"STOR .{name}.tmp", io.BytesIO(body))
            ftp.rename(f".{name}.tmp", name)


@pytest.fixture()
def ftp_vendor(tmp_path: Path) -> Iterator[FtpDrop]:
    root = tmp_path / "vendor-root"
    (root / "out").mkdir(parents=True)
    with real_ftpd(root, "vendor", secrets.token_urlsafe(18)) as ftpd:
        yield FtpDrop(root / "out", ftpd)


def ftp_flow(scheme: str, ftpd: Ftpd, **extra: Any) -> dict[str, Any]:
    return {"kind": "ftp-poll", "url": f"{scheme}://127.0.0.1:{ftpd.port}/out", "period": 1000, "retry_delay_ms": 200,
            "username": ftpd.user, "password": f"{{{{{PASSWORD_PROPERTY}}}}}", "secret": SECRET, **extra}


def test_ftp_drop_lands_once_with_garbage_dead_lettered_across_restarts(fresh_kafka: tuple, ftp_vendor: FtpDrop,
                                                                       tmp_path: Path) -> None:
    _, bootstrap = fresh_kafka
    ftpd = ftp_vendor.ftpd
    drop_lands_once_across_restart(bootstrap, ftp_vendor, ftpd.password, ftp_flow("ftp", ftpd), tmp_path)


@pytest.fixture()
def ftps_vendor(tmp_path: Path) -> Iterator[FtpDrop]:
    root = tmp_path / "vendor-root"
    (root / "out").mkdir(parents=True)
    cert = self_signed_cert(tmp_path / "tls", "vendor")
    with real_ftpd(root, "vendor", secrets.token_urlsafe(18), cert=cert) as ftpd:
        yield FtpDrop(root / "out", ftpd)


def refused(bootstrap: str, vendor: FtpDrop, camel_flow: dict[str, Any], secrets_used: list[Path], work: Path,
            file: str, reason: str = "PKIX path building failed") -> str:
    """Run the route against a vendor whose certificate it must not trust: nothing read, no login; its log."""
    snapshot = camel_registry(work / "run", FLOW, camel_flow).snapshot()
    vendor.drop(file, readings_file(9))
    logins = len(vendor.ftpd.logins)  # the vendor's own upload included
    camel = start_camel(work / "camel", routes_yaml(snapshot, kafka_brokers=bootstrap, max_payload_bytes=1024 * 1024),
                        secrets_used)
    try:
        wait_until(lambda: log_contains(camel, reason), 60, "the certificate refused",
                   camel.proc, camel.log)
        assert vendor.waiting() == [file]
        assert len(vendor.ftpd.logins) == logins  # TLS first (AUTH TLS): the password was never sent
        assert len(flow_records(bootstrap, topics.RAW, FLOW)) == 4
        return camel.log.read_text(errors="replace")
    finally:
        camel.stop()


def test_ftps_drop_checks_the_vendor_certificate(fresh_kafka: tuple, ftps_vendor: FtpDrop, tmp_path: Path) -> None:
    _, bootstrap = fresh_kafka
    ftpd = ftps_vendor.ftpd
    pem = (tmp_path / "tls" / "vendor.crt").read_text()
    secrets_used = drop_lands_once_across_restart(bootstrap, ftps_vendor, ftpd.password,
                                                  ftp_flow("ftps", ftpd, trust_cert=pem), tmp_path)
    # no trust_cert: the JVM's trust store, which does not hold the vendor's self-signed certificate
    log = refused(bootstrap, ftps_vendor, ftp_flow("ftps", ftpd), secrets_used, tmp_path / "absent", "day05.json")
    assert ftpd.password not in log
    # another certificate as the anchor (a man in the middle, a vendor that changed its certificate)
    other = self_signed_cert(tmp_path / "tls-other", "other")[0].read_text()
    refused(bootstrap, ftps_vendor, ftp_flow("ftps", ftpd, trust_cert=other), secrets_used, tmp_path / "wrong",
            "day05.json")
    # a trusted certificate made out to another address (127.0.0.2): the name check refuses it
    root = tmp_path / "elsewhere-root"
    (root / "out").mkdir(parents=True)
    cert = self_signed_cert(tmp_path / "tls-elsewhere", "elsewhere", ip="127.0.0.2")
    with real_ftpd(root, "vendor", ftpd.password, cert=cert) as elsewhere:
        refused(bootstrap, FtpDrop(root / "out", elsewhere),
                ftp_flow("ftps", elsewhere, trust_cert=cert[0].read_text()), secrets_used, tmp_path / "name",
                "day06.json", reason="No subject alternative names matching IP address 127.0.0.1")
