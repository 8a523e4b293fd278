"""Reloads under load: every request answered 200, HAProxy reloaded, never restarted.

The first run also turns haproxy_checktcp_details off (targets named by
their address), so the page is read then without its details, and the second
run reverts everything: two runs serve both checks.
"""

import json
import os
import time

import pytest

LOAD_UNIT = "checktcp-load"
LOAD_OUT = "/tmp/checktcp-load.json"
LOAD_STOP = "/tmp/checktcp-load.stop"
LOAD_PROGRESS = "/tmp/checktcp-load.progress"
# Requests answered before the first reload, and after the last one.
REQUESTS_AROUND_RELOADS = 200
LOAD = "/usr/local/lib/checktcp-tests/load.py"
# Each changes the checks (probe timeout, details) and haproxy.cfg (a timeout).
CHANGES = (
    {"haproxy_checktcp_timeout_ms": 900, "haproxy_timeout_client": "29s", "haproxy_checktcp_details": False,
     "haproxy_checktcp_targets": [{"host": "127.0.0.1", "port": 8080}]},
    {"haproxy_checktcp_timeout_ms": 1000, "haproxy_timeout_client": "30s", "haproxy_checktcp_details": True,
     "haproxy_checktcp_targets": None},
)
TARGET_NAME = os.environ["CHECKTCP_ID"] + "-failures-debian12"  # the derived target's label


class Reconfigured:
    """Two runs of apply.yml while load.py keeps asking the page."""

    def __init__(self, host, status, system, playbook):
        self.pages_before = [status.get(), status.get(headers=["Accept: application/json"])]
        host.run(f"systemctl stop {LOAD_UNIT}; systemctl reset-failed {LOAD_UNIT}; "
                 f"rm -f {LOAD_OUT} {LOAD_STOP} {LOAD_PROGRESS}")
        # Until the stop file, whatever the runs take (900 s at most).
        host.run_expect([0], (
            f"systemd-run --unit {LOAD_UNIT} --collect python3 {LOAD} --url http://127.0.0.1/ "
            f"--threads 8 --seconds 900 --stop-file {LOAD_STOP} --out {LOAD_OUT} --progress {LOAD_PROGRESS}"))
        self.runs, self.pids, self.pages_without_details = [], [], []
        try:
            # The load is flowing before the first reload...
            self.wait_for_requests(host, 0)
            self.pids.append(system.haproxy_pids())
            for change in CHANGES:
                self.runs.append(playbook.run(change))
                self.pids.append(system.haproxy_pids())
                if not self.pages_without_details:
                    self.pages_without_details = [status.get(), status.get(headers=["Accept: application/json"])]
            # ...and goes on through the new workers after the last one.
            self.wait_for_requests(host, self.requests_done(host))
        finally:
            host.run(f"touch {LOAD_STOP}")
            host.run(f"timeout 30 sh -c 'until test -e {LOAD_OUT}; do sleep 0.2; done'")
        self.counts = json.loads(host.file(LOAD_OUT).content_string)
        self.pages_after = [status.get(), status.get(headers=["Accept: application/json"])]
        self.journal = status.journal()

    @staticmethod
    def requests_done(host):
        text = host.run(f"cat {LOAD_PROGRESS} 2>/dev/null").stdout.strip()
        return int(text) if text.isdigit() else 0

    def wait_for_requests(self, host, since, within=30.0):
        """Poll until load.py has answered REQUESTS_AROUND_RELOADS requests more than `since`."""
        deadline = time.monotonic() + within
        while self.requests_done(host) < since + REQUESTS_AROUND_RELOADS:
            assert time.monotonic() < deadline, f"load.py answered {self.requests_done(host)} requests"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def reconfigured(host, status, system, playbook):
    code, _body, _seconds = status.wait_for(200)
    assert code == 200, status.journal()
    return Reconfigured(host, status, system, playbook)


@pytest.mark.parametrize("index", [0, 1], ids=["change", "revert"])
def test_each_run_reloads_never_restarts(reconfigured, index):
    run = reconfigured.runs[index]
    before, after = reconfigured.pids[index], reconfigured.pids[index + 1]
    context = f"\n--- run ---\n{run.tail()}\n--- journal ---\n{reconfigured.journal}"
    assert run.returncode == 0, "the run failed" + context
    for task in ("Render the checks for the Lua service", "Render haproxy.cfg"):
        assert run.task_status(task) == ["changed"], f"{task} did not change" + context
    assert "changed" in run.task_status("Reload HAProxy"), "no reload" + context
    assert "changed" not in run.task_status("Restart HAProxy"), "a restart" + context
    assert after[0] == before[0], f"the master PID changed: {before[0]} -> {after[0]}" + context
    assert after[1] - before[1], f"no new worker: {sorted(before[1])} -> {sorted(after[1])}" + context


def test_reloads_under_load_lose_no_request(reconfigured, figures):
    counts = reconfigured.counts
    summary = (f"total={counts['total']} ok_200={counts['ok_200']} non_200={counts['non_200']} "
               f"errors={counts['errors']} in {counts['seconds']} s, 8 threads, 2 reloads, "
               f"slowest request {counts['max_request_seconds']} s")
    figures("Reload under load", summary)
    pid_line = " -> ".join(f"master {m} workers {sorted(w)}" for m, w in reconfigured.pids)
    figures("Reload under load", f"HAProxy PIDs: {pid_line}")
    context = (f"{summary}\nerror samples: {counts['error_samples']}\nstatuses: {counts['statuses']}\n"
               f"{reconfigured.journal}")
    assert counts["errors"] == 0, context
    assert counts["non_200"] == 0, context
    assert counts["total"] > 100, context


def test_page_with_details_names_the_target(reconfigured):
    for code, body, _seconds in reconfigured.pages_before + reconfigured.pages_after:
        assert code == 200, reconfigured.journal
        assert TARGET_NAME in body and "reply matched" in body, body


def test_page_without_details_shows_only_the_verdict(reconfigured):
    assert len(reconfigured.pages_without_details) == 2, reconfigured.runs[0].tail()
    for code, body, _seconds in reconfigured.pages_without_details:
        assert code == 200, reconfigured.journal
        assert "OK" in body, body
        for secret in ("127.0.0.1", "8080", TARGET_NAME, "reply matched", "<table", "targets"):
            assert secret not in body, body
