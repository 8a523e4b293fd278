"""Endurance: 90 s of load (8 clients) while the echo server flaps every 2 s.

Both verdicts must be seen, every answer must be 200 or 503 (no error, no
other status), and the HAProxy worker must give back what the load took: once
the load stops and a settle period passes, its open file descriptors equal
the baseline and its RSS is within RSS_MARGIN_KIB of it.

The baseline is taken after a 30 s warm-up of the same load and flapping: HAProxy
keeps the memory its pools and the Lua state grew to on first use, and that
is not a leak. What a leak would show is growth over the 90 s that stays.
"""

import json
import time

import pytest

LOAD_UNIT = "checktcp-endurance-load"
FLAP_UNIT = "checktcp-endurance-flap"
LOAD_OUT = "/tmp/checktcp-endurance.json"
LOAD = "/usr/local/lib/checktcp-tests/load.py"
ECHO_UNIT = "checktcp-echo.service"
WARMUP_S = 30
SAMPLE_S = 10
LOAD_S = 90
SETTLE_S = 5
# HAProxy's pools and Lua's garbage collector return memory lazily: a settled
# worker may hold a few MiB more than at the baseline. A leak of 64 bytes per
# request, over the load's tens of thousands of requests, exceeds it.
RSS_MARGIN_KIB = 4096
# Stop for 2 s, start, 2 s up; systemd's start limit (5 in 10 s) is never hit.
FLAP = (f"while :; do systemctl stop {ECHO_UNIT}; sleep 2; systemctl reset-failed {ECHO_UNIT}; "
        f"systemctl start {ECHO_UNIT}; sleep 2; done")


def _worker(system):
    """The one current HAProxy worker (waits for old workers of earlier reloads to leave)."""
    deadline = time.monotonic() + 30
    while True:
        _master, workers = system.haproxy_pids()
        if len(workers) == 1 or time.monotonic() > deadline:
            assert len(workers) == 1, f"HAProxy workers: {workers}"
            return workers.pop()
        time.sleep(0.5)


def _usage(host, pid):
    rss = int(host.check_output(f"awk '/^VmRSS:/ {{print $2}}' /proc/{pid}/status"))
    fds = int(host.check_output(f"ls /proc/{pid}/fd | wc -l"))
    return rss, fds


def _load(host, seconds, worker=None, samples=None):
    """Run load.py for `seconds`; every SAMPLE_S, append the worker's (RSS, fds) to `samples`."""
    host.run(f"systemctl stop {LOAD_UNIT}; systemctl reset-failed {LOAD_UNIT}; rm -f {LOAD_OUT}")
    host.run_expect([0], (
        f"systemd-run --unit {LOAD_UNIT} --collect python3 {LOAD} --url http://127.0.0.1/ "
        f"--threads 8 --seconds {seconds} --out {LOAD_OUT}"))
    deadline = time.monotonic() + seconds + 60
    while not host.file(LOAD_OUT).exists:
        assert time.monotonic() < deadline, "load.py did not finish"
        if worker is not None:
            samples.append(_usage(host, worker))
        time.sleep(SAMPLE_S)
    return json.loads(host.file(LOAD_OUT).content_string)


class Endurance:
    def __init__(self, host, status, system):
        host.run(f"systemctl stop {FLAP_UNIT}; systemctl reset-failed {FLAP_UNIT}")
        host.run_expect([0], f"systemd-run --unit {FLAP_UNIT} --collect sh -c {json.dumps(FLAP)}")
        try:
            self.warmup = _load(host, WARMUP_S)
            time.sleep(SETTLE_S)
            self.worker = _worker(system)
            self.baseline = _usage(host, self.worker)
            self.samples = []
            self.counts = _load(host, LOAD_S, self.worker, self.samples)
            self.peak_worker = _worker(system)
        finally:
            host.run(f"systemctl stop {FLAP_UNIT}")
            host.run(f"systemctl reset-failed {ECHO_UNIT}; systemctl start {ECHO_UNIT}")
        time.sleep(SETTLE_S)
        self.after = _usage(host, self.worker)
        self.final = status.wait_for(200)
        self.journal = status.journal()


@pytest.fixture(scope="module")
def endurance(host, status, system):
    assert status.wait_for(200)[0] == 200, status.journal()
    return Endurance(host, status, system)


def test_both_verdicts_and_nothing_else(endurance, figures):
    counts = endurance.counts
    summary = (f"{counts['total']} requests in {counts['seconds']} s, 8 clients, echo server flapping every 2 s: "
               f"200: {counts['ok_200']}, others: {counts['statuses']}, errors: {counts['errors']}, "
               f"slowest {counts['max_request_seconds']} s")
    figures("Endurance", summary)
    context = f"{summary}\nerror samples: {counts['error_samples']}\n{endurance.journal}"
    assert counts["errors"] == 0, context
    assert set(counts["statuses"]) <= {"503"}, context
    assert counts["ok_200"] > 0 and counts["statuses"].get("503", 0) > 0, context
    assert endurance.final[0] == 200, context


def test_worker_gives_back_memory_and_file_descriptors(endurance, figures):
    (rss0, fds0), (rss1, fds1) = endurance.baseline, endurance.after
    figures("Endurance", f"worker {endurance.worker}: RSS {rss0} KiB -> {rss1} KiB ({rss1 - rss0:+d} KiB, "
                         f"margin {RSS_MARGIN_KIB} KiB), open fds {fds0} -> {fds1}, {SETTLE_S} s after the load")
    figures("Endurance", "during the load, every %d s: RSS KiB %s, open fds %s" % (
        SAMPLE_S, [rss for rss, _fds in endurance.samples], [fds for _rss, fds in endurance.samples]))
    assert endurance.peak_worker == endurance.worker, "HAProxy changed its worker during the load"
    assert fds1 == fds0, f"open fds {fds0} -> {fds1}\n{endurance.journal}"
    assert rss1 <= rss0 + RSS_MARGIN_KIB, f"RSS {rss0} -> {rss1} KiB\n{endurance.journal}"
