# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The real echo server bound to "::" (echo_server_bind_address), probed by
HAProxy where the role derives its target: the page is 200 while it runs and
503 once it stops (issue 18: it was 503 for good, the server listening on
IPv6 only and the probe going to 127.0.0.1)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import REPO, free_ports, wait_status, word

ECHO = REPO / "roles" / "echo_server" / "files" / "checktcp_echo.py"


def _has_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this host")


@pytest.fixture(scope="module")
def echo_on_all_addresses():
    """checktcp_echo.py on [::]:PORT, as the unit runs it; (process, port)."""
    # The script binds without SO_REUSEPORT: the port is released for it.
    port = free_ports(hold=False)[0]
    proc = subprocess.Popen([sys.executable, str(ECHO), "--bind", "::", "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail("the echo server did not start: %s%s" % (line, proc.stderr.read()))
    yield proc, port
    if proc.poll() is None:
        proc.terminate()
        proc.wait(5)


def test_a_server_on_all_addresses_is_probed_where_the_role_points(deploy, echo_on_all_addresses):
    proc, port = echo_on_all_addresses
    # The target derived from the group, as for a host of echo_servers: this
    # host (localhost) with the echo_server role's variables.
    service, = deploy({"haproxy_checktcp_targets_group": "ungrouped", "echo_server_bind_address": "::",
                       "echo_server_port": port})
    assert "127.0.0.1:%d" % port in service.config.read_text(), "the role probes another address"

    response = wait_status(service, 200, within_s=5)
    assert word(response) == "OK"

    proc.terminate()
    proc.wait(5)
    response = wait_status(service, 503, within_s=5)
    assert word(response) == "KO"
