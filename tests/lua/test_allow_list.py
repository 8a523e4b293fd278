# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""haproxy_status_allow as a refused client sees it, and as the operator reads it
in HAProxy's log: a 403 that names the address HAProxy saw (never the list), no
probe started, and one log line per refused address while it keeps coming back.

The clients connect to 127.0.0.1 from other loopback addresses (127.0.0.0/8 is
all local), so that one HAProxy sees allowed and refused sources.
"""

from __future__ import annotations

import socket

import pytest

from conftest import LOOPBACK

ALLOWED = "127.0.0.2"
REFUSED_LINE = r"checktcp: refused %s, not on the status page's allow-list"


def request_from(source, port, path="/"):
    """GET ``path`` from the address ``source``; returns (status, body)."""
    with socket.create_connection((LOOPBACK, port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (path, LOOPBACK, port)).encode())
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _separator, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def guarded(deploy, fake_servers):
    """A page for 127.0.0.2 and 10.0.0.0/8 only, and the fake echo server it probes."""
    (fake,) = fake_servers(1)
    (service,) = deploy({"haproxy_checktcp_targets": [fake.target],
                         "haproxy_status_allow": [ALLOWED + "/32", "10.0.0.0/8"]})
    return service, fake


def test_refusal_names_the_address_seen_not_the_list(guarded):
    service, fake = guarded
    fake.reset_counts()
    status, body = request_from("127.0.0.5", service.port)
    assert status == 403
    assert "127.0.0.5" in body and "allow-list" in body, body
    assert "10.0.0.0" not in body and ALLOWED not in body, body
    assert fake.connections == 0, "a refused client started a probe"


def test_a_refused_address_is_logged_once_while_it_keeps_coming(guarded):
    service, _fake = guarded
    offset = service.log_offset()
    for _attempt in range(5):
        assert request_from("127.0.0.6", service.port)[0] == 403
    # Another refused address afterwards: once its line is there, so are the ones before it.
    assert request_from("127.0.0.7", service.port)[0] == 403
    assert service.wait_log(REFUSED_LINE % r"127\.0\.0\.7", offset, timeout=5), service.log_text(offset)
    lines = [line for line in service.log_text(offset).splitlines() if "refused 127.0.0.6," in line]
    assert len(lines) == 1, service.log_text(offset)
    assert "GET /" in lines[0]


def test_allowed_clients_are_answered_and_not_logged(guarded):
    service, _fake = guarded
    offset = service.log_offset()
    status, body = request_from(ALLOWED, service.port)
    assert status == 200, body
    assert request_from("127.0.0.8", service.port)[0] == 403
    assert service.wait_log(REFUSED_LINE % r"127\.0\.0\.8", offset, timeout=5), service.log_text(offset)
    assert ALLOWED not in service.log_text(offset)
