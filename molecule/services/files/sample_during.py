#!/usr/bin/python3
# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ask each URL every 10 ms while a command runs and for SECONDS after it;
print {"rc": the command's exit status, "answers": {url: {status: count}}}
as JSON (status 0: no answer, such as while HAProxy restarts).

Usage: sample_during.py SECONDS COMMAND URL..."""

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request


def sample(url, answers, stopping):
    while not stopping.is_set():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status = response.status
        except urllib.error.HTTPError as err:
            status = err.code
        except OSError:
            status = 0
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
