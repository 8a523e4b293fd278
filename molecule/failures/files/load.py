# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small HTTP load generator for the reload-under-load test (standard library only).

Each of --threads threads loops until --seconds have passed (or --stop-file
appears): open a new TCP connection, send ``GET /`` (HTTP/1.1, Connection:
close), read the whole response, record its status or the error. The counts
go to --out as JSON: {total, ok_200, non_200, errors, error_samples, ...};
with --progress, the number of requests answered so far is written there
every PROGRESS_PERIOD_S, so a test can wait for traffic instead of sleeping.
"""

import argparse
import json
import os
import socket
import threading
import time
import urllib.parse

PROGRESS_PERIOD_S = 0.05


def fetch(host, port, path, timeout):
    """Return the HTTP status of one request on a fresh connection."""
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: checktcp-load\r\n"
               "Connection: close\r\n\r\n").encode("ascii")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    response = b"".join(chunks)
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"incomplete response ({len(response)} bytes)")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    for line in lines[1:]:
        name, _colon, value = line.partition(":")
        if name.strip().lower() == "content-length" and int(value) != len(body):
            raise ValueError(f"short body: {len(body)} of {int(value)} bytes")
    return status


class Counts:
    """Counters shared by the threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.total = self.ok_200 = self.non_200 = self.errors = 0
        self.statuses = {}
        self.error_samples = []
        self.max_seconds = 0.0

    def add(self, status, error, seconds):
        with self.lock:
            self.total += 1
            self.max_seconds = max(self.max_seconds, seconds)
            if error is not None:
                self.errors += 1
                if len(self.error_samples) < 20:
                    self.error_samples.append(f"{time.strftime('%H:%M:%S')} {error}")
            elif status == 200:
                self.ok_200 += 1
            else:
                self.non_200 += 1
                self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1


def worker(args, target, counts, end):
    host, port, path = target
    while time.monotonic() < end and not os.path.exists(args.stop_file or ""):
        started = time.monotonic()
        status, error = None, None
        try:
            status = fetch(host, port, path, args.timeout)
        except (OSError, ValueError, IndexError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        counts.add(status, error, time.monotonic() - started)


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def report_progress(path, counts, done):
    while not done.wait(PROGRESS_PERIOD_S):
        write_atomically(path, str(counts.total))
    write_atomically(path, str(counts.total))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1/")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--stop-file", default=None, help="stop early once this file exists")
    parser.add_argument("--out", required=True)
    parser.add_argument("--progress", default=None, help="write the number of requests done so far here")
    args = parser.parse_args()

    url = urllib.parse.urlsplit(args.url)
    target = (url.hostname, url.port or 80, url.path or "/")
    counts = Counts()
    started = time.monotonic()
    end = started + args.seconds
    threads = [threading.Thread(target=worker, args=(args, target, counts, end)) for _n in range(args.threads)]
    done = threading.Event()
    if args.progress:
        threads.append(threading.Thread(target=report_progress, args=(args.progress, counts, done)))
    for thread in threads:
        thread.start()
    for thread in threads[:args.threads]:
        thread.join()
    done.set()
    for thread in threads[args.threads:]:
        thread.join()
    result = {
        "total": counts.total, "ok_200": counts.ok_200, "non_200": counts.non_200,
        "errors": counts.errors, "error_samples": counts.error_samples,
        "statuses": counts.statuses, "seconds": round(time.monotonic() - started, 2),
        "max_request_seconds": round(counts.max_seconds, 3),
    }
    write_atomically(args.out, json.dumps(result))


if __name__ == "__main__":
    main()
