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
METRICS_MAXCONN = 100
TIMEOUT_MS = 1000


@pytest.fixture(scope="module")
def bed(deploy, fake_servers):
    server, = fake_servers(1)
    metrics_port = free_ports()[0]
    service, = deploy({"haproxy_checktcp_targets": [server.target], "haproxy_checktcp_timeout_ms": TIMEOUT_MS,
                       "haproxy_global_extra_lines": ["maxconn %d" % GLOBAL_MAXCONN],
                       "haproxy_metrics_bind": "%s:%d" % (LOOPBACK, metrics_port)})
    service.metrics_port = metrics_port
    # This process holds the flood's connections.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * GLOBAL_MAXCONN)), hard))
    return service


def frontend_row(service, name):
    return next(row for row in service.show_stat() if (row["pxname"], row["svname"]) == (name, "FRONTEND"))


def flood(service, port, frontend, count):
    """Up to ``count`` connections to ``port`` that send nothing (until one is
    not even queued by the kernel: a listener's queue is as long as its
    frontend's maxconn), returned once HAProxy has accepted all it will (its
    ``frontend`` is at its limit) or all of them."""
    conns = []
    try:
        while len(conns) < count:
            conns.append(socket.create_connection((LOOPBACK, port), timeout=0.5))
    except TimeoutError:
        pass
    end = time.monotonic() + 5
    while True:
        row = frontend_row(service, frontend)
        if int(row["scur"]) >= min(int(row["slim"]), len(conns)):
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
