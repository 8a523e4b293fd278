# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A cached check's page too large to be published (200 targets) is rendered
by checktcp.lua from one read of its health checks' state, reused for the
reuse window. Reading 200 servers' stats takes HAProxy long enough to pause
the Lua in it (``tune.lua.forced-yield``): a request arriving then must take
the last read, not start its own. Before the fix every such request read the
state again, and a page rendered it again: at 50 connections HAProxy 3.2
served that page at 184-350 requests/s, p50 250 ms (benchmarks/, 2026-12-05).

What a client sees of it: the time of the read a JSON page shows
(``checked_at``). Reads one at a time, each reused for the window, are at
least the window apart; reads of concurrent requests are milliseconds apart."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import pytest

from conftest import checked, utc

TARGETS = 200
CLIENTS = 16
FLOOD_S = 3.0
# The role's reuse window of a cached check's state (vars/main.yml).
REUSE_MS = 100
# A page dates a read by the wall clock's offset from HAProxy's monotonic
# clock, taken when it is rendered: two renders of one read may differ by
# this, each clock read to the ms.
DATING_SLACK_MS = 2


@pytest.fixture(scope="module")
def many(deploy, fake_servers):
    server, = fake_servers(1)
    service, = deploy({"haproxy_checktcp_checks": [{
        "name": "many", "mode": "cached", "interval_ms": 1000,
        "targets": [dict(server.target, name="many-%d" % index) for index in range(TARGETS)]}]})
    service.wait_seen("many", timeout=10)
    return service


def test_concurrent_requests_share_one_state_read(many):
    end = time.monotonic() + FLOOD_S
    reads, lock = set(), threading.Lock()

    def client():
        answers = 0
        while time.monotonic() < end:
            response = checked(many.request(path="/many", headers={"Accept": "application/json"}))
            page = json.loads(response.body)
            assert response.status == 200 and page["status"] == "OK", response
            with lock:
                reads.add(utc(page["checked_at"]))
            answers += 1
        return answers

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        answers = sum(pool.map(lambda _: client(), range(CLIENTS)))
    times = sorted(reads)
    # Renders of one read, dated a millisecond apart, count as one.
    distinct = [at for previous, at in zip([None] + times, times)
                if previous is None or round((at - previous) * 1000) > DATING_SLACK_MS]
    gaps_ms = [round((later - earlier) * 1000) for earlier, later in zip(distinct, distinct[1:])]
    assert len(distinct) >= 3, "too few reads to show anything: %d answers, reads %s" % (answers, times)
    assert min(gaps_ms) >= REUSE_MS - DATING_SLACK_MS, (
        "%d answers from %d reads; ms between reads: %s" % (answers, len(distinct), gaps_ms))
