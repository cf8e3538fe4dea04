"""Test servers' ports (`devstack.broker.free_port`): each one free when handed out, never the
same twice, and below the kernel's ephemeral range, where no outgoing connection can take it
before the server binds it (an ingest health port was once taken so, mid-suite)."""

from __future__ import annotations

import socket

import pytest

from devstack.broker import EPHEMERAL_PORTS, free_port

pytestmark = pytest.mark.unit


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    if EPHEMERAL_PORTS.exists():
        low = int(EPHEMERAL_PORTS.read_text().split()[0])
        assert all(port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # free indeed
