# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Live mode's memory stays flat (issue 9, defect 0): HAProxy 2.6 never frees a
task registered at run time, and a service registering one per request grew
by about 130 bytes per request without bound. Here a real HAProxy answers
200 k keep-alive requests (wrk) in live mode after a warm-up, and its
resident memory must not follow the number of requests."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import LOOPBACK, REPO, free_ports

WARM_UP_REQUESTS = 20_000
MEASURED_REQUESTS = 200_000
# The old service grew by ~130 bytes per request (26 MB over 200 k). 4 MiB is
# about 21 bytes per request: a leak of a sixth of that rate fails, while
# HAProxy's pools and Lua's collector, warmed up by 20 k requests, move the
# resident size by well under 1 MiB per 100 k requests.
MAX_GROWTH_KIB = 4096
CONNECTIONS = 8


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory):
    """benchmarks/fast_echo.c, compiled here: a probe per request is more than
    the Python fake servers answer quickly. (host, port) of its echo port."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("no C compiler (apt-get install gcc) for benchmarks/fast_echo.c")
    workdir = tmp_path_factory.mktemp("fast_echo")
    binary = workdir / "fast_echo"
    subprocess.run([compiler, "-O2", "-o", str(binary), str(REPO / "benchmarks" / "fast_echo.c")], check=True)
    echo_port, control_port = free_ports(2)
    proc = subprocess.Popen([str(binary), LOOPBACK, str(echo_port), LOOPBACK, str(control_port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 5
    while True:
        try:
            socket.create_connection((LOOPBACK, echo_port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > end or proc.poll() is not None:
                proc.kill()
                pytest.fail("fast_echo does not listen on %d" % echo_port)
            time.sleep(0.02)
    yield LOOPBACK, echo_port
    proc.terminate()
    proc.wait(5)


def haproxy_pid(service):
    """The pid of the HAProxy serving ``service``: its own process, or, with
    CHECKTCP_HAPROXY_IMAGE, the container's (tests/lua/bin/haproxy names it)."""
    if not os.environ.get("CHECKTCP_HAPROXY_IMAGE"):
        return service.proc.pid
    name = "%s-haproxy-%d" % (os.environ.get("CHECKTCP_ID", "checktcp"), service.proc.pid)
    return int(subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", name],
                              check=True, capture_output=True, text=True).stdout)


def rss_kib(pid):
    status = pathlib.Path("/proc/%d/status" % pid).read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M).group(1))


def wrk(port, seconds):
    """Run wrk for ``seconds`` with CONNECTIONS keep-alive connections; return (requests, non-2xx)."""
    output = subprocess.run(["wrk", "-t2", "-c%d" % CONNECTIONS, "-d%ds" % seconds,
                             "http://%s:%d/" % (LOOPBACK, port)],
                            check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return requests, int(found.group(1)) if found else 0, output


def load(port, count):
    """At least ``count`` requests; return (requests, non-2xx, wrk outputs)."""
    done, bad, outputs, seconds = 0, 0, [], 3
    while done < count:
        requests, errors, output = wrk(port, seconds)
        done, bad = done + requests, bad + errors
        outputs.append(output)
        rate = max(requests / seconds, 100)
        seconds = max(1, min(60, int((count - done) / rate) + 1))
    return done, bad, outputs


def test_live_mode_memory_stays_flat(deploy, echo_server):
    host, port = echo_server
    [service] = deploy({"haproxy_checktcp_targets": [{"host": host, "port": port}],
                        "haproxy_checktcp_timeout_ms": 1000})
    assert service.request().status == 200, service.log_text()
    pid = haproxy_pid(service)

    warmed, bad, outputs = load(service.port, WARM_UP_REQUESTS)
    assert bad == 0, outputs
    before = rss_kib(pid)
    measured, bad, outputs = load(service.port, MEASURED_REQUESTS)
    after = rss_kib(pid)

    assert bad == 0, outputs
    growth = after - before
    print("HAProxy RSS %d -> %d KiB over %d requests (after %d to warm up): %.1f bytes/request"
          % (before, after, measured, warmed, growth * 1024 / measured))
    assert growth <= MAX_GROWTH_KIB, "RSS grew by %d KiB over %d requests (%.1f bytes/request)" % (
        growth, measured, growth * 1024 / measured)
    assert service.request().status == 200
