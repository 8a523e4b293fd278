# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The conversation language of a check: its one home.

A check talks to a TCP service in *steps*: a list of dicts with exactly one key
each (see STEP_KEYS), or one of the PRESETS. This module validates the steps,
compiles them to *ops* (the one form every evaluator runs: HAProxy's health
checks through tcp_check_rules(), the Lua service from a rendered table, the
status_probe module through run_conversation()), and gives the words of an
HAProxy ``server`` line for TLS and the PROXY protocol (server_words()).

Ops (dicts, in order):

- ``{"op": "send", "hex": "<lowercase hex>", "what": ...}``: write these bytes.
  The bytes received so far are dropped (HAProxy's tcp-check releases its
  input buffer at each send).
- ``{"op": "lines", "count": K, "regex": R, "what": ..., "parts": [...]}``:
  wait until K complete lines (each at most MAX_LINE_BYTES before its LF) have
  arrived since the last send; then the bytes since the last send must match
  R (a regex searched from the start: it begins with ``\\A``), else KO.
  ``parts`` holds one dict per line (``step``: the 1-based step it belongs to,
  ``key``, ``words``: the step in the user's words, ``regex``: that line's own
  regex, under the same flags) so that an evaluator can say which step failed.
- ``{"op": "bytes", "count": n, "regex": H, "what": ...}``: wait for n bytes
  since the last send; then HAProxy's hex dump of them (upper case) must match
  H (``^`` and the expected bytes in upper case hex), else KO.

``what`` names the user's steps in their own words, for reasons ("steps 2-3
skip_lines 1, expect \\"check\\""). Regexes are PCRE for HAProxy and Python
``re`` on bytes for the module; both read the patterns built here the same way.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re
import select
import socket
import ssl
import struct
import time
import warnings

MAX_LINE_BYTES = 1024
"""Bytes a received line may have before its LF (CR included); a longer line is KO."""

MAX_SKIP_LINES = 100
"""The most lines one skip_lines step may skip."""

MAX_SEND_BYTES = 16383
"""The most bytes one send step may have: HAProxy's tcp-check sends less than one buffer
(tune.bufsize, 16384 at its smallest)."""

MAX_EXPECT_HEX_BYTES = 8191
"""The most bytes expected at once (expect_hex steps in a row): HAProxy compares their hex
dump, which it writes into one buffer (16384 at its smallest) and reads less one."""

STEP_KEYS = ('send', 'send_hex', 'expect', 'expect_regex', 'expect_hex', 'skip_lines')
"""The keys a step may have (exactly one per step)."""

LINE_KEYS = ('expect', 'expect_regex', 'skip_lines')
"""Steps that read lines."""

PROXY_PROTOCOLS = ('none', 'v1', 'v2')

DEFAULT_CA = '/etc/ssl/certs/ca-certificates.crt'
"""The CA bundle of a Debian host (package ca-certificates): tls_ca when none is given."""

SHOW_LIMIT = 40
"""Characters of a step's value shown in reasons (HAProxy keeps 128 of a check's reason)."""

LINE_REGEX_FLAGS = '(?m)'
"""The flags of every lines op regex: ^ and $ are line anchors inside an expect_regex."""

PRESETS = {
    'echo': dict(
        description='The checktcp echo server: send a line, skip the header lines it writes, expect the line back.',
        steps=None,  # built from the check's send, expect and skip_lines
        proved_by='checktcp_echo.py (this collection\'s echo_server role)',
    ),
    'redis': dict(
        description='Redis: PING, the answer is +PONG.',
        steps=[{'send': 'PING\r\n'}, {'expect': '+PONG'}],
        proved_by='redis-server 7.0.15 (Debian 12)',
    ),
    'memcached': dict(
        description='memcached: version, the answer starts with VERSION.',
        steps=[{'send': 'version\r\n'}, {'expect_regex': '^VERSION '}],
        proved_by='memcached 1.6.18 (Debian 12)',
    ),
    'smtp': dict(
        description='An SMTP server: a 220 banner, then QUIT.',
        steps=[{'expect_regex': '^220 '}, {'send': 'QUIT\r\n'}],
        proved_by='Exim 4.96 (Debian 12, exim4-daemon-light)',
    ),
    'ssh': dict(
        description='An SSH server: its SSH-2.0 identification line.',
        steps=[{'expect_regex': r'^SSH-2\.0-'}],
        proved_by='OpenSSH 9.2p1 (Debian 12, openssh-server)',
    ),
    'http': dict(
        description='An HTTP server: GET / with a Host header, the status is 2xx or 3xx.',
        steps=[{'send': 'GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n'},
               {'expect_regex': r'^HTTP/1\.[01] [23][0-9][0-9] '}],
        proved_by='Python 3.11 http.server',
    ),
}
"""Each preset: a one-line description, its steps, and the server and version that proved it
(tests/lua/test_tcp_check_rules.py with HAProxy 2.6, 3.0 and 3.2, and the module's tests)."""


def preset_table():
    """The presets as a Markdown table (name, steps, what it checks, proved with), for the docs."""
    rows = ['| preset | steps | checks | proved with |', '|---|---|---|---|']
    for name in sorted(PRESETS):
        steps = preset_steps(name, host='{host}') if name == 'http' else preset_steps(name)
        words = '<br>'.join('`%s`' % _words(*next(iter(step.items())), limit=None).replace('|', '\\|')
                            for step in steps)
        rows.append('| `%s` | %s | %s | %s |' % (name, words, PRESETS[name]['description'], PRESETS[name]['proved_by']))
    return '\n'.join(rows) + '\n'


class ConversationError(ValueError):
    """An invalid conversation; the message names the step (index from 1, and key)."""


# ------------------------------------------------------------------ the steps

def preset_steps(preset, send='check', expect='check', skip_lines=1, host=None):
    """The steps of a preset: ``echo`` from ``send``, ``expect`` and ``skip_lines``;
    ``http`` with ``host`` in its Host header (required for ``http``)."""
    if preset not in PRESETS:
        raise ConversationError('unknown preset %s (known: %s)' % (_show(preset), ', '.join(sorted(PRESETS))))
    if preset == 'echo':
        steps = [{'send': '%s\n' % (send,)}]
        if skip_lines:
            steps.append({'skip_lines': skip_lines})
        steps.append({'expect': expect})
        return steps
    steps = [dict(step) for step in PRESETS[preset]['steps']]
    if preset == 'http':
        if not host:
            raise ConversationError('preset http needs a host for its Host header')
        name = '[%s]' % host if ':' in host else host
        steps[0]['send'] = steps[0]['send'].replace('{host}', name)
    return steps


def _show(value, limit=SHOW_LIMIT):
    """A value as it appears in reasons: JSON quoting, at most ``limit`` characters."""
    text = json.dumps(value)
    if limit and len(text) > limit:
        text = text[:limit - 4] + '..."'
    return text


def _where(index, key):
    return 'step %d (%s)' % (index + 1, key)


def _is_hex(text):
    return bool(re.match(r'^[0-9A-Fa-f]+$', text)) and len(text) % 2 == 0


def _control(text):
    return re.search(r'[\x00-\x1f\x7f]', text)


def _read_otherwise(pattern):
    """The first part of ``pattern``, outside a character class, that Python's re reads otherwise
    than PCRE2 without a warning, with how to write it; None when there is none: some counts in
    braces (see _count_read_otherwise) and ``\\Z`` (PCRE also before a final LF)."""
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == '\\':
            if pattern[index + 1:index + 2] == 'Z' and not in_class:
                return '\\Z (write $ for the end of a line)'
            index += 2
            continue
        if in_class:
            in_class = char != ']'
        elif char == '[':
            in_class = True
            index += 1
            # A ] right after [ or [^ is a member, not the end.
            index += len(re.match(r'\^?\]?', pattern[index:]).group(0))
            continue
        else:
            count = _count_read_otherwise(pattern[index:])
            if count:
                return count
        index += 1
    return None


def _count_read_otherwise(text):
    """How to write the count in braces ``text`` starts with when Python and PCRE2 read it
    otherwise, else None. Both read {n}, {n,} and {n,m} alike; PCRE2 10.43 and later (Debian
    13 on) also read {,n} as {0,n} and allow blanks inside the braces, which Python and older
    PCRE2 (Debian 12) take as text; {,} is text to every PCRE2 and 0 or more to Python."""
    braces = re.match(r'\{[ \t]*([0-9]*)[ \t]*(,[ \t]*([0-9]*)[ \t]*)?\}', text)
    if not braces or not re.search(r'[0-9,]', braces.group(0)):
        return None
    low, comma, high = braces.group(1), braces.group(2), braces.group(3)
    if re.search(r'[ \t]', braces.group(0)):
        return '%s (write it without blanks, or \\{ for a brace)' % braces.group(0)
    if comma and not low:
        return '%s (write %s, or \\{ for a brace)' % (
            braces.group(0), '{0,%s} for at most %s' % (high, high) if high else '* for any number')
    return None


def _user_regex(pattern, where):
    """Compile an expect_regex as the evaluators use it (bytes, under LINE_REGEX_FLAGS): the first
    gate (HAProxy's ``haproxy -c`` is the last). A pattern Python reads otherwise than PCRE where
    Python warns (a POSIX class such as [[:digit:]]) is refused too."""
    with warnings.catch_warnings():
        warnings.simplefilter('error', FutureWarning)
        try:
            re.compile(pattern.encode('utf-8'))  # first alone: positions in errors are the user's
        except re.error as exc:
            raise ConversationError('%s is not a valid regular expression: %s' % (where, exc))
        except FutureWarning as exc:
            raise ConversationError('%s is read differently by HAProxy (PCRE) and Python: %s' % (where, exc))
        read_otherwise = _read_otherwise(pattern)
        if read_otherwise:
            raise ConversationError('%s is read differently by HAProxy (PCRE) and Python: %s' % (where, read_otherwise))
        try:
            re.compile((LINE_REGEX_FLAGS + '(?:%s)' % pattern).encode('utf-8'))
        except re.error as exc:
            raise ConversationError('%s cannot be part of a line: %s (a flag such as (?i) applies to a group: '
                                    'write (?i:...))' % (where, exc.msg))


def validate_steps(steps):
    """Check a step list; returns a normalized copy (hex in lower case). Raises ConversationError."""
    if not isinstance(steps, (list, tuple)):
        raise ConversationError('steps must be a list of steps, got %s' % type(steps).__name__)
    if not steps:
        raise ConversationError('steps must list at least one step')
    normalized = []
    phase_kind = None  # 'lines' or 'bytes': what the steps since the last send read
    expected_bytes = 0  # by the expect_hex steps in a row, this one included
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            raise ConversationError('step %d must be a dict with one key (%s), got %s'
                                    % (index + 1, ', '.join(STEP_KEYS), _show(step)))
        if len(step) != 1:
            raise ConversationError('step %d must have exactly one key (%s), got %s'
                                    % (index + 1, ', '.join(STEP_KEYS), ', '.join(sorted(map(str, step))) or 'none'))
        key, value = next(iter(step.items()))
        if key not in STEP_KEYS:
            raise ConversationError('step %d has an unknown key %s (known: %s)'
                                    % (index + 1, _show(str(key)), ', '.join(STEP_KEYS)))
        where = _where(index, key)
        if key == 'skip_lines':
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SKIP_LINES:
                raise ConversationError('%s must be a number from 0 to %d, got %s' % (where, MAX_SKIP_LINES, _show(value)))
        elif not isinstance(value, str):
            raise ConversationError('%s must be a string (quote it in YAML), got %s' % (where, _show(value)))
        else:
            try:
                value.encode('utf-8')
            except UnicodeEncodeError as exc:
                raise ConversationError('%s cannot be written as UTF-8: %s' % (where, exc.reason))
        if key == 'send' and value == '':
            raise ConversationError('%s must not be empty' % where)
        if key in ('send_hex', 'expect_hex'):
            if not _is_hex(value):
                raise ConversationError('%s must be an even number of hex digits (0-9, a-f), got %s'
                                        % (where, _show(value)))
            value = value.lower()
        if key == 'expect' and _control(value):
            raise ConversationError('%s must be one line of text without control characters (the line end is '
                                    'removed before comparing), got %s' % (where, _show(value)))
        if key == 'expect_regex':
            if value == '':
                raise ConversationError('%s must not be empty' % where)
            if _control(value):
                raise ConversationError('%s must not contain control characters (write them as escapes such as '
                                        '\\r or \\x00), got %s' % (where, _show(value)))
            _user_regex(value, where)
        size = 0 if key in ('skip_lines', 'expect_regex') else len(value) // 2 if key.endswith('_hex') \
            else len(value.encode('utf-8'))
        if key in ('send', 'send_hex') and size > MAX_SEND_BYTES:
            raise ConversationError('%s is %d bytes long, more than HAProxy sends in one step (%d: one buffer of the '
                                    'smallest tune.bufsize, less one)' % (where, size, MAX_SEND_BYTES))
        if key == 'expect' and size > MAX_LINE_BYTES:
            raise ConversationError('%s is %d bytes long, more than a line may have (%d bytes before its LF): no '
                                    'reply could match it' % (where, size, MAX_LINE_BYTES))
        if key == 'expect_hex':
            expected_bytes = (expected_bytes if phase_kind == 'bytes' else 0) + size
            if expected_bytes > MAX_EXPECT_HEX_BYTES:
                raise ConversationError('%s makes %d bytes expected at once, more than HAProxy compares (%d: their '
                                        'hex dump fills one buffer of the smallest tune.bufsize)'
                                        % (where, expected_bytes, MAX_EXPECT_HEX_BYTES))
        if key in ('send', 'send_hex'):
            phase_kind = None
        elif key in LINE_KEYS or key == 'expect_hex':
            kind = 'bytes' if key == 'expect_hex' else 'lines'
            if phase_kind is not None and phase_kind != kind:
                raise ConversationError(
                    '%s reads %s but an earlier step since the last send reads %s: a reply is read as lines or as '
                    'bytes, not both; put a send between them' % (
                        where, 'bytes' if kind == 'bytes' else 'lines', phase_kind))
            phase_kind = kind
        normalized.append({key: value})
    return normalized


# ------------------------------------------------------------------ the ops

def _escape(data):
    """A literal in a regex: alphanumerics as is, every other byte as \\xNN (PCRE and Python alike)."""
    return ''.join(chr(byte) if chr(byte).isalnum() and byte < 128 else '\\x%02x' % byte for byte in data)


def _line_part(key, value):
    """The regex of one line for a line step (skip_lines counts one line here)."""
    if key == 'expect':
        return _escape(value.encode('utf-8')) + '\\r?\\n'
    if key == 'expect_regex':
        return '(?=[^\\n]*?(?:%s))[^\\n]*\\n' % value
    return '[^\\n]*\\n'


def _words(key, value, limit=SHOW_LIMIT):
    """A step in the user's words: ``expect "check"``, ``skip_lines 1``; values cut at ``limit`` (None: whole)."""
    if key == 'skip_lines':
        return '%s %d' % (key, value)
    if key in ('expect', 'expect_regex'):  # no control characters: shown as written
        text = value.encode('ascii', 'backslashreplace').decode('ascii')
        return '%s "%s"' % (key, text if not limit or len(text) <= limit else text[:limit - 3] + '...')
    return '%s %s' % (key, _show(value, limit))


def _describe(items):
    """``step 3 expect "check"`` or ``steps 2-3 skip_lines 1, expect "check"``: (index, key, value) items."""
    first, last = items[0][0] + 1, items[-1][0] + 1
    where = 'step %d' % first if first == last else 'steps %d-%d' % (first, last)
    return '%s %s' % (where, ', '.join(_words(key, value) for _index, key, value in items))


def compile_ops(steps):
    """Validate ``steps`` and compile them to ops (see the module's documentation)."""
    steps = validate_steps(steps)
    ops = []
    phase = []

    def close_phase():
        if not phase:
            return
        if phase[0][1] == 'expect_hex':
            hex_text = ''.join(value for _index, _key, value in phase)
            ops.append(dict(op='bytes', count=len(hex_text) // 2, regex='^' + hex_text.upper(),
                            what=_describe(phase)))
        else:
            parts = []
            for index, key, value in phase:
                for _line in range(value if key == 'skip_lines' else 1):
                    parts.append(dict(step=index + 1, key=key, words=_words(key, value),
                                      regex=_line_part(key, value)))
            if parts:
                ops.append(dict(op='lines', count=len(parts),
                                regex=LINE_REGEX_FLAGS + '\\A' + ''.join(part['regex'] for part in parts),
                                what=_describe(phase), parts=parts))
        del phase[:]

    for index, step in enumerate(steps):
        key, value = next(iter(step.items()))
        if key in ('send', 'send_hex'):
            close_phase()
            data = value.encode('utf-8') if key == 'send' else bytes(bytearray.fromhex(value))
            ops.append(dict(op='send', hex=_hex(data), what=_describe([(index, key, value)])))
        else:
            phase.append((index, key, value))
    close_phase()
    return ops


def conversation_ops(preset='echo', steps=None, send='check', expect='check', skip_lines=1, host=None):
    """The ops of a check: its ``steps`` when given, else its ``preset``'s (see preset_steps)."""
    if steps is None:
        steps = preset_steps(preset, send=send, expect=expect, skip_lines=skip_lines, host=host)
    return compile_ops(steps)


def _hex(data):
    return ''.join('%02x' % byte for byte in bytearray(data))


# ------------------------------------------------------------------ HAProxy

def haproxy_quote(text):
    """One HAProxy configuration word holding ``text`` exactly: single quotes (nothing is
    interpreted inside), a quote as '\\'' (an escaped quote between two quoted parts)."""
    if re.search(r'[\x00\r\n]', text):
        raise ConversationError('%s cannot be written in haproxy.cfg (NUL, CR or LF)' % _show(text))
    return "'" + text.replace("'", "'\\''") + "'"


def line_wait_regex(count):
    """Matches once ``count`` complete lines of at most MAX_LINE_BYTES bytes have arrived."""
    return '\\A(?:[^\\n]{0,%d}\\n){%d}' % (MAX_LINE_BYTES, count)


def tcp_check_rules(ops):
    """The ``tcp-check`` lines of a backend for ``ops`` (``option tcp-check`` and the
    implicit connect are the caller's: the server line decides TLS and PROXY).

    A lines op is two rules with the same comment: the first waits (HAProxy waits
    for more data while a regex does not match) until the lines are complete, the
    second (``min-recv 0``) concludes. A reason then ends with
    ``comment: '<the op's what>'``.
    """
    rules = []
    for op in ops:
        comment = 'comment %s' % haproxy_quote(op['what'])
        if op['op'] == 'send':
            rules.append('tcp-check send-binary %s %s' % (op['hex'], comment))
        elif op['op'] == 'lines':
            rules.append('tcp-check expect %s rstring %s' % (comment, haproxy_quote(line_wait_regex(op['count']))))
            rules.append('tcp-check expect min-recv 0 %s rstring %s' % (comment, haproxy_quote(op['regex'])))
        elif op['op'] == 'bytes':
            rules.append('tcp-check expect min-recv %d %s rbinary %s' % (op['count'], comment,
                                                                         haproxy_quote(op['regex'])))
        else:
            raise ConversationError('unknown op %s' % _show(op.get('op')))
    return rules


def is_ip_address(host):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def default_sni(host, tls_sni=None):
    """The SNI of a target: ``tls_sni`` when set, else its host when it is a name, else None."""
    if tls_sni:
        return tls_sni
    return None if is_ip_address(host) else host


def server_words(tls=False, tls_verify=True, tls_ca=None, tls_sni=None, proxy_protocol='none'):
    """The words of an HAProxy ``server`` line for a target: ``{'relay': [...], 'check': [...]}``.

    ``relay`` are for the connection the live probe's relay opens; ``check`` are
    added for the health checks of the same server line (they use its ``ssl``,
    ``verify`` and ``ca-file`` too: check-ssl forces TLS, check-sni names the
    server, check-send-proxy sends the PROXY header of ``send-proxy``/``send-proxy-v2``).
    ``tls_ca`` is the CA file's path on the HAProxy host (default DEFAULT_CA). With
    ``tls_sni`` None no SNI is sent and, as in HAProxy, the name is not verified.
    """
    if proxy_protocol not in PROXY_PROTOCOLS:
        raise ConversationError('proxy_protocol must be one of %s, got %s'
                                % (', '.join(PROXY_PROTOCOLS), _show(proxy_protocol)))
    relay, check = [], []
    if tls:
        relay.append('ssl')
        if tls_verify:
            relay += ['verify', 'required', 'ca-file', tls_ca or DEFAULT_CA]
        else:
            relay += ['verify', 'none']
        check.append('check-ssl')
        if tls_sni:
            if re.search(r'[^A-Za-z0-9.-]', tls_sni):
                raise ConversationError('tls_sni must be a host name (letters, digits, dots, hyphens), got %s'
                                        % _show(tls_sni))
            relay += ['sni', 'str(%s)' % tls_sni]
            check += ['check-sni', tls_sni]
    if proxy_protocol == 'v1':
        relay.append('send-proxy')
        check.append('check-send-proxy')
    elif proxy_protocol == 'v2':
        relay.append('send-proxy-v2')
        check.append('check-send-proxy')
    return dict(relay=relay, check=check)


# ------------------------------------------------------------------ the Python evaluator

class Outcome(object):
    """What run_conversation() saw.

    ``ok``; ``reason`` (None when OK); ``kind`` of failure: connect, tls, timeout,
    closed, overlong, mismatch or error; ``lines``: the complete lines received by
    lines ops (line ends removed, decoded), also when it failed; ``line``: the
    index in ``lines`` of the line that failed or was awaited (None if none);
    ``step``: the 1-based step that failed when known; ``stage``: what it was doing;
    ``exception``: the network error of a connect or error failure.
    """

    def __init__(self):
        self.ok = False
        self.reason = None
        self.kind = None
        self.lines = []
        self.line = None
        self.step = None
        self.stage = None
        self.exception = None
        self.elapsed_ms = 0


class _Failed(Exception):
    def __init__(self, kind, reason, step=None, line=None):
        Exception.__init__(self, reason)
        self.kind = kind
        self.reason = reason
        self.step = step
        self.line = line


def proxy_header(version, sock):
    """The PROXY protocol header HAProxy's own health checks send on ``sock``:
    v1 with the connection's addresses, v2 as a LOCAL command (doc/proxy-protocol.txt)."""
    if version == 'v2':
        return b'\r\n\r\n\x00\r\nQUIT\n' + struct.pack('!BBH', 0x20, 0x00, 0)
    local, peer = sock.getsockname(), sock.getpeername()
    family = 'TCP6' if sock.family == socket.AF_INET6 else 'TCP4'
    return ('PROXY %s %s %s %d %d\r\n' % (family, local[0], peer[0], local[1], peer[1])).encode('ascii')


def _tls_context(tls_verify, tls_ca, check_name):
    if not tls_verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=tls_ca or DEFAULT_CA)
    context.check_hostname = check_name
    return context


def _describe_tls_error(exc):
    if isinstance(exc, ssl.SSLCertVerificationError):
        return 'TLS certificate verification failed: %s' % (exc.verify_message or exc.reason or exc)
    return 'TLS handshake failed: %s' % (getattr(exc, 'reason', None) or exc)


def _fmt_seconds(seconds):
    return ('%.3f' % seconds).rstrip('0').rstrip('.')


def _printable(data):
    return _show(data.decode('utf-8', 'replace'))


def _decode(line):
    return line.rstrip(b'\r').decode('utf-8', 'replace')


def run_conversation(host, port, ops, timeout_s, tls=False, tls_verify=True, tls_ca=None, tls_sni=None,
                     proxy_protocol='none', connect=None):
    """Run ``ops`` against ``host:port`` within ``timeout_s`` seconds in all; returns an Outcome.

    The same verdict as HAProxy's health check running tcp_check_rules(ops) on a
    server line with server_words(): the same regexes (Python ``re`` on bytes),
    the same line limit, TLS verified against ``tls_ca`` (the name only when an
    SNI is sent: ``tls_sni``), the PROXY header written first. ``connect`` is
    ``connect(host, port, timeout_s)`` -> a connected socket, for a caller with
    its own bounded name resolution; by default socket.create_connection. Never
    raises for network errors.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    outcome = Outcome()
    outcome.stage = 'connecting to %s:%s' % (host, port)
    outcome.kind = 'connect'
    sock = None

    def left():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout('timed out')
        return remaining

    try:
        if connect is not None:
            sock = connect(host, port, left())
        else:
            sock = socket.create_connection((host, port), timeout=left())
        outcome.kind = 'error'
        if proxy_protocol not in (None, 'none'):
            outcome.stage = 'sending the PROXY %s header' % proxy_protocol
            sock.settimeout(left())
            sock.sendall(proxy_header(proxy_protocol, sock))
        if tls:
            outcome.stage = 'in the TLS handshake'
            outcome.kind = 'tls'
            context = _tls_context(tls_verify, tls_ca, bool(tls_sni))
            sock = _handshake(context.wrap_socket(sock, server_hostname=tls_sni or None,
                                                  do_handshake_on_connect=False), left)
            outcome.kind = 'error'
        _Conversation(sock, left, outcome).run(ops)
        outcome.ok = True
        outcome.kind = outcome.stage = outcome.line = None
    except _Failed as failed:
        outcome.kind, outcome.reason, outcome.step = failed.kind, failed.reason, failed.step
        if failed.line is not None:
            outcome.line = failed.line
    except socket.timeout:
        outcome.kind = 'timeout'
        outcome.reason = 'timed out after %s s %s' % (_fmt_seconds(timeout_s), outcome.stage)
    except ssl.SSLError as exc:
        outcome.kind = 'tls'
        outcome.reason = _describe_tls_error(exc)
    except (OSError, ValueError) as exc:
        outcome.exception = exc
        text = getattr(exc, 'strerror', None) or str(exc) or type(exc).__name__
        outcome.reason = '%s (%s)' % (text[:1].lower() + text[1:], outcome.stage)
    finally:
        outcome.elapsed_ms = int(round((time.monotonic() - started) * 1000))
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
    return outcome


def _handshake(tls, left):
    """A TLS handshake bounded by the deadline even when the peer trickles it."""
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            select.select([tls], [], [], left())
        except ssl.SSLWantWriteError:
            select.select([], [tls], [], left())
    tls.setblocking(True)
    return tls


class _Conversation(object):
    """The ops on a connected socket; ``received`` holds the bytes since the last send."""

    def __init__(self, sock, left, outcome):
        self.sock = sock
        self.left = left
        self.outcome = outcome
        self.received = b''
        self.eof = False

    def read_more(self):
        self.sock.settimeout(self.left())
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
        self.received += chunk

    def run(self, ops):
        for op in ops:
            getattr(self, 'op_' + op['op'])(op)

    def op_send(self, op):
        self.outcome.stage = 'sending at %s' % op['what']
        self.received = b''
        self.sock.settimeout(self.left())
        self.sock.sendall(bytes(bytearray.fromhex(op['hex'])))

    def op_lines(self, op):
        count = op['count']
        base = len(self.outcome.lines)
        while True:
            ends = _line_ends(self.received, count)
            lines = _split_lines(self.received, ends)
            self.outcome.lines[base:] = [_decode(line) for line in lines]
            self.check_length(op, ends, base)
            if len(ends) == count:
                break
            part = op['parts'][len(ends)]
            self.outcome.line = base + len(ends)
            self.outcome.stage = 'waiting for line %d of %d at step %d %s' % (
                len(ends) + 1, count, part['step'], part['words'])
            if self.eof:
                raise _Failed('closed', 'connection closed by the server after %d of %d lines at %s'
                              % (len(ends), count, op['what']), part['step'])
            self.read_more()
        if re.match(op['regex'].encode('utf-8'), self.received):
            return
        for number, (line, part) in enumerate(zip(lines, op['parts'])):
            if not re.match((LINE_REGEX_FLAGS + part['regex']).encode('utf-8'), line + b'\n'):
                raise _Failed('mismatch', 'unexpected reply %s at step %d %s' % (
                    _printable(line.rstrip(b'\r')), part['step'], part['words']), part['step'], base + number)
        raise _Failed('mismatch', 'unexpected reply %s at %s' % (_printable(self.received), op['what']))

    def check_length(self, op, ends, base):
        """KO for a line longer than MAX_LINE_BYTES, complete or not (HAProxy's waiting
        regex never matches one: it waits until the timeout, the end or a full buffer)."""
        pending = [len(self.received)] if len(ends) < op['count'] else []  # the line still arriving
        start = 0
        for number, end in enumerate(ends + pending):
            if end - start > MAX_LINE_BYTES:
                part = op['parts'][number]
                raise _Failed('overlong', 'line %d of %d longer than %d bytes at step %d %s' % (
                    number + 1, op['count'], MAX_LINE_BYTES, part['step'], part['words']), part['step'],
                    base + number)
            start = end + 1

    def op_bytes(self, op):
        count = op['count']
        self.outcome.stage = 'waiting for %d bytes at %s' % (count, op['what'])
        while len(self.received) < count and not self.eof:
            self.read_more()
        dump = _hex(self.received).upper()
        if re.match(op['regex'], dump):
            return
        if len(self.received) < count:
            raise _Failed('closed', 'connection closed by the server after %d of %d bytes at %s'
                          % (len(self.received), count, op['what']))
        raise _Failed('mismatch', 'unexpected reply %s at %s' % (_show(dump[:2 * count].lower()), op['what']))


def _line_ends(data, count):
    """Offsets of the first ``count`` LFs in ``data``."""
    ends = []
    position = -1
    while len(ends) < count:
        position = data.find(b'\n', position + 1)
        if position < 0:
            break
        ends.append(position)
    return ends


def _split_lines(data, ends):
    lines, start = [], 0
    for end in ends:
        lines.append(data[start:end])
        start = end + 1
    return lines
