"""Failure modes: a fake echo server misbehaves in each way the probe must catch.

files/fake_echo.py replaces checktcp-echo.service on 127.0.0.1:8080 for one
case; the status page's verdict, how long it took, and the reason HAProxy
logs are checked, and collected into a Markdown table.
"""

import re

import pytest

ECHO_UNIT = "checktcp-echo.service"
FAKE_UNIT = "checktcp-fake"
FAKE = "/usr/local/lib/checktcp-tests/fake_echo.py"
TIMEOUT_S = 1.0  # haproxy_checktcp_timeout_ms
LIMIT_S = TIMEOUT_S + 0.1  # every verdict
FAST_S = 0.3  # verdicts that need no timeout
TABLE = "Failure modes (haproxy_checktcp_timeout_ms 1000)"

# behaviour: (status, "fast" or "timeout" or a minimum in seconds, reason logged)
CASES = {
    "refused": (503, "fast", r"KO: connection refused or unreachable"),
    "silent": (503, "timeout", r"KO: timeout after 1000 ms waiting for header line 1"),
    "header-only": (503, "timeout", r"KO: timeout after 1000 ms waiting for reply line"),
    "wrong-line": (503, "fast", r'KO: unexpected reply "nope"'),
    "crlf": (200, "fast", None),
    "prefix": (503, "fast", r'KO: unexpected reply "checkmate"'),
    "slow-ok": (200, 0.6, None),
    "close-after-header": (503, "fast", r"KO: reply line closed by peer"),
    "garbage": (503, "fast", r'KO: unexpected reply "\\x00\\x01\\xfe\\xff'),
    # A line may be 1024 bytes long (checktcp.lua's MAX_LINE_BYTES): KO as soon as it is longer.
    "endless-line": (503, "fast", r"KO: reply line longer than 1024 bytes"),
    "reset": (503, "fast", r"KO: header line 1 closed by peer"),
}


@pytest.fixture
def fake_echo(host, request, status):
    """Stop the echo server, run the fake with one behaviour on its port; restore both after."""
    behaviour = request.param
    host.run_expect([0], f"systemctl stop {ECHO_UNIT}")
    try:
        if behaviour == "refused":
            host.run_expect([1], "ss -Hltn 'sport = :8080' | grep -q .")
        else:
            host.run_expect([0], (
                f"systemd-run --unit {FAKE_UNIT} --collect python3 {FAKE} "
                f"--port 8080 --behaviour {behaviour}"))
            host.run_expect([0], "timeout 5 sh -c \"until ss -Hltn 'sport = :8080' | grep -q .; do sleep 0.05; done\"")
        yield behaviour
    finally:
        host.run(f"systemctl stop {FAKE_UNIT}")
        # Eleven stop/start cycles in a row exceed systemd's start rate limit
        # (5 in 10 s) for the unit: clear the count the test itself built up.
        host.run_expect([0], f"systemctl reset-failed {ECHO_UNIT}")
        host.run_expect([0], f"systemctl start {ECHO_UNIT}")
        # The next case starts from a healthy page (and a logged "OK again").
        status.wait_for(200)


@pytest.mark.parametrize("fake_echo", list(CASES), indirect=True)
def test_failure_mode(host, journal, fake_echo, status, table):
    expected, speed, reason = CASES[fake_echo]
    code, body, seconds = status.get()
    table(TABLE, ("case", "verdict", "time (ms)"), (fake_echo, f"{code} {'OK' if code == 200 else 'KO'}",
                                                    round(seconds * 1000)))
    logged = journal.wait_for(reason) if reason else journal.since()
    context = (f"{fake_echo}: {code} in {seconds:.3f} s\n{body}\n--- haproxy journal since the test started ---\n"
               f"{logged}\n--- fake ---\n{status.journal(units=(f'{FAKE_UNIT}.service',))}")
    assert code == expected, context
    assert ("<h1>OK</h1>" if expected == 200 else "<h1>KO</h1>") in body, context
    assert seconds <= LIMIT_S, context
    if speed == "fast":
        assert seconds < FAST_S, context
    elif speed == "timeout":
        assert seconds >= TIMEOUT_S - 0.05, "KO before the timeout: " + context
    else:
        assert seconds >= speed, context
    if reason:
        assert re.search(reason, logged), "reason not logged: " + context
    host.run_expect([0], "systemctl is-active haproxy.service")
