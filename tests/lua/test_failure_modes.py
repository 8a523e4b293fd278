# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""How the checktcp service judges each way an echo server can fail, against a
real HAProxy on loopback: the status code, the page's verdict, the time the
client waits for it, and the reason HAProxy logs.

Timing classes, with a 500 ms probe timeout: ``immediate`` answers in under
300 ms; ``timeout`` within [timeout - 50, timeout + 100] ms, so that a service
waiting for a second deadline, or giving up early, fails; ``ok`` in under
timeout + 100 ms."""

from __future__ import annotations

import html
import random
import re

import pytest

TIMEOUT_MS = 500
# checktcp.lua's MAX_LINE_BYTES.
MAX_LINE_BYTES = 1024
IMMEDIATE_MS = 300
SLACK_MS = 100

# Random bytes without a newline, NUL and 0xff first: the log shows 64 at most.
GARBAGE = b"\x00\xff" + bytes(byte for byte in random.Random(7).randbytes(40) if byte != 0x0A)

TIMEOUT_REPLY = "timeout after %d ms waiting for reply line" % TIMEOUT_MS
# A reset can reach HAProxy before its connect completes: then connect fails.
RESET = r"(header line 1 closed by peer|reply line closed by peer|connection refused or unreachable)"
# Longer than the timeout, for the servers that keep sending.
STREAM_S = 3 * TIMEOUT_MS / 1000


def case(case_id, behaviour, verdict, timing, expected, **options):
    """One case: the fake server's behaviour and options; the verdict; its timing
    class; for KO the regex of the reason (logged and on the page), for OK the
    minimum time in ms."""
    return pytest.param(behaviour, options, verdict, timing, expected, id=case_id)


CASES = [
    case("refused", "refuse", "KO", "immediate", r"connection refused or unreachable"),
    case("silent", "silent", "KO", "timeout", "timeout after %d ms waiting for header line 1" % TIMEOUT_MS),
    case("header-no-reply", "header_only", "KO", "timeout", TIMEOUT_REPLY),
    # The echoed line is consumed as the header, so no reply line follows.
    case("no-header", "echo", "KO", "timeout", TIMEOUT_REPLY, header=False),
    case("wrong-line", "echo", "KO", "immediate", 'unexpected reply "nope"', reply=b"nope"),
    case("crlf", "echo", "OK", "ok", 0, eol=b"\r\n"),
    case("prefix-checkmate", "echo", "KO", "immediate", 'unexpected reply "checkmate"', reply=b"checkmate"),
    case("prefix-check-extra", "echo", "KO", "immediate", 'unexpected reply "check extra"', reply=b"check extra"),
    case("slow-within-timeout", "echo", "OK", "ok", 0.6 * TIMEOUT_MS, delay=0.6 * TIMEOUT_MS / 1000),
    case("close-after-header", "close_after_header", "KO", "immediate", "reply line closed by peer"),
    # Escaped in the log; that no raw byte reaches the log is checked for every case.
    case("binary-garbage", "echo", "KO", "immediate", r'unexpected reply "\\x00\\xff(\\x[0-9a-f]{2}|[!-~ ])+"',
         reply=GARBAGE),
    # A line may be MAX_LINE_BYTES long: an endless one is KO as soon as it is longer.
    case("endless-line", "stream", "KO", "immediate", "reply line longer than %d bytes" % MAX_LINE_BYTES,
         chunk=b"x" * 1024, every=0.005, duration=STREAM_S),
    case("big-then-idle", "stream", "KO", "immediate", "reply line longer than %d bytes" % MAX_LINE_BYTES,
         chunk=b"x" * 200_000, every=STREAM_S, duration=0.001),
    case("reset-on-accept", "reset", "KO", "immediate", RESET),
    case("reset-after-header", "reset", "KO", "immediate", RESET, after_header=True),
    # One byte every 50 ms keeps each read busy: only one deadline per probe ends it.
    case("dribbler", "stream", "KO", "timeout", TIMEOUT_REPLY, chunk=b"x", every=0.05, duration=STREAM_S),
    # Faster than any inactivity timeout (HAProxy 3.2's socket timeout), still bounded.
    case("fast-dribbler", "stream", "KO", "timeout", TIMEOUT_REPLY, chunk=b"x", every=0.002, duration=STREAM_S),
    # Each read within the timeout, the whole probe not: one deadline per probe, not per read.
    case("slow-steps", "echo", "KO", "timeout", TIMEOUT_REPLY,
         header_delay=0.6 * TIMEOUT_MS / 1000, delay=0.6 * TIMEOUT_MS / 1000),
]


@pytest.fixture(scope="module")
def bed(deploy, fake_servers):
    """HAProxy probing one fake echo server with a 500 ms timeout."""
    fake = fake_servers()[0]
    service = deploy({"haproxy_checktcp_timeout_ms": TIMEOUT_MS, "haproxy_checktcp_targets": [fake.target]})[0]
    return service, fake


def healthy(service, fake):
    """Bring the target back to a fresh OK verdict: no probe of the previous case is in
    flight (a request shares it), and the next KO reason is logged (HAProxy logs an
    unchanged reason at most once a second, and forgets it after an OK)."""
    fake.behave("echo")
    fake.wait_idle()
    for attempt in range(3):
        response = service.request()
        if response.status == 200:
            return
    pytest.fail("the healthy echo server is not OK after %d requests: %r\n%s"
                % (attempt + 1, response, service.log_text()))


@pytest.mark.parametrize("behaviour, options, verdict, timing, expected", CASES)
def test_failure_mode(bed, failure_table, request, behaviour, options, verdict, timing, expected):
    service, fake = bed
    healthy(service, fake)
    fake.behave(behaviour, **options)
    fake.reset_counts()
    offset = service.log_offset()

    response = service.request()

    word = "OK" if response.status == 200 else "KO"
    failure_table.append((request.node.callspec.id, "%d %s" % (response.status, word), round(response.elapsed_ms)))
    log = service.log_text(offset)
    # One fresh probe judged this request, not a verdict left by the previous one.
    assert fake.connections == (0 if behaviour == "refuse" else 1), log
    assert response.status == (200 if verdict == "OK" else 503), log
    assert ("<h1>%s</h1>" % verdict).encode() in response.body
    assert response.headers["content-length"] == str(len(response.body))
    elapsed = response.elapsed_ms
    if timing == "immediate":
        assert elapsed < IMMEDIATE_MS, log
    elif timing == "timeout":
        assert TIMEOUT_MS - 50 <= elapsed <= TIMEOUT_MS + SLACK_MS, log
    else:
        assert expected <= elapsed < TIMEOUT_MS + SLACK_MS, log
    if verdict == "KO":
        # The page's reason is the probe's, not a request deadline's "no verdict".
        page = html.unescape(response.body.decode("utf-8", "replace"))
        assert re.search("<td>%s</td>" % expected, page), page
        logged = r"checktcp: %s KO: %s \(\d+ ms\)$" % (re.escape(fake.name), expected)
        assert service.wait_log(logged, offset), "no log line matching %r in:\n%s" % (logged, log)
    # Whatever the echo server sent, the log holds printable text only.
    raw = service.log_bytes(offset)
    assert not [byte for byte in raw if byte >= 0x7F or (byte < 0x20 and byte != 0x0A)], raw
