# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of the status_probe module against real loopback servers."""

from __future__ import absolute_import, division, print_function
from __future__ import annotations
__metaclass__ = type

import socket
import time

import pytest

from ansible_collections.checktcp.haproxy_lua.plugins.modules import status_probe
from ansible_collections.checktcp.haproxy_lua.tests.unit.plugins.probe_servers import (
    constant,
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
