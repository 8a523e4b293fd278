# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A flood of idle connections must not make a healthy target look dead.

A live probe reaches its target through a relay that HAProxy itself accepts,
so it needs a free connection under the global ``maxconn``, as the metrics
page does. Anyone who can reach the status bind can open connections that
send nothing (each held until ``timeout http-request``); without a limit of
its own the status frontend takes every connection HAProxy allows, and a load
balancer that kept its connection open reads 503 KO (the probe's relay is
never accepted) while the target is fine. Here HAProxy's global ``maxconn``
is set a little above the status frontend's default limit; unset, HAProxy
takes about half the hard limit of open files (2034 for 4096, the test bed's).
"""

from __future__ import annotations

import http.client
import resource
import socket
import time

import pytest
import yaml

from conftest import REPO, LOOPBACK, free_ports, http_request

STATUS_MAXCONN = yaml.safe_load((REPO / "roles" / "haproxy" / "defaults" / "main.yml").read_text())[
    "haproxy_status_maxconn"]
GLOBAL_MAXCONN = STATUS_MAXCONN + 100
# The allow-list of the guarded page, and a client outside it.
ALLOWED, OUTSIDER = "127.0.0.2", "127.0.0.9"
METRICS_MAXCONN = 100
TIMEOUT_MS = 1000


@pytest.fixture(scope="module")
def bed(deploy, fake_servers):
    server, = fake_servers(1)
    metrics_port = free_ports()[0]
    common = {"haproxy_checktcp_targets": [server.target], "haproxy_checktcp_timeout_ms": TIMEOUT_MS,
              "haproxy_global_extra_lines": ["maxconn %d" % GLOBAL_MAXCONN]}
    service, guarded = deploy(dict(common, haproxy_metrics_bind="%s:%d" % (LOOPBACK, metrics_port)),
                              dict(common, haproxy_status_allow=[ALLOWED + "/32"]))
    service.metrics_port = metrics_port
    service.guarded = guarded
    # This process holds the flood's connections.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * GLOBAL_MAXCONN)), hard))
    return service


def frontend_row(service, name):
    return next(row for row in service.stat_rows(name) if row["svname"] == "FRONTEND")


def flood(service, port, frontend, count, source=None):
    """Up to ``count`` connections to ``port`` (from ``source``) that send
    nothing (until one is not even queued by the kernel: a listener's queue is
    as long as its frontend's maxconn), returned once HAProxy has taken all it
    will (its ``frontend`` is at its limit) or every one (held or refused)."""
    conns = []
    for _attempt in range(count):
        try:
            conns.append(socket.create_connection((LOOPBACK, port), timeout=0.5,
                                                  source_address=(source, 0) if source else None))
        except TimeoutError:
            break
        except ConnectionError:
            pass  # refused by HAProxy as it connected: held by nobody
    end = time.monotonic() + 5
    while True:
        row = frontend_row(service, frontend)
        if int(row["scur"]) >= int(row["slim"]) or int(row["scur"]) + int(row["dcon"]) >= len(conns):
            return conns
        assert time.monotonic() < end, "HAProxy accepted %s of %d connections (limit %s)" % (
            row["scur"], len(conns), row["slim"])
        time.sleep(0.01)


def ask(conn):
    conn.request("GET", "/")
    response = conn.getresponse()
    return response.status, response.read()


def test_a_flood_of_the_status_bind_leaves_live_verdicts_and_metrics_right(bed):
    kept = http.client.HTTPConnection(LOOPBACK, bed.port, timeout=5)
    assert ask(kept)[0] == 200
    idle = flood(bed, bed.port, "checktcp_status", GLOBAL_MAXCONN)
    try:
        assert int(frontend_row(bed, "checktcp_status")["slim"]) == STATUS_MAXCONN
        # The load balancer's open connection still gets the target's verdict.
        status, body = ask(kept)
        assert status == 200, body
        assert http_request(bed.metrics_port, path="/metrics", timeout=2).status == 200
    finally:
        for conn in idle:
            conn.close()
        kept.close()


def test_a_flood_of_the_metrics_bind_leaves_live_verdicts_right(bed):
    idle = flood(bed, bed.metrics_port, "checktcp_metrics", GLOBAL_MAXCONN)
    try:
        assert int(frontend_row(bed, "checktcp_metrics")["slim"]) == METRICS_MAXCONN
        response = http_request(bed.port, timeout=5)
        assert response.status == 200, response
    finally:
        for conn in idle:
            conn.close()


def test_outsiders_cannot_keep_an_allowed_client_waiting(bed):
    # Outside haproxy_status_allow, each connection would hold a place until
    # timeout http-request (10 s) if it sends nothing.
    guarded = bed.guarded
    idle = flood(guarded, guarded.port, "checktcp_status", GLOBAL_MAXCONN, source=OUTSIDER)
    try:
        response = http_request(guarded.port, source=ALLOWED, timeout=2)
        assert response.status == 200, response
        row = frontend_row(guarded, "checktcp_status")
        assert int(row["scur"]) <= STATUS_MAXCONN // 2 + 1, row
    finally:
        for conn in idle:
            conn.close()
    # Once the page is quiet again, an outsider reads why it is refused.
    end = time.monotonic() + 5
    while int(frontend_row(guarded, "checktcp_status")["scur"]) > STATUS_MAXCONN // 2:
        assert time.monotonic() < end
        time.sleep(0.05)
    assert http_request(guarded.port, source=OUTSIDER).status == 403
