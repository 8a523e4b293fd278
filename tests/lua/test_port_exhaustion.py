# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One client must not make a healthy echo server look dead (issue 18, item 1).

As the review measured it: in a network namespace of its own, the real echo
server listens on an address that is not loopback (so the kernel never
reuses a TIME_WAIT entry), the ephemeral port range holds 500 ports and
``tcp_tw_reuse`` is 0; HAProxy runs there, and one keep-alive client asks
for the page for 8 s. Before the fix every probe left a TIME_WAIT entry on
the proxy and the ports ran out: most answers were 503. Now a target's
probes are spaced (haproxy_checktcp_min_probe_interval_ms) and the relay
closes them with a reset, so every answer is 200, with or without spacing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, haproxy_binary, render_together

NAMESPACE = "%s-ports" % os.environ.get("CHECKTCP_ID", "checktcp")
# TEST-NET-1, on the namespace's own lo: not a loopback address (so
# tcp_tw_reuse=2, the default, would not apply either), reachable from nowhere else.
ECHO_ADDRESS = "192.0.2.1"
ECHO_PORT = 8080
PORT_RANGE = "40000 40499"
CLIENT_SECONDS = 8
ECHO_SERVER = REPO / "roles" / "echo_server" / "files" / "checktcp_echo.py"

# One keep-alive client, in the namespace: prints {status: count}.
CLIENT = r"""
import http.client, json, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
counts, end, conn = {}, time.monotonic() + seconds, None
while time.monotonic() < end:
    try:
        conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        key = str(response.status)
    except OSError as error:
        key, conn = type(error).__name__, None
    counts[key] = counts.get(key, 0) + 1
print(json.dumps(counts))
"""


def in_namespace(*command, **options):
    return subprocess.run(["ip", "netns", "exec", NAMESPACE, *command], check=True, **options)


@pytest.fixture(scope="module")
def namespace():
    subprocess.run(["ip", "netns", "del", NAMESPACE], stderr=subprocess.DEVNULL, check=False)
    subprocess.run(["ip", "netns", "add", NAMESPACE], check=True)
    try:
        for command in (["link", "set", "lo", "up"], ["addr", "add", ECHO_ADDRESS + "/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", NAMESPACE, *command], check=True)
        in_namespace("sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=0",
                     "net.ipv4.ip_local_port_range=%s" % PORT_RANGE)
        echo = subprocess.Popen(["ip", "netns", "exec", NAMESPACE, sys.executable, str(ECHO_SERVER),
                                 "--bind", ECHO_ADDRESS, "--port", str(ECHO_PORT), "--log-level", "warning"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            echo.terminate()
            echo.wait(5)
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], check=False)


@pytest.fixture(scope="module")
def services(namespace, make_service):
    """Two configurations probing the echo server: the default spacing, and none."""
    target = [{"host": ECHO_ADDRESS, "port": ECHO_PORT}]
    rendered = {"spaced": make_service(haproxy_checktcp_targets=target,
                                       haproxy_checktcp_min_probe_interval_ms=50),
                "unspaced": make_service(haproxy_checktcp_targets=target)}
    render_together(list(rendered.values()))
    return rendered


def serve_in_namespace(service):
    """Start the service's HAProxy inside the namespace; return once its page answers there."""
    command = [haproxy_binary(), "-db", "-f", str(service.config)]
    if os.environ.get("CHECKTCP_HAPROXY_IMAGE"):
        # HAProxy of another version, in a container joining the namespace (bin/haproxy).
        env = dict(os.environ, CHECKTCP_HAPROXY_NETNS=NAMESPACE)
    else:
        command, env = ["ip", "netns", "exec", NAMESPACE] + command, None
    with open(service.stderr, "wb") as stderr:
        service.proc = subprocess.Popen(command, cwd=service.workdir, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=stderr)
    end = time.monotonic() + 30
    while True:
        probe = subprocess.run(["ip", "netns", "exec", NAMESPACE, "curl", "-s", "-o", "/dev/null", "-w",
                                "%{http_code}", "--max-time", "2", "http://127.0.0.1:%d/" % service.port],
                               capture_output=True, text=True, check=False)
        if probe.stdout == "200":
            return
        assert service.proc.poll() is None, service.log_text()
        assert time.monotonic() < end, "no 200 in the namespace: %r\n%s" % (probe.stdout, service.log_text())
        time.sleep(0.1)


@pytest.mark.parametrize("name", ["spaced", "unspaced"])
def test_one_client_cannot_exhaust_the_proxys_ports(services, name):
    service = services[name]
    serve_in_namespace(service)
    try:
        client = in_namespace(sys.executable, "-c", CLIENT, str(service.port), str(CLIENT_SECONDS),
                              capture_output=True, text=True, timeout=CLIENT_SECONDS + 30)
        counts = json.loads(client.stdout)
        waiting = in_namespace("ss", "-Htan", "state", "time-wait", "dst", "%s:%d" % (ECHO_ADDRESS, ECHO_PORT),
                               capture_output=True, text=True).stdout.splitlines()
    finally:
        service.stop()
    assert list(counts) == ["200"], "answers in %d s: %s\n%s" % (CLIENT_SECONDS, counts, service.log_text()[-2000:])
    assert counts["200"] > 100, counts
    assert waiting == [], "%d TIME_WAIT entries towards the echo server" % len(waiting)
