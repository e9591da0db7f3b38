"""Free ports for children: outside the range the kernel gives outgoing connections, never twice."""

from __future__ import annotations

import socket

import pytest

from lec.procs import ephemeral_range, free_port


def test_free_ports_are_below_the_ephemeral_range_and_distinct() -> None:
    lo, _ = ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < lo for p in ports)


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    # another process (here: a socket this module did not get from free_port) holds the first candidate
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        held = other.getsockname()[1]
        candidates = iter([held, held, 20000 + held % 10000])
        monkeypatch.setattr("lec.procs.random.randrange", lambda lo, hi: next(candidates))
        assert free_port() == 20000 + held % 10000


def test_an_outgoing_connection_never_takes_a_handed_out_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        lo, hi = ephemeral_range()
        with socket.create_connection(server.getsockname()) as client:
            assert lo <= client.getsockname()[1] <= hi
