# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests of roles/echo_server/files/checktcp_echo.py over real loopback sockets.

Most tests run the server in-process (see conftest.ThreadedServer); signal,
exit-status and logging tests run the script as a subprocess."""

import concurrent.futures
import logging
import re
import resource
import signal
import socket
import time

import pytest

TIMEOUT = 5


# --------------------------------------------------------------- helpers

def connect(host, port, rcvbuf=None, sndbuf=None):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.settimeout(TIMEOUT)
    sock.connect((host, port))
    return sock


def recv_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def read_until_closed(sock, timeout=TIMEOUT):
    """Read until EOF or reset; fail (socket.timeout) if still open."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def assert_echoes(sock, line=b"ping\n"):
    sock.sendall(line)
    assert recv_exact(sock, len(line)) == line


def expected_header(sock):
    """The header the server should send to this client socket."""
    def fmt(addr):
        return "[%s]:%d" % addr[:2] if ":" in addr[0] else "%s:%d" % addr[:2]
    return ("ECHO client=%s server=%s\n"
            % (fmt(sock.getsockname()), fmt(sock.getpeername()))).encode()


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def wait_until(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --------------------------------------------------------------- header

@pytest.mark.parametrize("client, server, header", [
    (("127.0.0.1", 41234), ("127.0.0.1", 8080),
     b"ECHO client=127.0.0.1:41234 server=127.0.0.1:8080\n"),
    (("::1", 41234, 0, 0), ("::1", 8080, 0, 0),
     b"ECHO client=[::1]:41234 server=[::1]:8080\n"),
    (("::ffff:192.0.2.7", 5, 0, 0), ("2001:db8::1", 65535, 0, 0),
     b"ECHO client=[::ffff:192.0.2.7]:5 server=[2001:db8::1]:65535\n"),
], ids=["ipv4", "ipv6", "ipv6-mapped"])
def test_format_header(echo_module, client, server, header):
    assert echo_module.format_header(client, server) == header


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_header_names_both_ends(start_server, host):
    if host == "::1" and not ipv6_loopback_available():
        pytest.skip("IPv6 loopback ::1 not available on this host")
    srv = start_server(bind=host)
    with connect(host, srv.port) as sock:
        header = read_line(sock)
        assert header == expected_header(sock)
        assert header.startswith(b"ECHO client=%s:" % (
            b"[::1]" if host == "::1" else b"127.0.0.1"))


# --------------------------------------------------------------- echo

@pytest.mark.parametrize("payload", [
    b"check\nhello world\nthird line\n",
    b"check\r\nsecond\r\n",
    b"\x00\x01\xfe\xff\r\x7f\n" + bytes(b for b in range(256) if b != 10) + b"\n",
    b"\n\r\n\n",
    b"first\nno newline at the end",
], ids=["lf-lines", "crlf-lines", "binary", "empty-lines", "partial-at-eof"])
def test_echo_until_eof(start_server, payload):
    srv = start_server()
    with connect(srv.host, srv.port) as sock:
        header = expected_header(sock)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert read_until_closed(sock) == header + payload


def test_echo_line_by_line(start_server):
    """Each line is echoed as it arrives, the dialogue the HAProxy check has."""
    srv = start_server()
    with connect(srv.host, srv.port) as sock:
        assert read_line(sock) == expected_header(sock)
        for line in (b"check\n", b"second\r\n", b"\x00\xfe\xff\n"):
            assert_echoes(sock, line)


# --------------------------------------------------------------- line limit

@pytest.mark.parametrize("line", [b"a" * 64 + b"\n", b"a" * 63 + b"\r\n"],
                         ids=["lf", "crlf"])
def test_line_at_limit_is_echoed(start_server, line):
    srv = start_server(max_line_bytes=64)
    with connect(srv.host, srv.port) as sock:
        read_line(sock)
        assert_echoes(sock, line)
        assert_echoes(sock)


@pytest.mark.parametrize("payload", [b"a" * 65 + b"\n", b"a" * 1000],
                         ids=["one-byte-over", "no-newline"])
def test_overlong_line_closes_connection(start_server, caplog, payload):
    caplog.set_level(logging.DEBUG, logger="checktcp_echo")
    srv = start_server(max_line_bytes=64)
    with connect(srv.host, srv.port) as sock:
        read_line(sock)
        client = "127.0.0.1:%d" % sock.getsockname()[1]
        sock.sendall(payload)
        assert read_until_closed(sock) == b""  # closed, nothing echoed
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING]
    assert any(client in msg and "longer than 64" in msg for msg in warnings)
    with connect(srv.host, srv.port) as other:  # the server still serves
        assert read_line(other) == expected_header(other)
        assert_echoes(other)


def test_overlong_stream_is_not_buffered(start_server):
    """A newline-free stream is cut off near the limit, not read into memory."""
    srv = start_server(max_line_bytes=1024)
    total = 64 * 1024 * 1024  # far more than loopback socket buffers hold
    chunk = b"x" * 65536
    sent = 0
    with connect(srv.host, srv.port) as sock:
        read_line(sock)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while sent < total:
                sent += sock.send(chunk)
    assert sent < total


# --------------------------------------------------------------- timeouts

def test_idle_connection_is_closed(start_server):
    srv = start_server(idle_timeout=0.3)
    with connect(srv.host, srv.port) as sock:
        read_line(sock)
        started = time.monotonic()
        assert read_until_closed(sock, timeout=3) == b""
        assert 0.25 <= time.monotonic() - started < 2


def test_lines_reset_idle_timer(start_server):
    srv = start_server(idle_timeout=0.3)
    with connect(srv.host, srv.port) as sock:
        read_line(sock)
        for _round in range(6):  # 0.9 s in all, three times the idle timeout
            time.sleep(0.15)
            assert_echoes(sock)
        started = time.monotonic()
        assert read_until_closed(sock, timeout=3) == b""
        assert 0.25 <= time.monotonic() - started < 2


def test_client_not_reading_is_closed(start_server, caplog):
    """Echoes pile up when the client never reads; the server gives up after
    the idle timeout instead of buffering without bound."""
    caplog.set_level(logging.DEBUG, logger="checktcp_echo")
    srv = start_server(idle_timeout=0.3, max_line_bytes=65536)
    line = b"y" * 65535 + b"\n"
    pending = memoryview(line)
    sent = 0
    with connect(srv.host, srv.port, rcvbuf=4096, sndbuf=4096) as sock:
        assert read_line(sock) == expected_header(sock)
        client = "127.0.0.1:%d" % sock.getsockname()[1]
        sock.settimeout(0.5)
        try:
            while sent < 256 * 1024 * 1024:
                count = sock.send(pending)  # may be partial: keep lines whole
                sent += count
                pending = pending[count:] or memoryview(line)
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            pass  # blocked by full buffers, or already closed by the server
        assert sent < 256 * 1024 * 1024, "the server never stopped reading"
        assert wait_until(lambda: srv.connection_count() == 0, timeout=3)
        echoed = read_until_closed(sock)
    assert len(echoed) < sent  # the rest was dropped, not delivered late
    messages = [r.getMessage() for r in caplog.records]
    assert "%s: not reading its replies for 0.3s, closing" % client in messages
    assert not any("longer than" in msg for msg in messages)


# --------------------------------------------------------------- connection limit

def test_limit_evicts_longest_idle(start_server, caplog):
    caplog.set_level(logging.INFO, logger="checktcp_echo")
    srv = start_server(max_connections=5, idle_timeout=30)
    socks = [connect(srv.host, srv.port) for _index in range(5)]
    try:
        for sock in socks:
            assert read_line(sock) == expected_header(sock)
        assert_echoes(socks[1])  # socks[1] is now the most recently active
        first_port = socks[0].getsockname()[1]

        socks.append(connect(srv.host, srv.port))
        assert read_line(socks[5]) == expected_header(socks[5])
        assert read_until_closed(socks[0]) == b""  # the oldest and idlest
        socks.append(connect(srv.host, srv.port))
        assert read_line(socks[6]) == expected_header(socks[6])
        assert read_until_closed(socks[2]) == b""  # not socks[1]: it was active

        for sock in (socks[1], socks[3], socks[4], socks[5], socks[6]):
            assert_echoes(sock)
        assert srv.connection_count() == 5
    finally:
        for sock in socks:
            sock.close()
    assert any("longest-idle" in r.getMessage()
               and "127.0.0.1:%d" % first_port in r.getMessage()
               and r.levelno == logging.INFO for r in caplog.records)


@pytest.fixture
def nofile_limit():
    """Raise the soft RLIMIT_NOFILE towards what the test needs, restore after."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)

    def ensure(needed):
        soft, hard = old
        if soft < needed:
            target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft < needed:
            pytest.skip("RLIMIT_NOFILE is %d (hard %d); this test needs %d "
                        "descriptors (client and server side of each connection "
                        "in one process)" % (soft, hard, needed))

    yield ensure
    resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_many_idle_connections_do_not_lock_out(start_server, nofile_limit):
    count = 1000
    nofile_limit(2 * count + 200)
    srv = start_server(max_connections=count, idle_timeout=30)
    idle = []
    try:
        for _index in range(count):
            idle.append(connect(srv.host, srv.port))
            read_line(idle[-1])  # accepted and registered, in this order
        assert srv.connection_count() == count
        with connect(srv.host, srv.port) as client:
            assert read_line(client) == expected_header(client)
            assert_echoes(client, b"check\n")
        assert read_until_closed(idle[0]) == b""  # evicted to make room
        assert_echoes(idle[1])  # the others are still open
    finally:
        for sock in idle:
            sock.close()


# --------------------------------------------------------------- command line

def test_cli_defaults(echo_module):
    args = echo_module.parse_args([])
    assert (args.bind, args.port, args.max_line_bytes, args.idle_timeout,
            args.max_connections, args.log_level) == (
        "127.0.0.1", 8080, 4096, 30.0, 1024, "info")


@pytest.mark.parametrize("argv, option", [
    (["--port", "-1"], "--port"),
    (["--port", "65536"], "--port"),
    (["--port", "http"], "--port"),
    (["--max-line-bytes", "0"], "--max-line-bytes"),
    (["--max-connections", "-5"], "--max-connections"),
    (["--idle-timeout", "0"], "--idle-timeout"),
    (["--idle-timeout", "-1.5"], "--idle-timeout"),
    (["--idle-timeout", "nan"], "--idle-timeout"),
    (["--log-level", "verbose"], "--log-level"),
])
def test_cli_rejects_invalid_values(echo_module, capsys, argv, option):
    with pytest.raises(SystemExit) as exc:  # parse_args(): main() would serve
        echo_module.parse_args(argv)
    assert exc.value.code == 2
    assert "argument %s:" % option in capsys.readouterr().err


# --------------------------------------------------------------- process

LINE_FORMAT = re.compile(r"<[0-7]>\S.*")


def start_script(run_script, *args):
    proc = run_script("--port", "0", *args)
    line = proc.wait_for_line("listening on")
    match = re.fullmatch(r"<6>listening on 127\.0\.0\.1:(\d+)", line or "")
    assert match, "no listening line, stderr: %r" % proc.lines
    return proc, int(match.group(1))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(run_script, signum):
    proc, port = start_script(run_script)
    assert port != 0
    with connect("127.0.0.1", port) as sock:
        assert read_line(sock) == expected_header(sock)
        assert_echoes(sock, b"check\n")
        proc.proc.send_signal(signum)
        assert proc.wait() == 0
        assert read_until_closed(sock) == b""
    with pytest.raises(ConnectionRefusedError):
        connect("127.0.0.1", port)
    assert all(LINE_FORMAT.fullmatch(line) for line in proc.lines), proc.lines


@pytest.mark.parametrize("level, per_connection", [("debug", True), ("info", False)])
def test_per_connection_logs_only_at_debug(run_script, level, per_connection):
    proc, port = start_script(run_script, "--log-level", level)
    with connect("127.0.0.1", port) as sock:
        read_line(sock)
        assert_echoes(sock)
        client = "127.0.0.1:%d" % sock.getsockname()[1]
        sock.shutdown(socket.SHUT_WR)
        read_until_closed(sock)
    if per_connection:
        assert proc.wait_for_line("<7>%s: closed" % client)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert any(client in line for line in proc.lines) == per_connection
    assert all(LINE_FORMAT.fullmatch(line) for line in proc.lines), proc.lines


def _resolves_quickly_as_unknown(name):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(socket.getaddrinfo, name, 80)
        try:
            future.result(timeout=3)
        except socket.gaierror:
            return True
        except Exception:
            return False
    return False


@pytest.mark.parametrize("case", ["in-use", "not-local", "unresolvable"])
def test_bind_failure_exits_1(run_script, case):
    # Python 3.13 reports an unassignable address as "could not bind on any".
    messages = {"in-use": ("address already in use",),
                "not-local": ("cannot assign requested address",
                              "could not bind on any address"),
                "unresolvable": ("cannot listen on no-such-host.invalid:",)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if case == "in-use":
            args = ("--port", str(taken.getsockname()[1]))
        elif case == "not-local":
            args = ("--bind", "192.0.2.1")  # TEST-NET-1, never a local address
        else:
            if not _resolves_quickly_as_unknown("no-such-host.invalid"):
                pytest.skip("the resolver does not quickly fail *.invalid names")
            args = ("--bind", "no-such-host.invalid")
        proc = run_script(*args)
        assert proc.wait(timeout=15) == 1
    errors = [line for line in proc.lines if line.startswith("<3>cannot listen on")]
    assert errors and any(m in errors[0].lower() for m in messages[case]), proc.lines
    assert not any("Traceback" in line for line in proc.lines), proc.lines
