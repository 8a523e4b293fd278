# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""conversation.py's tcp-check rules and server words run by real HAProxy (the host's
2.6, or 3.0/3.2 from a container with CHECKTCP_HAPROXY_IMAGE) against real servers
from Debian packages (tests/real_servers.py), and the Python evaluator of the
status_probe module on the same cases: same steps, same verdict.

One HAProxy serves every case (a backend with ``option tcp-check`` per case, one
server each, ``rise 1 fall 1``); the states come from ``show stat`` on its admin
socket. The reasons HAProxy gave are written to .cache/tcp-check-reasons-<version>.md.
"""

from __future__ import annotations

import collections
import csv
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import HANDED_OUT, REPO, haproxy_binary

sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))
import conversation  # noqa: E402  pylint: disable=wrong-import-position
import real_servers as real  # noqa: E402  pylint: disable=wrong-import-position

real.HANDED_OUT = HANDED_OUT  # one set of ports handed out for every server of tests/lua

CHECK_TIMEOUT_S = 2
INTER_MS = 500
# Every first check is done well within this (inter, then at most one check timeout).
SETTLE_S = 15

Case = collections.namedtuple("Case", "name server conversation words up status reason")


def case(name, server, up, status, reason=None, preset=None, steps=None, **words):
    return pytest.param(Case(name, server, dict(preset=preset, steps=steps), words, up, status, reason), id=name)


# HAProxy counts its own rules ("at step N"): the comment names the user's step.
WRONG_REPLY = "TCPCHK did not match content (regex) at step 3 comment: "

CASES = [
    case("echo", "echo", True, "L7OK", preset="echo"),
    case("redis", "redis", True, "L7OK", preset="redis"),
    case("memcached", "memcached", True, "L7OK", preset="memcached"),
    case("smtp", "exim", True, "L7OK", preset="smtp"),
    case("ssh", "sshd", True, "L7OK", preset="ssh"),
    case("http", "http", True, "L7OK", preset="http"),
    case("smtp-ehlo-two-phases", "exim", True, "L7OK",
         steps=[{"expect_regex": "^220 "}, {"send": "EHLO checktcp.test\r\n"}, {"expect_regex": "^250[- ]"},
                {"send": "QUIT\r\n"}]),
    case("http-skip-a-line", "http", True, "L7OK",
         steps=[{"send": "GET / HTTP/1.0\r\n\r\n"}, {"skip_lines": 1}, {"expect_regex": "^Server: SimpleHTTP/"}]),
    case("quote-optional", "http", True, "L7OK",
         steps=[{"send": "GET / HTTP/1.0\r\n\r\n"}, {"expect_regex": "^HTTP/1\\.[01] 200 OK'?"}]),
    case("quote-required", "http", False, "L7RSP", WRONG_REPLY + "step 2 expect_regex \"^HTTP/1\\.[01] 200 OK'\"",
         steps=[{"send": "GET / HTTP/1.0\r\n\r\n"}, {"expect_regex": "^HTTP/1\\.[01] 200 OK'"}]),
    case("hex", "redis", True, "L7OK", steps=[{"send_hex": "50494e470d0a"}, {"expect_hex": "2b504f4e470d0a"}]),
    case("hex-wrong", "redis", False, "L7RSP",
         "TCPCHK did not match content (binary regex) at step 2 comment: step 2 expect_hex \"2b504f4e48\"",
         steps=[{"send_hex": "50494e470d0a"}, {"expect_hex": "2b504f4e48"}]),
    case("wrong-reply", "redis", False, "L7RSP", WRONG_REPLY + 'step 2 expect "+PANG"',
         steps=[{"send": "PING\r\n"}, {"expect": "+PANG"}]),
    case("dollar-before-lf", "redis", False, "L7RSP", WRONG_REPLY + 'step 2 expect_regex "^\\+PONG$"',
         steps=[{"send": "PING\r\n"}, {"expect_regex": "^\\+PONG$"}]),
    case("dollar-after-cr", "redis", True, "L7OK", steps=[{"send": "PING\r\n"}, {"expect_regex": "^\\+PONG\\r$"}]),
    # Lines arriving a byte at a time: the first rule of a lines op waits for them.
    case("trickled-lines", "trickle", True, "L7OK",
         steps=[{"send": "PING\r\n"}, {"expect": "+PONG"}, {"expect_regex": "^done"}]),
    case("trickled-lines-wrong", "trickle", False, "L7RSP", WRONG_REPLY + 'steps 2-3 expect "+PONG", expect "done"',
         steps=[{"send": "PING\r\n"}, {"expect": "+PONG"}, {"expect": "done"}]),
    case("timeout-no-banner", "redis", False, "L7TOUT",
         "of tcp-check (expect regex) comment: 'step 1 expect_regex \"^SSH-2\\.0-\"'", preset="ssh"),
    case("timeout-silent", "silent", False, "L7TOUT", "comment: 'step 2 expect \"+PONG\"'", preset="redis"),
    case("closed-early", "closing", False, "L7RSP",
         # 2.6 quotes this comment, 3.0 and 3.2 do not
         ("TCPCHK got an empty response at step 1 comment: ", 'step 1 expect_regex "^SSH-2\\.0-"'), preset="ssh"),
    case("refused", "stopped", False, "L4CON", "Connection refused at initial connection step of tcp-check",
         preset="redis"),
    case("overlong-line", "overlong", False, "L7TOUT", "comment: 'step 1 expect_regex \"^x\"'",
         steps=[{"expect_regex": "^x"}]),
    case("tls-right-ca", "tls", True, "L7OK", preset="redis", tls=True, tls_sni="localhost"),
    case("tls-ip-no-sni", "tls", True, "L7OK", preset="redis", tls=True),
    case("tls-wrong-ca", "tls", False, "L6RSP", "SSL handshake failure", preset="redis", tls=True,
         tls_sni="localhost", wrong_ca=True),
    case("tls-wrong-name", "tls", False, "L6RSP", "Server presented an SSL certificate different from the expected one",
         preset="redis", tls=True,
         tls_sni="wrong.example"),
    case("tls-not-verified", "tls", True, "L7OK", preset="redis", tls=True, tls_sni="localhost", wrong_ca=True,
         tls_verify=False),
    case("tls-needed", "tls", False, None, None, preset="redis"),
    case("proxy-none", "proxy", False, None, None, preset="redis"),
    case("proxy-v1", "proxy", True, "L7OK", preset="redis", proxy_protocol="v1"),
    case("proxy-v2", "proxy", True, "L7OK", preset="redis", proxy_protocol="v2"),
]


def _words(services, words):
    """conversation.server_words() for a case (the CA made here), and the evaluator's TLS options."""
    words = dict(words)
    ca = services["ca"].wrong_ca if words.pop("wrong_ca", False) else services["ca"].ca
    options = dict(tls=words.get("tls", False), tls_verify=words.get("tls_verify", True), tls_ca=str(ca),
                   tls_sni=words.get("tls_sni"), proxy_protocol=words.get("proxy_protocol", "none"))
    server = conversation.server_words(**options)
    return server["relay"] + server["check"], options


def _ops(services, item):
    target = services[item.server].target
    return conversation.conversation_ops(item.conversation["preset"] or "echo", steps=item.conversation["steps"],
                                         host=target["host"])


def _config(workdir, services, items):
    lines = ["global", "  stats socket %s level admin" % (workdir / "admin.sock"),
             "defaults", "  mode tcp", "  timeout connect %ds" % CHECK_TIMEOUT_S, "  timeout client 5s",
             "  timeout server 5s", "  timeout check %ds" % CHECK_TIMEOUT_S]
    for item in items:
        words, _options = _words(services, item.words)
        target = services[item.server].target
        lines += ["backend case_%s" % item.name.replace("-", "_"), "  option tcp-check"]
        lines += ["  " + rule for rule in conversation.tcp_check_rules(_ops(services, item))]
        lines.append("  server s %s:%d check inter %d rise 1 fall 1 %s" % (
            target["host"], target["port"], INTER_MS, " ".join(words)))
    return "\n".join(lines) + "\n"


def show_stat(sock_path):
    """{backend: row} of the servers in HAProxy's ``show stat``."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(sock_path))
        conn.sendall(b"show stat\n")
        data = b"".join(iter(lambda: conn.recv(65536), b"")).decode()
    lines = data.splitlines()
    names = lines[0].lstrip("# ").split(",")
    rows = {}
    for fields in csv.reader(lines[1:]):
        row = dict(zip(names, fields))
        if row.get("svname") == "s":
            # "* " marks a check in progress (its reason is blanked until it ends).
            row["in_progress"] = row.get("check_status", "").startswith("* ")
            row["check_status"] = row.get("check_status", "").lstrip("* ")
            rows[row["pxname"]] = row
    return rows


def _judged(row):
    """Whether a server's first check is over (it starts UP, unchecked) and none is running."""
    return row["check_status"] not in ("", "INI") and not row["in_progress"]


def wait_rows(sock_path, names, condition, within_s):
    """The first row of each backend in ``names`` that meets ``condition``, polling ``show stat``."""
    found = {}
    end = time.monotonic() + within_s
    while True:
        try:
            rows = show_stat(sock_path)
        except OSError:
            rows = {}
        for name in names:
            if name not in found and name in rows and condition(rows[name]):
                found[name] = rows[name]
        if len(found) == len(names):
            return found
        if time.monotonic() > end:
            pytest.fail("within %d s, not every server met the condition: missing %s, last rows %r"
                        % (within_s, sorted(set(names) - set(found)), rows))
        time.sleep(0.02)


@pytest.fixture(scope="module")
def services(tmp_path_factory, haproxy_available):
    missing = real.missing_programs()
    if missing:
        pytest.fail("missing %s (scripts/lib.sh ensure_system_packages installs them)" % ", ".join(missing))
    workdir = tmp_path_factory.mktemp("real-servers")
    started = []

    def start(server):
        started.append(server)
        return server.start()

    ca = real.CertificateAuthority(workdir / "ca")
    redis = start(real.Redis(workdir))
    stopped = real.Redis(workdir)
    found = dict(
        ca=ca, redis=redis, stopped=stopped,
        echo=start(real.EchoServer(workdir)), memcached=start(real.Memcached(workdir)),
        exim=start(real.Exim(workdir)), sshd=start(real.Sshd(workdir)), http=start(real.HttpServer(workdir)),
        tls=start(real.HAProxyFront(workdir, redis.port, crt=ca.server_pem)),
        proxy=start(real.HAProxyFront(workdir, redis.port, accept_proxy=True)),
        silent=real.silent_server(), closing=real.closing_server(), overlong=real.line_server(b"x" * 2000 + b"\n"),
        trickle=real.trickle_server(b"PING\r\n", b"+PONG\r\ndone!\r\n"),
    )
    yield found
    for server in started + [found[name] for name in ("silent", "closing", "overlong", "trickle")]:
        server.stop()


@pytest.fixture(scope="module")
def haproxy_states(tmp_path_factory, services):
    """HAProxy checking every case: ``{case name: show stat row}`` once every first check is over."""
    workdir = tmp_path_factory.mktemp("tcp-check")
    items = [param.values[0] for param in CASES]
    config = workdir / "haproxy.cfg"
    config.write_text(_config(workdir, services, items))
    version = subprocess.run([haproxy_binary(), "-v"], capture_output=True, text=True, check=True).stdout.split()[2]
    stderr = open(workdir / "haproxy.stderr", "wb")  # pylint: disable=consider-using-with
    proc = subprocess.Popen([haproxy_binary(), "-db", "-f", str(config)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        names = ["case_%s" % item.name.replace("-", "_") for item in items]
        end = time.monotonic() + 5
        while not (workdir / "admin.sock").exists():
            if proc.poll() is not None or time.monotonic() > end:
                pytest.fail("haproxy did not start (%s):\n%s" % (proc.poll(), (workdir / "haproxy.stderr").read_text()))
            time.sleep(0.02)
        rows = wait_rows(workdir / "admin.sock", names, _judged, SETTLE_S)
        states = {item.name: rows["case_%s" % item.name.replace("-", "_")] for item in items}
        _write_reasons(version, items, states)
        yield dict(version=version, states=states, workdir=workdir, proc=proc)
    finally:
        if os.environ.get("CHECKTCP_HAPROXY_IMAGE"):
            subprocess.run(["podman", "rm", "-f", "-t", "0", "%s-haproxy-%d" % (
                os.environ.get("CHECKTCP_ID", "checktcp"), proc.pid)], capture_output=True, check=False)
        proc.terminate()
        proc.wait(10)
        stderr.close()


def _write_reasons(version, items, states):
    path = REPO / ".cache" / ("tcp-check-reasons-%s.md" % version)
    path.parent.mkdir(exist_ok=True)
    text = "| case | status | check_status | last_chk (HAProxy %s) |\n|---|---|---|---|\n" % version
    for item in items:
        row = states[item.name]
        reason = row.get("last_chk", "").replace("|", "\\|")
        text += "| %s | %s | %s | %s |\n" % (item.name, row["status"], row["check_status"], reason)
    path.write_text(text)


@pytest.mark.parametrize("item", CASES)
def test_haproxy_and_the_module_agree(haproxy_states, services, item):
    row = haproxy_states["states"][item.name]
    _words_list, options = _words(services, item.words)
    target = services[item.server].target

    outcome = conversation.run_conversation(target["host"], target["port"], _ops(services, item), CHECK_TIMEOUT_S,
                                            **options)

    assert row["status"] == ("UP" if item.up else "DOWN"), row
    if item.status:
        assert row["check_status"] == item.status, row
    for part in (item.reason,) if isinstance(item.reason, str) else item.reason or ():
        assert part in row["last_chk"], row
    assert outcome.ok is item.up, outcome.reason


def test_a_stopped_service_goes_down(haproxy_states, services):
    """The running Redis of the cases, stopped: every case on it goes DOWN, connection refused."""
    services["redis"].stop()
    try:
        # The check running as Redis stops may see a reset (SOCKERR): the next ones are refused.
        row = wait_rows(haproxy_states["workdir"] / "admin.sock", ["case_redis"],
                        lambda row: _judged(row) and row["check_status"] == "L4CON", SETTLE_S)["case_redis"]
        assert row["status"] == "DOWN", row
        assert row["check_status"] == "L4CON", row
        assert "Connection refused" in row["last_chk"], row
        outcome = conversation.run_conversation("127.0.0.1", services["redis"].port,
                                                conversation.conversation_ops("redis"), CHECK_TIMEOUT_S)
        assert outcome.ok is False
        assert outcome.reason.startswith("connection refused")
    finally:
        services["redis"].start()
