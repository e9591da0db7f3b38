"""A real PostgreSQL server (Debian package) in a temporary data directory."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lec.procs import free_port, port_open, wait_until


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: .ci/run installs the Debian package 'postgresql'")
    return found[-1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh PostgreSQL server; stops it afterwards."""
    base = Path(tempfile.mkdtemp(prefix="lec-pg-"))
    data = base / "data"
    port = free_port()
    as_root = os.geteuid() == 0
    user = pwd.getpwnam("postgres") if as_root else None

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        if user is not None:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, text=True)

    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
    run([_bin("initdb"), "-D", str(data), "-U", "lec", "--auth=trust", "-E", "UTF8"])
    run([_bin("pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), "-w", "-o",
         f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])
    try:
        wait_until(lambda: port_open(port), 30, "postgres")
        run([_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "lec", "lec"])
        yield f"postgresql+psycopg://lec@127.0.0.1:{port}/lec"
    finally:
        subprocess.run((["runuser", "-u", "postgres", "--"] if user else []) +
                       [_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
