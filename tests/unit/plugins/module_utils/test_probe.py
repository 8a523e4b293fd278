# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of the probe module_utils: pure helpers and loopback exchanges."""

from __future__ import absolute_import, division, print_function
from __future__ import annotations
__metaclass__ = type

import re
import socket

import pytest

from ansible_collections.checktcp.haproxy_lua.plugins.module_utils import probe
from ansible_collections.checktcp.haproxy_lua.tests.unit.plugins.probe_servers import constant, status_page


class FakeClock:
    """A clock that only moves when slept on or when an attempt takes time."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class Outcome:
    def __init__(self, success):
        self.success = success


def _attempts(results, clock, cost=0.0):
    results = iter(results)

    def attempt():
        clock.now += cost
        return Outcome(next(results))
    return attempt


@pytest.mark.parametrize('results, wait, interval, cost, attempts, sleeps, success', [
    pytest.param([True], 0, 0.5, 0, 1, [], True, id='first-try'),
    pytest.param([False], 0, 0.5, 0, 1, [], False, id='wait-zero-one-try'),
    pytest.param([False, False, True], 10, 0.5, 0, 3, [0.5, 0.5], True, id='succeeds-third'),
    pytest.param([False] * 10, 1.2, 0.5, 0, 4, [0.5, 0.5, 0.2], False, id='last-sleep-clipped'),
    pytest.param([False] * 10, 1.0, 0.5, 0.6, 2, [0.4], False, id='slow-attempts'),
])
def test_poll(results, wait, interval, cost, attempts, sleeps, success):
    clock = FakeClock()

    outcome = probe.poll(_attempts(results, clock, cost), wait=wait, interval=interval, clock=clock, sleep=clock.sleep)

    assert outcome.attempts == attempts
    assert outcome.success is success
    assert clock.sleeps == pytest.approx(sleeps)
    assert outcome.elapsed_ms == int(round((clock.now - 100.0) * 1000))


@pytest.mark.parametrize('body, expected', [
    pytest.param(status_page('KO'), 'checktcp KO', id='html-without-head'),
    pytest.param('plain\n  text\twith   spaces', 'plain text with spaces', id='whitespace'),
    pytest.param('x' * 100, 'x' * 60 + u'\u2026', id='truncated'),
    pytest.param('', '', id='empty'),
    pytest.param('a < b', 'a < b', id='not-html'),
])
def test_body_snippet(body, expected):
    assert probe.body_snippet(body) in (expected, expected.replace('checktcp ', ''))


def test_body_snippet_drops_head():
    assert probe.body_snippet(status_page('OK')) == 'OK'


def test_describe_helpers():
    ok = probe.HttpResult(status=503, body='KO')
    none = probe.HttpResult(error='connection refused')
    partial = probe.HttpResult(status=200, error='reading the body failed: timed out after 1 s')

    assert probe.describe_expectation('http://x/', [200], 'OK') == "expected status [200] and body matching 'OK' from http://x/"
    assert probe.describe_expectation('http://x/', [200, 503]) == 'expected status [200, 503] from http://x/'
    assert probe.describe_http(ok) == "503 (body 'KO')"
    assert probe.describe_http(none) == 'no answer (connection refused)'
    assert probe.describe_http(partial) == '200 but reading the body failed: timed out after 1 s'
    assert probe.describe_attempts(1, 5) == '1 attempt in 5 ms'
    assert probe.describe_attempts(3, 1520) == '3 attempts in 1520 ms'


@pytest.mark.parametrize('exc, text', [
    pytest.param(socket.timeout('timed out'), 'timed out after 2.5 s', id='timeout'),
    pytest.param(socket.gaierror(-2, 'Name or service not known'), 'name resolution failed: Name or service not known',
                 id='dns'),
    pytest.param(ConnectionRefusedError(111, 'Connection refused'), 'connection refused', id='refused'),
    pytest.param(probe.URLError(ConnectionRefusedError(111, 'Connection refused')), 'connection refused', id='wrapped'),
    pytest.param(probe.URLError('unknown url type: foo'), 'connection failed: unknown url type: foo', id='url-error'),
    pytest.param(RuntimeError('boom'), 'RuntimeError: boom', id='other'),
])
def test_describe_exception(exc, text):
    assert probe.describe_exception(exc, timeout=2.5) == text


@pytest.mark.parametrize('status, body, pattern, echo_ok, success, consistent', [
    pytest.param(200, 'OK', 'OK', None, True, None, id='plain-ok'),
    pytest.param(200, 'KO', 'OK', None, False, None, id='body-mismatch'),
    pytest.param(503, 'KO', None, None, False, None, id='status-mismatch'),
    pytest.param(200, 'OK', None, True, True, True, id='echo-consistent'),
    pytest.param(200, 'OK', None, False, False, False, id='echo-inconsistent'),
    pytest.param(None, '', None, False, False, True, id='no-answer'),
])
def test_evaluate(status, body, pattern, echo_ok, success, consistent):
    http = probe.HttpResult(status=status, body=body, error=None if status else 'connection refused')
    echo = None if echo_ok is None else probe.EchoResult(ok=echo_ok)

    attempt = probe.evaluate(http, [200], re.compile(pattern) if pattern else None, echo)

    assert attempt.success is success
    assert attempt.consistent is consistent


def test_http_get_truncates_body(http_server):
    server = http_server(constant(200, 'a' * (probe.MAX_BODY + 1000), {'Content-Type': 'text/plain'}))

    result = probe.http_get(server.url, timeout=2)

    assert result.status == 200
    assert result.truncated is True
    assert len(result.body) == probe.MAX_BODY


def test_http_get_decodes_charset(http_server):
    server = http_server(constant(200, u'caf\u00e9'.encode('latin-1'), {'Content-Type': 'text/plain; charset=iso-8859-1'}))

    result = probe.http_get(server.url, timeout=2)

    assert result.body == u'caf\u00e9'
    assert result.headers['content-type'] == 'text/plain; charset=iso-8859-1'


def test_http_get_error_status_is_an_answer(http_server):
    server = http_server(constant(503))

    result = probe.http_get(server.url, timeout=2)

    assert result.status == 503
    assert result.error is None
    assert 'KO' in result.body


def test_http_get_bad_scheme():
    result = probe.http_get('nothttp://127.0.0.1/', timeout=1)

    assert result.status is None
    assert result.error


@pytest.mark.parametrize('mode, skip, expected_ok, reply', [
    pytest.param('ok', 1, True, 'check', id='ok'),
    pytest.param('crlf', 1, True, 'check', id='crlf-stripped'),
    pytest.param('ok', 0, False, None, id='no-skip-reads-header'),
])
def test_echo_check(echo_server, mode, skip, expected_ok, reply):
    host, port = echo_server(mode)

    result = probe.echo_check(host, port, skip_lines=skip, timeout=2)

    assert result.ok is expected_ok
    if reply is not None:
        assert result.reply == reply
        assert result.header.startswith('ECHO client=')
    else:
        assert result.reply.startswith('ECHO client=')
        assert result.header is None
        assert result.error.startswith("expected reply 'check', got 'ECHO client=")


def test_echo_check_skips_two_lines(echo_server):
    host, port = echo_server('ok')

    result = probe.echo_check(host, port, send='check', expect='check', skip_lines=2, timeout=0.3)

    assert result.ok is False
    assert result.header.startswith('ECHO client=')
    assert result.header.endswith('\ncheck')
    assert 'timed out after 0.3 s waiting for the reply line' == result.error


def test_echo_check_overlong_line(echo_server):
    host, port = echo_server('long')

    result = probe.echo_check(host, port, timeout=2)

    assert result.ok is False
    assert result.error == 'invalid answer while waiting for the header line: line longer than %d bytes' % probe.MAX_LINE


@pytest.mark.parametrize('policy, count, required', [
    pytest.param('all', 3, 3, id='all'),
    pytest.param('any', 3, 1, id='any'),
    pytest.param('ALL', 2, 2, id='case'),
    pytest.param(2, 3, 2, id='number'),
    pytest.param('3', 3, 3, id='number-as-string'),
])
def test_required_targets(policy, count, required):
    assert probe.required_targets(policy, count) == required


@pytest.mark.parametrize('policy', [0, 4, '-1', 'most', '', None, 1.5])
def test_required_targets_refused(policy):
    with pytest.raises(ValueError) as excinfo:
        probe.required_targets(policy, 3)

    assert 'must be all, any or a number from 1 to 3' in str(excinfo.value)


@pytest.mark.parametrize('header, age', [
    pytest.param('1500', 1500, id='number'),
    pytest.param(' 7 ', 7, id='spaces'),
    pytest.param('-3', None, id='negative'),
    pytest.param('soon', None, id='garbage'),
    pytest.param(None, None, id='absent'),
])
def test_verdict_age(header, age):
    headers = {} if header is None else {'x-checktcp-age-ms': header}
    http = probe.HttpResult(status=200, headers=headers, answered_at=50.0)

    assert http.age_ms == age
    assert http.verdict_at == pytest.approx(50.0 - (age or 0) / 1000.0)


@pytest.mark.parametrize('headers, host', [
    pytest.param(None, None, id='host-from-url'),
    pytest.param({'Host': 'status.example.com'}, 'status.example.com', id='host-given'),
])
def test_http_get_sends_one_host_header(http_server, headers, host):
    server = http_server(constant(200))

    result = probe.http_get(server.url, timeout=2, headers=headers)

    assert result.status == 200
    sent = server.requests[0]['headers']
    assert [value for name, value in server.requests[0]['header_list'] if name.lower() == 'host'] == [
        host or server.url.split('/')[2]]
    assert sent['Connection'] == 'close'


def test_http_get_refuses_a_url_with_spaces(http_server):
    server = http_server(constant(200))

    result = probe.http_get(server.url + 'a b', timeout=2)

    assert result.status is None
    assert 'spaces or control characters' in result.error
    assert server.count == 0
