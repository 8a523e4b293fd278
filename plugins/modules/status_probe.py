#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


DOCUMENTATION = r'''
---
module: status_probe
short_description: Probe an HTTP status endpoint, optionally cross-checked with the checked service
version_added: 1.0.0
description:
  - Sends HTTP GET requests to O(url) until the answer has one of the expected status codes
    and, if O(expect_body) is given, a body matching it, or until O(wait) seconds have passed.
  - An HTTP error status such as C(503) is a normal answer that can be expected, not an error;
    so is a redirect, unless O(follow_redirects) is set.
  - With O(echo_host) and O(echo_port), or O(echo_targets), each attempt also speaks the echo
    protocol with the echo server(s) directly (connect, send O(echo_send), skip O(echo_skip_lines)
    header lines, expect the next line to be O(echo_expect)), judges the targets with
    O(echo_policy) as the status page does, and only succeeds when the page's verdict (status
    C(200) means OK, anything else KO) agrees with that direct check (RV(consistent)).
  - The direct check speaks the echo protocol by default; O(preset) or O(steps) make it speak to
    another service (Redis, memcached, SMTP, SSH, HTTP, or any line or byte conversation), over
    TLS (O(tls)) and with a PROXY protocol header (O(proxy_protocol)), in the same language, with
    the same line limit (1024 bytes) and regex semantics as the haproxy role's checks, so that
    RV(consistent) means the same for Redis as for the echo server.
  - The direct check runs first, then the request. When they disagree the module tells a lie
    from a change of state. A verdict formed before the direct check began (its age comes from
    the page's C(x-checktcp-age-ms) header, which live mode sends) is not judged;
    RV(consistent) is V(null) and the module polls on. Otherwise a second direct check decides;
    if it agrees with the page, the echo server changed state meanwhile and the page is right,
    if it disagrees too, the page lies (RV(consistent) is V(false)).
  - A cached check's answers carry no age (HAProxy does not tell when a server's last check ran);
    such a page follows a change of the service once HAProxy's health checks have seen it, up to
    C(haproxy_checktcp_fall) (or C(rise)) times C(haproxy_checktcp_interval_ms), plus
    C(haproxy_checktcp_timeout_ms), later. Until then the second direct check disagrees too and
    RV(consistent) is V(false); give O(wait) at least that long, and the module polls until the
    page agrees.
  - Connection errors, timeouts and name resolution failures are reported in the result, never
    raised; the module fails when the expectation does not hold in time.
  - The module only reads; it never reports a change and runs in check mode too.
author:
  - checktcp maintainers (@checktcp)
options:
  url:
    description:
      - HTTP or HTTPS URL of the status endpoint.
      - It must not contain credentials (C(user:password@)), which would show in logs and in the
        result; use O(url_username) and O(url_password).
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
      - Seconds one HTTP request may take in all - name resolution, connecting, TLS, sending the
        request, the status line, headers and body, and every redirect followed - under one
        deadline, so a server that trickles its answer cannot hold it longer.
    type: float
    default: 5
  wait:
    description:
      - Seconds to keep polling until the expectation holds.
      - V(0) makes exactly one attempt. At least one attempt is always made, and one attempt
        may run up to O(timeout) plus twice the echo timeout past this limit.
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
      - They are logged like any option, so credentials (C(Authorization), C(Proxy-Authorization),
        C(Cookie)) are refused here; use O(url_username) and O(url_password), and put those and any
        other header that carries a secret (an API key) in O(secret_headers).
    type: dict
  secret_headers:
    description:
      - 'Extra HTTP request headers that carry secrets, for instance V({"Authorization": "Bearer ..."});
        their values are kept out of logs and results.'
      - Sent only to the origin (scheme, host and port) of O(url), never after a redirect to
        another one.
    type: dict
  url_username:
    description:
      - User name for HTTP basic authentication, sent with the first request (no challenge needed).
      - Requires O(url_password). Sent only to the origin of O(url), like O(secret_headers).
    type: str
  url_password:
    description:
      - Password for HTTP basic authentication; kept out of logs and results.
      - Requires O(url_username).
    type: str
  validate_certs:
    description:
      - Whether to validate the TLS certificate of an HTTPS O(url).
    type: bool
    default: true
  follow_redirects:
    description:
      - Whether to follow redirects (C(301), C(302), C(303), C(307), C(308)), at most 10, all
        within O(timeout).
      - By default a redirect is the answer, judged like any other status.
    type: bool
    default: false
  use_proxy:
    description:
      - Whether to send the request through the proxy the environment of the managed host names
        (C(http_proxy), C(https_proxy), honouring C(no_proxy)); HTTPS goes through a C(CONNECT)
        tunnel. Only C(http://) proxies are supported.
      - By default the request goes straight to O(url), whatever the environment says.
    type: bool
    default: false
  echo_host:
    description:
      - Host name or address of the echo server to check directly on each attempt.
      - Requires O(echo_port). Mutually exclusive with O(echo_targets).
    type: str
  echo_port:
    description:
      - TCP port of the echo server.
      - Requires O(echo_host).
    type: int
  echo_targets:
    description:
      - Echo servers to check directly on each attempt, side by side, when the status page
        probes several; the same shape as the haproxy role's C(haproxy_checktcp_targets).
      - Mutually exclusive with O(echo_host) and O(echo_port).
    type: list
    elements: dict
    suboptions:
      host:
        description:
          - Host name or address of the echo server.
        type: str
        required: true
      port:
        description:
          - TCP port of the echo server.
        type: int
        required: true
      name:
        description:
          - Name shown in messages and RV(echo_results).
        type: str
  echo_policy:
    description:
      - How many targets must answer for the direct check to say OK, as the page's
        C(haproxy_checktcp_policy) - V(all), V(any), or a number from 1 to the number of targets.
    type: raw
    default: all
  echo_send:
    description:
      - Line sent to the echo server (a newline is appended); one line, without CR or LF.
    type: str
    default: check
  echo_expect:
    description:
      - Line the echo server must answer after the header lines (a trailing carriage return is
        stripped); one line, without CR or LF.
    type: str
    default: check
  echo_skip_lines:
    description:
      - Number of header lines the echo server writes first, which are skipped (0 to 100).
    type: int
    default: 1
  echo_timeout_ms:
    description:
      - Milliseconds the whole direct echo exchange with one target may take (name resolution,
        connect, send, read).
      - Set it to the page's probe timeout, C(haproxy_checktcp_timeout_ms) (whose default this is),
        so that an echo server too slow for the page is too slow for the module as well.
      - Mutually exclusive with O(echo_timeout).
    type: int
    default: 1000
  echo_timeout:
    description:
      - The same as O(echo_timeout_ms), in seconds; kept for compatibility.
      - Mutually exclusive with O(echo_timeout_ms).
    type: float
  preset:
    description:
      - The conversation of the direct check, as the haproxy role's C(preset) of a check.
      - V(echo) - send O(echo_send), skip O(echo_skip_lines) lines, expect O(echo_expect).
      - V(redis) - send C(PING), expect C(+PONG).
      - V(memcached) - send C(version), expect a line matching C(^VERSION ).
      - V(smtp) - expect a banner matching C(^220 ), then send C(QUIT).
      - V(ssh) - expect an identification line matching C(^SSH-2\.0-).
      - V(http) - send C(GET / HTTP/1.1) with a C(Host) header (O(tls_sni) when set, else the first
        target's host), expect a status line with a 2xx or 3xx status.
      - The default is V(echo). Mutually exclusive with O(steps).
    type: str
    choices: [echo, redis, memcached, smtp, ssh, http]
  steps:
    description:
      - The conversation as a list of steps, instead of a preset; each step is a dict with exactly one key.
      - C(send) - text sent as given (YAML escapes such as C(\r\n) work).
      - C(send_hex) - bytes sent, as an even number of hex digits.
      - C(expect) - the next line equals this text (its LF or CRLF removed).
      - C(expect_regex) - the next line contains a match of this regular expression, in HAProxy's
        PCRE syntax, checked here with Python's C(re) (keep to what both read alike). C(^) and C($)
        are line anchors; C($) matches before the LF, so a CRLF line ends with C(\r$).
      - C(expect_hex) - the next bytes equal these (hex digits); a reply is read as lines or as
        bytes, not both, between two sends.
      - C(skip_lines) - that many lines (0 to 100) are read and ignored.
      - A line longer than 1024 bytes is KO. Mutually exclusive with O(preset).
    type: list
    elements: dict
  tls:
    description:
      - Whether the direct check speaks TLS to the targets.
    type: bool
    default: false
  tls_verify:
    description:
      - Whether the targets' certificates must verify against O(tls_ca); the name is verified too
        when an SNI is sent (O(tls_sni), or the target's host when it is a name), as HAProxy does.
    type: bool
    default: true
  tls_ca:
    description:
      - PEM file of the CAs the targets' certificates must chain to, on the host the module runs on.
      - The default is the host's CA bundle, C(/etc/ssl/certs/ca-certificates.crt).
    type: path
  tls_sni:
    description:
      - The server name sent (SNI) and verified.
      - The default is the target's host when it is a name; none for an IP address (then the
        name is not verified).
    type: str
  proxy_protocol:
    description:
      - Opens each direct check with a PROXY protocol header of this version, as HAProxy's own
        health checks do (V(v2) as a LOCAL command).
    type: str
    choices: [none, v1, v2]
    default: none
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
  - The HTTP client is the module's own, so that O(timeout) bounds the whole exchange; it speaks
    HTTP/1.1 with C(Connection close) and basic authentication only.
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

- name: Check that the status page of a Redis check agrees with Redis itself, over TLS
  checktcp.haproxy_lua.status_probe:
    url: http://lb.example.com/
    expect_status: [200, 503]
    echo_host: redis.example.com
    echo_port: 6380
    preset: redis
    tls: true
    tls_ca: /etc/ssl/private-ca.pem

- name: The same with steps of one's own
  checktcp.haproxy_lua.status_probe:
    url: http://lb.example.com/
    expect_status: [200, 503]
    echo_host: 10.0.0.21
    echo_port: 6379
    steps:
      - send: "PING\r\n"
      - expect_regex: '^\+PONG'

- name: Judge a cached page over two echo servers with the page's own policy and timeout
  checktcp.haproxy_lua.status_probe:
    url: https://lb.example.com/status
    url_username: monitor
    url_password: "{{ vault_status_password }}"
    expect_status: [200, 503]
    echo_targets:
      - {host: 10.0.0.11, port: 8080, name: echo1}
      - {host: 10.0.0.12, port: 8080, name: echo2}
    echo_policy: any
    echo_timeout_ms: 1000
    wait: 5
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
final_url:
  description: The URL of the last answer; differs from RV(url) after redirects were followed.
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
  sample: "timed out after 5 s waiting for the status line"
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
verdict_age_ms:
  description: Age of the page's verdict in the last answer, from its C(x-checktcp-age-ms) header; V(null) without one.
  returned: always
  type: int
  sample: 1200
echo_ok:
  description: Whether the direct check said OK in the last attempt (enough targets answered O(echo_expect) for O(echo_policy)).
  returned: when the echo check is on (O(echo_host) or O(echo_targets))
  type: bool
  sample: true
echo_up:
  description: How many targets answered O(echo_expect) in the last attempt.
  returned: when the echo check is on
  type: int
  sample: 1
echo_required:
  description: How many targets O(echo_policy) requires.
  returned: when the echo check is on
  type: int
  sample: 1
echo_results:
  description: What each target did in the last attempt, in the order given.
  returned: when the echo check is on
  type: list
  elements: dict
  sample: [{"name": "echo1", "host": "10.0.0.11", "port": 8080, "ok": true, "header": "ECHO client=10.0.0.2:41234 server=10.0.0.11:8080",
            "reply": "check", "error": null, "elapsed_ms": 2}]
echo_header:
  description:
    - The header line(s) the echo server wrote first (several are joined with newlines); V(null) with several targets.
    - With another conversation (O(preset), O(steps)), every line received before the last one.
  returned: when the echo check is on
  type: str
  sample: "ECHO client=10.89.0.2:41234 server=10.89.0.3:8080"
echo_reply:
  description:
    - The line the echo server answered after the header; V(null) when none came, and with several targets.
    - With another conversation (O(preset), O(steps)), the last line received.
  returned: when the echo check is on
  type: str
  sample: check
echo_error:
  description:
    - Why the direct check failed in the last attempt; V(null) when it succeeded.
    - With several targets, how many answered and how many are required.
  returned: when the echo check is on
  type: str
  sample: "timed out after 1 s waiting for the header line"
consistent:
  description:
    - Whether the status page's verdict (status C(200) is OK, anything else KO) equals RV(echo_ok)
      in the last attempt.
    - V(null) when they disagree but the page's verdict was formed before the direct check began
      (see RV(verdict_age_ms)), so that the echo server may have changed state in between.
    - A cached check's page carries no age; while it lags a change (see the description), this
      is V(false).
  returned: when the echo check is on
  type: bool
  sample: true
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.checktcp.haproxy_lua.plugins.module_utils.conversation import ConversationError
from ansible_collections.checktcp.haproxy_lua.plugins.module_utils.probe import (
    CREDENTIAL_HEADERS,
    MAX_BODY,
    Conversation,
    attempt_once,
    basic_auth,
    body_snippet,
    check_header,
    check_targets,
    describe_attempts,
    describe_echo,
    describe_expectation,
    describe_http,
    describe_targets,
    http_get,
    poll,
    required_targets,
)


def _check_headers(module, option, secret):
    for name, value in (module.params[option] or {}).items():
        try:
            check_header(str(name), str(value))
        except ValueError as exc:
            module.fail_json(msg='%s: %s' % (option, exc))
        if not secret and str(name).lower() in CREDENTIAL_HEADERS:
            module.fail_json(msg='headers must not carry credentials (%s): headers are logged and returned; '
                                 'use url_username and url_password, or secret_headers' % name)


def _conversation(module, targets):
    """The direct check's conversation from preset or steps, TLS and PROXY options; fails naming the option."""
    params = module.params
    if params['tls_ca'] is not None and not os.path.isfile(params['tls_ca']):
        module.fail_json(msg='tls_ca: no such file %s' % params['tls_ca'])
    if not 0 <= params['echo_skip_lines'] <= 100:
        module.fail_json(msg='echo_skip_lines must be a number from 0 to 100, got %s' % params['echo_skip_lines'])
    host = params['tls_sni'] or (targets[0]['host'] if targets else None)
    try:
        return Conversation(preset=params['preset'] or 'echo', steps=params['steps'], send=params['echo_send'],
                            expect=params['echo_expect'], skip_lines=params['echo_skip_lines'], host=host,
                            tls=params['tls'], tls_verify=params['tls_verify'], tls_ca=params['tls_ca'],
                            tls_sni=params['tls_sni'], proxy_protocol=params['proxy_protocol'])
    except ConversationError as exc:
        module.fail_json(msg='%s: %s' % ('steps' if params['steps'] is not None else 'preset', exc))


def _validate(module):
    """Check every option before anything is sent; returns (body_pattern, targets, required, echo_timeout, conversation)."""
    params = module.params
    url = params['url']
    scheme, sep, rest = url.partition('://')
    authority = rest.split('/', 1)[0].split('?', 1)[0].split('#', 1)[0]
    if '@' in authority:
        module.fail_json(msg='url must not contain credentials (user:password@): they would show in logs and in the '
                             'result; use url_username and url_password')
    if not sep or scheme.lower() not in ('http', 'https') or not authority:
        module.fail_json(msg='url must be an http:// or https:// URL with a host, got %r' % (url,))
    if params['timeout'] <= 0:
        module.fail_json(msg='timeout must be greater than 0, got %s' % params['timeout'])
    if params['wait'] < 0:
        module.fail_json(msg='wait must not be negative, got %s' % params['wait'])
    if params['interval'] < 0:
        module.fail_json(msg='interval must not be negative, got %s' % params['interval'])
    if not params['expect_status']:
        module.fail_json(msg='expect_status must list at least one status code')
    _check_headers(module, 'headers', secret=False)
    _check_headers(module, 'secret_headers', secret=True)
    for option in ('echo_send', 'echo_expect'):
        if '\n' in params[option] or '\r' in params[option]:
            module.fail_json(msg='%s must be a single line: the echo protocol is line based and it contains a line '
                                 'break (CR or LF), got %r' % (option, params[option]))

    if params['echo_host'] is not None:
        targets = [dict(host=params['echo_host'], port=params['echo_port'], name=None)]
    elif params['echo_targets'] is not None:
        targets = params['echo_targets']
        if not targets:
            module.fail_json(msg='echo_targets must list at least one target')
    else:
        targets = []
    for index, target in enumerate(targets):
        where = 'echo_' if params['echo_host'] is not None else 'echo_targets[%d].' % index
        if not 0 < target['port'] < 65536:
            module.fail_json(msg='%sport must be between 1 and 65535, got %s' % (where, target['port']))
        if not target['host'].strip():
            module.fail_json(msg='%shost must not be empty' % where)
    required = None
    if targets:
        try:
            required = required_targets(params['echo_policy'], len(targets))
        except ValueError as exc:
            module.fail_json(msg='echo_policy %s' % exc)
    if params['echo_skip_lines'] < 0:
        module.fail_json(msg='echo_skip_lines must not be negative, got %s' % params['echo_skip_lines'])
    if params['echo_timeout'] is not None:
        if params['echo_timeout'] <= 0:
            module.fail_json(msg='echo_timeout must be greater than 0, got %s' % params['echo_timeout'])
        echo_timeout = params['echo_timeout']
    else:
        if params['echo_timeout_ms'] < 1:
            module.fail_json(msg='echo_timeout_ms must be 1 or more, got %s' % params['echo_timeout_ms'])
        echo_timeout = params['echo_timeout_ms'] / 1000.0

    conversation = _conversation(module, targets)

    body_pattern = None
    if params['expect_body'] is not None:
        try:
            body_pattern = re.compile(params['expect_body'])
        except re.error as exc:
            module.fail_json(msg='expect_body is not a valid regular expression: %s' % exc)
    return body_pattern, targets, required, echo_timeout, conversation


def _echo_result(params, last, conversation):
    """The echo part of the result, and its sentence for the message."""
    verdict = last.echo
    single = verdict.single
    expect = params['echo_expect'] if conversation.echo else None
    result = dict(
        echo_ok=verdict.ok,
        echo_up=verdict.up,
        echo_required=verdict.required,
        echo_results=[item.as_dict() for item in verdict.results],
        echo_header=single.header if single else None,
        echo_reply=single.reply if single else None,
        echo_error=single.error if single else (None if verdict.ok else '%d of %d echo targets OK, %d required' % (
            verdict.up, len(verdict.results), verdict.required)),
        consistent=last.consistent,
    )
    if single:
        where = single.label if params['echo_targets'] else '%s:%s' % (single.host, single.port)
        text = '; echo check on %s: %s' % (where, describe_echo(single, expect))
    else:
        text = '; echo check: %s' % describe_targets(verdict, expect)
    if last.stale:
        text += (" (consistent: unknown, the page's verdict is %d ms old, formed before the direct check began; "
                 "the echo server may have changed state since, so that is not a lie)" % last.http.age_ms)
    else:
        text += ' (consistent: %s)' % ('true' if last.consistent else 'false')
    return result, text


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
            secret_headers=dict(type='dict', no_log=True),
            url_username=dict(type='str'),
            url_password=dict(type='str', no_log=True),
            validate_certs=dict(type='bool', default=True),
            follow_redirects=dict(type='bool', default=False),
            use_proxy=dict(type='bool', default=False),
            echo_host=dict(type='str'),
            echo_port=dict(type='int'),
            echo_targets=dict(type='list', elements='dict', options=dict(
                host=dict(type='str', required=True),
                port=dict(type='int', required=True),
                name=dict(type='str'),
            )),
            echo_policy=dict(type='raw', default='all'),
            echo_send=dict(type='str', default='check'),
            echo_expect=dict(type='str', default='check'),
            echo_skip_lines=dict(type='int', default=1),
            echo_timeout_ms=dict(type='int', default=1000),
            echo_timeout=dict(type='float'),
            preset=dict(type='str', choices=['echo', 'redis', 'memcached', 'smtp', 'ssh', 'http']),
            steps=dict(type='list', elements='dict'),
            tls=dict(type='bool', default=False),
            tls_verify=dict(type='bool', default=True),
            tls_ca=dict(type='path'),
            tls_sni=dict(type='str'),
            proxy_protocol=dict(type='str', choices=['none', 'v1', 'v2'], default='none'),
        ),
        required_together=[('echo_host', 'echo_port'), ('url_username', 'url_password')],
        mutually_exclusive=[('echo_host', 'echo_targets'), ('echo_port', 'echo_targets'),
                            ('echo_timeout', 'echo_timeout_ms'), ('preset', 'steps')],
        supports_check_mode=True,
    )
    params = module.params
    body_pattern, targets, required, echo_timeout, conversation = _validate(module)
    expect_status = params['expect_status']
    credentials = dict((str(k), str(v)) for k, v in (params['secret_headers'] or {}).items())
    if params['url_username'] is not None:
        credentials['Authorization'] = basic_auth(params['url_username'], params['url_password'])

    def get():
        return http_get(params['url'], timeout=params['timeout'], headers=params['headers'],
                        validate_certs=params['validate_certs'], max_body=MAX_BODY, credentials=credentials,
                        follow_redirects=params['follow_redirects'], use_proxy=params['use_proxy'])

    def check():
        return check_targets(targets, required, timeout=echo_timeout, conversation=conversation)

    outcome = poll(lambda: attempt_once(get, check if targets else None, expect_status, body_pattern),
                   wait=params['wait'], interval=params['interval'])
    last = outcome.last
    http = last.http
    result = dict(
        changed=False,
        url=params['url'],
        final_url=http.url or params['url'],
        status=http.status,
        body=http.body,
        headers=http.headers,
        error=http.error,
        elapsed_ms=outcome.elapsed_ms,
        attempts=outcome.attempts,
        verdict_age_ms=http.age_ms,
    )
    echo_text = ''
    if targets:
        echo_result, echo_text = _echo_result(params, last, conversation)
        result.update(echo_result)

    spent = describe_attempts(outcome.attempts, outcome.elapsed_ms)
    if outcome.success:
        got = '%s (body %r)' % (http.status, body_snippet(http.body))
        result['msg'] = 'got %s from %s after %s%s' % (got, http.url or params['url'], spent, echo_text)
        module.exit_json(**result)

    result['msg'] = '%s, last got %s after %s%s' % (
        describe_expectation(params['url'], expect_status, params['expect_body']),
        describe_http(http), spent, echo_text)
    module.fail_json(**result)


if __name__ == '__main__':
    main()
