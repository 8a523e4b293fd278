"""A blackholed target: its SYNs are dropped, so a connect neither succeeds nor is refused.

An nftables rule drops the SYNs to the echo server's port. The page must
answer 503 within haproxy_checktcp_timeout_ms (plus slack), not earlier (no
reset comes), with a reason that names the connect step, on any HAProxy
version; once the rule is gone the page is 200 again.
"""

import re

import pytest

ECHO_PORT = 8080
TIMEOUT_S = 1.0  # haproxy_checktcp_timeout_ms
LIMIT_S = TIMEOUT_S + 0.1
TABLE = "checktcp_blackhole"
REASON = r"KO: [^\n]*connect"
FAILURE_TABLE = "Failure modes (haproxy_checktcp_timeout_ms 1000)"


@pytest.fixture
def blackhole(host, status):
    """Drop every SYN to the echo port (loopback traffic passes the output hook)."""
    assert status.wait_for(200)[0] == 200, status.journal()
    host.run(f"nft delete table inet {TABLE}")
    host.run_expect([0], (
        f"nft add table inet {TABLE} && "
        f"nft add chain inet {TABLE} out '{{ type filter hook output priority 0 ; }}' && "
        f"nft add rule inet {TABLE} out tcp dport {ECHO_PORT} "
        "'tcp flags & (syn | ack) == syn' counter drop"))
    try:
        yield
    finally:
        host.run(f"nft delete table inet {TABLE}")


def _dropped(host):
    out = host.check_output(f"nft list table inet {TABLE}")
    match = re.search(r"counter packets (\d+)", out)
    return int(match.group(1)) if match else 0


def test_blackholed_target_is_ko_at_the_timeout_naming_connect(host, blackhole, journal, status, table, figures):
    code, body, seconds = status.get()
    dropped = _dropped(host)
    logged = journal.wait_for(REASON)
    table(FAILURE_TABLE, ("case", "verdict", "time (ms)"),
          ("blackhole (SYNs dropped)", f"{code} {'OK' if code == 200 else 'KO'}", round(seconds * 1000)))
    figures("Blackhole", f"503 in {seconds * 1000:.0f} ms, {dropped} SYNs dropped")
    context = f"{code} in {seconds:.3f} s\n{body}\n--- haproxy journal ---\n{logged}"
    assert dropped > 0, "the rule dropped nothing: the test proves nothing\n" + context
    assert code == 503 and "<h1>KO</h1>" in body, context
    assert TIMEOUT_S - 0.05 <= seconds <= LIMIT_S, context
    assert re.search(r"connect", body), "the page does not name the connect step\n" + context
    assert re.search(REASON, logged), "the log does not name the connect step\n" + context
    # The JSON page says the same.
    code, body, seconds = status.get(headers=["Accept: application/json"])
    assert code == 503 and seconds <= LIMIT_S and "connect" in body, body


def test_page_recovers_once_the_blackhole_is_gone(host, blackhole, status):
    assert status.get()[0] == 503, status.journal()
    host.run_expect([0], f"nft delete table inet {TABLE}")
    code, body, _seconds = status.wait_for(200)
    assert code == 200 and "<h1>OK</h1>" in body, status.journal()
