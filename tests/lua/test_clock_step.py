# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Defect 5 of issue 9, two clocks: a step of the wall clock (NTP, an
operator) must neither make a cached check KO nor leave its pages dated in
the old clock. HAProxy runs under
libfaketime with only its wall clock faked; the test steps it by rewriting the
offset file while it reads the page."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
import types

import pytest

from conftest import checked, haproxy_binary, utc, wait_status, word

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
# HAProxy's chroot (the role's): libfaketime rereads its offset file there.
CHROOT = pathlib.Path("/var/lib/haproxy")
FAKETIME_CACHE_S = 1     # libfaketime rereads the offset file this often
TIMEOUT_MS = 500
INTERVAL_MS = 200
# A page is rendered from the checks' state when asked: dated within this of now.
DATED_WITHIN_MS = 1000
DATED_TO_S = 0.001
STEP_S = 3600
# Long enough for libfaketime to see the new offset, and then some: the
# answers are read across the step.
ACROSS_STEP_S = FAKETIME_CACHE_S + 3.5


def hangs_under_libfaketime():
    """Whether ``haproxy -v`` never returns under libfaketime: HAProxy 3.0 and
    3.2 (Debian 13, forky; libfaketime 0.9.12 there) hang at start, 2.6 runs."""
    env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME="+0", FAKETIME_DONT_FAKE_MONOTONIC="1")
    proc = subprocess.Popen([haproxy_binary(), "-v"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(10)
        return False
    except subprocess.TimeoutExpired:
        if os.environ.get("CHECKTCP_HAPROXY_IMAGE"):
            # bin/haproxy names its container after the podman client's PID.
            name = "%s-haproxy-%d" % (os.environ.get("CHECKTCP_ID", "checktcp"), proc.pid)
            subprocess.run(["podman", "rm", "-f", "-t", "0", name],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        proc.kill()
        proc.wait()
        return True


@pytest.fixture(scope="module")
def clock(make_service, fake_servers):
    if not os.path.exists(LIBFAKETIME):
        pytest.fail("%s is missing: apt-get install faketime" % LIBFAKETIME)
    if hangs_under_libfaketime():
        pytest.skip("this HAProxy never starts under libfaketime (`haproxy -v` hangs), so its clock cannot be stepped")
    [fake] = fake_servers(1)
    service = make_service(haproxy_checktcp_targets=[fake.target], haproxy_checktcp_mode="cached",
                           haproxy_checktcp_timeout_ms=TIMEOUT_MS, haproxy_checktcp_interval_ms=INTERVAL_MS)
    returncode, output = service.render()
    assert returncode == 0, output
    # Named after this clone and test directory; the path as HAProxy's workers
    # see it, in the chroot (before chroot it is absent: no offset).
    offset = CHROOT / ("%s-faketime-%s" % (os.environ.get("CHECKTCP_ID", "checktcp"), service.workdir.name))
    offset.write_text("+0\n")
    try:
        service.start(env={"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": "/" + offset.name,
                           "FAKETIME_CACHE_DURATION": str(FAKETIME_CACHE_S), "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
        yield types.SimpleNamespace(service=service, offset=offset)
    finally:
        offset.unlink(missing_ok=True)


def step_to(clock, seconds):
    """Set HAProxy's wall clock to the real one plus ``seconds``; return the
    answers (HTML and JSON) read across the step."""
    clock.offset.write_text("%+d\n" % seconds)
    answers, end = [], time.monotonic() + ACROSS_STEP_S
    while time.monotonic() < end:
        for path in ("/", "/?format=json"):
            answers.append(checked(clock.service.request(path=path)))
        time.sleep(0.02)
    return answers


def assert_fresh(clock, answers, offset_s):
    """Every answer 200 OK (cached mode claims no age), and the page now dated
    in the stepped clock."""
    wrong = [(response.status, word(response), response.headers.get("x-checktcp-age-ms"))
             for response in answers
             if (response.status, word(response)) != (200, "OK") or "x-checktcp-age-ms" in response.headers]
    assert not wrong, "%d of %d answers wrong, first: %s\n%s" % (
        len(wrong), len(answers), wrong[:5], clock.service.log_text())
    document = json.loads(checked(clock.service.request(path="/?format=json")).body)
    stepped_now = time.time() + offset_s
    # Pages are dated to the millisecond (HAProxy's date against core.now, each
    # in whole ms): a stamp may read up to 1 ms ahead.
    assert -DATED_TO_S <= stepped_now - utc(document["checked_at"]) <= DATED_WITHIN_MS / 1000, (
        document, stepped_now)


def test_a_forward_step_leaves_fresh_verdicts_fresh(clock):
    wait_status(clock.service, 200, 3)
    assert_fresh(clock, step_to(clock, STEP_S), STEP_S)


def test_a_backward_step_leaves_fresh_verdicts_fresh(clock):
    wait_status(clock.service, 200, 3)
    # From an hour ahead to an hour behind: verdicts dated in the future.
    assert_fresh(clock, step_to(clock, -STEP_S), -STEP_S)
    assert_fresh(clock, step_to(clock, 0), 0)
