# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Regression tests for the defects the second review found in the Lua
service (issue 18), against a real HAProxy on loopback: the probe rate of a
target bounded whatever the request rate, probes leaving no TIME_WAIT on the
proxy, a check's ``details: false`` winning over the details allow-list, and
every Accept header read."""

from __future__ import annotations

import concurrent.futures
import json
import re
import socket
import subprocess
import time
import types

import pytest
import yaml

from conftest import REPO, LOOPBACK, free_ports, http_request, wait_status

TIMEOUT_MS = 500
# The role's default spacing of a target's live probes (checked below).
SPACING_MS = 50
FLOOD_S = 2.0
FLOOD_CLIENTS = 4


def role_default(name):
    return yaml.safe_load((REPO / "roles" / "haproxy" / "defaults" / "main.yml").read_text())[name]


@pytest.fixture(scope="module")
def beds(deploy, fake_servers):
    flooded, spaced_off, secret, secret_cached, public, half_up = fake_servers(6)
    allow = {"haproxy_status_details_allow": ["127.0.0.1/32"]}
    refused = {"host": LOOPBACK, "port": free_ports()[0], "name": "refused"}
    spaced, unspaced, hidden, half = deploy(
        {"haproxy_checktcp_targets": [flooded.target], "haproxy_checktcp_timeout_ms": TIMEOUT_MS,
         "haproxy_checktcp_min_probe_interval_ms": SPACING_MS},
        {"haproxy_checktcp_targets": [spaced_off.target], "haproxy_checktcp_timeout_ms": TIMEOUT_MS},
        dict(allow, haproxy_checktcp_checks=[
            {"name": "secret", "targets": [dict(secret.target, name="secret-target")], "details": False},
            {"name": "secret-cached", "targets": [dict(secret_cached.target, name="secret-cached-target")],
             "details": False, "mode": "cached", "interval_ms": 200},
            {"name": "public", "targets": [dict(public.target, name="public-target")]},
        ]),
        {"haproxy_checktcp_targets": [dict(half_up.target, name="answering"), refused]},
    )
    return types.SimpleNamespace(spaced=spaced, unspaced=unspaced, hidden=hidden, flooded=flooded,
                                 spaced_off=spaced_off, half=half, half_up=half_up, refused=refused)


def flood(service, seconds, clients):
    """Requests from ``clients`` threads for ``seconds``: the statuses and the largest age header."""
    end = time.monotonic() + seconds

    def client():
        statuses, ages = [], []
        while time.monotonic() < end:
            response = http_request(service.port)
            statuses.append(response.status)
            ages.append(int(response.headers["x-checktcp-age-ms"]))
        return statuses, ages

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: client(), range(clients)))
    statuses = [status for result in results for status in result[0]]
    return statuses, max(age for result in results for age in result[1])


def time_wait_to(port):
    """TIME_WAIT entries on this host (this network namespace) towards 127.0.0.1:port."""
    out = subprocess.run(["ss", "-Htan", "state", "time-wait", "dst", "%s:%d" % (LOOPBACK, port)],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_the_default_spacing_is_what_these_tests_use():
    assert role_default("haproxy_checktcp_min_probe_interval_ms") == SPACING_MS


def test_probe_rate_follows_the_spacing_not_the_request_rate(beds):
    wait_status(beds.spaced, 200, 5)
    beds.flooded.reset_counts()
    statuses, oldest = flood(beds.spaced, FLOOD_S, FLOOD_CLIENTS)
    probes = beds.flooded.connections
    # One probe per spacing at most, plus the one in flight at each end.
    most = int(FLOOD_S * 1000 / SPACING_MS) + 2
    assert statuses.count(200) == len(statuses), statuses
    assert len(statuses) > 2 * most, "too few requests to show the bound: %d" % len(statuses)
    assert probes <= most, "%d requests made %d probes in %.1f s (at most %d)" % (len(statuses), probes, FLOOD_S, most)
    # A verdict reused meanwhile says its age: never older than a spacing and a probe.
    assert oldest <= SPACING_MS + TIMEOUT_MS, oldest


def test_probes_leave_no_time_wait_on_the_proxy(beds):
    """The relay closes the probe's connection with a reset: the proxy's ports stay free.

    Only the entries that appear during the test are its probes': the fake
    server's port is one the kernel handed out, and connections to an earlier
    holder of that port (another test's server, within TIME_WAIT's minute) may
    still wait towards it."""
    before = set(time_wait_to(beds.spaced_off.port))
    wait_status(beds.unspaced, 200, 5)
    statuses, _oldest = flood(beds.unspaced, 0.5, 1)
    assert set(statuses) == {200}, statuses
    assert sorted(set(time_wait_to(beds.spaced_off.port)) - before) == []


@pytest.mark.parametrize("path, name", [("/secret", "secret-target"), ("/secret-cached", "secret-cached-target")])
@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_a_checks_hidden_details_win_over_the_allow_list(beds, path, name, accept):
    response = wait_status(beds.hidden, 200, 5, path=path)
    for _attempt in range(3):
        response = http_request(beds.hidden.port, path=path, headers={"Accept": accept})
        assert response.status == 200, response
        assert name.encode() not in response.body, response.body
        assert str(beds.hidden.port).encode() not in response.body
    public = http_request(beds.hidden.port, path="/public", headers={"Accept": accept})
    assert b"public-target" in public.body, "the allow-list shows details where the check does"


def raw_request(port, header_lines):
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % "".join(
            line + "\r\n" for line in header_lines)).encode())
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _separator, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def test_json_is_chosen_by_any_accept_header(beds):
    wait_status(beds.spaced, 200, 5)
    head, body = raw_request(beds.spaced.port, ["Accept: text/html", "Accept: application/json"])
    assert "content-type: application/json" in head.lower(), head
    assert json.loads(body)["status"] == "OK"


def test_details_show_the_address_probed_and_a_partial_failure_says_so(beds):
    """Issue 20, point 4: an operator sees which host:port each target is, and a
    policy failing with some targets up is not 'does not answer'."""
    response = wait_status(beds.half, 503, 5)
    page = response.body.decode()
    for address in (beds.half_up.name, "%s:%d" % (LOOPBACK, beds.refused["port"])):
        assert "<td>%s</td>" % address in page, page
    assert "Only 1 of 2 targets answer; 2 required." in page, page
    assert re.search(r"<td>\d\d:\d\d:\d\d\.\d{3}Z \(\d+\.\d s ago\)</td>", page), page
    document = json.loads(http_request(beds.half.port, headers={"Accept": "application/json"}).body)
    assert [target["address"] for target in document["targets"]] == [
        beds.half_up.name, "%s:%d" % (LOOPBACK, beds.refused["port"])], document
