# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Eviction at the connection limit racing with a line from the evicted client.

A connection's line and a new connection that evicts it arrive in the same
event loop turn. Whatever wins, the server must not fail (no error from
asyncio, such as "Unhandled exception in client_connected_cb") and must keep
serving within its limit."""

import logging
import socket
import time

import pytest

ATTEMPTS = 2000


@pytest.mark.slow
def test_line_and_eviction_in_the_same_turn(start_server, caplog):
    caplog.set_level(logging.DEBUG)
    srv = start_server(max_connections=1, idle_timeout=30)
    deadline = time.monotonic() + 60
    for _attempt in range(ATTEMPTS):
        old = socket.create_connection((srv.host, srv.port), timeout=5)
        old.makefile("rb").readline()  # registered
        new = socket.socket()
        new.setblocking(False)
        # The new connection is accepted a turn or two before the line is
        # read: the eviction lands while the line is on its way to the handler.
        new.connect_ex((srv.host, srv.port))
        old.send(b"race\n")
        new.setblocking(True)
        new.settimeout(5)
        header = new.makefile("rb").readline()
        assert header.startswith(b"ECHO client="), header
        old.close()
        new.close()
        if time.monotonic() > deadline:
            break
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, "\n".join(r.getMessage() + "\n" + (r.exc_text or "") for r in errors)
    with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        sock.makefile("rb").readline()
        sock.sendall(b"check\n")
        assert sock.recv(6) == b"check\n"
    assert srv.connection_count() <= 1
