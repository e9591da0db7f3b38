"""Test support for FTP/FTPS: a real FTP server (pyftpdlib) on a loopback free port, in a thread.

One vendor account (password) whose home is the vendor's root; passive mode only (as the routes use);
with a certificate the server speaks explicit FTPS (AUTH TLS) and requires TLS on control and data.
"""

from __future__ import annotations

import datetime
import ftplib
import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from lec.procs import free_port


def self_signed_cert(folder: Path, name: str = "vendor", ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``ip`` (SAN IP) and its key, as PEM files (key 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class Ftpd:
    port: int
    user: str
    password: str
    tls: bool
    logins: list[str] = field(default_factory=list)  # users logged in, in order

    def client(self) -> ftplib.FTP:
        """A logged-in passive-mode client (FTPS: TLS on control and data, the server's cert not checked)."""
        ftp: ftplib.FTP = ftplib.FTP_TLS() if self.tls else ftplib.FTP()
        ftp.connect("127.0.0.1", self.port, timeout=10)
        ftp.login(self.user, self.password)
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        ftp.set_pasv(True)
        return ftp


@contextmanager
def real_ftpd(root: Path, user: str, password: str, cert: tuple[Path, Path] | None = None) -> Iterator[Ftpd]:
    """pyftpdlib serving ``root`` to ``user``; ``cert`` (cert, key PEM files): explicit FTPS, TLS required."""
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, str(root), perm="elradfmw")
    ftpd = Ftpd(free_port(), user, password, cert is not None)

    base: type[FTPHandler] = TLS_FTPHandler if cert else FTPHandler

    class Handler(base):  # type: ignore[valid-type,misc]
        def on_login(self, username: str) -> None:
            ftpd.logins.append(username)

    Handler.authorizer = authorizer
    Handler.permit_foreign_addresses = False
    if cert:
        Handler.certfile, Handler.keyfile = str(cert[0]), str(cert[1])
        Handler.tls_control_required = Handler.tls_data_required = True
    server = FTPServer(("127.0.0.1", ftpd.port), Handler, ioloop=IOLoop())  # not the process-wide loop
    stop = threading.Event()

    def serve() -> None:  # the IO loop stays in this thread, closing included
        while not stop.is_set():
            server.serve_forever(timeout=0.1, blocking=False, handle_exit=False)
        server.close_all()

    thread = threading.Thread(target=serve, name="ftpd", daemon=True)
    thread.start()
    try:
        yield ftpd
    finally:
        stop.set()
        thread.join(10)
