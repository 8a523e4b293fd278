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

import os
import re
import socket
import subprocess

import pytest

from conftest import LOOPBACK, haproxy_binary

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
    """A page for 127.0.0.2 and 10.0.0.0/8 only (details for 127.0.0.2 alone), and
    the fake echo server it probes."""
    (fake,) = fake_servers(1)
    (service,) = deploy({"haproxy_checktcp_targets": [fake.target],
                         "haproxy_status_allow": [ALLOWED + "/32", "10.0.0.0/8"],
                         "haproxy_status_details_allow": [ALLOWED + "/32"]})
    return service, fake


def test_an_invalid_request_is_not_logged_as_a_refusal(guarded):
    # HAProxy logs a request it cannot parse before any http-request rule runs,
    # so before the allow-list: the line must not say the client was refused.
    service, _fake = guarded
    offset = service.log_offset()
    with socket.create_connection((LOOPBACK, service.port), timeout=5, source_address=(ALLOWED, 0)) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert b" 400 " in sock.recv(65536).split(b"\r\n", 1)[0]
    # A refusal afterwards: once its line is there, so is the one before it.
    assert request_from("127.0.0.9", service.port)[0] == 403
    assert service.wait_log(REFUSED_LINE % r"127\.0\.0\.9", offset, timeout=5), service.log_text(offset)
    text = service.log_text(offset)
    assert "refused %s," % ALLOWED not in text, text
    assert "checktcp: invalid or unfinished request from %s; the allow-list was not reached" % ALLOWED in text, text


# A dual-stack HAProxy in a network namespace of its own (gone with the
# process), judging sources against the patterns as rendered; each line of
# output: "<source> <status>". 2002::/16 (6to4) and ::/96 (IPv4-compatible)
# are IPv6 addresses that HAProxy turns into IPv4 ones when it matches them
# against an IPv4 pattern.
DUAL_STACK_JUDGE = r"""
set -eu
ip link set lo up
for address in $SOURCES; do
  case $address in *:*) ip -6 address add "$address/128" dev lo ;; *) ip address add "$address/32" dev lo ;; esac
done
"$HAPROXY" -f "$CONFIG" -D -p "$PIDFILE"
trap 'kill $(cat "$PIDFILE")' EXIT
for address in $SOURCES; do
  case $address in *:*) url="http://[::1]:$PORT/" ;; *) url="http://127.0.0.1:$PORT/" ;; esac
  for _try in 1 2 3 4 5 6 7 8 9 10; do
    status=$(curl -s -o /dev/null -w '%{http_code}' --interface "$address" "$url") && break
    sleep 0.1
  done
  echo "$address $status"
done
"""


def judged_sources(tmp_path, patterns, sources):
    """{source: status}: 200 when a dual-stack HAProxy's ``src`` matches one of ``patterns``, else 403."""
    port = 8080  # in a network namespace of its own: nothing else binds there
    config = tmp_path / "dual-stack.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout client 5s\n    timeout server 5s\n    timeout connect 1s\n"
        "frontend judge\n    bind :::%d v4v6\n    acl allowed src %s\n"
        "    http-request return status 200 if allowed\n    http-request return status 403\n" % (port, patterns))
    env = dict(os.environ, HAPROXY=haproxy_binary(), CONFIG=str(config), PIDFILE=str(tmp_path / "judge.pid"),
               PORT=str(port), SOURCES=" ".join(sources))
    out = subprocess.run(["unshare", "--net", "sh", "-c", DUAL_STACK_JUDGE], env=env, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return dict(line.split() for line in out.splitlines())


@pytest.mark.skipif(bool(os.environ.get("CHECKTCP_HAPROXY_IMAGE")),
                    reason="runs the host's HAProxy in a network namespace of its own")
def test_no_ipv6_source_passes_for_an_ipv4_entry(guarded, tmp_path):
    # On a dual-stack bind, an IPv4 entry must admit its IPv4 clients (seen as
    # ::ffff:a.b.c.d) and no IPv6 one: HAProxy takes 2002:7f00:2::1 (6to4) for
    # 127.0.0.2, and ::a00:3 (IPv4-compatible) for 10.0.0.3, against an IPv4 pattern.
    service, _fake = guarded
    config = service.config.read_text()
    allowed = re.search(r"^\s*acl checktcp_allowed src (.+)$", config, re.M).group(1)
    details = re.search(r"set-var\(txn\.checktcp_details\) int\(1\) if \{ src (.+) \}$", config, re.M).group(1)
    sources = ["127.0.0.2", "10.0.0.3", "127.0.0.5", "2002:7f00:2::1", "2002:a00:3::1", "::a00:3", "2001:db8::1"]

    assert judged_sources(tmp_path, allowed, sources) == {
        "127.0.0.2": "200", "10.0.0.3": "200", "127.0.0.5": "403",
        "2002:7f00:2::1": "403", "2002:a00:3::1": "403", "::a00:3": "403", "2001:db8::1": "403"}
    assert judged_sources(tmp_path, details, sources) == dict(
        {source: "403" for source in sources}, **{"127.0.0.2": "200"})


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
