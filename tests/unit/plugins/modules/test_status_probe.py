# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of the status_probe module against real loopback servers."""

from __future__ import absolute_import, division, print_function
from __future__ import annotations
__metaclass__ = type

import base64
import json
import socket
import time

import pytest

from ansible_collections.checktcp.haproxy_lua.plugins.modules import status_probe
from ansible_collections.checktcp.haproxy_lua.tests.unit.plugins.probe_servers import (
    constant,
    slow_http,
    status_page,
    transition,
)

ECHO_KEYS = ('echo_ok', 'echo_header', 'echo_reply', 'echo_error', 'consistent')
COMMON_KEYS = ('msg', 'url', 'status', 'body', 'headers', 'error', 'elapsed_ms', 'attempts', 'changed')


def _json_accept(count, handler):
    accept = handler.headers.get('Accept', '')
    return 200, '{"status": "OK", "accept": "%s"}' % accept, {'Content-Type': 'application/json'}


@pytest.mark.parametrize('responder, extra', [
    pytest.param(constant(200), dict(expect_body=r'\bOK\b'), id='status-and-body'),
    pytest.param(constant(200), dict(expect_status=200), id='scalar-expect-status'),
    pytest.param(constant(503), dict(expect_status=[200, 503], expect_body='KO'), id='expected-503'),
    pytest.param(_json_accept, dict(headers={'Accept': 'application/json'}, expect_body='"accept": "application/json"'),
                 id='request-headers'),
])
def test_success(run_module, http_server, responder, extra):
    server = http_server(responder)

    rc, result = run_module(status_probe, dict(url=server.url, **extra))

    assert rc == 0
    assert not result.get('failed')
    assert result['changed'] is False
    assert result['attempts'] == 1
    assert server.count == 1
    assert result['status'] in (200, 503)
    assert result['error'] is None
    assert isinstance(result['elapsed_ms'], int)
    assert result['headers']['content-length'] == str(len(result['body'].encode()))
    assert result['msg'].startswith('got %d' % result['status'])
    assert all(key in result for key in COMMON_KEYS)
    assert not any(key in result for key in ECHO_KEYS)


@pytest.mark.parametrize('responder, extra, expected_in_msg, status', [
    pytest.param(constant(503), {}, ["expected status [200] from", "last got 503 (body 'KO')"], 503,
                 id='wrong-status'),
    pytest.param(constant(200, status_page('KO')), dict(expect_body='OK'),
                 ["expected status [200] and body matching 'OK' from", "last got 200 (body 'KO')"], 200,
                 id='body-mismatch'),
    pytest.param(constant(404, 'not here', {'Content-Type': 'text/plain'}), dict(expect_status=[200, 503]),
                 ["expected status [200, 503] from", "last got 404 (body 'not here')"], 404,
                 id='unexpected-4xx'),
])
def test_expectation_not_met(run_module, http_server, responder, extra, expected_in_msg, status):
    server = http_server(responder)

    rc, result = run_module(status_probe, dict(url=server.url, **extra))

    assert rc == 1
    assert result['failed'] is True
    assert result['changed'] is False
    assert result['status'] == status
    assert result['attempts'] == 1
    for text in expected_in_msg:
        assert text in result['msg']
    assert server.url in result['msg']
    assert 'after 1 attempt in' in result['msg']
    assert all(key in result for key in COMMON_KEYS)


def test_request_timeout(run_module, silent_port):
    started = time.monotonic()

    rc, result = run_module(status_probe, dict(url='http://127.0.0.1:%d/' % silent_port, timeout=0.5))

    took = time.monotonic() - started
    assert rc == 1
    assert took < 0.5 + 1.5
    assert result['status'] is None
    assert result['body'] == ''
    assert 'timed out' in result['error']
    assert 'last got no answer (timed out' in result['msg']
    assert 'Traceback' not in result['msg']


def test_connection_refused(run_module, closed_port):
    rc, result = run_module(status_probe, dict(url='http://127.0.0.1:%d/status' % closed_port))

    assert rc == 1
    assert result['status'] is None
    assert result['error'] == 'connection refused'
    assert 'last got no answer (connection refused) after 1 attempt' in result['msg']
    assert 'exception' not in result


def test_name_resolution_failure(run_module):
    try:
        socket.getaddrinfo('nonexistent.invalid', 80)
    except socket.gaierror:
        pass
    else:  # pragma: no cover - a resolver that answers for .invalid
        pytest.skip('the resolver here answers for .invalid names')

    rc, result = run_module(status_probe, dict(url='http://nonexistent.invalid/', timeout=2))

    assert rc == 1
    assert result['status'] is None
    assert result['error'].startswith('name resolution failed')
    assert 'last got no answer (name resolution failed' in result['msg']


def test_polls_until_transition(run_module, http_server):
    server = http_server(transition(503, 200, after=3))

    rc, result = run_module(status_probe, dict(url=server.url, expect_body='OK', wait=5, interval=0.05))

    assert rc == 0
    assert result['status'] == 200
    assert result['attempts'] == 4
    assert server.count == 4
    assert '4 attempts' in result['msg']


def test_polls_down_transition(run_module, http_server):
    server = http_server(transition(200, 503, after=2))

    rc, result = run_module(status_probe, dict(url=server.url, expect_status=503, expect_body='KO', wait=5,
                                               interval=0.05))

    assert rc == 0
    assert result['attempts'] == 3


def test_wait_expires(run_module, http_server):
    server = http_server(constant(503))
    started = time.monotonic()

    rc, result = run_module(status_probe, dict(url=server.url, expect_body='OK', wait=0.6, interval=0.2))

    took = time.monotonic() - started
    assert rc == 1
    assert 0.6 <= took < 3
    assert result['elapsed_ms'] >= 600
    assert result['attempts'] >= 3
    assert result['attempts'] == server.count
    msg = result['msg']
    assert msg.startswith("expected status [200] and body matching 'OK' from %s, last got 503 (body 'KO')" % server.url)
    assert ' after %d attempts in %d ms' % (result['attempts'], result['elapsed_ms']) in msg


@pytest.mark.parametrize('http_status, echo_mode, extra', [
    pytest.param(200, 'ok', {}, id='both-ok'),
    pytest.param(200, 'crlf', {}, id='both-ok-crlf'),
    pytest.param(503, None, dict(expect_status=503), id='both-ko-echo-down'),
    pytest.param(503, 'wrong', dict(expect_status=[200, 503]), id='both-ko-wrong-reply'),
])
def test_echo_consistent(run_module, http_server, echo_server, closed_port, http_status, echo_mode, extra):
    server = http_server(constant(http_status))
    host, port = echo_server(echo_mode) if echo_mode else ('127.0.0.1', closed_port)

    rc, result = run_module(status_probe, dict(url=server.url, echo_host=host, echo_port=port, **extra))

    assert rc == 0
    assert result['consistent'] is True
    assert result['echo_ok'] is (http_status == 200)
    assert 'consistent: true' in result['msg']
    if echo_mode in ('ok', 'crlf'):
        assert result['echo_header'].startswith('ECHO client=127.0.0.1:')
        assert result['echo_header'].endswith('server=127.0.0.1:%d' % port)
        assert result['echo_reply'] == 'check'
        assert result['echo_error'] is None
        assert "echo server answered 'check'" in result['msg']
    elif echo_mode == 'wrong':
        assert result['echo_reply'] == 'nope'
        assert result['echo_error'] == "expected reply 'check', got 'nope'"
    else:
        assert result['echo_header'] is None
        assert result['echo_reply'] is None
        assert 'connection refused' in result['echo_error']


@pytest.mark.parametrize('http_status, echo_up, echo_ok', [
    pytest.param(200, False, False, id='http-ok-echo-down'),
    pytest.param(503, True, True, id='http-ko-echo-up'),
])
def test_echo_inconsistent(run_module, http_server, echo_server, closed_port, http_status, echo_up, echo_ok):
    server = http_server(constant(http_status))
    host, port = echo_server('ok') if echo_up else ('127.0.0.1', closed_port)

    rc, result = run_module(status_probe, dict(url=server.url, expect_status=[200, 503], echo_host=host,
                                               echo_port=port, wait=0.3, interval=0.1))

    assert rc == 1
    assert result['failed'] is True
    assert result['consistent'] is False
    assert result['echo_ok'] is echo_ok
    assert result['status'] == http_status
    assert result['attempts'] >= 2
    assert 'consistent: false' in result['msg']
    assert all(key in result for key in COMMON_KEYS + ECHO_KEYS)
    if echo_up:
        assert "echo server answered 'check'" in result['msg']
        assert result['echo_error'] is None
    else:
        assert 'connection refused' in result['echo_error']


@pytest.mark.parametrize('echo_mode, error_part, reply', [
    pytest.param('wrong', "expected reply 'check', got 'nope'", 'nope', id='wrong-reply'),
    pytest.param('silent', 'timed out after 0.3 s waiting for the header line', None, id='silent'),
    pytest.param('close', 'connection closed by the echo server while waiting for the header line', None,
                 id='closes-at-once'),
    pytest.param('reset', 'connection reset by peer', None, id='resets'),
])
def test_echo_failures(run_module, http_server, echo_server, echo_mode, error_part, reply):
    server = http_server(constant(503))
    host, port = echo_server(echo_mode)
    started = time.monotonic()

    rc, result = run_module(status_probe, dict(url=server.url, expect_status=503, echo_host=host, echo_port=port,
                                               echo_timeout=0.3))

    took = time.monotonic() - started
    assert rc == 0
    assert took < 2
    assert result['echo_ok'] is False
    assert error_part in result['echo_error']
    assert result['echo_reply'] == reply
    assert result['consistent'] is True


def test_header_line_over_the_service_limit_is_ko(run_module, http_server, echo_server):
    """Issue 18 item 7: a 2000-byte header line is KO for HAProxy's Lua (1024 bytes), so for the module too."""
    server = http_server(constant(503))
    host, port = echo_server('wide')

    rc, result = run_module(status_probe, dict(url=server.url, expect_status=503, echo_host=host, echo_port=port))

    assert rc == 0, result['msg']
    assert result['echo_ok'] is False
    assert result['echo_error'] == 'invalid answer while waiting for the header line: line longer than 1024 bytes'
    assert result['consistent'] is True


def test_echo_options(run_module, http_server, echo_server):
    server = http_server(constant(200))
    host, port = echo_server('ok')

    rc, result = run_module(status_probe, dict(url=server.url, echo_host=host, echo_port=port, echo_send='ping',
                                               echo_expect='ping', echo_skip_lines=1, echo_timeout=2))

    assert rc == 0
    assert result['echo_reply'] == 'ping'


def test_check_mode(run_module, http_server, echo_server):
    server = http_server(constant(200))
    host, port = echo_server('ok')

    rc, result = run_module(status_probe, dict(url=server.url, expect_body='OK', echo_host=host, echo_port=port),
                            check_mode=True)

    assert rc == 0
    assert result['changed'] is False
    assert result['attempts'] == 1
    assert server.count == 1
    assert result['consistent'] is True


@pytest.mark.parametrize('args, message', [
    pytest.param(dict(expect_body='('), 'expect_body is not a valid regular expression', id='bad-regex'),
    pytest.param(dict(echo_host='127.0.0.1'), 'parameters are required together: echo_host, echo_port',
                 id='echo-host-alone'),
    pytest.param(dict(timeout=0), 'timeout must be greater than 0', id='zero-timeout'),
    pytest.param(dict(wait=-1), 'wait must not be negative', id='negative-wait'),
    pytest.param(dict(expect_status=[]), 'expect_status must list at least one', id='empty-expect-status'),
    pytest.param(dict(echo_host='127.0.0.1', echo_port=70000), 'echo_port must be between', id='bad-port'),
])
def test_invalid_arguments(run_module, http_server, args, message):
    server = http_server(constant(200))

    rc, result = run_module(status_probe, dict(url=server.url, **args))

    assert rc == 1
    assert message in result['msg']
    assert server.count == 0


# Issue 11, item 9: ``timeout`` bounds the whole exchange, not each read.

@pytest.mark.parametrize('phase, status, error', [
    pytest.param('status-line', None, 'timed out after 0.5 s waiting for the status line', id='trickled-status-line'),
    pytest.param('headers', None, 'timed out after 0.5 s waiting for the headers', id='trickled-headers'),
    pytest.param('body', 200, 'reading the body failed: timed out after 0.5 s', id='trickled-body'),
    pytest.param('chunked', 200, 'reading the body failed: timed out after 0.5 s', id='trickled-chunks'),
])
def test_timeout_bounds_whole_exchange(run_module, raw_server, phase, status, error):
    url = raw_server(slow_http(phase))
    started = time.monotonic()

    rc, result = run_module(status_probe, dict(url=url, timeout=0.5))

    took = time.monotonic() - started
    assert rc == 1
    assert took < 0.5 + 1.0  # slack for a loaded machine; the server trickles for 6 s
    assert result['status'] == status
    assert result['error'] == error
    assert error in result['msg']


def test_https(run_module, https_server):
    server = https_server(constant(200))

    rc, result = run_module(status_probe, dict(url=server.url, validate_certs=False, expect_body='OK'))

    assert rc == 0
    assert result['status'] == 200


def test_https_untrusted_certificate(run_module, https_server):
    server = https_server(constant(200))

    rc, result = run_module(status_probe, dict(url=server.url))

    assert rc == 1
    assert result['status'] is None
    assert 'certificate verify failed' in result['error']
    assert server.count == 0


# Issue 11, item 10: ``consistent`` must not blame honest pages.

@pytest.mark.parametrize('page, extra, echo_ok, echo_error', [
    pytest.param(503, {}, False, 'timed out after 1 s waiting for the reply line', id='default-1000-ms-like-haproxy'),
    pytest.param(503, dict(echo_timeout_ms=1000), False, 'timed out after 1 s waiting for the reply line',
                 id='explicit-ms'),
    pytest.param(200, dict(echo_timeout_ms=2500), True, None, id='longer-page-timeout'),
])
def test_echo_timeout_matches_page(run_module, http_server, echo_server, page, extra, echo_ok, echo_error):
    """An echo server slower than HAProxy's probe timeout is KO for both: the 503 page is honest."""
    server = http_server(constant(page))
    host, port = echo_server('slow')

    rc, result = run_module(status_probe, dict(url=server.url, expect_status=[200, 503], echo_host=host,
                                               echo_port=port, **extra))

    assert rc == 0, result['msg']
    assert result['consistent'] is True
    assert result['echo_ok'] is echo_ok
    assert result['echo_error'] == echo_error


def _aged(status, age_ms):
    return constant(status, headers={'x-checktcp-age-ms': str(age_ms)})


@pytest.mark.parametrize('page, echo_up, consistent, in_msg', [
    pytest.param(_aged(200, 3000), False, None, 'verdict is 3000 ms old', id='stale-ok-echo-down-not-a-lie'),
    pytest.param(_aged(503, 3000), True, None, 'verdict is 3000 ms old', id='stale-ko-echo-up-not-a-lie'),
    pytest.param(_aged(200, 0), False, False, 'consistent: false', id='fresh-ok-echo-down-lies'),
    pytest.param(constant(200), False, False, 'consistent: false', id='no-age-header-lies'),
    pytest.param(_aged(200, 3000), True, True, 'consistent: true', id='stale-but-agrees'),
])
def test_cached_verdict_age(run_module, http_server, echo_server, closed_port, page, echo_up, consistent, in_msg):
    server = http_server(page)
    host, port = echo_server('ok') if echo_up else ('127.0.0.1', closed_port)

    rc, result = run_module(status_probe, dict(url=server.url, expect_status=[200, 503], echo_host=host,
                                               echo_port=port))

    assert rc == (0 if consistent else 1)
    assert result['consistent'] is consistent
    assert in_msg in result['msg']


def test_echo_server_coming_up_during_the_attempt_is_not_a_lie(run_module, http_server, echo_server):
    """The direct check before the request finds the server down, the page (fresh) and a check after it up."""
    server = http_server(_aged(200, 0))
    host, port = echo_server('flip')

    rc, result = run_module(status_probe, dict(url=server.url, echo_host=host, echo_port=port))

    assert rc == 0, result['msg']
    assert result['consistent'] is True
    assert result['echo_ok'] is True


@pytest.mark.parametrize('policy, page, echo_ok, up', [
    pytest.param('all', 503, False, 1, id='all'),
    pytest.param('any', 200, True, 1, id='any'),
    pytest.param(1, 200, True, 1, id='one'),
    pytest.param('2', 503, False, 1, id='two-as-string'),
])
def test_echo_targets_policy(run_module, http_server, echo_server, closed_port, policy, page, echo_ok, up):
    server = http_server(constant(page))
    host, port = echo_server('ok')
    targets = [dict(host=host, port=port, name='up'), dict(host='127.0.0.1', port=closed_port, name='down')]

    rc, result = run_module(status_probe, dict(url=server.url, expect_status=[200, 503], echo_targets=targets,
                                               echo_policy=policy))

    assert rc == 0, result['msg']
    assert result['consistent'] is True
    assert result['echo_ok'] is echo_ok
    assert result['echo_up'] == up
    assert [item['name'] for item in result['echo_results']] == ['up', 'down']
    assert [item['ok'] for item in result['echo_results']] == [True, False]
    assert 'connection refused' in result['echo_results'][1]['error']
    assert '1 of 2 echo targets OK' in result['msg']


def test_echo_targets_are_checked_concurrently(run_module, http_server, silent_port):
    """Two hung targets cost one echo timeout, as HAProxy probes them side by side."""
    server = http_server(constant(503))
    targets = [dict(host='127.0.0.1', port=silent_port)] * 2
    started = time.monotonic()

    rc, result = run_module(status_probe, dict(url=server.url, expect_status=503, echo_targets=targets,
                                               echo_timeout_ms=1000))

    took = time.monotonic() - started
    assert rc == 0, result['msg']
    assert took < 1.0 + 0.8  # one after the other would take 2 s
    assert result['echo_up'] == 0


@pytest.mark.parametrize('args, message', [
    pytest.param(dict(echo_send='check\nextra'), 'echo_send must be a single line', id='newline-in-send'),
    pytest.param(dict(echo_expect='check\r'), 'echo_expect must be a single line', id='cr-in-expect'),
    pytest.param(dict(echo_policy=3), 'echo_policy must be all, any or a number from 1 to 1', id='policy-too-big'),
    pytest.param(dict(echo_policy='most'), 'echo_policy must be all, any or a number', id='policy-word'),
    pytest.param(dict(echo_timeout_ms=0), 'echo_timeout_ms must be 1 or more', id='zero-echo-timeout'),
    pytest.param(dict(echo_host='127.0.0.1', echo_port=1, echo_targets=[dict(host='127.0.0.1', port=1)]),
                 'mutually exclusive: echo_host|echo_targets', id='host-and-targets'),
    pytest.param(dict(echo_targets=[]), 'echo_targets must list at least one target', id='no-targets',),
    pytest.param(dict(echo_targets=[dict(host='127.0.0.1', port=0)]), 'echo_targets[0].port must be between 1 and',
                 id='bad-target-port'),
    pytest.param(dict(echo_targets=[dict(host=' ', port=8080)]), 'echo_targets[0].host must not be empty',
                 id='empty-target-host'),
    pytest.param(dict(echo_host=''), 'echo_host must not be empty', id='empty-echo-host'),
])
def test_invalid_echo_arguments(run_module, http_server, echo_server, args, message):
    server = http_server(constant(200))
    host, port = echo_server('ok')
    if 'echo_targets' in args:
        base = dict(url=server.url)
    else:
        base = dict(url=server.url, echo_host=host, echo_port=port)

    rc, result = run_module(status_probe, dict(base, **args))

    assert rc == 1
    assert message in result['msg']
    assert server.count == 0


def _echo_credentials(count, handler):
    """Answers with the credentials it received, as a careless page might."""
    auth = handler.headers.get('Authorization', '')
    user = password = ''
    if auth.startswith('Basic '):
        user, _colon, password = base64.b64decode(auth[6:]).decode().partition(':')
    token = handler.headers.get('X-Token', '')
    return 200, 'OK user=%s password=%s token=%s' % (user, password, token), {'Content-Type': 'text/plain'}


def test_credentials_are_sent_and_kept_out_of_the_result(run_module, http_server):
    server = http_server(_echo_credentials)

    rc, result = run_module(status_probe, dict(url=server.url, url_username='probe', url_password='pw-0x5eCr3t',
                                               secret_headers={'X-Token': 'tok-0x5eCr3t'}))

    assert rc == 0
    assert server.requests[0]['headers']['Authorization'] == 'Basic ' + base64.b64encode(b'probe:pw-0x5eCr3t').decode()
    assert server.requests[0]['headers']['X-Token'] == 'tok-0x5eCr3t'
    assert 'user=probe' in result['body']
    assert '0x5eCr3t' not in json.dumps(result)


@pytest.mark.parametrize('url, headers, message', [
    pytest.param('http://probe:pw-0x5eCr3t@{addr}/', None, 'url must not contain credentials', id='userinfo'),
    pytest.param('http://{addr}/', {'Authorization': 'Bearer tok-0x5eCr3t'}, 'headers must not carry credentials',
                 id='authorization-header'),
    pytest.param('http://{addr}/', {'cookie': 'session=0x5eCr3t'}, 'headers must not carry credentials',
                 id='cookie-header'),
])
def test_credentials_outside_no_log_options_are_refused(run_module, http_server, url, headers, message):
    server = http_server(constant(200))
    addr = server.url.split('/')[2]

    rc, result = run_module(status_probe, dict(url=url.format(addr=addr), headers=headers))

    assert rc == 1
    assert message in result['msg']
    assert '0x5eCr3t' not in result['msg']
    assert server.count == 0


def _redirect_to(target):
    def responder(count, handler):
        return 302, 'moved', {'Location': target.url, 'Content-Type': 'text/plain'}
    return responder


@pytest.mark.parametrize('extra, rc, status, target_count', [
    pytest.param({}, 1, 302, 0, id='not-followed-by-default'),
    pytest.param(dict(follow_redirects=False), 1, 302, 0, id='not-followed'),
    pytest.param(dict(follow_redirects=True), 0, 200, 1, id='followed'),
])
def test_redirects(run_module, http_server, extra, rc, status, target_count):
    target = http_server(_echo_credentials)
    origin = http_server(_redirect_to(target))

    result_rc, result = run_module(status_probe, dict(url=origin.url, url_username='probe',
                                                      url_password='pw-0x5eCr3t', **extra))

    assert result_rc == rc
    assert result['status'] == status
    assert target.count == target_count
    assert origin.count == 1
    if target_count:
        assert result['final_url'] == target.url
        assert 'Authorization' not in target.requests[0]['headers']  # another origin gets no credentials
    else:
        assert result['final_url'] == origin.url
        assert result['headers']['location'] == target.url


@pytest.fixture
def proxy_env(monkeypatch, http_server):
    """A proxy named by http_proxy/https_proxy that answers every request itself."""
    proxy = http_server(constant(200, 'from the proxy', {'Content-Type': 'text/plain'}))
    for name in ('no_proxy', 'NO_PROXY', 'http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy',
                 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('http_proxy', proxy.url)
    monkeypatch.setenv('https_proxy', proxy.url)
    return proxy


@pytest.mark.parametrize('extra, via_proxy', [
    pytest.param({}, False, id='environment-ignored-by-default'),
    pytest.param(dict(use_proxy=False), False, id='environment-ignored'),
    pytest.param(dict(use_proxy=True), True, id='environment-used'),
])
def test_proxy(run_module, http_server, proxy_env, extra, via_proxy):
    server = http_server(constant(200))

    rc, result = run_module(status_probe, dict(url=server.url, **extra))

    assert rc == 0
    assert proxy_env.count == (1 if via_proxy else 0)
    assert server.count == (0 if via_proxy else 1)
    if via_proxy:
        assert proxy_env.requests[0]['path'] == server.url
        assert result['body'] == 'from the proxy'


def test_proxy_bypassed_by_no_proxy(run_module, http_server, proxy_env, monkeypatch):
    server = http_server(constant(200))
    monkeypatch.setenv('no_proxy', '127.0.0.1')

    rc, result = run_module(status_probe, dict(url=server.url, use_proxy=True))

    assert rc == 0
    assert proxy_env.count == 0
    assert server.count == 1


def test_https_through_a_tunnelling_proxy(run_module, https_server, tunnel_proxy, monkeypatch):
    server = https_server(constant(200))
    for name in ('no_proxy', 'NO_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('https_proxy', tunnel_proxy.url)

    rc, result = run_module(status_probe, dict(url=server.url, validate_certs=False, use_proxy=True,
                                               expect_body='OK'))

    assert rc == 0, result['msg']
    assert tunnel_proxy.lines == ['CONNECT %s HTTP/1.1' % server.url.split('/')[2]]
    assert server.count == 1


def test_timeout_bounds_the_tls_handshake(run_module, silent_port):
    started = time.monotonic()

    rc, result = run_module(status_probe, dict(url='https://127.0.0.1:%d/' % silent_port, timeout=0.5))

    took = time.monotonic() - started
    assert rc == 1
    assert took < 0.5 + 1.0
    assert result['error'] == 'timed out after 0.5 s in the TLS handshake'


def test_polls_past_a_stale_verdict(run_module, http_server, closed_port):
    """A cached page still says OK from before the echo server died: not judged, polled again until fresh."""
    def responder(count, handler):
        if count <= 2:
            return 200, status_page('OK'), {'x-checktcp-age-ms': '2500'}
        return 503, status_page('KO'), {'x-checktcp-age-ms': '0'}
    server = http_server(responder)

    rc, result = run_module(status_probe, dict(url=server.url, expect_status=[200, 503], echo_host='127.0.0.1',
                                               echo_port=closed_port, wait=3, interval=0.05))

    assert rc == 0, result['msg']
    assert result['attempts'] == 3
    assert result['status'] == 503
    assert result['consistent'] is True
    assert result['verdict_age_ms'] == 0
