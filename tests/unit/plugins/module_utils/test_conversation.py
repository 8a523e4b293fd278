# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of the conversation language: presets, validation, ops, tcp-check rules,
server words, and the Python evaluator on loopback sockets (real servers in
test_conversation_servers.py and tests/lua/test_tcp_check_rules.py)."""

from __future__ import absolute_import, division, print_function
from __future__ import annotations
__metaclass__ = type

import re
import socket
import threading

import pytest

from ansible_collections.checktcp.haproxy_lua.plugins.module_utils import conversation as c


# ------------------------------------------------------------------ presets

@pytest.mark.parametrize('preset, steps', [
    pytest.param('echo', [{'send': 'check\n'}, {'skip_lines': 1}, {'expect': 'check'}], id='echo'),
    pytest.param('redis', [{'send': 'PING\r\n'}, {'expect': '+PONG'}], id='redis'),
    pytest.param('memcached', [{'send': 'version\r\n'}, {'expect_regex': '^VERSION '}], id='memcached'),
    pytest.param('smtp', [{'expect_regex': '^220 '}, {'send': 'QUIT\r\n'}], id='smtp'),
    pytest.param('ssh', [{'expect_regex': r'^SSH-2\.0-'}], id='ssh'),
    pytest.param('http', [{'send': 'GET / HTTP/1.1\r\nHost: db.example.com\r\nConnection: close\r\n\r\n'},
                          {'expect_regex': r'^HTTP/1\.[01] [23][0-9][0-9] '}], id='http'),
])
def test_preset_steps(preset, steps):
    assert c.preset_steps(preset, host='db.example.com') == steps
    assert c.validate_steps(steps) == steps
    assert set(c.PRESETS[preset]) == {'description', 'steps', 'proved_by'}
    assert c.PRESETS[preset]['description'] and c.PRESETS[preset]['proved_by']


def test_echo_preset_from_the_check():
    assert c.preset_steps('echo', send='ping', expect='pong', skip_lines=0) == [{'send': 'ping\n'}, {'expect': 'pong'}]


def test_http_host_in_brackets_for_ipv6():
    assert 'Host: [::1]\r\n' in c.preset_steps('http', host='::1')[0]['send']


@pytest.mark.parametrize('preset, host, message', [
    pytest.param('ftp', None, 'unknown preset "ftp" (known: echo, http, memcached, redis, smtp, ssh)', id='unknown'),
    pytest.param('http', None, 'preset http needs a host for its Host header', id='http-without-host'),
])
def test_preset_refused(preset, host, message):
    with pytest.raises(c.ConversationError) as raised:
        c.preset_steps(preset, host=host)
    assert str(raised.value) == message


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize('steps, message', [
    pytest.param([], 'steps must list at least one step', id='empty'),
    pytest.param({'send': 'x'}, 'steps must be a list of steps, got dict', id='not-a-list'),
    pytest.param(['send'], 'step 1 must be a dict with one key (send, send_hex, expect, expect_regex, expect_hex, '
                           'skip_lines), got "send"', id='not-a-dict'),
    pytest.param([{'send': 'a', 'expect': 'b'}], 'step 1 must have exactly one key (send, send_hex, expect, '
                 'expect_regex, expect_hex, skip_lines), got expect, send', id='two-keys'),
    pytest.param([{}], 'step 1 must have exactly one key (send, send_hex, expect, expect_regex, expect_hex, '
                       'skip_lines), got none', id='no-key'),
    pytest.param([{'send': 'a'}, {'recv': 'b'}], 'step 2 has an unknown key "recv" (known: send, send_hex, expect, '
                 'expect_regex, expect_hex, skip_lines)', id='unknown-key'),
    pytest.param([{'send': ''}], 'step 1 (send) must not be empty', id='empty-send'),
    pytest.param([{'send': 5}], 'step 1 (send) must be a string (quote it in YAML), got 5', id='send-number'),
    pytest.param([{'expect': 220}], 'step 1 (expect) must be a string (quote it in YAML), got 220', id='expect-number'),
    pytest.param([{'send': 'a\ud800'}], 'step 1 (send) cannot be written as UTF-8: surrogates not allowed',
                 id='lone-surrogate'),
    pytest.param([{'send_hex': 'abc'}], 'step 1 (send_hex) must be an even number of hex digits (0-9, a-f), '
                                        'got "abc"', id='odd-hex'),
    pytest.param([{'send': 'x'}, {'expect_hex': 'zz'}], 'step 2 (expect_hex) must be an even number of hex digits '
                 '(0-9, a-f), got "zz"', id='non-hex'),
    pytest.param([{'send_hex': ''}], 'step 1 (send_hex) must be an even number of hex digits (0-9, a-f), got ""',
                 id='empty-hex'),
    pytest.param([{'expect': 'a\r'}], 'step 1 (expect) must be one line of text without control characters (the '
                 'line end is removed before comparing), got "a\\r"', id='expect-control'),
    pytest.param([{'expect_regex': '(unclosed'}], 'step 1 (expect_regex) is not a valid regular expression: '
                 'missing ), unterminated subpattern at position 0', id='bad-regex'),
    pytest.param([{'expect_regex': 'a)|(b'}], 'step 1 (expect_regex) is not a valid regular expression: '
                 'unbalanced parenthesis at position 1', id='regex-breaking-out'),
    pytest.param([{'expect_regex': ''}], 'step 1 (expect_regex) must not be empty', id='empty-regex'),
    pytest.param([{'expect_regex': 'a\nb'}], 'step 1 (expect_regex) must not contain control characters (write them '
                 'as escapes such as \\r or \\x00), got "a\\nb"', id='regex-newline'),
    pytest.param([{'skip_lines': -1}], 'step 1 (skip_lines) must be a number from 0 to 100, got -1', id='skip-neg'),
    pytest.param([{'skip_lines': 101}], 'step 1 (skip_lines) must be a number from 0 to 100, got 101', id='skip-big'),
    pytest.param([{'skip_lines': True}], 'step 1 (skip_lines) must be a number from 0 to 100, got true',
                 id='skip-bool'),
    pytest.param([{'skip_lines': '1'}], 'step 1 (skip_lines) must be a number from 0 to 100, got "1"',
                 id='skip-string'),
    pytest.param([{'send': 'x'}, {'expect_hex': '2b'}, {'expect': 'y'}],
                 'step 3 (expect) reads lines but an earlier step since the last send reads bytes: a reply is read '
                 'as lines or as bytes, not both; put a send between them', id='lines-after-bytes'),
    pytest.param([{'skip_lines': 1}, {'expect_hex': '2b'}],
                 'step 2 (expect_hex) reads bytes but an earlier step since the last send reads lines: a reply is '
                 'read as lines or as bytes, not both; put a send between them', id='bytes-after-lines'),
    # Values no reply or no HAProxy could ever pass: refused, not a check that is always KO.
    pytest.param([{'expect': 'a' * 1025}], 'step 1 (expect) is 1025 bytes long, more than a line may have (1024 '
                 'bytes before its LF): no reply could match it', id='expect-longer-than-a-line'),
    pytest.param([{'send': 'b' * 16384}], 'step 1 (send) is 16384 bytes long, more than HAProxy sends in one step '
                 '(16383: one buffer of the smallest tune.bufsize, less one)', id='send-larger-than-a-buffer'),
    pytest.param([{'send_hex': '00' * 16384}], 'step 1 (send_hex) is 16384 bytes long, more than HAProxy sends in '
                 'one step (16383: one buffer of the smallest tune.bufsize, less one)', id='send-hex-larger'),
    pytest.param([{'send': 'x'}, {'expect_hex': '00' * 8000}, {'expect_hex': '00' * 192}],
                 'step 3 (expect_hex) makes 8192 bytes expected at once, more than HAProxy compares (8191: their '
                 'hex dump fills one buffer of the smallest tune.bufsize)', id='expect-hex-beyond-a-buffer'),
])
def test_invalid_steps(steps, message):
    with pytest.raises(c.ConversationError) as raised:
        c.compile_ops(steps)
    assert str(raised.value) == message


@pytest.mark.parametrize('steps', [
    pytest.param([{'expect_regex': '^220 '}, {'send': 'QUIT\r\n'}], id='ends-with-a-send'),
    pytest.param([{'send': 'x'}, {'expect_hex': '2b'}, {'send': 'y'}, {'expect': 'z'}], id='bytes-then-lines'),
    pytest.param([{'send_hex': 'DEADbeef'}], id='hex-any-case'),
    pytest.param([{'expect': ''}], id='empty-line-expected'),
    pytest.param([{'expect': 'caf\u00e9'}], id='utf-8-text'),
    pytest.param([{'skip_lines': 0}, {'expect': 'x'}], id='skip-none'),
])
def test_valid_steps(steps):
    assert c.compile_ops(steps)


# ------------------------------------------------------------------ ops

def test_echo_ops():
    assert c.conversation_ops('echo') == [
        {'op': 'send', 'hex': '636865636b0a', 'what': 'step 1 send "check\\n"'},
        {'op': 'lines', 'count': 2, 'regex': '(?m)\\A[^\\n]*\\ncheck\\r?\\n',
         'what': 'steps 2-3 skip_lines 1, expect "check"',
         'parts': [{'step': 2, 'key': 'skip_lines', 'words': 'skip_lines 1', 'regex': '[^\\n]*\\n'},
                   {'step': 3, 'key': 'expect', 'words': 'expect "check"', 'regex': 'check\\r?\\n'}]},
    ]


def test_bytes_ops_fold_a_phase():
    ops = c.compile_ops([{'send_hex': '0102'}, {'expect_hex': 'aB'}, {'expect_hex': '0d'}])
    assert ops[1] == {'op': 'bytes', 'count': 2, 'regex': '^AB0D', 'what': 'steps 2-3 expect_hex "ab", expect_hex "0d"'}


def test_expect_escapes_everything_but_alphanumerics():
    regex = c.compile_ops([{'expect': '+OK a.b*(c)'}])[0]['regex']
    assert regex == '(?m)\\A\\x2bOK\\x20a\\x2eb\\x2a\\x28c\\x29\\r?\\n'


def test_long_values_are_cut_in_what():
    what = c.compile_ops([{'expect': 'x' * 100}])[0]['what']
    assert what == 'step 1 expect "%s..."' % ('x' * 37)


def _lines_match(steps, data):
    """Python's verdict of the op's regex on ``data`` (after the wait for complete lines)."""
    op = [op for op in c.compile_ops(steps) if op['op'] == 'lines'][0]
    return re.match(op['regex'].encode(), data) is not None


@pytest.mark.parametrize('steps, data, match', [
    pytest.param([{'expect': '+PONG'}], b'+PONG\r\n', True, id='expect-crlf'),
    pytest.param([{'expect': '+PONG'}], b'+PONG\n', True, id='expect-lf'),
    pytest.param([{'expect': '+PONG'}], b'+PONGX\r\n', False, id='expect-whole-line'),
    pytest.param([{'expect': '+PONG'}], b'x+PONG\r\n', False, id='expect-from-start'),
    pytest.param([{'expect': 'check'}], b'check\r\r\n', False, id='only-one-cr-removed'),
    pytest.param([{'expect_regex': 'PONG'}], b'+PONG\r\n', True, id='regex-searched-in-line'),
    pytest.param([{'expect_regex': '^PONG'}], b'+PONG\r\n', False, id='caret-is-line-start'),
    pytest.param([{'expect_regex': r'^\+PONG$'}], b'+PONG\r\n', False, id='dollar-before-lf-not-cr'),
    pytest.param([{'expect_regex': r'^\+PONG\r$'}], b'+PONG\r\n', True, id='dollar-after-cr'),
    pytest.param([{'expect_regex': r'^\+PONG$'}], b'+PONG\n', True, id='dollar-lf-line'),
    pytest.param([{'skip_lines': 1}, {'expect_regex': '^b'}], b'bad\nxb\n', False, id='regex-not-in-earlier-line'),
    pytest.param([{'skip_lines': 1}, {'expect_regex': '^b'}], b'a\nb\n', True, id='regex-second-line'),
    pytest.param([{'expect_regex': 'x'}, {'expect_regex': 'y'}], b'axa\nbyb\n', True, id='two-regexes'),
    pytest.param([{'expect_regex': 'x'}, {'expect_regex': 'y'}], b'axy\nbbb\n', False, id='regex-per-line'),
    pytest.param([{'expect_regex': '(?i:pong)'}], b'+PONG\n', True, id='scoped-flag'),
])
def test_line_regex_semantics(steps, data, match):
    """HAProxy runs the same regexes (PCRE): tests/lua/test_tcp_check_rules.py proves the agreement."""
    assert _lines_match(steps, data) is match


@pytest.mark.parametrize('pattern, message', [
    pytest.param('a(?i)b', 'step 1 (expect_regex) is not a valid regular expression: global flags not at the start '
                           'of the expression at position 1', id='flag-mid-pattern'),
    pytest.param('(?i)pong', 'step 1 (expect_regex) cannot be part of a line: global flags not at the start of the '
                             'expression (a flag such as (?i) applies to a group: write (?i:...))',
                 id='global-flag'),
    pytest.param('^[[:digit:]]', 'step 1 (expect_regex) is read differently by HAProxy (PCRE) and Python: Possible '
                                 'nested set at position 2', id='posix-class'),
    # Python reads {,2} as {0,2}; Debian 12's PCRE2 (10.42) as the text "{,2}".
    pytest.param('^x{,2}y', 'step 1 (expect_regex) is read differently by HAProxy (PCRE) and Python: {,2} '
                            '(write {0,2} for at most 2, or \\{ for a brace)', id='open-count'),
    pytest.param('^x{,}y', 'step 1 (expect_regex) is read differently by HAProxy (PCRE) and Python: {,} '
                           '(write * for any number, or \\{ for a brace)', id='open-count-both-ends'),
    # PCRE2 10.43 and later (Debian 13) allow blanks in a count; Python takes them as text.
    pytest.param('^x{ 2 }y', 'step 1 (expect_regex) is read differently by HAProxy (PCRE) and Python: { 2 } '
                             '(write it without blanks, or \\{ for a brace)', id='count-with-blanks'),
    # PCRE's \Z matches before a final LF too, Python's only at the very end.
    pytest.param('^220 ok\\Z', 'step 1 (expect_regex) is read differently by HAProxy (PCRE) and Python: \\Z '
                               '(write $ for the end of a line)', id='end-of-subject'),
])
def test_regexes_read_differently_are_refused(pattern, message):
    with pytest.raises(c.ConversationError) as raised:
        c.compile_ops([{'expect_regex': pattern}])
    assert str(raised.value) == message


@pytest.mark.parametrize('pattern', ['^x{0,2}y', '^x{2}', '^x{2,}', '^x\\{,2}', '^[{,2}]', '^[]{,2}]', '\\\\Z',
                                     '^a$', '^{}', '^a{ }b', '^a{x,2}'])
def test_regexes_read_alike_are_accepted(pattern):
    assert c.compile_ops([{'expect_regex': pattern}])


def test_the_largest_values_haproxy_can_use_are_accepted():
    assert c.compile_ops([{'send': 'b' * 16383}, {'expect': 'a' * 1024}, {'send_hex': '00' * 16383},
                          {'expect_hex': '00' * 8191}])


# ------------------------------------------------------------------ HAProxy words

@pytest.mark.parametrize('text, word', [
    pytest.param('plain', "'plain'", id='plain'),
    pytest.param("it's", "'it'\\''s'", id='quote'),
    pytest.param('a\\x27 "b" $HOME #c', "'a\\x27 \"b\" $HOME #c'", id='nothing-interpreted'),
])
def test_haproxy_quote(text, word):
    assert c.haproxy_quote(text) == word


def test_haproxy_quote_refuses_a_line_break():
    with pytest.raises(c.ConversationError):
        c.haproxy_quote('a\nb')


def test_tcp_check_rules_of_the_redis_preset():
    assert c.tcp_check_rules(c.conversation_ops('redis')) == [
        "tcp-check send-binary 50494e470d0a comment 'step 1 send \"PING\\r\\n\"'",
        "tcp-check expect comment 'step 2 expect \"+PONG\"' rstring '\\A(?:[^\\n]{0,1024}\\n){1}'",
        "tcp-check expect min-recv 0 comment 'step 2 expect \"+PONG\"' rstring '(?m)\\A\\x2bPONG\\r?\\n'",
    ]


def test_tcp_check_rules_of_bytes():
    assert c.tcp_check_rules(c.compile_ops([{'send_hex': '00'}, {'expect_hex': 'ff01'}]))[1] == (
        "tcp-check expect min-recv 2 comment 'step 2 expect_hex \"ff01\"' rbinary '^FF01'")


@pytest.mark.parametrize('options, relay, check', [
    pytest.param({}, [], [], id='plain'),
    pytest.param(dict(tls=True, tls_sni='db.example.com'),
                 ['ssl', 'verify', 'required', 'ca-file', '/etc/ssl/certs/ca-certificates.crt', 'sni',
                  'str(db.example.com)'], ['check-ssl', 'check-sni', 'db.example.com'], id='tls-default-ca'),
    pytest.param(dict(tls=True, tls_ca='/etc/haproxy/ca.pem'),
                 ['ssl', 'verify', 'required', 'ca-file', '/etc/haproxy/ca.pem'], ['check-ssl'], id='tls-ip-no-sni'),
    pytest.param(dict(tls=True, tls_verify=False), ['ssl', 'verify', 'none'], ['check-ssl'], id='tls-no-verify'),
    pytest.param(dict(proxy_protocol='v1'), ['send-proxy'], ['check-send-proxy'], id='proxy-v1'),
    pytest.param(dict(proxy_protocol='v2'), ['send-proxy-v2'], ['check-send-proxy'], id='proxy-v2'),
])
def test_server_words(options, relay, check):
    assert c.server_words(**options) == dict(relay=relay, check=check)


@pytest.mark.parametrize('options, message', [
    pytest.param(dict(proxy_protocol='v3'), 'proxy_protocol must be one of none, v1, v2, got "v3"', id='v3'),
    pytest.param(dict(tls=True, tls_sni='a b'), 'tls_sni must be a host name (letters, digits, dots, hyphens), '
                                                'got "a b"', id='bad-sni'),
])
def test_server_words_refused(options, message):
    with pytest.raises(c.ConversationError) as raised:
        c.server_words(**options)
    assert str(raised.value) == message


@pytest.mark.parametrize('host, sni, expected', [
    pytest.param('db.example.com', None, 'db.example.com', id='name'),
    pytest.param('10.0.0.1', None, None, id='ipv4'),
    pytest.param('::1', None, None, id='ipv6'),
    pytest.param('10.0.0.1', 'db.example.com', 'db.example.com', id='explicit'),
])
def test_default_sni(host, sni, expected):
    assert c.default_sni(host, sni) == expected


# ------------------------------------------------------------------ the evaluator on loopback

@pytest.fixture
def scripted():
    """Factory: ``scripted(answer)`` -> port of a one-connection server: ``answer(conn, received)``
    is called with the bytes read so far each time some arrive (and once at connect, with b'');
    ``received`` keeps every byte the client sent."""
    servers = []

    def start(answer):
        listener = socket.socket()
        listener.bind(('127.0.0.1', 0))
        listener.listen(4)
        received = bytearray()

        def serve():
            conn = listener.accept()[0]
            with conn:
                conn.settimeout(5)
                try:
                    answer(conn, bytes(received))
                    while True:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        received.extend(chunk)
                        answer(conn, bytes(received))
                except OSError:
                    pass
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append(listener)
        return listener.getsockname()[1], received

    yield start
    for listener in servers:
        listener.close()


def _reply_after(trigger, reply):
    def answer(conn, received):
        if received.endswith(trigger):
            conn.sendall(reply)
    return answer


@pytest.mark.parametrize('steps, answer, ok, reason', [
    pytest.param(c.preset_steps('redis'), _reply_after(b'PING\r\n', b'+PONG\r\n'), True, None, id='redis'),
    pytest.param(c.preset_steps('redis'), _reply_after(b'PING\r\n', b'-ERR no\r\n'), False,
                 'unexpected reply "-ERR no" at step 2 expect "+PONG"', id='wrong'),
    pytest.param([{'send': 'x\n'}, {'skip_lines': 1}, {'expect_regex': '^b'}],
                 _reply_after(b'x\n', b'a\nc\n'), False, 'unexpected reply "c" at step 3 expect_regex "^b"',
                 id='names-the-failing-line'),
    pytest.param([{'send': 'x\n'}, {'expect': 'y'}], _reply_after(b'x\n', b'y' * 1025 + b'\n'), False,
                 'line 1 of 1 longer than 1024 bytes at step 2 expect "y"', id='overlong-complete'),
    pytest.param([{'send': 'x\n'}, {'expect_regex': 'y'}], _reply_after(b'x\n', b'y' * 1024 + b'\n'), True, None,
                 id='1024-bytes-is-fine'),
    pytest.param([{'send': 'x\n'}, {'expect': 'y'}], _reply_after(b'x\n', b'y' * 3000), False,
                 'line 1 of 1 longer than 1024 bytes at step 2 expect "y"', id='overlong-pending'),
    pytest.param([{'send_hex': '01'}, {'expect_hex': '0203'}], _reply_after(b'\x01', b'\x02\x03\x04'), True, None,
                 id='bytes'),
    pytest.param([{'send_hex': '01'}, {'expect_hex': '0203'}], _reply_after(b'\x01', b'\x02\x04'), False,
                 'unexpected reply "0204" at step 2 expect_hex "0203"', id='bytes-wrong'),
    pytest.param([{'expect': 'hello'}, {'send': 'a\n'}, {'expect': 'b'}],
                 lambda conn, received: conn.sendall(b'hello\nstale\n' if not received else
                                                     b'b\n' if received == b'a\n' else b''),
                 True, None, id='bytes-before-a-send-are-dropped'),
])
def test_run_conversation(scripted, steps, answer, ok, reason):
    port, _received = scripted(answer)

    outcome = c.run_conversation('127.0.0.1', port, c.compile_ops(steps), 2.0)

    assert (outcome.ok, outcome.reason) == (ok, reason)


def test_run_conversation_closed_early(scripted):
    port, _received = scripted(lambda conn, received: conn.shutdown(socket.SHUT_WR))

    outcome = c.run_conversation('127.0.0.1', port, c.conversation_ops('ssh'), 2.0)

    assert outcome.ok is False
    assert outcome.kind == 'closed'
    assert outcome.reason == 'connection closed by the server after 0 of 1 lines at step 1 expect_regex "^SSH-2\\.0-"'


def test_run_conversation_timeout(scripted):
    port, _received = scripted(lambda conn, received: None)

    outcome = c.run_conversation('127.0.0.1', port, c.conversation_ops('redis'), 0.3)

    assert outcome.kind == 'timeout'
    assert outcome.reason == 'timed out after 0.3 s waiting for line 1 of 1 at step 2 expect "+PONG"'
    assert 250 <= outcome.elapsed_ms < 1000


def test_run_conversation_refused():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]

    outcome = c.run_conversation('127.0.0.1', port, c.conversation_ops('redis'), 1.0)

    assert outcome.kind == 'connect'
    assert outcome.reason == 'connection refused (connecting to 127.0.0.1:%d)' % port


@pytest.mark.parametrize('version, header', [
    pytest.param('v2', b'\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00', id='v2-local'),
    pytest.param('v1', re.compile(br'PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ \d+\r\n'), id='v1'),
])
def test_proxy_header_comes_first(scripted, version, header):
    port, received = scripted(_reply_after(b'PING\r\n', b'+PONG\r\n'))

    outcome = c.run_conversation('127.0.0.1', port, c.conversation_ops('redis'), 2.0, proxy_protocol=version)

    assert outcome.ok, outcome.reason
    data = bytes(received)
    assert data.endswith(b'PING\r\n')
    if isinstance(header, bytes):
        assert data == header + b'PING\r\n'
    else:
        assert header.fullmatch(data[:-len(b'PING\r\n')])


def test_preset_table_shows_every_preset_whole():
    table = c.preset_table()

    assert table.splitlines()[0] == '| preset | steps | checks | proved with |'
    assert len(table.splitlines()) == 2 + len(c.PRESETS)
    assert '`send "GET / HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n"`' in table
    assert '| `redis` | `send "PING\\r\\n"`<br>`expect "+PONG"` | Redis: PING, the answer is +PONG. | redis-server' in table
