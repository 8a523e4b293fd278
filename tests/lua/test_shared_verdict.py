# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""HAProxy pauses Lua between any two statements (``tune.lua.forced-yield``,
issue 18 item 11). Under pauses every 100 instructions, each row of a live
page must still be the reply of a probe: never a probe error (HAProxy 2.6
ends a socket paused before its connect), and never a reply older than the
last one its server had written when the request was sent (a probe still
finishing may show that one; the verdict of an earlier round may not)."""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
import time

import pytest

from conftest import drain, haproxy_version, header_line, http_request, read_line, wait_status

CLIENTS = 16
FLOOD_S = 4.0
# Lua yields every 100 instructions instead of 10,000, so that a verdict is
# built across many pauses. With 200 targets, HAProxy 2.6 showed the defect:
# the code before the fix (a shared verdict reused by round alone) failed 2 of
# 4 runs with 16 clients (2 and 74 rows older than their probe, of about 240
# answers) and 2 of 6 with 8; 32 clients failed it more often but overloaded
# the fixed code too (a probe not started within its deadline). HAProxy 3.0 and 3.2
# abort under that load (BUG_ON "tick_is_expired(task->expire, now_ms)" in
# sc_notify, src/stconn.c: Lua paused longer than a socket's 10 ms timeout),
# so they run 20 targets, which did not show the old defect.
FORCED_YIELD = 100


def targets():
    return 200 if haproxy_version() < (3, 0) else 20


def numbered_replies(conn, server):
    """Behaviour: the header line, then "n<k>" for each line, k counting this server's replies."""
    conn.sendall(header_line(conn))
    line, _pending = read_line(conn, b"")
    if line is None:
        return
    with server.lock:
        server.replied = getattr(server, "replied", 0) + 1
        number = server.replied
    conn.sendall(b"n%d\n" % number)
    drain(conn)


@pytest.fixture(scope="module")
def numbered(deploy, fake_servers):
    servers = fake_servers(targets())
    for server in servers:
        server.replied = 0
        server.behaviour = numbered_replies
    service, = deploy({
        "haproxy_checktcp_targets": [dict(server.target, name="t%d" % index) for index, server in enumerate(servers)],
        "haproxy_checktcp_timeout_ms": 1000,
        # No spacing: every request waits for a probe that starts after it arrives.
        "haproxy_checktcp_min_probe_interval_ms": 0,
        "haproxy_global_extra_lines": ["tune.lua.forced-yield %d" % FORCED_YIELD],
    })
    return service, servers


def test_under_forced_yields_every_row_is_a_recent_reply(numbered):
    service, servers = numbered
    wait_status(service, 503, 5)
    end = time.monotonic() + FLOOD_S
    lock = threading.Lock()
    older = []

    def client():
        answers = 0
        while time.monotonic() < end:
            # Read before the request is sent: each a lower bound of what its row may show.
            written = [server.replied for server in servers]
            response = http_request(service.port, headers={"Accept": "application/json"})
            assert response.status == 503, response
            for index, row in enumerate(json.loads(response.body)["targets"]):
                shown = re.fullmatch(r'unexpected reply "n(\d+)"', row["reason"])
                assert shown, row["reason"]
                if int(shown.group(1)) < written[index]:
                    with lock:
                        older.append((row["target"], int(shown.group(1)), written[index]))
            answers += 1
        return answers

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        answers = sum(pool.map(lambda _: client(), range(CLIENTS)))
    assert answers > 50, "too few answers to show anything: %d" % answers
    assert not older, "%d rows of %d answers older than their probe (target, shown, written before): %s" % (
        len(older), answers, older[:10])
