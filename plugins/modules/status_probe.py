#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


DOCUMENTATION = r'''
---
module: status_probe
short_description: Probe an HTTP status endpoint, optionally cross-checked with the echo server
version_added: 1.0.0
description:
  - Sends HTTP GET requests to O(url) until the answer has one of the expected status codes
    and, if O(expect_body) is given, a body matching it, or until O(wait) seconds have passed.
  - An HTTP error status such as C(503) is a normal answer that can be expected, not an error.
  - With O(echo_host) and O(echo_port), each attempt also speaks the echo protocol with the echo
    server itself (connect, send O(echo_send), skip O(echo_skip_lines) header lines, expect the
    next line to be O(echo_expect)) and the attempt only succeeds when the verdict of the status
    page (status C(200) means OK, anything else KO) agrees with that direct check.
  - Connection errors, timeouts and name resolution failures are reported in the result, never
    raised; the module fails when the expectation does not hold in time.
  - The module only reads; it never reports a change and runs in check mode too.
author:
  - checktcp maintainers (@checktcp)
options:
  url:
    description:
      - HTTP or HTTPS URL of the status endpoint.
    type: str
    required: true
  expect_status:
    description:
      - HTTP status codes that count as success.
      - A single integer is accepted too.
    type: list
    elements: int
    default: [200]
  expect_body:
    description:
      - Python regular expression searched for in the response body (the first 64 KiB).
      - Not anchored; use V((?i\)) for a case insensitive search.
    type: str
  timeout:
    description:
      - Seconds one HTTP request may take, for connecting, for each read and for the whole body.
    type: float
    default: 5
  wait:
    description:
      - Seconds to keep polling until the expectation holds.
      - V(0) makes exactly one attempt. At least one attempt is always made, and one attempt
        may run up to O(timeout) past this limit.
    type: float
    default: 0
  interval:
    description:
      - Seconds to pause between two attempts.
    type: float
    default: 0.5
  headers:
    description:
      - 'Extra HTTP request headers, for instance V({"Accept": "application/json"}).'
    type: dict
  validate_certs:
    description:
      - Whether to validate the TLS certificate of an HTTPS O(url).
    type: bool
    default: true
  echo_host:
    description:
      - Host name or address of the echo server to check directly on each attempt.
      - Requires O(echo_port).
    type: str
  echo_port:
    description:
      - TCP port of the echo server.
      - Requires O(echo_host).
    type: int
  echo_send:
    description:
      - Line sent to the echo server (a newline is appended).
    type: str
    default: check
  echo_expect:
    description:
      - Line the echo server must answer after the header lines (a trailing carriage return is stripped).
    type: str
    default: check
  echo_skip_lines:
    description:
      - Number of header lines the echo server writes first, which are skipped.
    type: int
    default: 1
  echo_timeout:
    description:
      - Seconds the whole echo exchange may take.
      - Defaults to O(timeout).
    type: float
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - The requests are sent from the managed host; delegate the task to probe from elsewhere.
  - With the echo check and no HTTP answer at all, the status page counts as KO.
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
'''

EXAMPLES = r'''
- name: Wait until the status page reports OK
  checktcp.haproxy_lua.status_probe:
    url: http://lb.example.com/
    expect_status: 200
    expect_body: '\bOK\b'
    wait: 30

- name: Stop the echo server
  ansible.builtin.systemd_service:
    name: checktcp-echo
    state: stopped
  delegate_to: echo.example.com

- name: Wait until the status page reports KO
  checktcp.haproxy_lua.status_probe:
    url: http://lb.example.com/
    expect_status: 503
    expect_body: '\bKO\b'
    wait: 30
    interval: 1

- name: Check that the status page agrees with the echo server itself
  checktcp.haproxy_lua.status_probe:
    url: http://lb.example.com/
    expect_status: [200, 503]
    echo_host: echo.example.com
    echo_port: 8080
    wait: 10
  register: probe

- name: Show both verdicts
  ansible.builtin.debug:
    msg: "status page {{ probe.status }}, echo server {{ 'OK' if probe.echo_ok else 'KO' }}, consistent {{ probe.consistent }}"
'''

RETURN = r'''
msg:
  description: What was expected and what came back, with the number of attempts and the time taken.
  returned: always
  type: str
  sample: got 200 (body 'OK') from http://lb.example.com/ after 1 attempt in 4 ms
url:
  description: The URL probed.
  returned: always
  type: str
  sample: http://lb.example.com/
status:
  description: HTTP status code of the last answer; V(null) when there was no HTTP answer.
  returned: always
  type: int
  sample: 200
body:
  description: Body of the last answer, decoded, at most 64 KiB.
  returned: always
  type: str
  sample: "<!DOCTYPE html><html><body><h1>OK</h1></body></html>"
headers:
  description: Response headers of the last answer, names in lower case.
  returned: always
  type: dict
  sample: {"content-type": "text/html; charset=utf-8", "content-length": "52"}
error:
  description: Why the last request got no (complete) answer; V(null) when it got one.
  returned: always
  type: str
  sample: "connection refused"
elapsed_ms:
  description: Milliseconds spent over all attempts.
  returned: always
  type: int
  sample: 1520
attempts:
  description: Number of attempts made.
  returned: always
  type: int
  sample: 3
echo_ok:
  description: Whether the echo server answered O(echo_expect) in the last attempt.
  returned: when O(echo_host) and O(echo_port) are given
  type: bool
  sample: true
echo_header:
  description: The header line(s) the echo server wrote first (several are joined with newlines).
  returned: when O(echo_host) and O(echo_port) are given
  type: str
  sample: "ECHO client=10.89.0.2:41234 server=10.89.0.3:8080"
echo_reply:
  description: The line the echo server answered after the header; V(null) when none came.
  returned: when O(echo_host) and O(echo_port) are given
  type: str
  sample: check
echo_error:
  description: Why the echo check failed in the last attempt; V(null) when it succeeded.
  returned: when O(echo_host) and O(echo_port) are given
  type: str
  sample: "timed out after 5 s waiting for the header line"
consistent:
  description:
    - Whether the status page's verdict (status C(200) is OK, anything else KO) equals RV(echo_ok)
      in the last attempt.
  returned: when O(echo_host) and O(echo_port) are given
  type: bool
  sample: true
'''

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.checktcp.haproxy_lua.plugins.module_utils.probe import (
    MAX_BODY,
    body_snippet,
    describe_attempts,
    describe_echo,
    describe_expectation,
    describe_http,
    echo_check,
    evaluate,
    http_get,
    poll,
)


def _validate(module):
    params = module.params
    if params['timeout'] <= 0:
        module.fail_json(msg='timeout must be greater than 0, got %s' % params['timeout'])
    if params['wait'] < 0:
        module.fail_json(msg='wait must not be negative, got %s' % params['wait'])
    if params['interval'] < 0:
        module.fail_json(msg='interval must not be negative, got %s' % params['interval'])
    if not params['expect_status']:
        module.fail_json(msg='expect_status must list at least one status code')
    if params['echo_port'] is not None and not 0 < params['echo_port'] < 65536:
        module.fail_json(msg='echo_port must be between 1 and 65535, got %s' % params['echo_port'])
    if params['echo_skip_lines'] < 0:
        module.fail_json(msg='echo_skip_lines must not be negative, got %s' % params['echo_skip_lines'])
    if params['echo_timeout'] is not None and params['echo_timeout'] <= 0:
        module.fail_json(msg='echo_timeout must be greater than 0, got %s' % params['echo_timeout'])
    if params['expect_body'] is None:
        return None
    try:
        return re.compile(params['expect_body'])
    except re.error as exc:
        module.fail_json(msg='expect_body is not a valid regular expression: %s' % exc)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str', required=True),
            expect_status=dict(type='list', elements='int', default=[200]),
            expect_body=dict(type='str'),
            timeout=dict(type='float', default=5),
            wait=dict(type='float', default=0),
            interval=dict(type='float', default=0.5),
            headers=dict(type='dict'),
            validate_certs=dict(type='bool', default=True),
            echo_host=dict(type='str'),
            echo_port=dict(type='int'),
            echo_send=dict(type='str', default='check'),
            echo_expect=dict(type='str', default='check'),
            echo_skip_lines=dict(type='int', default=1),
            echo_timeout=dict(type='float'),
        ),
        required_together=[('echo_host', 'echo_port')],
        supports_check_mode=True,
    )
    params = module.params
    body_pattern = _validate(module)
    expect_status = params['expect_status']
    echo_on = params['echo_host'] is not None
    echo_timeout = params['echo_timeout'] if params['echo_timeout'] is not None else params['timeout']

    def attempt():
        http = http_get(params['url'], timeout=params['timeout'], headers=params['headers'],
                        validate_certs=params['validate_certs'], max_body=MAX_BODY)
        echo = None
        if echo_on:
            echo = echo_check(params['echo_host'], params['echo_port'], send=params['echo_send'],
                              expect=params['echo_expect'], skip_lines=params['echo_skip_lines'],
                              timeout=echo_timeout)
        return evaluate(http, expect_status, body_pattern, echo)

    outcome = poll(attempt, wait=params['wait'], interval=params['interval'])
    last = outcome.last
    http = last.http
    result = dict(
        changed=False,
        url=params['url'],
        status=http.status,
        body=http.body,
        headers=http.headers,
        error=http.error,
        elapsed_ms=outcome.elapsed_ms,
        attempts=outcome.attempts,
    )
    echo_text = ''
    if echo_on:
        echo = last.echo
        result.update(
            echo_ok=echo.ok,
            echo_header=echo.header,
            echo_reply=echo.reply,
            echo_error=echo.error,
            consistent=last.consistent,
        )
        echo_text = '; echo check on %s:%s: %s (consistent: %s)' % (
            params['echo_host'], params['echo_port'], describe_echo(echo, params['echo_expect']),
            'true' if last.consistent else 'false')

    spent = describe_attempts(outcome.attempts, outcome.elapsed_ms)
    if outcome.success:
        got = '%s (body %r)' % (http.status, body_snippet(http.body))
        result['msg'] = 'got %s from %s after %s%s' % (got, params['url'], spent, echo_text)
        module.exit_json(**result)

    result['msg'] = '%s, last got %s after %s%s' % (
        describe_expectation(params['url'], expect_status, params['expect_body']),
        describe_http(http), spent, echo_text)
    module.fail_json(**result)


if __name__ == '__main__':
    main()
