"""`lec connectors sftp-server|sftp-watch|sftp-config`: the SFTP channel's commands."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import typer

from lec.io import configure_logging


def _setup_logging(level: str) -> None:
    configure_logging(level=level)


def _bootstrap(settings: Any) -> str:
    from connectors.sftp.area import SftpError

    if not settings.kafka_bootstrap:
        raise SftpError("set LEC_KAFKA_BOOTSTRAP to the Kafka bootstrap servers (`lec up` sets it for its workers)")
    return settings.kafka_bootstrap


def sftp_server(host: str = typer.Option("127.0.0.1", help="Address to listen on.")) -> None:
    """Embedded SFTP server (foreground): one chrooted space per supplier, password or key login."""
    from connectors.sftp.server import drop_capabilities, host_key_path, serve_forever
    from lec.config import settings as current
    from lec.registry.view import RegistryView

    drop_capabilities()  # least privilege, before any thread exists (capabilities are per thread)
    s = current()
    _setup_logging(s.log_level)
    view = RegistryView(s, credentials=True).start()   # logins follow lec.registry (1-2 s), no DB read per login
    serve_forever(view, s.resolved_sftp_root(), host, s.sftp_port, host_key_path(s.resolved_run_dir()))


def sftp_watch(once: bool = typer.Option(False, help="Ingest the complete uploads present now, then exit."),
               settle_s: float = typer.Option(2.0, help="Seconds a file must stay unchanged to count as complete."),
               chunk_bytes: int = typer.Option(256 * 1024, help="Largest raw item, bytes."),
               chunk_lines: int = typer.Option(10_000, help="Most lines in one raw item."),
               max_line_bytes: int = typer.Option(64 * 1024, help="Longer lines fail the file.")) -> None:
    """Watch every supplier's inbox and ingest completed uploads into lec.raw (foreground)."""
    from connectors.sftp.area import SftpArea
    from connectors.sftp.state import IngestedFiles
    from connectors.sftp.watch import SftpWatcher, WatchOptions, Window, kafka_producer, state_path
    from lakehouse.rawzone import RawZone
    from lec.config import settings as current
    from lec.registry.view import RegistryView

    s = current()
    _setup_logging(s.log_level)
    # the registry from the process's view (follows lec.registry), so re-reading it often costs nothing
    options = WatchOptions(chunk_bytes=chunk_bytes, chunk_lines=chunk_lines, max_line_bytes=max_line_bytes,
                           settle_s=0.0 if once else settle_s, registry_refresh_s=0.5)
    state = IngestedFiles(state_path(s.resolved_run_dir()))
    view = RegistryView(s, bootstrap=_bootstrap(s)).start()
    watcher = SftpWatcher(view, SftpArea(s.resolved_sftp_root()), state,
                          kafka_producer(_bootstrap(s)), options, max_payload_bytes=s.max_payload_bytes,
                          window=Window("immediate" if once else s.sftp_schedule), raw_zone=RawZone.from_settings(s))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: watcher.stop_requested.set())
    try:
        if once:
            for outcome in watcher.scan_once():
                typer.echo(f"{outcome.status}\t{outcome.file}\tlines={outcome.lines}\tchunks={outcome.chunks}"
                           + (f"\t{outcome.problem.message}" if outcome.problem else ""))
        else:
            watcher.run()
    finally:
        state.close()


def sftp_config(out: Path = typer.Option(..., help="Folder to write sshd_config, keys and the setup script to."),
                user_prefix: str = typer.Option("lec-", help="Unix user name = prefix + supplier id."),
                root: Path | None = typer.Option(None, help="SFTP root on the production host "
                                                              "(default: LEC_SFTP_ROOT)."),
                watcher_user: str = typer.Option("lec", help="Unix user (and group) the watcher runs as."),
                keys_dir: Path = typer.Option(Path("/etc/ssh/lec-sftp-keys"),
                                              help="Where setup.sh installs the authorized keys.")) -> None:
    """Generate OpenSSH Match blocks, authorized keys and an ownership script from the registry."""
    from connectors.sftp.openssh import write_openssh_config
    from lec.config import settings as current
    from lec.registry import open_registry

    s = current()
    written = write_openssh_config(open_registry(s), out, root=root or s.resolved_sftp_root(),
                                   user_prefix=user_prefix, watcher_user=watcher_user,
                                   keys_dir=keys_dir)
    for path in written:
        typer.echo(str(path))


def register(group: typer.Typer) -> None:
    """Add the SFTP commands to the `lec connectors` group."""
    group.command("sftp-server")(sftp_server)
    group.command("sftp-watch")(sftp_watch)
    group.command("sftp-config")(sftp_config)
