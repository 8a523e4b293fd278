"""The status page tells the truth about the echo server, seen from an HTTP client."""

import json

ECHO_UNIT = "checktcp-echo.service"
TIMEOUT_S = 1.0  # haproxy_checktcp_timeout_ms's default
SLACK_S = 0.3
# A stopped echo server (connection refused) is seen at once, on every HAProxy.
REFUSED_S = 0.3


def test_services_are_enabled_and_running(host):
    for unit in ("haproxy.service", ECHO_UNIT):
        service = host.service(unit)
        assert service.is_running, unit
        assert service.is_enabled, unit


def test_echo_server_runs_unprivileged(host):
    pid = host.check_output(f"systemctl show -p MainPID --value {ECHO_UNIT}")
    uid = host.check_output(f"awk '/^Uid:/ {{print $2}}' /proc/{pid}/status")
    assert int(uid) != 0


def test_echo_server_writes_a_header_then_echoes(host):
    out = host.check_output(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080; printf \"check\\n\" >&3; timeout 2 head -n 2 <&3'")
    header, echoed = out.splitlines()
    assert header.startswith("ECHO client=127.0.0.1:") and " server=127.0.0.1:8080" in header
    assert echoed == "check"


def test_live_config_passes_haproxy_check(host):
    host.run_expect([0], "haproxy -c -q -f /etc/haproxy/haproxy.cfg")
    loaded = host.check_output("awk '$1 == \"lua-load\" {print $2}' /etc/haproxy/haproxy.cfg").split()
    assert len(loaded) == 2, loaded
    on_disk = host.check_output("ls /etc/haproxy/lua/checktcp*.lua").split()
    assert sorted(on_disk) == sorted(loaded), "only the Lua pair the live haproxy.cfg loads is kept"
    for path in loaded:
        assert host.file(path).mode == 0o644


def test_ok_while_the_echo_server_answers(status):
    code, body, _seconds = status.wait_for(200)
    assert code == 200, status.journal()
    assert "<h1>OK</h1>" in body


def test_head_is_answered_without_a_body(host):
    out = host.check_output("curl -s -I http://127.0.0.1/")
    assert out.splitlines()[0].startswith("HTTP/1.1 200")
    assert "content-length:" in out.lower()
    assert "content-type: text/html" in out.lower()


def test_content_length_matches_the_body(host):
    host.run_expect([0], "curl -s -D /tmp/checktcp-head -o /tmp/checktcp-body http://127.0.0.1/")
    head = host.file("/tmp/checktcp-head").content_string
    length = [line.split(":")[1] for line in head.splitlines() if line.lower().startswith("content-length:")]
    assert int(length[0]) == host.file("/tmp/checktcp-body").size > 0


def test_json_on_request(status):
    code, body, _seconds = status.get(headers=["Accept: application/json"])
    assert code == 200
    doc = json.loads(body)
    assert doc["status"] == "OK" and doc["targets"][0]["ok"] is True


def test_ko_when_stopped_then_ok_when_started(host, status):
    reason = "connection refused or unreachable"
    host.run_expect([0], f"systemctl stop {ECHO_UNIT}")
    try:
        code, body, seconds = status.get()
        assert code == 503, status.journal()
        assert "<h1>KO</h1>" in body and "<h1>OK</h1>" not in body
        assert reason in body
        assert seconds <= REFUSED_S, "a refused connect is not retried until the deadline"
        assert f"KO: {reason}" in status.journal(), "the reason is logged"
    finally:
        host.run_expect([0], f"systemctl start {ECHO_UNIT}")
    code, body, _seconds = status.wait_for(200, within=5)
    assert code == 200, status.journal()
    assert "<h1>OK</h1>" in body


def test_hung_echo_server_gives_ko_within_the_timeout(host, status, echo_stopped):
    # A listener that accepts and never answers, in place of the echo server.
    host.run_expect([0], (
        "systemd-run --unit checktcp-hung --collect python3 -c "
        "'import socket,time; s=socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind((\"127.0.0.1\", 8080)); s.listen(); "
        "c=[s.accept() for _ in range(100)]; time.sleep(60)'"))
    try:
        host.run_expect([0], "timeout 5 sh -c 'until ss -ltn | grep -q :8080; do sleep 0.1; done'")
        # The status request waits on the hung probe; a native frontend and a
        # second status request are served meanwhile.
        out = host.check_output(
            "curl -s -o /dev/null -w '%{http_code} %{time_total}\\n' http://127.0.0.1/ & "
            "sleep 0.3; "
            "curl -s -w ' %{time_total}\\n' http://127.0.0.1:8081/; "
            "curl -s -o /dev/null -w '%{http_code} %{time_total}\\n' http://127.0.0.1/; wait")
        lines = out.splitlines()
        first = [line for line in lines if line.startswith("503 ")]
        pong = [line for line in lines if line.startswith("pong")]
        assert len(first) == 2, out
        for line in first:
            assert float(line.split()[1]) <= TIMEOUT_S + SLACK_S, out
        assert pong and float(pong[0].split()[1]) < 0.2, out
        assert "timeout after 1000 ms" in status.journal()
    finally:
        host.run("systemctl stop checktcp-hung")


def metric(host, name, target):
    out = host.check_output("curl -s http://127.0.0.1:8405/checktcp/metrics")
    for line in out.splitlines():
        if line.startswith(f'{name}{{check="checktcp",target="{target}"}} '):
            return float(line.split()[-1])
    raise AssertionError(f"{name} for {target} not in:\n{out}")


def test_metrics_on_their_own_bind_only(host, status):
    target = host.backend.get_hostname()
    status.wait_for(200)
    assert metric(host, "checktcp_up", target) == 1
    probes, failures = (metric(host, n, target) for n in ("checktcp_probes_total", "checktcp_probe_failures_total"))
    host.run_expect([0], f"systemctl stop {ECHO_UNIT}")
    try:
        assert status.get()[0] == 503
        assert metric(host, "checktcp_up", target) == 0
        assert metric(host, "checktcp_probes_total", target) > probes
        assert metric(host, "checktcp_probe_failures_total", target) == failures + 1
    finally:
        host.run_expect([0], f"systemctl start {ECHO_UNIT}")
    exporter = host.check_output("curl -s http://127.0.0.1:8405/metrics")
    assert "haproxy_process_uptime_seconds" in exporter
    # The public status bind serves the status page on every path, never metrics.
    code, body, _seconds = status.get("http://127.0.0.1/metrics")
    assert "<h1>" in body and "haproxy_process" not in body and "checktcp_up" not in body
    assert code in (200, 503)


BLACKHOLE = "checktcp_blackhole"


def test_blackholed_echo_server_is_ko_at_the_timeout_naming_connect(host, status):
    """SYNs to the echo port dropped by nftables (no reset ever comes): 503 at the
    timeout, naming the connect step, on every HAProxy version (2.6, 3.0, 3.2)."""
    host.run_expect([0], "command -v nft >/dev/null || (apt-get update -qq && "
                         "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null)")
    assert status.wait_for(200)[0] == 200, status.journal()
    host.run_expect([0], (
        f"nft add table inet {BLACKHOLE} && "
        f"nft add chain inet {BLACKHOLE} out '{{ type filter hook output priority 0 ; }}' && "
        f"nft add rule inet {BLACKHOLE} out tcp dport 8080 'tcp flags & (syn | ack) == syn' counter drop"))
    try:
        code, body, seconds = status.get()
        rule = host.check_output(f"nft list table inet {BLACKHOLE}")
        assert "counter packets 0 " not in rule, "the rule dropped nothing: the test proves nothing\n" + rule
        assert code == 503 and "<h1>KO</h1>" in body, status.journal()
        assert f"timeout after {int(TIMEOUT_S * 1000)} ms waiting for connect" in body, body
        assert TIMEOUT_S - 0.05 <= seconds <= TIMEOUT_S + SLACK_S, seconds
    finally:
        host.run(f"nft delete table inet {BLACKHOLE}")
    assert status.wait_for(200)[0] == 200, status.journal()
