# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readiness for systemd (Type=notify), journal records, rate-limited abuse logs."""

import logging
import os
import re
import signal
import socket
import time

import pytest

TIMEOUT = 5


def open_notify_socket(tmp_path, abstract):
    """A datagram socket like systemd's $NOTIFY_SOCKET; returns (socket, value of the variable)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = "checktcp-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
        sock.bind("\0" + name)
        value = "@" + name
    else:
        value = str(tmp_path / "notify")
        sock.bind(value)
    sock.settimeout(TIMEOUT)
    return sock, value


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_is_signalled_once_listening(run_script, monkeypatch, tmp_path, abstract):
    """READY=1 reaches $NOTIFY_SOCKET only when the port already accepts; STOPPING=1 on SIGTERM."""
    notify, value = open_notify_socket(tmp_path, abstract)
    with notify:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
        proc = run_script("--port", "0")
        message = notify.recv(4096).decode()
        assert "READY=1" in message.split("\n"), message
        # The port is the one logged; it must answer now, with no retry.
        line = proc.wait_for_line("listening on")
        port = int(line.rpartition(":")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            assert sock.makefile("rb").readline().startswith(b"ECHO client=")
        proc.proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in notify.recv(4096).decode().split("\n")
        assert proc.wait() == 0


def test_no_notify_socket_no_notification(run_script, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    proc = run_script("--port", "0")
    assert proc.wait_for_line("listening on")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert all(re.fullmatch(r"<[0-7]>\S.*", line) for line in proc.lines), proc.lines


@pytest.fixture
def clean_root_logger():
    """main() installs its journal handler on the root logger; take it away afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_asyncio_errors_are_single_journal_records(echo_module, monkeypatch, capsys,
                                                   clean_root_logger):
    """An error asyncio itself logs (with a traceback) is one line with a priority prefix."""
    async def fail_in_a_callback(_args):
        loop = echo_module.asyncio.get_running_loop()

        def broken():
            raise KeyError("boom")
        loop.call_soon(broken)
        await echo_module.asyncio.sleep(0.05)
        return 0

    monkeypatch.setattr(echo_module, "_run", fail_in_a_callback)
    assert echo_module.main(["--port", "0"]) == 0
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if "boom" in line]
    assert len(errors) == 1, lines
    assert errors[0].startswith("<3>") and "Traceback" in errors[0], lines
    assert all(re.fullmatch(r"<[0-7]>\S.*", line) for line in lines), lines


def test_abuse_logs_are_rate_limited(start_server, caplog):
    """Clients can trigger warnings (over-long lines): a burst is cut short and counted."""
    caplog.set_level(logging.DEBUG, logger="checktcp_echo")
    srv = start_server(max_line_bytes=64, log_burst=10, log_period=3.0)
    started = time.monotonic()
    for _index in range(40):
        with socket.create_connection((srv.host, srv.port), timeout=TIMEOUT) as sock:
            sock.makefile("rb").readline()
            try:
                sock.sendall(b"z" * 200 + b"\n")
                sock.recv(1)  # wait until the server closed it
            except ConnectionResetError:
                pass
    assert time.monotonic() - started < 3.0, "too slow to test a 3 s window"
    time.sleep(3.5)  # the window ends: what was dropped is counted

    def warnings():
        return [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and r.name == "checktcp_echo"]
    overlong = [msg for msg in warnings() if "longer than 64" in msg]
    assert len(overlong) == 10, warnings()
    assert any("suppressing" in msg for msg in warnings()), warnings()
    assert any(re.fullmatch(r"suppressed 30 client-triggered messages in the last 3s", msg)
               for msg in warnings()), warnings()
