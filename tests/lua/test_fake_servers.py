# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The test bed's own fake server: what the other tests rely on when they flip it."""

from __future__ import annotations

import errno
import socket

import pytest

from conftest import LOOPBACK, FakeEchoServer


def test_a_refusing_fake_server_keeps_its_port_from_every_other_socket():
    """While it refuses, its port stays its own: a client's connection elsewhere
    could otherwise be given it as its own port, and the server could not listen
    again (CI, stop 34: ``OSError: [Errno 98] Address already in use`` while 4
    clients sampled the page of a flipping target)."""
    server = FakeEchoServer()
    try:
        server.behave("refuse")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((LOOPBACK, server.port), timeout=2).close()
        with socket.socket() as other, pytest.raises(OSError) as taken:
            other.bind((LOOPBACK, server.port))
        assert taken.value.errno == errno.EADDRINUSE
        server.behave("echo")
        with socket.create_connection((LOOPBACK, server.port), timeout=2) as conn:
            assert conn.recv(4096).endswith(b"\n")
    finally:
        server.refuse()
