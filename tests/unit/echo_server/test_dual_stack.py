# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bound to "::", the echo server answers IPv6 and IPv4 clients alike: the
haproxy role probes such a server on 127.0.0.1 (same host) or the host's
default IPv4 address, as it probes one bound to 0.0.0.0."""

import re
import socket

import pytest


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this host")


def _exchange(family, address, port):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect((address, port))
        reader = sock.makefile("rb")
        header = reader.readline()
        sock.sendall(b"check\n")
        return header, reader.readline()


@needs_ipv6
@pytest.mark.parametrize("family, address", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
                         ids=["ipv4", "ipv6"])
def test_the_script_on_all_addresses_answers_both_families(run_script, family, address):
    server = run_script("--bind", "::", "--port", "0")
    line = server.wait_for_line("listening on")
    assert line is not None, server.lines
    port = int(re.search(r"listening on \[::\]:(\d+)", line).group(1))

    header, echoed = _exchange(family, address, port)

    assert header.startswith(b"ECHO client=")
    assert echoed == b"check\n"


@needs_ipv6
def test_a_specific_ipv6_address_stays_ipv6_only(start_server):
    server = start_server(bind="::1")

    assert _exchange(socket.AF_INET6, "::1", server.port)[1] == b"check\n"
    with pytest.raises(ConnectionRefusedError):
        _exchange(socket.AF_INET, "127.0.0.1", server.port)


@needs_ipv6
def test_in_process_server_on_all_addresses_reports_its_port(start_server):
    server = start_server(bind="::")

    assert _exchange(socket.AF_INET, "127.0.0.1", server.port)[1] == b"check\n"
    assert _exchange(socket.AF_INET6, "::1", server.port)[1] == b"check\n"
