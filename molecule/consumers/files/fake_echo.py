# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake echo server that logs every connection, so tests can count probes (stdlib only).

    python3 -u fake_echo.py --port 8080 --behaviour echo|wrong [--behaviour-file PATH]

echo   header line, then the line read echoed back: a working echo server
wrong  header line, then a wrong reply: accepts TCP, so a plain TCP check
       keeps it in rotation, but the probe says KO

With --behaviour-file, each connection reads its behaviour from that file
(when it exists), so a test switches it without a moment of refused
connections.

Each accepted connection prints `connection from ADDRESS:PORT` (to the journal
when run by systemd-run).
"""

import argparse
import socket
import threading


def current(args):
    try:
        with open(args.behaviour_file, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, TypeError):
        return args.behaviour


def serve(conn, behaviour):
    with conn:
        conn.settimeout(5)
        try:
            conn.sendall(b"ECHO fake\n")
            line = conn.makefile("rb").readline()
            conn.sendall(line if behaviour == "echo" else b"nope\n")
        except OSError:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--behaviour", choices=["echo", "wrong"], required=True)
    parser.add_argument("--behaviour-file")
    args = parser.parse_args()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", args.port))
        server.listen(128)
        print("listening", flush=True)
        while True:
            conn, addr = server.accept()
            print("connection from %s:%d" % addr[:2], flush=True)
            threading.Thread(target=serve, args=(conn, current(args)), daemon=True).start()


if __name__ == "__main__":
    main()
