# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The checktcp service's contract beyond single verdicts, against a real
HAProxy on loopback: a hung probe blocks nobody, concurrent requests share
probes, HTTP methods and formats, hidden details, policies, cached mode, and
other probe words."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import types

import pytest

from conftest import checked, word

TIMEOUT_MS = 500
INTERVAL_MS = 200
SLACK_MS = 100
# A cached check's next probe comes an interval later give or take a fifth
# (haproxy.cfg's spread-checks 20), on a silent server lasts the timeout, and
# the page shown may be one published until 100 ms before.
CACHED_TURN_MS = INTERVAL_MS * 1.2 + TIMEOUT_MS + 100 + SLACK_MS


@pytest.fixture(scope="module")
def beds(deploy, fake_servers, free_port):
    """Every configuration of this module, rendered concurrently: base (with the
    ping frontend), hidden, cached and words are (StatusService, FakeEchoServer)
    pairs; policies maps each policy to a StatusService probing the three servers of pool."""
    base, hidden, cached, words, *pool = fake_servers(7)
    ping_port = free_port()
    common = {"haproxy_checktcp_timeout_ms": TIMEOUT_MS}
    policies = ["all", "any", 2, 3]
    variable_sets = [
        dict(common, haproxy_checktcp_targets=[base.target], haproxy_frontends=[{
            "name": "ping", "bind": ["127.0.0.1:%d" % ping_port], "mode": "http",
            "lines": ["http-request return status 200 content-type text/plain string pong"]}]),
        dict(common, haproxy_checktcp_targets=[hidden.target], haproxy_checktcp_details=False),
        dict(common, haproxy_checktcp_targets=[cached.target], haproxy_checktcp_mode="cached",
             haproxy_checktcp_interval_ms=INTERVAL_MS),
        dict(common, haproxy_checktcp_targets=[words.target], haproxy_checktcp_skip_lines=0,
             haproxy_checktcp_send="ping", haproxy_checktcp_expect="ping"),
    ] + [dict(common, haproxy_checktcp_targets=[fake.target for fake in pool], haproxy_checktcp_policy=policy)
         for policy in policies]
    services = deploy(*variable_sets)
    return types.SimpleNamespace(
        base=(services[0], base), ping_port=ping_port, hidden=(services[1], hidden),
        cached=(services[2], cached), words=(services[3], words),
        policies=dict(zip(policies, services[4:])), pool=pool)


def fresh_ok(service, fake, **options):
    """Make the fake server healthy (with options) and wait for a 200: in cached
    mode a probe hung before may take interval + timeout to be replaced."""
    fake.behave("echo", **options)
    fake.wait_idle()
    end = time.monotonic() + 3
    while True:
        response = service.request()
        if response.status == 200:
            return response
        if time.monotonic() > end:
            pytest.fail("no 200 within 3 s: %r\n%s" % (response, service.log_text()))
        time.sleep(0.02)


# ------------------------------------------------------------ no blocking

def test_hung_probe_blocks_neither_haproxy_nor_other_requests(beds, http):
    service, fake = beds.base
    fresh_ok(service, fake)
    fake.behave("silent")
    results = {}

    def status(key):
        results[key] = service.request()

    first = threading.Thread(target=status, args=("first",))
    first.start()
    time.sleep(0.15)
    ping = http(beds.ping_port)
    hung = "first" not in results
    time.sleep(0.05)
    second = threading.Thread(target=status, args=("second",))
    second.start()
    first.join(5)
    second.join(5)

    assert hung, "the status request was answered before the probe timed out"
    assert ping.status == 200 and ping.body == b"pong"
    assert ping.elapsed_ms < 100
    for key in ("first", "second"):
        response = checked(results[key])
        assert response.status == 503 and word(response) == "KO", (key, response)
    assert TIMEOUT_MS - 50 <= results["first"].elapsed_ms <= TIMEOUT_MS + SLACK_MS
    # Its own deadline is its arrival + timeout + 50 ms; sharing the hung probe ends it sooner.
    assert results["second"].elapsed_ms <= TIMEOUT_MS + 50 + 50


def test_concurrent_requests_share_probes(beds):
    service, fake = beds.base
    fresh_ok(service, fake, delay=0.2)
    fake.reset_counts()
    barrier = threading.Barrier(100)

    def status():
        barrier.wait(5)
        return service.request(timeout=10)

    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        futures = [pool.submit(status) for index in range(100)]
        responses = [future.result() for future in futures]

    assert [response.status for response in responses] == [200] * 100
    assert all(word(checked(response)) == "OK" for response in responses)
    assert fake.connections <= 5, "%d probes for 100 concurrent requests" % fake.connections


# ------------------------------------------------------- methods, formats

@pytest.mark.parametrize("bed", ["base", "hidden"])
def test_head_has_the_get_length_and_no_body(beds, bed):
    service, fake = getattr(beds, bed)
    fresh_ok(service, fake)
    # The detailed page holds probe times and ages: a digit more in one of them
    # between the GET and the HEAD changes the length, so a few pairs are tried.
    for attempt in range(5):
        get = checked(service.request())
        head = service.request("HEAD")
        assert head.status == 200 and head.body == b"", head
        assert "content-length" in head.headers, head
        if int(head.headers["content-length"]) == len(get.body):
            break
    else:
        pytest.fail("HEAD content-length %s, GET body %d bytes, %d tries"
                    % (head.headers["content-length"], len(get.body), attempt + 1))


def test_post_is_not_allowed(beds):
    service, fake = beds.base
    fake.reset_counts()
    response = checked(service.request("POST", body=b"check\n"))
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert fake.connections == 0, "a POST started a probe"


@pytest.mark.parametrize("healthy", [True, False], ids=["OK", "KO"])
def test_json_matches_the_html_verdict(beds, healthy):
    service, fake = beds.base
    fresh_ok(service, fake)
    if not healthy:
        fake.behave("refuse")
    html = checked(service.request())
    by_header = checked(service.request(headers={"Accept": "application/json"}))
    by_query = checked(service.request(path="/?format=json"))

    expected = "OK" if healthy else "KO"
    assert word(html) == expected and html.headers["content-type"].startswith("text/html")
    for response in (by_header, by_query):
        assert response.status == html.status == (200 if healthy else 503)
        assert response.headers["content-type"] == "application/json"
        document = json.loads(response.body)
        assert document["status"] == expected
        assert (document["up"], document["required"], document["mode"]) == (int(healthy), 1, "live")
        [target] = document["targets"]
        assert (target["target"], target["ok"]) == (fake.name, healthy)
        assert target["reason"] == ("reply matched" if healthy else "connection refused or unreachable")
        assert int(response.headers["x-checktcp-age-ms"]) >= 0


@pytest.mark.parametrize("healthy", [True, False], ids=["OK", "KO"])
def test_hidden_details_reveal_no_target(beds, healthy):
    service, fake = beds.hidden
    fresh_ok(service, fake)
    if not healthy:
        fake.behave("refuse")
    html = checked(service.request())
    document = checked(service.request(path="/?format=json"))

    assert word(html) == ("OK" if healthy else "KO")
    assert json.loads(document.body) == {
        "status": word(html), "up": int(healthy), "required": 1, "mode": "live"}
    for response in (html, document):
        for secret in (b"127.0.0.1", str(fake.port).encode(), b"reply matched", b"refused", b"<table"):
            assert secret not in response.body, (secret, response.body)


# --------------------------------------------------------------- policies

@pytest.mark.parametrize("policy, status, required", [("all", 503, 3), ("any", 200, 1), (2, 200, 2), (3, 503, 3)])
def test_policy_with_two_of_three_targets_up(beds, policy, status, required):
    service = beds.policies[policy]
    up1, up2, down = beds.pool
    up1.behave("echo")
    up2.behave("echo")
    down.behave("refuse")

    html = checked(service.request())
    document = json.loads(checked(service.request(path="/?format=json")).body)

    assert html.status == status and word(html) == ("OK" if status == 200 else "KO")
    assert (document["status"], document["up"], document["required"]) == (word(html), 2, required)
    assert [(target["target"], target["ok"]) for target in document["targets"]] == [
        (up1.name, True), (up2.name, True), (down.name, False)]


# ------------------------------------------------------------- cached mode

def test_cached_mode_answers_from_the_background_probe(beds):
    service, fake = beds.cached
    fresh_ok(service, fake)
    fake.reset_counts()
    started = time.monotonic()
    responses = []
    for index in range(200):
        responses.append(checked(service.request()))
        time.sleep(0.005)
    duration_ms = (time.monotonic() - started) * 1000

    assert [response.status for response in responses] == [200] * 200
    assert fake.connections <= duration_ms / INTERVAL_MS + 2, \
        "%d probes in %d ms" % (fake.connections, duration_ms)
    # HAProxy's health checks say no verdict's age: none is claimed.
    assert not [response for response in responses if "x-checktcp-age-ms" in response.headers]


@pytest.mark.parametrize("death", ["refuse", "silent"])
def test_cached_mode_turns_ko_when_the_server_dies(beds, death):
    service, fake = beds.cached
    fresh_ok(service, fake)
    killed = time.monotonic()
    fake.behave(death)
    while True:
        response = checked(service.request())
        elapsed_ms = (time.monotonic() - killed) * 1000
        if response.status == 503:
            break
        assert response.status == 200
        assert elapsed_ms <= CACHED_TURN_MS, "still 200 after %d ms" % elapsed_ms
        time.sleep(0.01)
    assert word(response) == "KO"
    assert elapsed_ms <= CACHED_TURN_MS


# ------------------------------------------------------------ probe words

def test_other_words_without_header(beds):
    service, fake = beds.words
    fresh_ok(service, fake, header=False)
    fake.reset_counts()
    response = checked(service.request())
    assert response.status == 200 and word(response) == "OK"
    assert fake.lines == [b"ping"]

    # With skip_lines 0, a header is the reply, and a wrong one.
    fake.behave("echo")
    offset = service.log_offset()
    response = checked(service.request())
    assert response.status == 503 and word(response) == "KO"
    assert service.wait_log(r'checktcp: %s KO: unexpected reply "ECHO client=' % fake.name, offset), \
        service.log_text(offset)
