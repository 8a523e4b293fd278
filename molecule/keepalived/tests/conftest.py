"""The keepalived pair as its clients see it: who holds the address, and what the page answers through it.

A monitor runs for the whole session in two threads on the host:

- the sampler looks, every SAMPLE_S, into both HAProxy containers' network
  namespaces (nsenter, from the host) for the virtual address. A sample that
  shows two holders is taken again at once; two holders in both is recorded
  as a split brain (a VRRP handover swaps the address within milliseconds);
- the client requests the status page through the virtual address, over the
  podman bridge, every CLIENT_PAUSE_S, and records each answer (status, or
  the error) with its start and end.

Tests inject a failure, then wait (bounded polling of the records) for the
address to move and for the client's next 200, and record the times, printed
at the end of the session and quoted by docs/high-availability.md.
"""

import http.client
import json
import os
import pathlib
import re
import subprocess
import threading
import time

import pytest

PREFIX = os.environ["CHECKTCP_ID"] + "-ka-"
LB1, LB2, ECHO = PREFIX + "lb1", PREFIX + "lb2", PREFIX + "echo"
NODES = (LB1, LB2)
SCENARIO_DIR = pathlib.Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", pathlib.Path(__file__).resolve().parents[1]))
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
# Written by prepare.yml: the virtual address with its prefix.
VIP = (pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "keepalived-vip").read_text().strip()
ADDRESS = VIP.split("/")[0]
CONFIG = "/etc/keepalived/keepalived.conf"

SAMPLE_S = 0.05
CLIENT_PAUSE_S = 0.05
# The page answers within the check's timeout (1 s); a slower answer counts as slow.
CLIENT_TIMEOUT_S = 3.0
SLOW_S = 1.5
# The monitor stops by itself after this long, or this many requests (a
# session takes a few minutes; far longer on a machine shared with other test beds).
MONITOR_MAX_S = 3600
CLIENT_MAX_REQUESTS = 200000

# From plugins/filter/keepalived.py and the role's defaults: track scripts every
# INTERVAL s with FALL failures, adverts every ADVERT_INT s; a backup takes over
# 3 adverts after the last one it accepted.
INTERVAL, FALL, RISE, ADVERT_INT = 1, 2, 2, 1
# This shared 2-core machine runs several test beds at once: a margin for its load.
LOAD_SLACK_S = 6


def short(node):
    return node[len(PREFIX):]


def podman(*args, check=True, timeout=120):
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def sh(node, command, check=True):
    return podman("exec", node, "sh", "-c", command, check=check)


def journal(node, since):
    """keepalived's lines since `since`, and the notify script's (by tag: a process that short-lived
    may miss its unit in the journal)."""
    return sh(node, "journalctl --no-pager -o short-precise -t Keepalived -t Keepalived_vrrp -t checktcp-keepalived "
                    f"--since '@{since:.3f}'", check=False).stdout


def journals(since):
    return "\n".join(f"--- {short(n)}\n{journal(n, since)}" for n in NODES)


def run_playbook(playbook, variables=None, extra=()):
    args = ["ansible-playbook", "-i", INVENTORY, str(SCENARIO_DIR / playbook), *extra]
    if variables:
        args += ["-e", json.dumps(variables)]
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=900)


def recap(output):
    """{host: {ok: n, changed: n, failed: n, ...}} from a PLAY RECAP."""
    hosts = {}
    for line in output.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            hosts[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return hosts


class Monitor:
    """Holder samples and client answers, recorded by two threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.samples = []        # (time, frozenset of holders)
        self.split_brain = []    # (time, holders) confirmed twice
        self.answers = []        # (start, end, status or None, error)
        self.pids = {}
        self.started = time.time()

    # -- sampler
    def _pid(self, node, refresh=False):
        if refresh or node not in self.pids:
            out = podman("inspect", "--format", "{{.State.Pid}}", node, check=False).stdout.strip()
            self.pids[node] = int(out) if out.isdigit() else 0
        return self.pids[node]

    def _holds(self, node):
        for attempt in (0, 1):
            pid = self._pid(node, refresh=attempt == 1)
            if pid == 0:
                if attempt == 0:
                    continue
                return False
            result = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "address", "show", "to", ADDRESS],
                                    capture_output=True, text=True, check=False, timeout=10)
            if result.returncode == 0:
                return bool(result.stdout.strip())
        return False

    def _sample(self):
        return frozenset(node for node in NODES if self._holds(node))

    def _sampler(self):
        last_refresh = time.monotonic()
        while not self.stop.is_set() and time.time() - self.started < MONITOR_MAX_S:
            if time.monotonic() - last_refresh > 1:
                # a restarted container has a new pid
                for node in NODES:
                    self._pid(node, refresh=True)
                last_refresh = time.monotonic()
            holders = self._sample()
            now = time.time()
            if len(holders) > 1:
                again = self._sample()
                if len(again) > 1:
                    with self.lock:
                        self.split_brain.append((now, sorted(again)))
            with self.lock:
                self.samples.append((now, holders))
            time.sleep(SAMPLE_S)

    # -- client
    def _client(self):
        count = 0
        while not self.stop.is_set() and count < CLIENT_MAX_REQUESTS and time.time() - self.started < MONITOR_MAX_S:
            count += 1
            start = time.time()
            status, error = None, ""
            try:
                conn = http.client.HTTPConnection(ADDRESS, 80, timeout=CLIENT_TIMEOUT_S)
                conn.request("GET", "/", headers={"Accept": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
                conn.close()
            except (OSError, http.client.HTTPException) as err:
                error = f"{type(err).__name__}: {err}"
            with self.lock:
                self.answers.append((start, time.time(), status, error))
            time.sleep(CLIENT_PAUSE_S)

    def start(self):
        self.threads = [threading.Thread(target=self._sampler, daemon=True),
                        threading.Thread(target=self._client, daemon=True)]
        for thread in self.threads:
            thread.start()

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)

    # -- queries
    def holders(self):
        with self.lock:
            return self.samples[-1][1] if self.samples else frozenset()

    def wait(self, condition, within, what):
        """Poll until condition() is true; return the time it first held (from the records)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not all(thread.is_alive() for thread in self.threads):
                raise AssertionError(f"the monitor has stopped (after {MONITOR_MAX_S} s or "
                                     f"{CLIENT_MAX_REQUESTS} requests): cannot tell whether {what}")
            found = condition()
            if found:
                return found
            time.sleep(SAMPLE_S)
        raise AssertionError(f"not within {within:.0f} s: {what}")

    def sole_holder_since(self, node, since):
        """Time of the first sample after `since` in which `node` alone holds the address, or None."""
        with self.lock:
            for when, holders in self.samples:
                if when >= since and holders == {node}:
                    return when
        return None

    def first_200_since(self, since):
        """End time of the first 200 answer to a request started after `since`, or None."""
        with self.lock:
            for start, end, status, _holder in self.answers:
                if start >= since and status == 200:
                    return end
        return None

    def moves_since(self, since):
        """Samples after `since` whose holders differ from the first one's."""
        with self.lock:
            window = [(w, h) for w, h in self.samples if w >= since]
        if not window:
            return []
        first = window[0][1]
        return [(w, sorted(short(n) for n in h)) for w, h in window if h != first]

    def answers_between(self, start, end):
        with self.lock:
            return [a for a in self.answers if start <= a[0] <= end]

    def longest_gap(self, start, end):
        """Longest time between two consecutive 200 answers (their ends) in [start, end]."""
        ends = [e for s, e, status, _holder in self.answers_between(start - 5, end) if status == 200]
        gaps = [b - a for a, b in zip(ends, ends[1:]) if b >= start]
        return max(gaps, default=0.0)

    def failed_between(self, start, end):
        return [a for a in self.answers_between(start, end) if a[2] != 200 or a[1] - a[0] > SLOW_S]


FIGURES = []


def record_figure(line):
    FIGURES.append(line)
    print(f"[keepalived] {line}")


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("checktcp keepalived: measured figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def monitor():
    mon = Monitor()
    mon.start()
    yield mon
    mon.close()
    with mon.lock:
        total = len(mon.answers)
        ok = sum(1 for a in mon.answers if a[2] == 200)
        samples = len(mon.samples)
    record_figure(f"client: {total} requests through {ADDRESS}, {ok} answered 200; "
                  f"{samples} holder samples, {len(mon.split_brain)} with two holders")
