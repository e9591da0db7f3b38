"""Free ports for children: outside the range the kernel gives outgoing connections, never twice."""

from __future__ import annotations

import socket

import pytest

from lec.errors import ServiceError
from lec.procs import ephemeral_range, free_port


def test_free_ports_are_below_the_ephemeral_range_and_distinct() -> None:
    lo, _ = ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < lo for p in ports)


def test_a_port_someone_listens_on_is_never_handed_out() -> None:
    # another owner (a socket bound by the kernel, not through free_port) holds the only port of the range
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        held = other.getsockname()[1]
        with pytest.raises(ServiceError, match="no free TCP port"):
            free_port(held, held + 1)


def test_an_outgoing_connection_never_takes_a_handed_out_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        lo, hi = ephemeral_range()
        with socket.create_connection(server.getsockname()) as client:
            assert lo <= client.getsockname()[1] <= hi
