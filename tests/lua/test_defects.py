# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Regression tests for the defects a review of the checktcp service found
(issue 9), against a real HAProxy on loopback, one check per HAProxy: one
probe in flight per target, cached mode surviving a Lua error, pages of any
size, status and page that agree, many targets in live mode, native answers
counted, dated verdicts, a multi-line ansible_managed, distinct reasons."""

from __future__ import annotations

import collections
import concurrent.futures
import html
import json
import random
import re
import threading
import time
import types

import pytest

from conftest import FakeEchoServer, checked, echo, http_request, render_together, utc, wait_status, word

TIMEOUT_MS = 500
INTERVAL_MS = 200
SLACK_MS = 100
MANY = 200
# Random bytes outside ASCII: the page shows up to 64 of them per target, each
# escaped as \xNN (and that backslash escaped again in JSON).
GARBAGE = bytes(0x80 | byte for byte in random.Random(9).randbytes(80))
GARBAGE_TARGETS = 30
FLAP_S = 0.07


class PeakFakeEchoServer(FakeEchoServer):
    """A FakeEchoServer that also keeps the largest number of connections it
    had open at once (``max_active``)."""

    def __init__(self):
        self.max_active = 0
        super().__init__()

    def reset_counts(self):
        super().reset_counts()
        with self.lock:
            self.max_active = self.active

    def _serve(self, conn, behaviour):
        with self.lock:
            self.max_active = max(self.max_active, self.active)
        super()._serve(conn, behaviour)


def target_name(index):
    """Names as long as real ones: 200 rows of them make a page over 16 kB."""
    return "echo-%03d.checktcp.example.internal" % index


def targets(fake, count):
    """``count`` targets, all ``fake``, named by target_name()."""
    return [dict(fake.target, name=target_name(index)) for index in range(count)]


def without_state_map(service):
    """Drop from the rendered haproxy.cfg every line naming the state map: HAProxy
    then knows no such map, and the Lua's core.set_map() raises an error."""
    text = service.config.read_text()
    state_map = service.state_map()
    kept = [line for line in text.splitlines(True) if state_map not in line]
    assert len(kept) < len(text.splitlines(True))
    service.config.write_text("".join(kept))
    return state_map


@pytest.fixture(scope="module")
def beds(make_service, fake_servers, free_port):
    """Every configuration of this module, rendered in one run, then started."""
    # Each 200-target check has its own server: 400 connections at once would
    # overflow the fake server's listen backlog (256) and look like a defect.
    single, broken, many, many_too, garbage, flapping, counted = fake_servers(7, kind=PeakFakeEchoServer)
    garbage.behave("echo", reply=GARBAGE)
    metrics_port = free_port()
    common = {"haproxy_checktcp_timeout_ms": TIMEOUT_MS}
    cached = dict(common, haproxy_checktcp_mode="cached", haproxy_checktcp_interval_ms=INTERVAL_MS)
    variable_sets = {
        "single": dict(common, haproxy_checktcp_targets=[single.target]),
        "broken": dict(cached, haproxy_checktcp_targets=[broken.target]),
        "many_live": {"haproxy_checktcp_targets": targets(many, MANY)},
        "many_cached": {"haproxy_checktcp_targets": targets(many_too, MANY), "haproxy_checktcp_mode": "cached"},
        "garbage_live": dict(common, haproxy_checktcp_targets=targets(garbage, GARBAGE_TARGETS)),
        "garbage_cached": dict(cached, haproxy_checktcp_targets=targets(garbage, GARBAGE_TARGETS)),
        "flapping": dict(cached, haproxy_checktcp_targets=[flapping.target], haproxy_checktcp_interval_ms=100),
        "counted": dict(cached, haproxy_checktcp_targets=[counted.target],
                        haproxy_metrics_bind="127.0.0.1:%d" % metrics_port),
        "managed": dict(common, haproxy_checktcp_targets=[counted.target],
                        ansible_managed="line one\nline two"),
    }
    services = {name: make_service(**variables) for name, variables in variable_sets.items()}
    render_together(list(services.values()))
    state_map = without_state_map(services["broken"])
    for service in services.values():
        service.start()
    return types.SimpleNamespace(
        fakes=types.SimpleNamespace(single=single, broken=broken, many=many, many_too=many_too, garbage=garbage,
                                    flapping=flapping, counted=counted),
        metrics_port=metrics_port, state_map=state_map, **services)


def reasons(response):
    """The reason of each target on an HTML page with details."""
    page = html.unescape(response.body.decode("utf-8", "replace"))
    return re.findall(r"<tr><td>[^<]*</td><td[^>]*>[^<]*</td>.*?<td>([^<]*)</td></tr>", page)


def answers_of(service):
    """The 2xx answers of the single cached check's backend (HAProxy's text answers and Lua's pages)."""
    return int(service.backend_stats("checktcp_answer_checktcp")["hrsp_2xx"])


# ------------------------------------------- defect 1: one probe per target

@pytest.mark.parametrize("behaviour, options, stage", [
    pytest.param("stream", {"chunk": b"x", "every": 0.002, "duration": 5.0}, "reply line", id="fast-dribbler"),
    pytest.param("silent", {}, "header line 1", id="silent"),
])
def test_at_most_one_probe_in_flight_per_target(beds, behaviour, options, stage):
    service, fake = beds.single, beds.fakes.single
    fake.behave("echo")
    fake.wait_idle()
    wait_status(service, 200, 3)
    fake.behave(behaviour, **options)
    fake.reset_counts()
    responses = []
    end = time.monotonic() + 3
    while time.monotonic() < end:
        responses.append(checked(service.request()))
        # Time for the fake server to see HAProxy close the probe it judged.
        time.sleep(0.05)

    log = service.log_text()
    assert len(responses) >= 4, responses
    assert fake.max_active == 1, "%d probe connections open at once\n%s" % (fake.max_active, log)
    for response in responses:
        assert response.status == 503 and word(response) == "KO", response
        assert response.elapsed_ms <= TIMEOUT_MS + SLACK_MS, response
        assert reasons(response) == ["timeout after %d ms waiting for %s" % (TIMEOUT_MS, stage)], response
    assert fake.wait_idle(1.0), "a probe socket is still open %d ms after the last request" % 1000


# ------------------------------------ defect 2: cached mode survives errors

def test_cached_mode_keeps_serving_after_a_lua_error(beds):
    """HAProxy's health checks go on without Lua: a cached check whose state
    map is missing (core.set_map raises) still answers from their state."""
    service, fake = beds.broken, beds.fakes.broken
    fake.behave("echo")
    response = wait_status(service, 200, 5, path="/?format=json")
    [target] = json.loads(checked(response).body)["targets"]
    assert target["reason"] == "reply matched", target
    assert service.wait_log(r"checktcp: state of .*error.*(unknown map|map)", 0, 5), service.log_text()

    fake.behave("refuse")
    response = wait_status(service, 503, (INTERVAL_MS + TIMEOUT_MS + SLACK_MS) / 1000, path="/?format=json")
    [target] = json.loads(checked(response).body)["targets"]
    assert target["reason"].startswith("L4CON: Connection refused"), target
    fake.behave("echo")
    response = wait_status(service, 200, (INTERVAL_MS + TIMEOUT_MS + SLACK_MS) / 1000)
    assert word(checked(response)) == "OK"


# ------------------------------------------------ defect 3: pages of any size

@pytest.mark.parametrize("bed", ["many_live", "many_cached"])
def test_two_hundred_targets_get_a_full_page(beds, bed):
    service = getattr(beds, bed)
    wait_status(service, 200, 5)
    page = checked(service.request())
    document = checked(service.request(path="/?format=json"))

    assert page.status == document.status == 200, (page, document)
    assert word(page) == "OK" and page.body.rstrip().endswith(b"</html>"), page.body[-200:]
    # Larger than HAProxy's default buffer (16 kB), which bounds a native answer.
    assert len(page.body) > 16384 and len(document.body) > 16384, (len(page.body), len(document.body))
    assert reasons(page) == ["reply matched"] * MANY
    parsed = json.loads(document.body)
    assert (parsed["status"], parsed["up"]) == ("OK", MANY)
    assert [target["target"] for target in parsed["targets"]] == [target_name(index) for index in range(MANY)]
    assert all(target["ok"] for target in parsed["targets"])


def test_two_hundred_cached_targets_get_a_native_text_answer(beds):
    service = beds.many_cached
    wait_status(service, 200, 5)
    answers = [checked(service.request(path="/?format=text")) for _request in range(10)]
    assert [(response.status, response.body) for response in answers] == [(200, b"OK\n")] * 10


@pytest.mark.parametrize("bed", ["garbage_live", "garbage_cached"])
def test_binary_replies_get_a_full_ko_page(beds, bed):
    service = getattr(beds, bed)
    beds.fakes.garbage.behave("echo", reply=GARBAGE)
    # Cached mode: the first round may not be published yet.
    wait_status(service, 503, 3)
    page = checked(service.request())
    document = checked(service.request(path="/?format=json"))

    assert page.status == document.status == 503, (page, document)
    assert word(page) == "KO" and page.body.rstrip().endswith(b"</html>"), page.body[-200:]
    page_reasons = reasons(page)
    assert len(page_reasons) == GARBAGE_TARGETS, page_reasons
    # Cached mode: HAProxy's health check's reason, which shows no reply: its report,
    # or, asked while the next check runs (HAProxy blanks the report then), the
    # status's description.
    starts = ('unexpected reply "',) if bed == "garbage_live" else (
        "L7RSP: TCPCHK did not match content", "L7RSP: Layer7 invalid response")
    assert [reason for reason in page_reasons if not reason.startswith(starts)] == [], page_reasons
    parsed = json.loads(document.body)
    assert (parsed["status"], parsed["up"], len(parsed["targets"])) == ("KO", 0, GARBAGE_TARGETS)
    if bed == "garbage_live":
        assert len(document.body) > 16384, len(document.body)


# ------------------------------------- defect 4: status and page agree

def test_status_and_page_agree_under_a_flapping_verdict(beds):
    service, fake = beds.flapping, beds.fakes.flapping
    stop = threading.Event()

    def flap():
        good = True
        while not stop.is_set():
            fake.behaviour = echo(reply=None if good else b"nope")
            good = not good
            time.sleep(FLAP_S)

    def client(index):
        seen, wrong = collections.Counter(), []
        fmt = "/?format=json" if index % 2 else "/"
        while not stop.is_set():
            response = service.request(path=fmt)
            verdict = word(response)
            seen[(response.status, verdict)] += 1
            if (response.status, verdict) not in ((200, "OK"), (503, "KO")) \
                    or response.headers.get("content-length") != str(len(response.body)):
                wrong.append(response)
        return seen, wrong

    flapper = threading.Thread(target=flap)
    flapper.start()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(client, index) for index in range(8)]
        time.sleep(5)
        stop.set()
        results = [future.result() for future in futures]
    flapper.join()
    fake.behave("echo")

    seen = collections.Counter()
    wrong = []
    for counts, bad in results:
        seen.update(counts)
        wrong.extend(bad)
    assert not wrong, "%d answers whose status and page disagree, e.g. %r (of %r)" % (len(wrong), wrong[:3], seen)
    # Both verdicts were served, in both formats: the check above had something to check.
    assert seen[(200, "OK")] >= 20 and seen[(503, "KO")] >= 20, seen


# ---------------------------------- defect 7: many targets in live mode

def test_two_hundred_healthy_targets_in_live_mode_are_never_ko(beds):
    service, fake = beds.many_live, beds.fakes.many
    fake.behave("echo")
    fake.wait_idle()
    statuses = []
    for index in range(20):
        response = checked(service.request())
        statuses.append(response.status)
        if response.status != 200:
            pytest.fail("request %d: %d with %r" % (
                index, response.status, sorted(set(reasons(response)) - {"reply matched"})))
    assert statuses == [200] * 20


# ------------------------------------------------------- defect 8: smaller

def requests_total(beds, verdict):
    response = checked(http_request(beds.metrics_port, path="/checktcp/metrics"))
    assert response.status == 200, response
    found = re.search(r'^checktcp_requests_total\{check="checktcp",verdict="%s"\} (\d+)$' % verdict,
                      response.body.decode(), re.M)
    assert found, response.body.decode()
    return int(found.group(1))


def test_cached_answers_are_counted(beds):
    service, fake = beds.counted, beds.fakes.counted
    fake.behave("echo")
    wait_status(service, 200, 3)
    before, answered_before = requests_total(beds, "OK"), answers_of(service)
    answers = [checked(service.request(path=path)) for path in ["/", "/?format=json", "/?format=text"] * 10]
    after, answered_after = requests_total(beds, "OK"), answers_of(service)

    assert [response.status for response in answers] == [200] * 30
    # Counted by the check's backend, whether HAProxy (text) or Lua (pages) answered.
    assert answered_after - answered_before == 30, (answered_before, answered_after)
    assert after - before == 30, (before, after)


def test_cached_page_tells_when_the_verdict_was_taken(beds):
    service, fake = beds.counted, beds.fakes.counted
    fake.behave("echo")
    wait_status(service, 200, 3)
    bound_s = (INTERVAL_MS + TIMEOUT_MS) / 1000
    for index in range(10):
        document = json.loads(checked(service.request(path="/?format=json")).body)
        page = checked(service.request()).body.decode()
        now = time.time()
        [target] = document["targets"]
        taken = [utc(document["checked_at"]), utc(re.search(r'<time>([^<]+)</time>', page).group(1))]
        for at in taken:
            # A page dates its times by HAProxy's date (ms) against core.now (ms): 2 ms of rounding, and slack.
            assert -0.01 <= now - at <= bound_s, (document, now)
        assert target["checked_at"] is not None and abs(utc(target["checked_at"]) - taken[0]) <= bound_s
        time.sleep(0.1)


def test_multi_line_ansible_managed_renders_a_loadable_service(beds):
    service, fake = beds.managed, beds.fakes.counted
    fake.behave("echo")
    lua = "".join(text.decode() for path, text in service.files().items() if path.suffix == ".lua")
    assert "line two" in lua, "ansible_managed did not reach the Lua files: the test would prove nothing"
    response = checked(service.request())
    assert response.status == 200 and word(response) == "OK", (response, service.log_text())


def test_probe_timeout_reason_names_the_step_not_a_request_deadline(beds):
    service, fake = beds.single, beds.fakes.single
    fake.behave("echo")
    fake.wait_idle()
    wait_status(service, 200, 3)
    fake.behave("header_only")
    offset = service.log_offset()
    response = checked(service.request())
    assert response.status == 503
    reason = "timeout after %d ms waiting for reply line" % TIMEOUT_MS
    assert reasons(response) == [reason], response
    assert service.wait_log(r"KO: %s \(\d+ ms\)$" % reason, offset), service.log_text(offset)
    assert "no verdict" not in service.log_text(offset)
