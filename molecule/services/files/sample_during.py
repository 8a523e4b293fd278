# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ask each URL every 10 ms while a command runs and for SECONDS after it;
print {"rc": the command's exit status, "answers": {url: {status: count}}}
as JSON (status 0: no answer, such as while HAProxy restarts).

Usage: sample_during.py SECONDS COMMAND URL..."""

import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse


def status_of(url):
    """The HTTP status of a GET of url (0: no answer)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=2)
    try:
        conn.request("GET", parts.path + ("?" + parts.query if parts.query else ""))
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def sample(url, answers, stopping):
    while not stopping.is_set():
        status = status_of(url)
        answers[str(status)] = answers.get(str(status), 0) + 1
        time.sleep(0.01)


def main(seconds, command, *urls):
    answers = {url: {} for url in urls}
    stopping = threading.Event()
    threads = [threading.Thread(target=sample, args=(url, answers[url], stopping)) for url in urls]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    rc = subprocess.run(command, shell=True, check=False).returncode
    time.sleep(float(seconds))
    stopping.set()
    for thread in threads:
        thread.join()
    print(json.dumps({"rc": rc, "answers": answers}))


if __name__ == "__main__":
    main(*sys.argv[1:])
