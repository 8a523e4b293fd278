# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory of the echo server under clients that send lines and never read the echoes.

The script runs as a subprocess with its defaults (as the unit runs it), so its
resident memory is the server's alone."""

import re
import resource
import socket
import time

import pytest

CLIENTS = 1000
# The unit's MemoryMax is 128M by default; a bounded server stays well under it.
MAX_RSS_BYTES = 64 * 1024 * 1024
BLOCK = (b"n" * 63 + b"\n") * 1024  # 64 KiB of 64-byte lines


def rss_bytes(pid, field="VmRSS"):
    """Resident memory of pid now (VmRSS), or its peak so far (VmHWM)."""
    with open("/proc/%d/status" % pid, encoding="ascii") as status:
        return int(re.search(r"^%s:\s+(\d+) kB" % field, status.read(), re.M).group(1)) * 1024


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid, encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_until_idle(pid, quiet_samples=5, period=0.05, within=10.0):
    """Poll until pid uses no CPU for quiet_samples periods in a row: it has taken in
    all it will take. Fails after `within` seconds."""
    deadline = time.monotonic() + within
    last, quiet = cpu_ticks(pid), 0
    while quiet < quiet_samples:
        assert time.monotonic() < deadline, "the server never went idle"
        time.sleep(period)
        now = cpu_ticks(pid)
        quiet = quiet + 1 if now == last else 0
        last = now


def flood(socks, seconds):
    """Send lines on every socket until the server stops taking them (or time is up)."""
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        sent = 0
        for sock in socks:
            try:
                sent += sock.send(BLOCK)
            except BlockingIOError:
                pass
            except OSError:  # closed by the server: fine, nothing more to send
                pass
        total += sent
        if not sent:
            break
    return total


@pytest.fixture
def many_files():
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = CLIENTS + 200
    if old[0] < needed:
        if old[1] != resource.RLIM_INFINITY and old[1] < needed:
            pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (old[1], needed))
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, old[1]))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, old)


@pytest.mark.slow
def test_never_reading_clients_stay_under_the_ceiling(run_script, many_files, echo_module):
    proc = run_script("--port", "0")  # defaults: 4096-byte lines, 1024 connections
    line = proc.wait_for_line("listening on")
    assert line, proc.lines
    port = int(line.rpartition(":")[2])
    before = rss_bytes(proc.proc.pid)
    socks = []
    try:
        for _index in range(CLIENTS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            socks.append(sock)
        sent = flood(socks, seconds=20)
        wait_until_idle(proc.proc.pid)  # it has taken in what was in flight
        # The peak, not what is left: VmHWM.
        after = rss_bytes(proc.proc.pid, "VmHWM")
        figures = (CLIENTS, before / 2**20, after / 2**20, sent / 2**20)
        print("echo server RSS with %d never-reading clients: %.1f MiB before, peak %.1f MiB "
              "(%.0f MiB of lines sent)" % figures)
        assert proc.proc.poll() is None, proc.lines
        assert after < MAX_RSS_BYTES, "RSS %.1f MiB" % (after / 2**20)
        # The documented bound per connection (module docstring, role README).
        bound = CLIENTS * (3 * (4096 + 1) + echo_module.CONNECTION_OVERHEAD_BYTES)
        assert after - before <= bound, "grew %.1f MiB, bound %.1f MiB" % (
            (after - before) / 2**20, bound / 2**20)
        # Still serving: a well-behaved client gets its header and its echo.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as good:
            good.makefile("rb").readline()
            good.sendall(b"check\n")
            assert good.recv(6) == b"check\n"
    finally:
        for sock in socks:
            sock.close()
