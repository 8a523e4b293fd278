# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""status_probe's direct check speaking to real services (Debian's redis-server, memcached,
openssh-server, exim4, python3 -m http.server, the collection's echo server), over TLS
(HAProxy terminating it with a CA made here) and behind a PROXY protocol front."""

from __future__ import absolute_import, division, print_function
from __future__ import annotations
__metaclass__ = type

import os
import re
import signal
import time

import pytest

from ansible_collections.checktcp.haproxy_lua.plugins.modules import status_probe
from ansible_collections.checktcp.haproxy_lua.tests import real_servers as real
from ansible_collections.checktcp.haproxy_lua.tests.unit.plugins.probe_servers import constant

KINDS = {
    'echo': real.EchoServer,
    'redis': real.Redis,
    'memcached': real.Memcached,
    'smtp': real.Exim,
    'ssh': real.Sshd,
    'http': real.HttpServer,
}


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    missing = real.missing_programs()
    if missing:
        pytest.fail('missing %s (scripts/lib.sh ensure_system_packages installs them)' % ', '.join(missing))
    return tmp_path_factory.mktemp('services')


@pytest.fixture(scope='module')
def services(workdir):
    """One running Redis, a TLS front of it (certificate for localhost) and a PROXY protocol front of it."""
    started = []

    def start(server):
        started.append(server)
        return server.start()

    ca = real.CertificateAuthority(workdir / 'ca')
    redis = start(real.Redis(workdir))
    yield dict(
        ca=ca,
        redis=redis,
        tls=start(real.HAProxyFront(workdir, redis.port, crt=ca.server_pem)),
        proxy=start(real.HAProxyFront(workdir, redis.port, accept_proxy=True)),
    )
    for server in started:
        server.stop()


def _probe(run_module, http_server, target, ok, **options):
    """Run the module against a page saying what the direct check should say; returns the result."""
    page = http_server(constant(200 if ok else 503))
    rc, result = run_module(status_probe, dict(url=page.url, expect_status=[200, 503], echo_host=target['host'],
                                               echo_port=target['port'], echo_timeout_ms=2000, **options))
    assert result['echo_ok'] is ok, result['msg']
    assert result['consistent'] is True
    assert rc == 0
    return result


@pytest.mark.parametrize('preset', sorted(KINDS))
def test_preset_ok_while_running_ko_when_stopped(run_module, http_server, workdir, preset):
    server = KINDS[preset](workdir).start()
    try:
        result = _probe(run_module, http_server, server.target, True, preset=preset)
        assert result['echo_error'] is None
    finally:
        server.stop()

    result = _probe(run_module, http_server, server.target, False, preset=preset)

    assert 'connection refused' in result['echo_error']


@pytest.mark.parametrize('options, reason', [
    pytest.param(dict(steps=[{'send': 'PING\r\n'}, {'expect': '+PANG'}]),
                 'unexpected reply "+PONG" at step 2 expect "+PANG"', id='other-reply'),
    pytest.param(dict(steps=[{'send': 'PING\r\n'}, {'expect_regex': r'^\+PONG$'}]),
                 'unexpected reply "+PONG" at step 2 expect_regex "^\\+PONG$"', id='dollar-is-before-lf-not-crlf'),
    pytest.param(dict(preset='ssh'), 'timed out after 2 s waiting for line 1 of 1 at step 1 expect_regex '
                                     '"^SSH-2\\.0-"', id='waits-for-a-banner-redis-never-sends'),
    pytest.param(dict(preset='memcached'), 'unexpected reply "-ERR unknown command \'version\', wit..." '
                                           'at step 2 expect_regex "^VERSION "', id='memcached-steps'),
])
def test_steps_expecting_something_else(run_module, http_server, services, options, reason):
    result = _probe(run_module, http_server, services['redis'].target, False, **options)

    assert result['echo_error'] == reason
    assert 'conversation failed: %s' % reason in result['msg']


def test_steps_of_ones_own(run_module, http_server, services):
    result = _probe(run_module, http_server, services['redis'].target, True,
                    steps=[{'send': 'PING\r\n'}, {'expect_regex': r'^\+PONG\r$'},
                           {'send_hex': '2a310d0a24340d0a50494e470d0a'}, {'expect_hex': '2b504f4e470d0a'}])

    assert result['echo_reply'] == '+PONG'


@pytest.mark.parametrize('options, ok, reason', [
    pytest.param(dict(tls_sni='localhost'), True, None, id='right-ca'),
    pytest.param(dict(), True, None, id='ip-target-name-not-verified'),
    pytest.param(dict(tls_sni='wrong.example'), False,
                 "TLS certificate verification failed: Hostname mismatch, certificate is not valid for 'wrong.example'.",
                 id='wrong-name'),
    pytest.param(dict(tls_sni='localhost', wrong_ca=True), False,
                 'TLS certificate verification failed: unable to get local issuer certificate', id='wrong-ca'),
    pytest.param(dict(tls_sni='localhost', wrong_ca=True, tls_verify=False), True, None, id='not-verified'),
])
def test_tls(run_module, http_server, services, options, ok, reason):
    ca = services['ca'].wrong_ca if options.pop('wrong_ca', False) else services['ca'].ca

    result = _probe(run_module, http_server, services['tls'].target, ok, preset='redis', tls=True, tls_ca=str(ca),
                    **options)

    assert result['echo_error'] == reason


def test_tls_sni_defaults_to_a_target_name(run_module, http_server, services):
    target = dict(host='localhost', port=services['tls'].port)

    _probe(run_module, http_server, target, True, preset='redis', tls=True, tls_ca=str(services['ca'].ca))


def test_tls_without_tls_on_a_tls_service(run_module, http_server, services):
    result = _probe(run_module, http_server, services['tls'].target, False, preset='redis')

    assert result['echo_error'].startswith('connection closed by the server after 0 of 1 lines at step 2')


@pytest.mark.parametrize('proxy_protocol, ok', [
    pytest.param('none', False, id='none'),
    pytest.param('v1', True, id='v1'),
    pytest.param('v2', True, id='v2'),
])
def test_proxy_protocol(run_module, http_server, services, proxy_protocol, ok):
    result = _probe(run_module, http_server, services['proxy'].target, ok, preset='redis',
                    proxy_protocol=proxy_protocol)

    if not ok:  # HAProxy's accept-proxy drops the connection (a reset or a close, as the timing falls)
        assert re.match(r'connection (reset by peer \(waiting for line 1 of 1 at step 2|closed by the server after '
                        r'0 of 1 lines at step 2)', result['echo_error']), result['echo_error']


@pytest.mark.parametrize('options, message', [
    pytest.param(dict(steps=[{'send': 'x'}, {'expect_regex': '(x'}]),
                 'steps: step 2 (expect_regex) is not a valid regular expression: missing ), unterminated subpattern '
                 'at position 0', id='bad-regex'),
    pytest.param(dict(steps=[{'send': 'x', 'expect': 'y'}]),
                 'steps: step 1 must have exactly one key (send, send_hex, expect, expect_regex, expect_hex, '
                 'skip_lines), got expect, send', id='two-keys'),
    pytest.param(dict(preset='redis', steps=[{'send': 'x'}]), 'parameters are mutually exclusive: preset|steps',
                 id='preset-and-steps'),
    pytest.param(dict(preset='redis', tls=True, tls_ca='/nonexistent/ca.pem'), 'tls_ca: no such file /nonexistent/ca.pem',
                 id='missing-ca'),
    pytest.param(dict(proxy_protocol='v3'), 'value of proxy_protocol must be one of: none, v1, v2, got: v3',
                 id='proxy-v3'),
    pytest.param(dict(preset='ftp'), 'value of preset must be one of: echo, redis, memcached, smtp, ssh, http, got: ftp',
                 id='unknown-preset'),
])
def test_invalid_conversation(run_module, http_server, options, message):
    page = http_server(constant(200))

    rc, result = run_module(status_probe, dict(url=page.url, echo_host='127.0.0.1', echo_port=1, **options))

    assert rc == 1
    assert result['msg'] == message
    assert page.count == 0


def test_a_server_stops_with_the_process_that_started_it(tmp_path):
    """ansible-test runs each test in a fork that ends without the module fixtures'
    teardown: the servers a test started must not outlive it."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the fork, ended as ansible-test ends it)
        server = real.EchoServer(tmp_path).start()
        os.write(write_end, b'%d %d' % (server.proc.pid, server.port))
        os._exit(0)  # pylint: disable=protected-access
    os.waitpid(child, 0)
    server_pid, port = (int(part) for part in os.read(read_end, 64).split())
    end = time.monotonic() + 10
    try:
        while real.listening(port):
            assert time.monotonic() < end, 'the echo server (pid %d) outlived the process that started it' % server_pid
            time.sleep(0.05)
    finally:
        if real.listening(port):
            os.kill(server_pid, signal.SIGTERM)
