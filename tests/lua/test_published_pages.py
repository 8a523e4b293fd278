# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A cached check's pages answered by haproxy.cfg (issue 17's page speed):
checktcp.lua publishes each page it renders in a process variable, and
haproxy.cfg answers that form with it while the state it shows is under the
reuse window old. Whichever answers, a client gets the page Lua would give it:
its own form, details only where allowed, ?refresh=N honoured, the status of
the word it is published under, and a whole page when it is too large for a buffer."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import re
import threading
import time

import pytest

from conftest import checked, utc, word

INTERVAL_MS = 100
# The role's reuse window of a cached check's state and page (vars/main.yml).
REUSE_MS = 100
# A page follows its target within the check's interval, a check (fast here),
# the reuse window, and room for a loaded machine.
FOLLOW_BOUND_S = (INTERVAL_MS + REUSE_MS) / 1000 + 1.0
# Targets of the check whose details page no longer fits half a 16 KiB buffer,
# each checked every BIG_INTERVAL_MS (200 checks/s on one fake server).
BIG = 200
BIG_INTERVAL_MS = 1000
# Clients asking for the big page at once, and for how long.
CLIENTS = 16
FLOOD_S = 3.0
# A page dates a read by the wall clock's offset from HAProxy's monotonic
# clock, taken when it is rendered: two renders of one read may differ by
# this, each clock read to the ms.
DATING_SLACK_MS = 2
# How long after a target's change a test reads its page, to tell the change's time from the read's.
CHANGE_AGE_S = 2
OUTSIDER = "127.0.0.2"
ALLOWED = "127.0.0.1"


@pytest.fixture(scope="module")
def bed(deploy, fake_servers):
    flip, steady, many = fake_servers(3)
    common = {"mode": "cached", "interval_ms": INTERVAL_MS}
    service, = deploy({
        "haproxy_status_details_allow": [ALLOWED + "/32"],
        "haproxy_checktcp_checks": [
            dict(common, name="flip", targets=[dict(flip.target, name="flip-target")]),
            dict(common, name="hidden", targets=[dict(steady.target, name="hidden-target")], details=False),
            dict(common, name="big", targets=[dict(many.target, name="big-%d" % index) for index in range(BIG)],
                 interval_ms=BIG_INTERVAL_MS),
        ]})
    service.flip, service.many = flip, many
    return service


def published(service, position, form):
    """What ``get var`` says of the page published for the check at ``position`` (from 1) in ``form``."""
    return service.admin_command("get var proc.checktcp_page_%d_%s" % (position, form))


def page(service, path, json_form=False, source=ALLOWED, query=""):
    headers = {"Accept": "application/json"} if json_form else None
    return checked(service.request(path=path + query, headers=headers, source=source))


def wait_page(service, path, status, json_form=False, within_s=10):
    end = time.monotonic() + within_s
    while True:
        response = page(service, path, json_form)
        if response.status == status and word(response) == ("OK" if status == 200 else "KO"):
            return response
        assert time.monotonic() < end, response
        time.sleep(0.02)


def test_a_page_lua_renders_is_published_for_haproxy_cfg(bed):
    bed.flip.behave("echo")
    response = wait_page(bed, "/flip", 200)
    assert b"flip-target" in response.body
    # The page under its word, the word and the time, in the variables
    # haproxy.cfg answers this form from.
    shown = published(bed, 1, "html1_ok")
    assert "type=str" in shown and '<body class="ok">' in shown and "flip-target" in shown, shown
    assert "type=str value=<ok>" in published(bed, 1, "html1_word")
    assert re.search(r"type=sint value=<\d{13}>", published(bed, 1, "html1_at")), published(bed, 1, "html1_at")
    assert "not found" in published(bed, 1, "json1_word").lower()
    assert json.loads(wait_page(bed, "/flip", 200, json_form=True).body)["status"] == "OK"
    assert '{"status":"OK"' in published(bed, 1, "json1_ok")
    # A KO page goes beside the OK one, and the word says which is the page.
    bed.flip.behave("refuse")
    wait_page(bed, "/flip", 503)
    assert '<body class="ko">' in published(bed, 1, "html1_ko")
    assert "type=str value=<ko>" in published(bed, 1, "html1_word")
    assert '<body class="ok">' in published(bed, 1, "html1_ok")


def test_a_cached_page_dates_its_read_of_the_checks_not_a_check(bed):
    # HAProxy checks the target every interval and the page reads that state
    # when asked: the time it shows is the read's, "0.0 s ago" even when the
    # last check ran an interval ago, so it must not call it a check's.
    bed.flip.behave("echo")
    text = wait_page(bed, "/flip", 200).body.decode()
    assert "checked <time" not in text and "<th>checked (UTC)</th>" not in text, text
    assert "(cached mode: HAProxy checks every 0.1 s), state read <time>" in text, text


def test_a_cached_target_shows_its_last_change_of_state(bed):
    """Each target's row gives the time of its last change (HAProxy's lastchg, in whole
    seconds), not the time of the read, which the page already gives."""
    bed.flip.behave("echo")
    wait_page(bed, "/flip", 200)
    before = time.time()
    bed.flip.behave("refuse")
    wait_page(bed, "/flip", 503, json_form=True, within_s=FOLLOW_BOUND_S)
    seen = time.time()
    # A read at least CHANGE_AGE_S after the change, so that the read's own time
    # could not pass for the change.
    end = time.monotonic() + CHANGE_AGE_S + 10
    while True:
        document = json.loads(page(bed, "/flip", json_form=True).body)
        if utc(document["checked_at"]) >= seen + CHANGE_AGE_S:
            break
        assert time.monotonic() < end, document
        time.sleep(0.1)
    target, = document["targets"]
    changed = utc(document["checked_at"]) - target["last_change_s"]
    # lastchg counts whole seconds on HAProxy's clock: the change it dates lies within a second of the real one.
    assert before - 1.0 <= changed <= seen + 1.0, (before, seen, document)
    text = page(bed, "/flip").body.decode()
    assert "<th>last change (UTC)</th>" in text and "<th>state read (UTC)</th>" not in text, text
    cell = re.search(r'<td class="v-ko">KO</td><td class="n">\d+</td>'
                     r'<td>(\d\d):(\d\d):(\d\d)Z \((\d+) s ago\)</td>', text)
    assert cell is not None, text
    assert int(cell.group(4)) >= CHANGE_AGE_S, text
    read = utc(re.search(r'<time>([^<]+)</time>', text).group(1))
    shown = time.strftime("%H:%M:%S", time.gmtime(read // 1 - int(cell.group(4))))
    assert ":".join(cell.group(1, 2, 3)) == shown, text


def test_every_page_has_the_status_of_its_word_while_the_target_flips(bed):
    """Pages sampled by 4 clients (HTML and JSON) while the target goes down and up
    again: each one's status is its word's, and each change shows within the bound."""
    bed.flip.behave("echo")
    wait_page(bed, "/flip", 200)
    bed.wait_seen("flip")
    stop = [False]

    def sample(json_form):
        seen = []
        while not stop[0]:
            response = page(bed, "/flip", json_form)
            seen.append((response.status, response.reason, word(response), response.headers["content-type"]))
        return seen

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        samplers = [pool.submit(sample, json_form) for json_form in (False, True, False, True)]
        try:
            for behaviour, status in (("refuse", 503), ("echo", 200), ("refuse", 503), ("echo", 200)):
                bed.flip.behave(behaviour)
                wait_page(bed, "/flip", status, within_s=FOLLOW_BOUND_S)
                wait_page(bed, "/flip", status, json_form=True, within_s=FOLLOW_BOUND_S)
        finally:
            stop[0] = True
        seen = [item for sampler in samplers for item in sampler.result()]
    types = {"text/html; charset=utf-8", "application/json"}
    wrong = [item for item in seen
             if (item[0], item[1]) != ({"OK": 200, "KO": 503}[item[2]], item[2]) or item[3] not in types]
    assert wrong == [], wrong
    assert {item[2] for item in seen} == {"OK", "KO"}, len(seen)


@pytest.mark.parametrize("json_form", [False, True])
def test_a_client_off_the_details_list_never_gets_a_published_details_page(bed, json_form):
    bed.flip.behave("echo")
    wait_page(bed, "/flip", 200, json_form)
    bed.wait_seen("flip")
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        assert b"flip-target" in page(bed, "/flip", json_form).body
        hidden = page(bed, "/flip", json_form, source=OUTSIDER)
        assert hidden.status == 200 and b"flip-target" not in hidden.body, hidden
        assert str(bed.flip.port).encode() not in hidden.body, hidden


def test_a_check_without_details_never_publishes_a_details_page(bed):
    wait_page(bed, "/hidden", 200)
    bed.wait_seen("hidden")
    for json_form in (False, True):
        assert b"hidden-target" not in page(bed, "/hidden", json_form).body
    shown = published(bed, 2, "html0_ok")
    assert "type=str" in shown and "hidden-target" not in shown, shown
    for name in ("html1_ok", "html1_ko", "html1_word"):
        assert "not found" in published(bed, 2, name).lower()


def test_a_page_asked_to_refresh_is_lua_s_and_refreshes(bed):
    bed.flip.behave("echo")
    wait_page(bed, "/flip", 200)
    bed.wait_seen("flip")
    for _cycle in range(3):
        assert b'<meta http-equiv="refresh" content="5">' in page(bed, "/flip", query="?refresh=5").body
        assert b'http-equiv="refresh"' not in page(bed, "/flip").body


def test_a_page_too_large_for_a_buffer_comes_whole_from_lua(bed):
    response = wait_page(bed, "/big", 200)
    assert response.body.endswith(b"</main></body></html>"), response.body[-200:]
    assert len(re.findall(rb"<td>big-\d+</td>", response.body)) == BIG
    assert len(response.body) > 8192
    for name in ("html1_ok", "html1_word"):
        assert "not found" in published(bed, 3, name).lower()


def test_concurrent_requests_for_a_large_page_share_one_state_read(bed):
    """The big page, rendered by checktcp.lua, comes from one read of the
    health checks' state, reused for the reuse window. Reading 200 servers'
    stats takes long enough for HAProxy to pause the Lua in it
    (``tune.lua.forced-yield``): a request arriving then must share that
    read, not start its own. Before the fix every such request read the state
    again (reads 3-7 ms apart on 2.6 and 3.2), and at 50 connections HAProxy
    3.2 served that page at 184-350 requests/s (benchmarks/, 2026-12-05).
    What a client sees of it: the time of the read a JSON page shows."""
    bed.wait_seen("big", timeout=10)
    end = time.monotonic() + FLOOD_S
    reads, statuses, lock = set(), collections.Counter(), threading.Lock()

    def client():
        answers = 0
        while time.monotonic() < end:
            response = page(bed, "/big", json_form=True)
            shown = json.loads(response.body)
            with lock:
                reads.add(utc(shown["checked_at"]))
                statuses[response.status, shown["status"]] += 1
            answers += 1
        return answers

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        answers = sum(pool.map(lambda _: client(), range(CLIENTS)))
    times = sorted(reads)
    # Renders of one read, dated a millisecond apart, count as one.
    distinct = [at for previous, at in zip([None] + times, times)
                if previous is None or round((at - previous) * 1000) > DATING_SLACK_MS]
    gaps_ms = [round((later - earlier) * 1000) for earlier, later in zip(distinct, distinct[1:])]
    assert len(distinct) >= 3, "too few reads to show anything: %d answers, reads %s" % (answers, times)
    assert min(gaps_ms) >= REUSE_MS - DATING_SLACK_MS, (
        "%d answers (%s) from %d reads; ms between reads: %s" % (answers, dict(statuses), len(distinct), gaps_ms))
    # Its targets stay up: the page's readers never starve their checks.
    assert set(statuses) == {(200, "OK")}, statuses


def big_states(service):
    """How many of the big check's servers HAProxy's health checks hold in each state (UP, DOWN)."""
    return collections.Counter(row["status"].split()[0] for row in service.stat_rows("checktcp_check_big")
                               if row["svname"] not in ("BACKEND", "FRONTEND"))


def test_a_request_arriving_during_a_read_never_gets_an_older_one(bed):
    """After a spell without page requests (no state read), the big check's
    targets go down, then up again. Each time, once HAProxy's health checks
    hold every target in its new state, clients ask for the page at once: the
    first starts a read, and the others arrive while HAProxy has paused it.
    Each must get a read at least as new as its request, never the last one
    before the change (200 while every target is down, 503 once they are all
    back). Two rounds: a burst does not always find the first read paused
    (with one round, the code before the fix failed in 1 of 2 runs on 2.6,
    and in the one run each on 3.2 and 3.0)."""
    for behaviour, state, status in (("refuse", "DOWN", 503), ("echo", "UP", 200)) * 2:
        bed.many.behave(behaviour)
        end = time.monotonic() + BIG_INTERVAL_MS / 1000 + FOLLOW_BOUND_S
        while big_states(bed) != {state: BIG}:
            assert time.monotonic() < end, big_states(bed)
            time.sleep(0.05)
        start = threading.Barrier(CLIENTS)

        def client():
            start.wait()
            response = page(bed, "/big", json_form=True)
            shown = json.loads(response.body)
            return response.status, shown["status"], shown["checked_at"]

        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(lambda _: client(), range(CLIENTS)))
        assert {answer[:2] for answer in answers} == {(status, "OK" if status == 200 else "KO")}, (
            "targets %s: %s" % (behaviour, sorted(answers, key=lambda answer: answer[2])))


def test_a_cached_check_says_503_ko_in_every_form(bed):
    bed.flip.behave("refuse")
    for query in ("", "?format=json", "?format=text"):
        end = time.monotonic() + FOLLOW_BOUND_S
        while True:
            response = bed.request(path="/flip" + query)
            if response.status == 503:
                break
            assert time.monotonic() < end, response
            time.sleep(0.02)
        assert response.reason == "KO", response


def publish_by_hand(service, form, body, at, word="ok"):
    """Publish ``body`` as the first check's page of ``word`` in ``form``, dated
    ``at`` (an expression), as checktcp.lua would."""
    for name, how, value in ((form + "_" + word, "fmt", body), (form + "_word", "fmt", word),
                             (form + "_at", "expr", at)):
        answer = service.admin_command("experimental-mode on; set var proc.checktcp_page_1_%s %s %s" % (name, how, value))
        assert answer.strip() == "", answer


def answer_to_fresh_publication(service, body, word="ok"):
    """The JSON answer of the first check once ``body`` is published by hand as its
    page of ``word``, dated now: published again, up to 5 times, until the answer
    is that body (the CLI's round trips take a few ms; a loaded machine may need a
    retry). The last answer either way."""
    for _attempt in range(5):
        publish_by_hand(service, "json1", body, "date(0,ms)", word=word)
        response = page(service, "/flip", json_form=True)
        if response.body == body.encode():
            break
    return response


def test_haproxy_cfg_answers_a_published_page_until_it_is_old(bed):
    bed.flip.behave("echo")
    wait_page(bed, "/flip", 200, json_form=True)
    bed.wait_seen("flip")
    sentinel = '{"status":"OK","published":"by-this-test"}'
    # The page is answered as published while its time is within the window.
    response = answer_to_fresh_publication(bed, sentinel)
    assert response.body == sentinel.encode(), response
    assert response.status == 200 and response.headers["content-type"] == "application/json", response
    assert response.headers["cache-control"] == "no-store", response
    # The status is the published word's, the page the one published under it.
    ko_sentinel = '{"status":"KO","published":"by-this-test"}'
    response = answer_to_fresh_publication(bed, ko_sentinel, word="ko")
    assert (response.status, response.reason, response.body) == (503, "KO", ko_sentinel.encode()), response
    # Past the window, and dated ahead of the clock (a clock stepped back), it is
    # not answered: the Lua service renders the page again.
    for at in ("date(0,ms),sub(%d)" % (REUSE_MS + 50), "date(0,ms),add(10000)"):
        publish_by_hand(bed, "json1", sentinel, at)
        response = page(bed, "/flip", json_form=True)
        assert json.loads(response.body)["targets"][0]["target"] == "flip-target", response
