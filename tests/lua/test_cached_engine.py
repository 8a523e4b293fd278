# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Cached mode on HAProxy's own health checks (issue 17): the terse text
answer for load balancers, pages rendered from the checks' state, and never a
verdict the checks have not seen: HAProxy counts a server UP until its first
check ends, so a cached check answers 503 until every target was checked,
through starts, reloads and restarts."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import LOOPBACK, free_ports, haproxy_binary, http_request, wait_status

INTERVAL_MS = 200
# A silent target is judged only after this: its first check times out.
SLOW_TIMEOUT_MS = 1500
SAMPLE_EVERY_S = 0.01
# How long the sampler watches each reloaded HAProxy before it is restarted.
WATCH_RELOADED_S = 0.5
# Targets of the check whose page is asked while their checks run.
BUSY = 20
# After a reload, how long a healthy check may say 503 (pending) at most: the
# role's max-spread-checks (100 ms), the first checks and the handover, with
# room for a loaded machine; and how long the test watches each reload.
RELOAD_PENDING_BOUND_S = 0.6
RELOAD_WATCH_S = 3.0


@pytest.fixture(scope="module")
def bed(deploy, fake_servers):
    healthy, silent = fake_servers(2)
    silent.behave("silent")
    refused = {"host": LOOPBACK, "port": free_ports()[0]}
    common = {"mode": "cached", "interval_ms": INTERVAL_MS}
    service, = deploy({"haproxy_checktcp_checks": [
        dict(common, name="up", targets=[healthy.target]),
        dict(common, name="down", targets=[refused]),
        dict(common, name="silent", targets=[silent.target], timeout_ms=SLOW_TIMEOUT_MS),
        # Checks running 5/6 of the time: a check lasts its timeout, the next starts 100 ms after.
        dict(common, name="busy", targets=[dict(silent.target, name="busy-%d" % index) for index in range(BUSY)],
             timeout_ms=500, interval_ms=100),
    ]})
    return service


@pytest.mark.parametrize("how", [{"path_suffix": "?format=text"}, {"headers": {"Accept": "text/plain"}}])
def test_text_answers_for_load_balancers(bed, how):
    wait_status(bed, 200, 10, path="/up")
    wait_status(bed, 503, 10, path="/down")
    for path, status, body in (("/up", 200, b"OK\n"), ("/down", 503, b"KO\n")):
        response = http_request(bed.port, path=path + how.get("path_suffix", ""), headers=how.get("headers"))
        assert (response.status, response.body) == (status, body), response
        assert response.headers["content-type"] == "text/plain", response


def test_pages_give_the_health_checks_reason(bed):
    # 503 comes first as "pending", until the target's first check is over.
    end = time.monotonic() + 10
    while True:
        page = json.loads(http_request(bed.port, path="/down", headers={"Accept": "application/json"}).body)
        if not page["targets"][0].get("pending") or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert page["status"] == "KO" and page["mode"] == "cached", page
    assert page["targets"][0]["reason"].startswith("L4CON"), page
    assert "Connection refused" in page["targets"][0]["reason"], page


def test_a_page_asked_while_the_checks_run_gives_each_reason(bed):
    """HAProxy blanks a server's last check report while its next check runs: the
    first page asked then still gives each target a reason after its status."""
    # Every target checked once and a check running ("* ", for 500 ms), seen on the
    # admin socket: a page would remember the reports.
    end = time.monotonic() + 10
    while True:
        servers = [row for row in bed.stat_rows("checktcp_check_busy") if row["svname"] not in ("BACKEND", "FRONTEND")]
        statuses = [row["check_status"] for row in servers]
        if all(status.lstrip("* ") not in ("", "INI") for status in statuses) and any(
                status.startswith("* ") for status in statuses):
            break
        assert time.monotonic() < end, servers
        time.sleep(0.05)
    assert len(servers) == BUSY, servers
    page = json.loads(http_request(bed.port, path="/busy", headers={"Accept": "application/json"}).body)
    reasons = [target["reason"] for target in page["targets"]]
    assert [reason for reason in reasons if not re.fullmatch(r"L7TOUT: +\S.*", reason)] == [], reasons


def test_a_silent_target_is_never_ok_before_its_first_check(make_service, fake_servers):
    """Its first check takes the whole timeout; every answer until then is 503 (pending)."""
    silent, = fake_servers(1)
    silent.behave("silent")
    service = make_service(haproxy_checktcp_targets=[silent.target], haproxy_checktcp_mode="cached",
                           haproxy_checktcp_timeout_ms=SLOW_TIMEOUT_MS, haproxy_checktcp_interval_ms=INTERVAL_MS)
    returncode, output = service.render()
    assert returncode == 0, output
    service.start()
    # Not checked yet (its check lasts SLOW_TIMEOUT_MS): no time of a check, and no
    # last change, which HAProxy would count from its start.
    document = json.loads(http_request(service.port, path="/", headers={"Accept": "application/json"}).body)
    target, = document["targets"]
    assert target.get("pending") and target["checked_at"] is None and "last_change_s" not in target, document
    seen = {}
    end = time.monotonic() + SLOW_TIMEOUT_MS / 1000 + 1.0
    first = None
    while time.monotonic() < end:
        for query in ("", "?format=text"):
            response = http_request(service.port, path="/" + query)
            seen[response.status] = seen.get(response.status, 0) + 1
            first = first or response
    assert list(seen) == [503], seen
    assert b"not checked yet" in first.body, first


class Sampler(threading.Thread):
    """Asks for a page every SAMPLE_EVERY_S until stopped; counts statuses (errors as 0)."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.counts = {}
        # Every 200: when (seconds since the sampler started), what was asked, what came.
        self.oks = []
        self.started = time.monotonic()
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            for query in ("", "?format=text"):
                try:
                    response = http_request(self.port, path=self.path + query, timeout=2)
                    status = response.status
                except (OSError, AssertionError):
                    status = 0
                if status == 200:
                    self.oks.append((round(time.monotonic() - self.started, 3), query, response.body[:300]))
                self.counts[status] = self.counts.get(status, 0) + 1
            time.sleep(SAMPLE_EVERY_S)


def start_master_worker(service):
    """HAProxy in master-worker mode (-W), as systemd runs it, so that SIGUSR2 reloads it."""
    service.clear_server_states()
    stderr = open(service.stderr, "ab")  # pylint: disable=consider-using-with
    master_cli = service.workdir / "master.sock"
    master_cli.unlink(missing_ok=True)
    proc = subprocess.Popen([haproxy_binary(), "-W", "-db", "-S", str(master_cli), "-f", str(service.config)],
                            cwd=service.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    stderr.close()
    service.proc = proc
    end = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((LOOPBACK, service.port), timeout=0.2).close()
            # The master takes signals once its loop runs, as its CLI shows (systemd
            # would not reload a unit still starting either): a SIGUSR2 sent
            # before was seen lost on 2.6.
            with socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(2)
                conn.connect(str(master_cli))
                conn.sendall(b"show proc\n")
                conn.shutdown(socket.SHUT_WR)
                if b"worker" in b"".join(iter(lambda: conn.recv(65536), b"")):
                    break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < end, service.log_text()
        time.sleep(0.02)


def worker_pid(service):
    """The PID of the worker answering HAProxy's admin socket (a reload replaces it)."""
    for _attempt in range(50):
        try:
            return int(re.search(r"^Pid: (\d+)", service.admin_command("show info", timeout=2), re.M).group(1))
        except (OSError, AttributeError):
            time.sleep(0.02)  # the admin socket passes from worker to worker
    raise AssertionError("no worker answers on the admin socket")


def wait_new_worker(service, before):
    end = time.monotonic() + 10
    while worker_pid(service) == before:
        assert time.monotonic() < end, "HAProxy did not reload (worker %s):\n%s" % (before, service.log_text()[-1500:])
        time.sleep(0.02)


def reload_master_worker(service, save_states=True):
    """A reload as haproxy.service's drop-in does it (the states saved, the master signalled,
    the new worker awaited, the file emptied), or a bare SIGUSR2 (returns at once)."""
    before = worker_pid(service) if save_states else None
    if save_states:
        service.save_server_states()
    if os.environ.get("CHECKTCP_HAPROXY_IMAGE"):
        subprocess.run(["podman", "kill", "--signal", "USR2", "%s-haproxy-%d" % (
            os.environ.get("CHECKTCP_ID", "checktcp"), service.proc.pid)], capture_output=True, check=True)
    else:
        service.proc.send_signal(signal.SIGUSR2)
    if save_states:
        wait_new_worker(service, before)
        service.clear_server_states()


def test_no_200_for_a_dead_target_through_reloads_and_restarts(make_service):
    dead = {"host": LOOPBACK, "port": free_ports()[0]}
    service = make_service(haproxy_checktcp_targets=[dead], haproxy_checktcp_mode="cached",
                           haproxy_checktcp_interval_ms=INTERVAL_MS)
    returncode, output = service.render()
    assert returncode == 0, output

    def start():
        start_master_worker(service)
        wait_status(service, 503, 10)

    start()
    sampler = Sampler(service.port, "/")
    sampler.start()
    events = []

    def event(what):
        events.append((round(time.monotonic() - sampler.started, 3), what))

    try:
        for _cycle in range(3):
            event("reload")
            reload_master_worker(service)
            event("reloaded")
            time.sleep(WATCH_RELOADED_S)
            event("stop")
            service.stop()
            event("start")
            start()
            event("started")
    finally:
        sampler.stopping.set()
        sampler.join(10)
        service.stop()
    assert 200 not in sampler.counts, (sampler.counts, sampler.oks, events)
    assert sampler.counts.get(503, 0) > 50, sampler.counts


def cached_check(make_service, targets, **variables):
    """A cached check of ``targets``, rendered and started in master-worker mode."""
    service = make_service(haproxy_checktcp_targets=targets, haproxy_checktcp_mode="cached", **variables)
    returncode, output = service.render()
    assert returncode == 0, output
    start_master_worker(service)
    return service


def twenty_healthy_targets(make_service, fake_servers):
    """A cached check of 20 healthy targets (one fake server) with the role's defaults."""
    healthy, = fake_servers(1)
    return cached_check(make_service, [dict(healthy.target, name="healthy-%d" % index) for index in range(20)])


def test_a_reload_leaves_a_healthy_check_pending_only_briefly(make_service, fake_servers):
    """A reload without saved states (HAProxy signalled directly, not through its unit)
    starts a worker that has checked nothing: its pages say 503 (pending) until every
    target's first check. HAProxy spreads the first checks over the smallest interval
    (2 s by default) unless max-spread-checks bounds that, so a load balancer following a
    healthy 20-target check saw 503 for about 1.9 s after each reload."""
    service = twenty_healthy_targets(make_service, fake_servers)
    windows = []
    try:
        wait_status(service, 200, 15, path="/?format=text")
        for _cycle in range(3):
            reloaded = time.monotonic()
            reload_master_worker(service, save_states=False)
            last_ko = None
            while time.monotonic() - reloaded < RELOAD_WATCH_S:
                if http_request(service.port, path="/?format=text", timeout=2).status != 200:
                    last_ko = time.monotonic() - reloaded
                time.sleep(SAMPLE_EVERY_S)
            windows.append(last_ko)
            wait_status(service, 200, 5, path="/?format=text")
    finally:
        service.stop()
    # Each new worker says 503 (pending) at first: seeing it proves the reload happened.
    assert None not in windows, "a reload without a pending answer (did it reload?): %s" % windows
    assert max(windows) < RELOAD_PENDING_BOUND_S, windows


def text_answers(service, seconds):
    """{status: count} of the text answer, asked every SAMPLE_EVERY_S for ``seconds``."""
    answers = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status = http_request(service.port, path="/?format=text", timeout=2).status
        answers[status] = answers.get(status, 0) + 1
        time.sleep(SAMPLE_EVERY_S)
    return answers


def reload_and_wait(service, save_states=True):
    """Reload; return once the new worker answers the admin socket."""
    before = worker_pid(service)
    reload_master_worker(service, save_states)
    wait_new_worker(service, before)


def test_a_reload_hands_the_checks_states_to_the_new_worker(make_service, fake_servers):
    """A reload through haproxy.service (states saved to server-state-file first) keeps a
    healthy check at 200: the new worker starts from the last checks' results."""
    service = twenty_healthy_targets(make_service, fake_servers)
    sampler = Sampler(service.port, "/")
    try:
        wait_status(service, 200, 15, path="/?format=text")
        sampler.start()
        for _cycle in range(3):
            reload_and_wait(service)
            time.sleep(RELOAD_WATCH_S / 3)
    finally:
        sampler.stopping.set()
        sampler.join(10)
        service.stop()
    assert set(sampler.counts) == {200}, sampler.counts
    assert sampler.counts[200] > 50, sampler.counts


def test_a_request_in_flight_through_a_reload_gets_the_checks_verdict(make_service, fake_servers):
    """A request the old worker accepted is answered by it after the reload. HAProxy 2.6
    stops the backends of a stopping worker at once, and its nbsrv then counts no server
    (fixed in 2.8 by haproxy/haproxy@7e64d87, not in Debian 12's 2.6.12): the text answer
    of a healthy check was 503 KO (once in 574 answers of the reload test below, on this
    project's machine under load)."""
    healthy, = fake_servers(1)
    service = cached_check(make_service, [healthy.target], haproxy_checktcp_interval_ms=INTERVAL_MS)
    in_flight = {}
    try:
        wait_status(service, 200, 15, path="/?format=text")
        service.wait_seen()
        for query in ("?format=text", ""):
            # Headers without their end: the old worker holds the request through the reload.
            sock = socket.create_connection((LOOPBACK, service.port), timeout=5)
            sock.sendall(("GET /%s HTTP/1.1\r\nHost: checktcp\r\nConnection: close\r\n" % query).encode())
            in_flight[query] = sock
        old_worker = worker_pid(service)
        reload_and_wait(service)
        # The old worker stops its proxies once told to stop, after the new one runs.
        stopped = re.escape("(%d) : Proxy checktcp_check_checktcp stopped" % old_worker)
        assert service.wait_log(stopped, timeout=10), service.log_text()[-1500:]
        answers = {}
        for query, sock in in_flight.items():
            sock.sendall(b"\r\n")
            answers[query] = b"".join(iter(functools.partial(sock.recv, 65536), b"")).split(b"\r\n", 1)[0]
    finally:
        for sock in in_flight.values():
            sock.close()
        service.stop()
    assert answers == {"?format=text": b"HTTP/1.1 200 OK", "": b"HTTP/1.1 200 OK"}, answers


def test_a_target_moved_to_another_port_starts_unchecked(make_service, fake_servers):
    """HAProxy restores a saved state by backend and server name, and with it the server's
    port: a target whose port changed must not inherit the old port's state (and port)."""
    healthy, = fake_servers(1)
    moved = {"host": LOOPBACK, "port": free_ports()[0], "name": "web"}
    service = cached_check(make_service, [dict(healthy.target, name="web")], haproxy_checktcp_interval_ms=INTERVAL_MS)
    try:
        wait_status(service, 200, 15, path="/?format=text")
        returncode, output = service.render({"haproxy_checktcp_targets": [moved]})
        assert returncode == 0, output
        reload_and_wait(service)
        answers = text_answers(service, 5 * INTERVAL_MS / 1000)
    finally:
        service.stop()
    assert set(answers) == {503}, answers


def test_a_reload_outside_the_unit_never_loads_old_states(make_service, fake_servers):
    """The unit's reload empties the state file once the new worker has it: a later bare
    SIGUSR2 (or the master CLI's reload) must not restore a target that was up then and is
    silent now (its first check takes the timeout, so old states would answer 200 meanwhile)."""
    target, = fake_servers(1)
    service = cached_check(make_service, [target.target], haproxy_checktcp_interval_ms=INTERVAL_MS,
                           haproxy_checktcp_timeout_ms=SLOW_TIMEOUT_MS)
    answers = {}
    try:
        wait_status(service, 200, 15, path="/?format=text")
        reload_and_wait(service)
        wait_status(service, 200, 5, path="/?format=text")
        target.behave("silent")
        wait_status(service, 503, 10, path="/?format=text")
        reload_and_wait(service, save_states=False)
        answers = text_answers(service, SLOW_TIMEOUT_MS / 1000)
    finally:
        service.stop()
    assert set(answers) == {503}, answers


def test_a_server_up_after_a_failed_check_is_not_handed_over(make_service, fake_servers):
    """With fall 2 a target whose first check failed stays up ("UP 1/2"); HAProxy would restore
    it up at full health with its failed check, and the page would say 200 for two more
    intervals. The reload must leave it out: the new worker checks it first."""
    target, = fake_servers(1)
    service = cached_check(make_service, [target.target], haproxy_checktcp_interval_ms=1000,
                           haproxy_checktcp_fall=2)
    answers = {}
    try:
        wait_status(service, 200, 15, path="/?format=text")
        target.behave("refuse")
        end = time.monotonic() + 5
        while not [row for row in service.stat_rows("checktcp_check_checktcp") if row["status"].startswith("UP 1/")]:
            assert time.monotonic() < end, service.stat_rows("checktcp_check_checktcp")
            time.sleep(SAMPLE_EVERY_S)
        reload_and_wait(service)
        answers = text_answers(service, 1.5)
    finally:
        service.stop()
    assert set(answers) == {503}, answers
