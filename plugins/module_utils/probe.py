# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Probing helpers for the status_probe module.

Pure functions and small classes with no dependency on AnsibleModule:
an HTTP GET with a timeout that never raises, a check speaking the echo
protocol over a plain TCP socket, the verdict of one attempt and a polling
loop.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import socket
import ssl
import time

from ansible.module_utils.urls import open_url

from http.client import HTTPException
from urllib.error import HTTPError, URLError


MAX_BODY = 64 * 1024
"""Bytes of the response body kept (and read) at most."""

MAX_LINE = 8 * 1024
"""Bytes one echo protocol line may have at most."""

_READ_CHUNK = 8192


def _now():
    return time.monotonic()


def _ms(seconds):
    return int(round(seconds * 1000))


def _fmt_seconds(seconds):
    return ('%.3f' % seconds).rstrip('0').rstrip('.')


def describe_exception(exc, timeout=None):
    """Turn a network exception into a short human readable reason."""
    if isinstance(exc, URLError) and not isinstance(exc, HTTPError):
        reason = exc.reason
        if isinstance(reason, BaseException):
            return describe_exception(reason, timeout)
        return 'connection failed: %s' % (reason,)
    if isinstance(exc, socket.timeout):
        if timeout is not None:
            return 'timed out after %s s' % _fmt_seconds(timeout)
        return 'timed out'
    if isinstance(exc, socket.gaierror):
        return 'name resolution failed: %s' % (exc.strerror or exc,)
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, ConnectionResetError):
        return 'connection reset by peer'
    if isinstance(exc, ssl.SSLError):
        return 'TLS error: %s' % (exc,)
    if isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, HTTPException):
        text = str(exc)
        return 'invalid HTTP response: %s%s' % (type(exc).__name__, ': ' + text if text else '')
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    text = str(exc)
    return '%s: %s' % (type(exc).__name__, text) if text else type(exc).__name__


class HttpResult(object):
    """What one HTTP request returned; ``status`` is None when there was no answer."""

    def __init__(self, status=None, body='', headers=None, error=None, elapsed_ms=0, truncated=False):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}
        self.error = error
        self.elapsed_ms = elapsed_ms
        self.truncated = truncated

    @property
    def answered(self):
        """True when a complete HTTP answer (status and body) came back."""
        return self.status is not None and self.error is None

    @property
    def verdict_ok(self):
        """The status page's verdict: 200 is OK, anything else (no answer too) is KO."""
        return self.answered and self.status == 200


def _headers_to_dict(headers):
    result = {}
    if headers is None:
        return result
    for name, value in headers.items():
        key = name.lower()
        if key in result:
            result[key] = '%s, %s' % (result[key], value)
        else:
            result[key] = value
    return result


def _charset(headers):
    try:
        charset = headers.get_content_charset()
    except Exception:  # pylint: disable=broad-except
        charset = None
    if charset:
        try:
            u'x'.encode(charset)
            return charset
        except LookupError:
            pass
    return 'utf-8'


def _read_limited(response, limit, deadline):
    """Read at most ``limit`` bytes; stop early when ``deadline`` passed.

    Returns ``(data, truncated)``; raises ``socket.timeout`` when the deadline passed
    before the body was complete.
    """
    chunks = []
    size = 0
    truncated = False
    while True:
        if _now() > deadline:
            raise socket.timeout('timed out reading the body')
        chunk = response.read(min(_READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            truncated = True
            break
    data = b''.join(chunks)
    return data[:limit], truncated


def http_get(url, timeout=5.0, headers=None, validate_certs=True, max_body=MAX_BODY, opener=None):
    """GET ``url`` and return an :class:`HttpResult`; never raises for network errors.

    An HTTP error status (4xx, 5xx) is a normal answer with its body. ``timeout``
    bounds connecting and each read, and the whole body read too. When the status
    line came but the body could not be read, ``status`` is kept and ``error`` set.
    """
    opener = opener or open_url
    started = _now()
    deadline = started + timeout
    request_headers = dict((str(k), str(v)) for k, v in (headers or {}).items())
    response = None
    status = None
    raw_headers = None
    try:
        try:
            response = opener(url, headers=request_headers, method='GET', timeout=timeout,
                              validate_certs=validate_certs)
            code = response.getcode()
            if code is None:
                raise ValueError('the answer had no HTTP status (is %s an HTTP URL?)' % (url,))
            status = int(code)
        except HTTPError as exc:
            response = exc
            status = int(exc.code)
        raw_headers = getattr(response, 'headers', None)
        if isinstance(response, HTTPError) and getattr(response, 'fp', None) is None:
            data, truncated = b'', False
        else:
            data, truncated = _read_limited(response, max_body, deadline)
        charset = _charset(raw_headers) if raw_headers is not None else 'utf-8'
        return HttpResult(status=status, body=data.decode(charset, 'replace'),
                          headers=_headers_to_dict(raw_headers),
                          elapsed_ms=_ms(_now() - started), truncated=truncated)
    except Exception as exc:  # pylint: disable=broad-except
        reason = describe_exception(exc, timeout)
        if status is not None:
            reason = 'reading the body failed: %s' % reason
        return HttpResult(status=status, headers=_headers_to_dict(raw_headers), error=reason,
                          elapsed_ms=_ms(_now() - started))
    finally:
        if response is not None:
            try:
                response.close()
            except Exception:  # pylint: disable=broad-except
                pass


class EchoResult(object):
    """Outcome of one echo protocol exchange."""

    def __init__(self, ok=False, header=None, reply=None, error=None, elapsed_ms=0):
        self.ok = ok
        self.header = header
        self.reply = reply
        self.error = error
        self.elapsed_ms = elapsed_ms


class _LineReader(object):
    """Read ``\\n`` terminated lines from a socket against an overall deadline."""

    def __init__(self, sock, deadline, max_line=MAX_LINE):
        self.sock = sock
        self.deadline = deadline
        self.max_line = max_line
        self.buffer = b''
        self.eof = False

    def readline(self):
        """Return the next line without ``\\n`` and one trailing ``\\r``.

        Returns None at end of stream without data; a last unterminated line
        is returned as is. Raises ``socket.timeout`` at the deadline and
        ``ValueError`` for an overlong line.
        """
        while True:
            pos = self.buffer.find(b'\n')
            if pos >= 0:
                line, self.buffer = self.buffer[:pos], self.buffer[pos + 1:]
                return self._text(line)
            if len(self.buffer) > self.max_line:
                raise ValueError('line longer than %d bytes' % self.max_line)
            if self.eof:
                if self.buffer:
                    line, self.buffer = self.buffer, b''
                    return self._text(line)
                return None
            remaining = self.deadline - _now()
            if remaining <= 0:
                raise socket.timeout('timed out')
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(4096)
            if not chunk:
                self.eof = True
            self.buffer += chunk

    @staticmethod
    def _text(line):
        if line.endswith(b'\r'):
            line = line[:-1]
        return line.decode('utf-8', 'replace')


def echo_check(host, port, send='check', expect='check', skip_lines=1, timeout=5.0):
    """Speak the echo protocol with ``host:port`` and return an :class:`EchoResult`.

    Connects, sends ``send`` plus a newline, skips ``skip_lines`` header lines,
    reads the next line and compares it with ``expect``. ``timeout`` bounds the
    whole exchange. Never raises for network errors.
    """
    started = _now()
    deadline = started + timeout
    result = EchoResult()
    stage = 'connecting'
    sock = None
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        stage = 'sending'
        sock.settimeout(max(deadline - _now(), 0.001))
        sock.sendall((send + '\n').encode('utf-8'))
        reader = _LineReader(sock, deadline)
        headers = []
        for index in range(skip_lines):
            stage = 'waiting for header line %d' % (index + 1) if skip_lines > 1 else 'waiting for the header line'
            line = reader.readline()
            if line is None:
                result.header = '\n'.join(headers) if headers else None
                result.error = 'connection closed by the echo server while %s' % stage
                return result
            headers.append(line)
        result.header = '\n'.join(headers) if headers else None
        stage = 'waiting for the reply line'
        line = reader.readline()
        if line is None:
            result.error = 'connection closed by the echo server while %s' % stage
            return result
        result.reply = line
        if line == expect:
            result.ok = True
        else:
            result.error = 'expected reply %r, got %r' % (expect, line)
        return result
    except ValueError as exc:
        result.error = 'invalid answer while %s: %s' % (stage, exc)
        return result
    except socket.timeout:
        result.error = 'timed out after %s s %s' % (_fmt_seconds(timeout), stage)
        return result
    except Exception as exc:  # pylint: disable=broad-except
        result.error = '%s (%s %s:%s)' % (describe_exception(exc, timeout), stage, host, port)
        return result
    finally:
        result.elapsed_ms = _ms(_now() - started)
        if sock is not None:
            try:
                sock.close()
            except Exception:  # pylint: disable=broad-except
                pass


class Attempt(object):
    """One attempt: the HTTP result, the optional echo result and the verdict."""

    def __init__(self, http, echo=None, status_ok=False, body_ok=False, consistent=None):
        self.http = http
        self.echo = echo
        self.status_ok = status_ok
        self.body_ok = body_ok
        self.consistent = consistent

    @property
    def success(self):
        """True when every expectation of this attempt holds."""
        if not (self.status_ok and self.body_ok):
            return False
        if self.echo is not None and not self.consistent:
            return False
        return True


def evaluate(http, expect_status, body_pattern=None, echo=None):
    """Judge one attempt.

    ``body_pattern`` is a compiled regex (or None); ``echo`` an :class:`EchoResult`
    or None when the echo check is off.
    """
    status_ok = http.answered and http.status in expect_status
    if body_pattern is None:
        body_ok = http.answered
    else:
        body_ok = http.answered and body_pattern.search(http.body) is not None
    consistent = None
    if echo is not None:
        consistent = http.verdict_ok == echo.ok
    return Attempt(http, echo, status_ok=status_ok, body_ok=body_ok, consistent=consistent)


class PollResult(object):
    """Last attempt of a polling loop, how many were made and how long it took."""

    def __init__(self, last, attempts, elapsed_ms):
        self.last = last
        self.attempts = attempts
        self.elapsed_ms = elapsed_ms

    @property
    def success(self):
        return self.last.success


def poll(attempt, wait=0.0, interval=0.5, clock=None, sleep=None):
    """Call ``attempt()`` until its result's ``success`` is true or ``wait`` seconds passed.

    At least one attempt is made; after a failed one the loop sleeps ``interval``
    (never past the end of ``wait``) and tries again while time is left.
    """
    clock = clock or _now
    sleep = sleep or time.sleep
    started = clock()
    attempts = 0
    while True:
        attempts += 1
        last = attempt()
        if last.success:
            break
        remaining = wait - (clock() - started)
        if remaining <= 0:
            break
        sleep(max(0.0, min(interval, remaining)))
    return PollResult(last, attempts, _ms(clock() - started))


_TAG_BLOCK_RE = re.compile(r'<(script|style|head)\b[^>]*>.*?</\1\s*>', re.I | re.S)
_TAG_RE = re.compile(r'<[^>]*>')
_SPACE_RE = re.compile(r'\s+')


def body_snippet(body, limit=60, html=None):
    """A short one-line excerpt of ``body`` for messages (markup removed for HTML)."""
    if body is None:
        return ''
    text = body
    if html is None:
        html = bool(re.search(r'<\s*(html|body|!doctype|p|div|h\d)\b', text[:2048], re.I))
    if html:
        text = _TAG_BLOCK_RE.sub(' ', text)
        text = _TAG_RE.sub(' ', text)
        text = text.replace('&nbsp;', ' ').replace('&lt;', '<').replace('&gt;', '>').replace('&amp;', '&')
    text = _SPACE_RE.sub(' ', text).strip()
    if len(text) > limit:
        text = text[:limit].rstrip() + u'\u2026'
    return text


def describe_expectation(url, expect_status, expect_body=None):
    """``expected status [200] and body matching 'OK' from http://x/``."""
    text = 'expected status %s' % (list(expect_status),)
    if expect_body is not None:
        text += ' and body matching %r' % (expect_body,)
    return '%s from %s' % (text, url)


def describe_http(http):
    """``503 (body 'KO')`` or ``no answer (connection refused)``."""
    if http.status is None:
        return 'no answer (%s)' % (http.error or 'unknown error',)
    if http.error is not None:
        return '%s but %s' % (http.status, http.error)
    return '%s (body %r)' % (http.status, body_snippet(http.body))


def describe_echo(echo, expect):
    """What the echo server did, for messages."""
    if echo.error is None and echo.ok:
        return 'echo server answered %r' % (echo.reply,)
    if echo.reply is not None:
        return 'echo server answered %r, expected %r' % (echo.reply, expect)
    return 'echo check failed: %s' % (echo.error,)


def describe_attempts(count, elapsed_ms):
    return '%d attempt%s in %d ms' % (count, '' if count == 1 else 's', elapsed_ms)
