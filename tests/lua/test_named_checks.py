# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Named checks (haproxy_checktcp_checks) against a real HAProxy on loopback:
each check on its own path and independent of the others, the overview (HTML
and JSON), 404 without a probe elsewhere, query strings, a cached check
beside live ones, metrics per check, and the bounded auto-refresh."""

from __future__ import annotations

import json
import re
import time
import types

import pytest

from conftest import checked, http_request, word

TIMEOUT_MS = 500
INTERVAL_MS = 200
SLACK_MS = 100
# A cached check turns after at most an interval and a timeout.
CACHED_TURN_S = (INTERVAL_MS + TIMEOUT_MS + SLACK_MS) / 1000
NAMES = ("one", "two", "three")


@pytest.fixture(scope="module")
def bed(deploy, fake_servers, free_port):
    """One HAProxy with three checks: one and two live, three cached, each
    probing its own fake server; and a metrics frontend."""
    fakes = dict(zip(NAMES, fake_servers(3)))
    metrics_port = free_port()
    checks = [
        {"name": "one", "targets": [dict(fakes["one"].target, name="echo-one")]},
        {"name": "two", "path": "/second", "targets": [dict(fakes["two"].target, name="echo-two")]},
        {"name": "three", "targets": [dict(fakes["three"].target, name="echo-three")], "mode": "cached",
         "interval_ms": INTERVAL_MS},
    ]
    [service] = deploy({"haproxy_checktcp_timeout_ms": TIMEOUT_MS, "haproxy_checktcp_checks": checks,
                        "haproxy_metrics_bind": "127.0.0.1:%d" % metrics_port})
    return types.SimpleNamespace(service=service, fakes=fakes, metrics_port=metrics_port,
                                 paths={"one": "/one", "two": "/second", "three": "/three"})


def set_up(bed, **states):
    """Each named fake server echoes (True) or refuses (False); then wait until
    every check's page shows it (the cached one turns within an interval)."""
    for name, healthy in states.items():
        bed.fakes[name].behave("echo" if healthy else "refuse")
    end = time.monotonic() + 3
    for name, healthy in states.items():
        while True:
            response = bed.service.request(path=bed.paths[name])
            if response.status == (200 if healthy else 503):
                break
            if time.monotonic() > end:
                pytest.fail("%s: %r\n%s" % (name, response, bed.service.log_text()))
            time.sleep(0.02)


def overview_json(bed, path="/?format=json"):
    response = checked(bed.service.request(path=path))
    assert response.headers["content-type"] == "application/json", response
    return response.status, json.loads(response.body)


@pytest.mark.parametrize("down", NAMES)
def test_one_check_down_leaves_the_others_ok(bed, down):
    set_up(bed, **{name: name != down for name in NAMES})

    for name in NAMES:
        response = checked(bed.service.request(path=bed.paths[name]))
        expected = "KO" if name == down else "OK"
        assert (response.status, word(response)) == ((503 if name == down else 200), expected), (name, response)
        assert ("<title>%s - %s</title>" % (expected, name)).encode() in response.body
    page = checked(bed.service.request())
    assert (page.status, word(page)) == (503, "KO"), page
    for name in NAMES:
        assert ('<a href="%s">%s</a>' % (bed.paths[name], name)).encode() in page.body, page.body
    status, document = overview_json(bed)
    assert status == 503 and document["status"] == "KO", document
    assert [(check["name"], check["path"], check["status"], check["mode"]) for check in document["checks"]] == [
        (name, bed.paths[name], "KO" if name == down else "OK", "cached" if name == "three" else "live")
        for name in NAMES]


def test_overview_is_ok_when_every_check_is(bed):
    set_up(bed, one=True, two=True, three=True)
    page = checked(bed.service.request())
    status, document = overview_json(bed)
    by_header = checked(bed.service.request(headers={"Accept": "application/json"}))

    assert (page.status, word(page)) == (200, "OK"), page
    assert status == 200 and document["status"] == "OK"
    assert [check["status"] for check in document["checks"]] == ["OK"] * 3
    assert by_header.status == 200 and json.loads(by_header.body) == document


@pytest.mark.parametrize("path", ["/four", "/one/", "/onex", "/second/x", "/favicon.ico", "/One"])
def test_other_paths_are_404_without_a_probe(bed, path):
    set_up(bed, one=True, two=True)
    for fake in bed.fakes.values():
        fake.wait_idle()
    live = [bed.fakes["one"], bed.fakes["two"]]
    for fake in live:
        fake.reset_counts()

    responses = [checked(bed.service.request(path=path)),
                 checked(bed.service.request(path=path + "?format=json")),
                 bed.service.request("HEAD", path=path)]
    time.sleep(0.1)

    assert [response.status for response in responses] == [404] * 3, responses
    assert [fake.connections for fake in live] == [0, 0], "a 404 started a probe"


@pytest.mark.parametrize("name", NAMES)
def test_query_strings_on_check_paths(bed, name):
    set_up(bed, **{name: True})
    response = checked(bed.service.request(path=bed.paths[name] + "?format=json"))
    other = checked(bed.service.request(path=bed.paths[name] + "?x=1&format=json&y"))

    for answer in (response, other):
        assert answer.status == 200 and answer.headers["content-type"] == "application/json", answer
        document = json.loads(answer.body)
        assert (document["status"], document["check"], document["path"]) == ("OK", name, bed.paths[name])
        assert [target["target"] for target in document["targets"]] == ["echo-" + name]
    html = checked(bed.service.request(path=bed.paths[name] + "?utm_source=wall"))
    assert (html.status, word(html)) == (200, "OK")


def test_cached_check_beside_live_ones(bed):
    set_up(bed, one=True, three=True)
    bed.fakes["three"].reset_counts()
    started = time.monotonic()
    answers = [checked(bed.service.request(path="/three?format=json")) for index in range(50)]
    elapsed_ms = (time.monotonic() - started) * 1000
    assert [answer.status for answer in answers] == [200] * 50
    assert {json.loads(answer.body)["mode"] for answer in answers} == {"cached"}
    # The cached check probes in the background, not per request.
    assert bed.fakes["three"].connections <= elapsed_ms / INTERVAL_MS + 2

    # Its server's death turns it KO within an interval and a timeout, and the live check stays OK.
    bed.fakes["three"].behave("silent")
    killed = time.monotonic()
    while checked(bed.service.request(path="/three")).status == 200:
        assert time.monotonic() - killed <= CACHED_TURN_S, "still 200"
        time.sleep(0.01)
    one = checked(bed.service.request(path="/one"))
    assert (one.status, word(one)) == (200, "OK")
    bed.fakes["three"].behave("echo")


def metrics(bed):
    response = checked(http_request(bed.metrics_port, path="/checktcp/metrics"))
    assert response.status == 200, response
    return response.body.decode()


def sample(text, metric, **labels):
    """The value of the sample of ``metric`` whose labels are exactly ``labels``."""
    wanted = ",".join('%s="%s"' % item for item in labels.items())
    found = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(metric), re.escape(wanted)), text, re.M)
    assert found, "no %s{%s} in:\n%s" % (metric, wanted, text)
    return float(found.group(1))


def test_metrics_carry_a_check_label(bed):
    set_up(bed, one=True, two=False, three=True)
    before = metrics(bed)
    for path in ("/one", "/one?format=json", "/second", "/three"):
        bed.service.request(path=path)
    after = metrics(bed)

    assert sample(after, "checktcp_up", check="one", target="echo-one") == 1
    assert sample(after, "checktcp_up", check="two", target="echo-two") == 0
    assert sample(after, "checktcp_up", check="three", target="echo-three") == 1
    for name in ("one", "two"):
        assert sample(after, "checktcp_probes_total", check=name, target="echo-" + name) >= 1
    # HAProxy's health checks probe the cached check: they count their failures only,
    # and none failed while its target answered.
    assert (sample(after, "checktcp_probe_failures_total", check="three", target="echo-three")
            == sample(before, "checktcp_probe_failures_total", check="three", target="echo-three"))

    def grew(name, verdict):
        return (sample(after, "checktcp_requests_total", check=name, verdict=verdict)
                - sample(before, "checktcp_requests_total", check=name, verdict=verdict))

    assert (grew("one", "OK"), grew("one", "KO")) == (2, 0)
    assert (grew("two", "OK"), grew("two", "KO")) == (0, 1)
    assert (grew("three", "OK"), grew("three", "KO")) == (1, 0)


@pytest.mark.parametrize("query, seconds", [("refresh=5", 5), ("refresh=1", 2), ("refresh=99999", 3600),
                                            ("format=html&refresh=30", 30)])
@pytest.mark.parametrize("path", ["/one", "/three", "/"])
def test_auto_refresh_is_bounded(bed, path, query, seconds):
    set_up(bed, one=True, two=True, three=True)
    response = checked(bed.service.request(path=path + "?" + query))
    assert response.status == 200, response
    assert re.findall(rb'<meta http-equiv="refresh" content="(\d+)">', response.body) == [str(seconds).encode()]


@pytest.mark.parametrize("path", ["/one", "/three", "/", "/one?refresh=x"])
def test_no_refresh_unless_asked(bed, path):
    set_up(bed, one=True, three=True)
    response = checked(bed.service.request(path=path))
    assert b'http-equiv="refresh"' not in response.body
