"""Real consumers of the secured status page: TLS clients, allow-lists, a load
balancer, check_http and promtool.

The tests run in file order: the metrics are first read before any probe has
failed, and the runs with bad variables come last.
"""

import json
import re
import time

import pytest

from conftest import (  # pylint: disable=import-error
    CHECK_INTERVAL, LB_CA, PAGE, PAGE_CERT, Watch, admin, q, run_playbook, server_stats, server_status,
    wait_full_health, wait_status)

CHECK_HTTP = "/usr/lib/nagios/plugins/check_http"
METRICS = "http://127.0.0.1:9101"
# The checks' own durations (a TLS handshake and a probe each) add to the
# check intervals, more so on a loaded machine.
CHECK_SLACK = 1.0


def promtool(page, path):
    """(exit code, output) of `promtool check metrics` on what the page host serves at `path`."""
    result = page.run(f"curl -sf {METRICS}{path} | promtool check metrics")
    return result.rc, result.stdout + result.stderr


def metric(page, name):
    text = page.check_output(f"curl -sf {METRICS}/checktcp/metrics")
    return sum(float(v) for v in re.findall(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M))


def test_probe_metrics_pass_promtool_before_failures(page):
    # Converge restarts the echo server while the load balancer checks through
    # the page, which may fail a probe: a reload starts the counters afresh.
    page.run_expect([0], "systemctl reload haproxy.service")
    deadline = time.monotonic() + 10
    while metric(page, "checktcp_probes_total") == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(page, "checktcp_probes_total") > 0, "the load balancer's checks made no probe yet"
    assert metric(page, "checktcp_probe_failures_total") == 0
    code, out = promtool(page, "/checktcp/metrics")
    assert code == 0 and out.strip() == "", out


def test_self_signed_certificate(page):
    key = page.file(PAGE_CERT + ".key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    assert page.file("/etc/haproxy/ssl").mode == 0o700
    text = page.check_output(q("openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", PAGE_CERT))
    address = page.check_output("hostname --all-ip-addresses").split()[0]
    for name in (f"DNS:{PAGE}", "DNS:localhost", f"IP Address:{address}", "IP Address:127.0.0.1"):
        assert name in text


def s_client(lb, page_ip, *args):
    return lb.run(q("openssl", "s_client", "-connect", f"{page_ip}:443", "-servername", PAGE,
                    "-CAfile", LB_CA, "-verify_return_error", "-verify_hostname", PAGE, *args) + " </dev/null")


@pytest.mark.parametrize("flag, version", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_accepted(lb, page_ip, flag, version):
    result = s_client(lb, page_ip, flag)
    assert result.rc == 0, result.stdout + result.stderr
    assert f"New, {version}, Cipher is" in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_tls_1_0_and_1_1_refused_by_the_server(lb, page_ip, flag):
    # SECLEVEL=0 lets this client offer TLS 1.0/1.1: the refusal is the server's.
    result = s_client(lb, page_ip, flag, "-cipher", "DEFAULT@SECLEVEL=0")
    assert result.rc != 0
    assert "alert protocol version" in result.stdout + result.stderr, result.stdout + result.stderr


def test_cbc_cipher_refused(lb, page_ip):
    result = s_client(lb, page_ip, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA")
    assert result.rc != 0
    assert "alert handshake failure" in result.stdout + result.stderr, result.stdout + result.stderr


def curl(lb, page_ip, *args):
    return lb.run(q("curl", "-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                    "--resolve", f"{PAGE}:443:{page_ip}", *args, f"https://{PAGE}/"))


@pytest.mark.parametrize("flag, version", [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_with_the_pinned_certificate(lb, page_ip, flag, version):
    result = curl(lb, page_ip, "--cacert", LB_CA, flag)
    assert (result.rc, result.stdout) == (0, f"{version} 200"), result.stderr


def test_curl_without_the_pinned_certificate_fails(lb, page_ip):
    # Exit code 60: the peer's certificate cannot be verified.
    assert curl(lb, page_ip, "--http2").rc == 60


def test_plain_http_redirects_to_https(lb, page_ip):
    head = lb.check_output(q("curl", "-si", f"http://{page_ip}/some/path?format=json"))
    assert head.startswith("HTTP/1.1 301"), head
    assert f"location: https://{page_ip}/some/path?format=json" in head.lower()
    followed = lb.check_output(q("curl", "-sL", "--cacert", LB_CA, "-o", "/dev/null", "-w", "%{http_code} %{url_effective}",
                                 f"http://{page_ip}/"))
    assert followed == f"200 https://{page_ip}/"


def page_json(host, *args):
    out = host.check_output(q("curl", "-s", "--cacert", *args, "-w", "\n%{http_code}"))
    body, code = out.rsplit("\n", 1)
    return int(code), body


def test_details_only_inside_details_allow(page, lb, page_ip):
    code, body = page_json(page, PAGE_CERT, "https://localhost/?format=json")
    assert code == 200 and json.loads(body)["targets"][0]["reason"] == "reply matched", body
    # The load balancer may read the page, but is not in haproxy_status_details_allow.
    code, body = page_json(lb, LB_CA, f"https://{page_ip}/?format=json")
    assert code == 200
    assert json.loads(body) == {"status": "OK", "up": 1, "required": 1, "mode": "live"}
    code, html = page_json(lb, LB_CA, f"https://{page_ip}/")
    assert code == 200 and "<h1>OK</h1>" in html
    assert "<table>" not in html and "127.0.0.1" not in html and "reply matched" not in html


def test_outside_allow_gets_403_and_starts_no_probe(page, lb, fake):
    # The load balancer's checks through the page would probe too: paused.
    admin(lb, "disable health echo/echo1")
    try:
        fake.start("echo")
        for url in ("https://localhost/", "https://localhost/?format=json", "http://localhost/"):
            for _attempt in range(3):
                out = page.check_output(q("curl", "-s", "--cacert", PAGE_CERT, "--interface", "127.0.0.2",
                                          "-o", "/dev/null", "-w", "%{http_code}", url))
                assert out == "403", url
        time.sleep(0.5)
        assert fake.connections("127.0.0.1") == 0, fake.log()
        # Inside the list, one request is one probe: the count above can fail.
        code, _body = page_json(page, PAGE_CERT, "https://localhost/")
        assert code == 200
        assert fake.connections("127.0.0.1") == 1, fake.log()
    finally:
        admin(lb, "enable health echo/echo1")


def test_load_balancer_takes_a_wrong_echo_server_out_and_back(page, lb, fake):
    through_page, tcp_check = ("echo", "echo1"), ("echo_tcp_check", "echo1")
    fake.start("echo")
    assert wait_status(lb, through_page, "UP", 30) is not None, server_status(lb)
    assert wait_status(lb, tcp_check, "UP", 30) is not None, server_status(lb)
    # Two failed checks take it DOWN only from full health (one more success after UP).
    assert wait_full_health(lb, through_page, 10 * CHECK_INTERVAL), server_stats(lb)[through_page]

    # The fake keeps accepting: only its answers go wrong, at this moment.
    failed_checks = int(server_stats(lb)[through_page]["chkfail"])
    watch = Watch(through_page, "DOWN", 15)
    broken = fake.behave("wrong")
    down_at = watch.reached_at()
    assert down_at is not None, server_status(lb)
    down = down_at - broken
    failed_checks = int(server_stats(lb)[through_page]["chkfail"]) - failed_checks
    print(f"[load balancer] DOWN {down:.2f} s after the echo server began to answer wrong, "
          f"after {failed_checks} failed checks (inter {CHECK_INTERVAL:.0f} s, fall 2)")
    # DOWN at the second failed check, i.e. within two check intervals.
    assert failed_checks == 2, server_stats(lb)[through_page]
    assert down <= 2 * CHECK_INTERVAL + CHECK_SLACK, server_status(lb)
    # Because of the page's verdict: the plain TCP check keeps it in rotation.
    code, body = page_json(page, PAGE_CERT, "https://localhost/?format=json")
    assert code == 503 and json.loads(body)["targets"][0]["reason"] == 'unexpected reply "nope"', body
    assert server_status(lb)[tcp_check].startswith("UP")

    watch = Watch(through_page, "UP", 15)
    repaired = fake.behave("echo")
    up_at = watch.reached_at()
    assert up_at is not None, server_status(lb)
    up = up_at - repaired
    print(f"[load balancer] UP {up:.2f} s after the echo server answered right again (rise 2)")
    assert up <= 2 * CHECK_INTERVAL + CHECK_SLACK, server_status(lb)
    # Traffic flows through the load balancer to the echo server again.
    code = ("import socket;s=socket.create_connection(('127.0.0.1',9000),5);f=s.makefile('rwb');"
            "f.readline();f.write(b'check\\n');f.flush();print(f.readline().decode().strip())")
    assert lb.check_output(q("python3", "-c", code)) == "check"


def check_http_tls(lb, page_ip):
    return lb.run(q(CHECK_HTTP, "-H", PAGE, "-I", page_ip, "-p", "443", "-S", "--sni", "-u", "/"))


def check_http_plain(lb):
    # The load balancer's own status page (plain HTTP), probing the same echo server.
    return lb.run(q(CHECK_HTTP, "-I", "127.0.0.1", "-u", "/"))


def test_check_http_ok_on_200(lb, page_ip):
    for result in (check_http_tls(lb, page_ip), check_http_plain(lb)):
        assert result.rc == 0 and result.stdout.startswith("HTTP OK"), result.stdout
        assert "200 OK" in result.stdout


@pytest.mark.usefixtures("echo_stopped")
def test_check_http_critical_on_503(lb, page_ip):
    for result in (check_http_tls(lb, page_ip), check_http_plain(lb)):
        assert result.rc == 2 and result.stdout.startswith("HTTP CRITICAL"), result.stdout
        assert "503" in result.stdout


def test_probe_metrics_pass_promtool_after_failures(page):
    assert metric(page, "checktcp_probe_failures_total") > 0
    code, out = promtool(page, "/checktcp/metrics")
    assert code == 0 and out.strip() == "", out


def test_haproxy_exporter_parses(page):
    text = page.check_output(f"curl -sf {METRICS}/metrics")
    assert "haproxy_process_" in text
    # Exit 1 is a parse error; 3 would be lint remarks about HAProxy's own naming.
    code, out = promtool(page, "/metrics")
    assert code in (0, 3), out
    assert "error while linting" not in out and "parse" not in out.lower(), out


@pytest.mark.parametrize("extra_vars, named", [
    ({"haproxy_status_allow": ["10.0.0.300/8"]}, "haproxy_status_allow"),
    ({"haproxy_status_allow": ["10.0.0.0/8", "lb1.example.com"]}, "haproxy_status_allow"),
    ({"haproxy_status_details_allow": ["2001:db8::/129"]}, "haproxy_status_details_allow"),
    ({"haproxy_status_details_allow": ["10.0.0.1/8"]}, "haproxy_status_details_allow"),
    ({"haproxy_status_tls": False, "haproxy_status_http_redirect_bind": "*:8080"}, "haproxy_status_http_redirect_bind"),
    ({"haproxy_status_tls": True, "haproxy_status_tls_cert": "/nonexistent.pem"}, "haproxy_status_tls_cert"),
])
def test_bad_variables_stop_the_play_before_any_change(page, extra_vars, named):
    files = ["/etc/haproxy/haproxy.cfg", PAGE_CERT, PAGE_CERT + ".key"]
    # and the Lua pair haproxy.cfg loads, named after its content
    lua = " /etc/haproxy/lua/checktcp*.lua"
    before = page.check_output(q("stat", "-c", "%n %y %s", *files) + lua + " && " + q("sha256sum", *files) + lua)
    code, output = run_playbook(extra_vars)
    assert code != 0, output[-2000:]
    fatal = "\n".join(line for line in output.splitlines() if "fatal:" in line or "FAILED" in line or named in line)
    assert named in fatal, output[-3000:]
    assert "changed=0" in output, output[-2000:]
    after = page.check_output(q("stat", "-c", "%n %y %s", *files) + lua + " && " + q("sha256sum", *files) + lua)
    assert after == before
