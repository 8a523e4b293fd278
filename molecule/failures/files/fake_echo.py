# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A purpose-built misbehaving echo server for the failure-mode tests (stdlib only).

    python3 fake_echo.py --port 8080 --behaviour NAME

Every connection is served in its own thread according to NAME:

silent              accept, never send anything
header-only         send the header line, never echo
wrong-line          header, then a wrong reply line
crlf                header and the right reply, both with CRLF endings
prefix              header, then a reply that only starts with the expected line
slow-ok             header, then the right reply after 600 ms
close-after-header  header, read the probe line, then close (FIN)
garbage             header, then binary bytes (NUL included) and a newline
endless-line        header, then bytes without any newline, for as long as the peer reads
reset               close at once with SO_LINGER 0 (a TCP reset), nothing sent
"""

import argparse
import socket
import struct
import threading
import time

HOLD_SECONDS = 30.0


def header(conn, ending=b"\n"):
    client = "%s:%d" % conn.getpeername()[:2]
    server = "%s:%d" % conn.getsockname()[:2]
    return f"ECHO client={client} server={server}".encode("ascii") + ending


def read_line(conn):
    """Read up to and including a newline (or until the peer stops sending)."""
    data = b""
    while not data.endswith(b"\n") and len(data) < 4096:
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def hold(conn):
    """Keep the connection open, reading and discarding, for a while."""
    conn.settimeout(HOLD_SECONDS)
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass


def serve(conn, behaviour):
    if behaviour == "reset":
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return
    if behaviour == "silent":
        hold(conn)
        return
    conn.sendall(header(conn, b"\r\n" if behaviour == "crlf" else b"\n"))
    if behaviour == "header-only":
        hold(conn)
        return
    if behaviour == "endless-line":
        conn.settimeout(HOLD_SECONDS)
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            conn.sendall(b"x" * 1024)
        return
    read_line(conn)
    replies = {
        "wrong-line": b"nope\n",
        "crlf": b"check\r\n",
        "prefix": b"checkmate\n",
        "slow-ok": b"check\n",
        "garbage": b"\x00\x01\xfe\xff\x1b[0m\x7fgarbage\x00\n",
    }
    if behaviour == "slow-ok":
        time.sleep(0.6)
    if behaviour in replies:
        conn.sendall(replies[behaviour])
        hold(conn)
    # close-after-header: the probe line is read, so close() sends a FIN.


def handle(conn, behaviour):
    try:
        serve(conn, behaviour)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--behaviour", required=True,
                        choices=["silent", "header-only", "wrong-line", "crlf", "prefix", "slow-ok",
                                 "close-after-header", "garbage", "endless-line", "reset"])
    args = parser.parse_args()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((args.bind, args.port))
        server.listen(128)
        while True:
            conn, _addr = server.accept()
            threading.Thread(target=handle, args=(conn, args.behaviour), daemon=True).start()


if __name__ == "__main__":
    main()
