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
# Wall-clock budgets: a slower HAProxy (or a loaded machine) does fewer
# requests, and the bound below scales with the number done.
WARM_UP_BUDGET_S = 20
MEASURED_BUDGET_S = 60
# Fewer requests than this could not show a leak of the old size above noise.
MIN_MEASURED_REQUESTS = 10_000
# The old service grew by ~130 bytes per request (26 MB over 200 k). Allowed:
# 1 MiB of noise (HAProxy's pools and Lua's collector, warmed up, moved the
# resident size by 0 KiB over 211 k requests on 2.6) plus 20 bytes per
# request, so a leak of a sixth of the old rate fails.
NOISE_KIB = 1024
MAX_BYTES_PER_REQUEST = 20
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
    # fast_echo binds without SO_REUSEPORT: the ports are released for it.
    echo_port, control_port = free_ports(2, hold=False)
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


def load(port, count, budget_s):
    """``count`` requests or ``budget_s`` seconds of them, whichever comes
    first; return (requests, non-2xx, wrk outputs)."""
    done, bad, outputs, seconds = 0, 0, [], 3
    end = time.monotonic() + budget_s
    while done < count and time.monotonic() + 1 < end:
        seconds = max(1, min(seconds, int(end - time.monotonic())))
        requests, errors, output = wrk(port, seconds)
        done, bad = done + requests, bad + errors
        outputs.append(output)
        rate = max(requests / seconds, 1)
        seconds = int((count - done) / rate) + 1
    return done, bad, outputs


def test_live_mode_memory_stays_flat(deploy, echo_server):
    host, port = echo_server
    [service] = deploy({"haproxy_checktcp_targets": [{"host": host, "port": port}],
                        "haproxy_checktcp_timeout_ms": 1000})
    assert service.request().status == 200, service.log_text()
    pid = haproxy_pid(service)

    warmed, bad, outputs = load(service.port, WARM_UP_REQUESTS, WARM_UP_BUDGET_S)
    assert bad == 0, outputs
    before = rss_kib(pid)
    measured, bad, outputs = load(service.port, MEASURED_REQUESTS, MEASURED_BUDGET_S)
    after = rss_kib(pid)

    assert bad == 0, outputs
    growth = after - before
    print("HAProxy RSS %d -> %d KiB over %d requests (after %d to warm up): %.1f bytes/request"
          % (before, after, measured, warmed, growth * 1024 / max(measured, 1)))
    assert measured >= MIN_MEASURED_REQUESTS, "only %d requests in %d s: too few to see a leak\n%s" % (
        measured, MEASURED_BUDGET_S, outputs[-1])
    assert growth <= NOISE_KIB + MAX_BYTES_PER_REQUEST * measured / 1024, \
        "RSS grew by %d KiB over %d requests (%.1f bytes/request)" % (growth, measured, growth * 1024 / measured)
    assert service.request().status == 200
