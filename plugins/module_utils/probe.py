# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Probing helpers for the status_probe module.

Pure functions and small classes with no dependency on AnsibleModule: an
HTTP GET bounded by one deadline that never raises, a check speaking the echo
protocol over a plain TCP socket, the verdict of one attempt and a polling
loop.

The HTTP client is small and explicit rather than ``open_url``: urllib's
timeout bounds each socket operation, so a server trickling one byte at a time
holds a request for ever; here every step (name resolution, connect, TLS,
request, status line, headers, body) runs against one deadline. It follows
redirects and uses proxies only when asked to.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import io
import re
import select
import socket
import ssl
import threading
import time

from http.client import HTTPException, HTTPResponse, RemoteDisconnected
from urllib.error import HTTPError, URLError
from urllib.parse import urljoin, urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

from ansible_collections.checktcp.haproxy_lua.plugins.module_utils.conversation import (
    MAX_LINE_BYTES,
    conversation_ops,
    default_sni,
    run_conversation,
)


MAX_BODY = 64 * 1024
"""Bytes of the response body kept (and read) at most."""

MAX_LINE = MAX_LINE_BYTES
"""Bytes one received line may have before its LF (conversation.MAX_LINE_BYTES, the Lua service's limit)."""

MAX_REDIRECTS = 10
"""Redirects followed at most (with follow_redirects)."""

REDIRECT_STATUSES = (301, 302, 303, 307, 308)

CREDENTIAL_HEADERS = ('authorization', 'proxy-authorization', 'cookie')
"""Request headers that carry credentials: only accepted from no_log options."""

AGE_HEADER = 'x-checktcp-age-ms'
"""Response header of the checktcp page: how old its verdict is, in milliseconds."""

_READ_CHUNK = 8192
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


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
    if isinstance(exc, RemoteDisconnected):
        return 'connection closed by the server without an answer'
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


class Deadline(object):
    """One point in time that bounds every step of an exchange."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.at = _now() + seconds

    def left(self):
        """Seconds left; raises ``socket.timeout`` when none are."""
        left = self.at - _now()
        if left <= 0:
            raise socket.timeout('timed out')
        return left


def _resolve(host, port, deadline):
    """getaddrinfo bounded by the deadline (the resolver has no timeout of its own here)."""
    outcome = {}

    def run():
        try:
            outcome['infos'] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except Exception as exc:  # pylint: disable=broad-except
            outcome['error'] = exc

    # A daemon thread: a resolver stuck past the deadline is left behind, never waited for.
    thread = threading.Thread(target=run, name='resolve %s' % host)
    thread.daemon = True
    thread.start()
    thread.join(deadline.left())
    if thread.is_alive():
        raise socket.timeout('timed out')
    if 'error' in outcome:
        raise outcome['error']
    return outcome['infos']


def connect(host, port, deadline, progress=None):
    """A TCP connection to ``host:port``, every address tried within one deadline."""
    _stage(progress, 'resolving %s' % host)
    infos = _resolve(host, port, deadline)
    _stage(progress, 'connecting')
    error = None
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.left())
            sock.connect(address)
            return sock
        except socket.timeout:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            error = exc
    raise error if error is not None else OSError('no address for %s' % host)


def _stage(progress, stage):
    if progress is not None:
        progress['stage'] = stage


class _DeadlineReader(io.RawIOBase):
    """The reading side of a socket where each read gets only the time left."""

    def __init__(self, sock, deadline):
        io.RawIOBase.__init__(self)
        self.sock = sock
        self.deadline = deadline
        self.seen_newline = False

    def readable(self):
        return True

    def readinto(self, buffer):
        self.sock.settimeout(self.deadline.left())
        count = self.sock.recv_into(buffer)
        if not self.seen_newline and b'\n' in memoryview(buffer)[:count].tobytes():
            self.seen_newline = True
        return count


class _DeadlineSocket(object):
    """What ``HTTPResponse`` needs of a socket: ``makefile('rb')``, read against the deadline."""

    def __init__(self, sock, deadline):
        self.reader = _DeadlineReader(sock, deadline)

    def makefile(self, mode, *args, **kwargs):  # pylint: disable=unused-argument
        return io.BufferedReader(self.reader)


def _tls_handshake(sock, host, validate_certs, deadline, progress):
    _stage(progress, 'in the TLS handshake')
    context = ssl.create_default_context()
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    # Non-blocking, so that a trickled handshake is bounded too.
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            select.select([tls], [], [], deadline.left())
        except ssl.SSLWantWriteError:
            select.select([], [tls], [], deadline.left())
    tls.setblocking(True)
    return tls


def check_header(name, value):
    """Raise ``ValueError`` for a header that cannot be sent as is (the value is never quoted)."""
    if not _HEADER_NAME_RE.match(name):
        raise ValueError('%r is not a valid HTTP header name' % (name,))
    if '\r' in value or '\n' in value:
        raise ValueError('the value of header %r contains a line break (CR or LF)' % (name,))
    try:
        value.encode('latin-1')
    except UnicodeEncodeError:
        raise ValueError('the value of header %r has characters outside Latin-1' % (name,))


def _request_bytes(method, target, host, headers):
    if re.search(r'[\x00-\x20\x7f]', target):
        raise ValueError('the URL contains spaces or control characters (percent-encode them): %s' % (target,))
    lines = ['%s %s HTTP/1.1' % (method, target)]
    if not any(name.lower() == 'host' for name, _value in headers):
        lines.append('Host: %s' % host)
    for name, value in headers:
        check_header(name, value)
        lines.append('%s: %s' % (name, value))
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')


def _basic(username, password):
    token = base64.b64encode(('%s:%s' % (username, password)).encode('utf-8')).decode('ascii')
    return 'Basic ' + token


def basic_auth(username, password):
    """The Authorization header value for HTTP basic authentication."""
    return _basic(username, '' if password is None else password)


class _Target(object):
    """The parts of an http(s) URL a request needs."""

    def __init__(self, url):
        parts = urlsplit(url)
        if parts.scheme not in ('http', 'https'):
            raise ValueError('unsupported URL scheme %r in %s (use http or https)' % (parts.scheme, url))
        if not parts.hostname:
            raise ValueError('no host in URL %s' % (url,))
        if '@' in parts.netloc:
            raise ValueError('credentials in URL are not accepted')
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == 'https' else 80)
        self.netloc = parts.netloc
        self.path = (parts.path or '/') + ('?' + parts.query if parts.query else '')
        self.origin = (self.scheme, self.host.lower(), self.port)
        try:
            self.path.encode('ascii')
        except UnicodeEncodeError:
            raise ValueError('the URL path must be ASCII (percent-encode other characters): %s' % (url,))


def proxy_for(url):
    """The proxy URL the environment (http_proxy, https_proxy, no_proxy) names for ``url``, or None."""
    target = _Target(url)
    proxies = getproxies_environment()
    if proxy_bypass_environment(target.host, proxies):
        return None
    proxy = proxies.get(target.scheme)
    if proxy and '://' not in proxy:
        proxy = 'http://' + proxy
    return proxy or None


def _proxy_parts(proxy):
    parts = urlsplit(proxy)
    if parts.scheme != 'http' or not parts.hostname:
        raise ValueError('unsupported proxy %s (only http:// proxies are supported)'
                         % (parts._replace(netloc=parts.hostname or '').geturl(),))
    auth = None
    if parts.username is not None:
        auth = _basic(parts.username, parts.password or '')
    return parts.hostname, parts.port or 80, auth


def _tunnel(sock, target, proxy_auth, deadline, progress):
    """Ask an HTTP proxy for a CONNECT tunnel to ``target``."""
    _stage(progress, 'waiting for the proxy to open a tunnel')
    authority = '%s:%d' % (target.host if ':' not in target.host else '[%s]' % target.host, target.port)
    headers = [('Proxy-Authorization', proxy_auth)] if proxy_auth else []
    sock.settimeout(deadline.left())
    sock.sendall(_request_bytes('CONNECT', authority, authority, headers))
    response = HTTPResponse(_DeadlineSocket(sock, deadline), method='CONNECT')
    response.begin()
    if response.status != 200:
        raise OSError('the proxy refused the tunnel: %d %s' % (response.status, response.reason))


class HttpResult(object):
    """What one HTTP request returned; ``status`` is None when there was no answer."""

    def __init__(self, status=None, body='', headers=None, error=None, elapsed_ms=0, truncated=False, url=None,
                 answered_at=None):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}
        self.error = error
        self.elapsed_ms = elapsed_ms
        self.truncated = truncated
        self.url = url
        self.answered_at = answered_at

    @property
    def answered(self):
        """True when a complete HTTP answer (status and body) came back."""
        return self.status is not None and self.error is None

    @property
    def verdict_ok(self):
        """The status page's verdict: 200 is OK, anything else (no answer too) is KO."""
        return self.answered and self.status == 200

    @property
    def age_ms(self):
        """The age of the page's verdict from its x-checktcp-age-ms header; None without one."""
        value = self.headers.get(AGE_HEADER)
        if value is None:
            return None
        try:
            age = int(value.strip())
        except ValueError:
            return None
        return age if age >= 0 else None

    @property
    def verdict_at(self):
        """When (monotonic clock) the page's verdict was formed: its answer time minus its age."""
        if self.answered_at is None:
            return None
        return self.answered_at - (self.age_ms or 0) / 1000.0


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


def _read_limited(response, limit):
    """Read at most ``limit`` bytes; returns ``(data, truncated)``.

    Each read of the socket below gets only the time left before the deadline,
    so this raises ``socket.timeout`` when the body is not complete in time.
    """
    chunks = []
    size = 0
    truncated = False
    while True:
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


def _exchange(target, headers, validate_certs, max_body, proxy, deadline, progress):
    """One GET of ``target`` (no redirects); returns the body read as ``(data, truncated)``.

    Fills ``progress`` with the stage, and the status, headers and their arrival
    time as soon as they came.
    """
    request_target = target.path
    send_headers = list(headers)
    if proxy:
        proxy_host, proxy_port, proxy_auth = _proxy_parts(proxy)
        sock = connect(proxy_host, proxy_port, deadline, progress)
    else:
        sock = connect(target.host, target.port, deadline, progress)
    try:
        if target.scheme == 'https':
            if proxy:
                _tunnel(sock, target, proxy_auth, deadline, progress)
            sock = _tls_handshake(sock, target.host, validate_certs, deadline, progress)
        elif proxy:
            request_target = '%s://%s%s' % (target.scheme, target.netloc, target.path)
            if proxy_auth:
                send_headers.append(('Proxy-Authorization', proxy_auth))
        _stage(progress, 'sending the request')
        sock.settimeout(deadline.left())
        sock.sendall(_request_bytes('GET', request_target, target.netloc, send_headers))
        wrapped = _DeadlineSocket(sock, deadline)
        _stage(progress, 'waiting for the status line')
        response = HTTPResponse(wrapped, method='GET')
        try:
            response.begin()
        except socket.timeout:
            if wrapped.reader.seen_newline:
                _stage(progress, 'waiting for the headers')
            raise
        progress['status'] = int(response.status)
        progress['headers'] = response.msg
        progress['answered_at'] = _now()
        _stage(progress, 'reading the body')
        data, truncated = _read_limited(response, max_body)
        response.close()
        return data, truncated
    finally:
        try:
            sock.close()
        except Exception:  # pylint: disable=broad-except
            pass


def http_get(url, timeout=5.0, headers=None, validate_certs=True, max_body=MAX_BODY, credentials=None,
             follow_redirects=False, use_proxy=False):
    """GET ``url`` and return an :class:`HttpResult`; never raises for network errors.

    ``timeout`` bounds the whole exchange (name resolution, connecting, TLS, the
    request, status line, headers and body, and every redirect followed) with one
    deadline. An HTTP error status (4xx, 5xx) and a redirect not followed are normal
    answers with their body. When the status came but the body could not be read,
    ``status`` is kept and ``error`` set. ``credentials`` are request headers sent
    only to the origin of ``url`` (never after a redirect to another one);
    ``use_proxy`` takes the proxy from the environment (http_proxy, https_proxy,
    no_proxy).
    """
    started = _now()
    deadline = Deadline(timeout)
    plain = [(str(k), str(v)) for k, v in (headers or {}).items()]
    secret = [(str(k), str(v)) for k, v in (credentials or {}).items()]
    names = set(name.lower() for name, _value in plain + secret)
    fixed = (('User-Agent', 'checktcp-status-probe'), ('Accept-Encoding', 'identity'), ('Connection', 'close'))
    defaults = [(name, value) for name, value in fixed if name.lower() not in names]
    progress = {}
    current = url
    origin = None
    try:
        for hop in range(MAX_REDIRECTS + 1):
            progress = {}
            target = _Target(current)
            if origin is None:
                origin = target.origin
            send = defaults + plain + (secret if target.origin == origin else [])
            proxy = proxy_for(current) if use_proxy else None
            data, truncated = _exchange(target, send, validate_certs, max_body, proxy, deadline, progress)
            status = progress['status']
            raw_headers = progress['headers']
            location = raw_headers.get('Location')
            redirect = follow_redirects and status in REDIRECT_STATUSES and location
            if redirect and hop < MAX_REDIRECTS:
                current = urljoin(current, location.strip())
                continue
            charset = _charset(raw_headers)
            return HttpResult(status=status, body=data.decode(charset, 'replace'),
                              headers=_headers_to_dict(raw_headers), elapsed_ms=_ms(_now() - started),
                              truncated=truncated, url=current, answered_at=progress['answered_at'],
                              error='more than %d redirects' % MAX_REDIRECTS if redirect else None)
    except Exception as exc:  # pylint: disable=broad-except
        reason = describe_exception(exc, timeout)
        status = progress.get('status')
        if status is not None:
            reason = 'reading the body failed: %s' % reason
        elif isinstance(exc, socket.timeout) and progress.get('stage'):
            reason = '%s %s' % (reason, progress['stage'])
        return HttpResult(status=status, headers=_headers_to_dict(progress.get('headers')), error=reason,
                          elapsed_ms=_ms(_now() - started), url=current, answered_at=progress.get('answered_at'))


class EchoResult(object):
    """Outcome of one echo protocol exchange with one target."""

    def __init__(self, ok=False, header=None, reply=None, error=None, elapsed_ms=0, host=None, port=None,
                 name=None):
        self.ok = ok
        self.header = header
        self.reply = reply
        self.error = error
        self.elapsed_ms = elapsed_ms
        self.host = host
        self.port = port
        self.name = name

    @property
    def label(self):
        """The target's name, else host:port."""
        return self.name or '%s:%s' % (self.host, self.port)

    def as_dict(self):
        return dict(name=self.name, host=self.host, port=self.port, ok=self.ok, header=self.header,
                    reply=self.reply, error=self.error, elapsed_ms=self.elapsed_ms)


class Conversation(object):
    """What the direct check says to each target: a preset or steps (conversation.py), TLS, PROXY.

    ``echo`` conversations (the default) keep the echo protocol's words in their
    reasons (the header line, the reply line); others name the step that failed.
    """

    def __init__(self, preset='echo', steps=None, send='check', expect='check', skip_lines=1, host=None,
                 tls=False, tls_verify=True, tls_ca=None, tls_sni=None, proxy_protocol='none'):
        self.ops = conversation_ops(preset, steps=steps, send=send, expect=expect, skip_lines=skip_lines, host=host)
        self.echo = steps is None and preset == 'echo'
        self.expect = expect
        self.skip_lines = skip_lines
        self.tls = dict(tls=tls, tls_verify=tls_verify, tls_ca=tls_ca, tls_sni=tls_sni)
        self.proxy_protocol = proxy_protocol

    def check(self, host, port, timeout=1.0, name=None):
        """Run the conversation with ``host:port``; an :class:`EchoResult`. Never raises for network errors."""
        sni = default_sni(host, self.tls['tls_sni']) if self.tls['tls'] else None

        def connect_to(host, port, seconds):
            return connect(host, port, Deadline(seconds))

        outcome = run_conversation(host, port, self.ops, timeout, tls=self.tls['tls'],
                                   tls_verify=self.tls['tls_verify'], tls_ca=self.tls['tls_ca'], tls_sni=sni,
                                   proxy_protocol=self.proxy_protocol, connect=connect_to)
        result = EchoResult(ok=outcome.ok, host=host, port=port, name=name, elapsed_ms=outcome.elapsed_ms)
        lines = outcome.lines
        split = min(self.skip_lines, len(lines)) if self.echo else max(len(lines) - 1, 0)
        result.header = '\n'.join(lines[:split]) if split else None
        result.reply = lines[split] if len(lines) > split else None
        if not outcome.ok:
            result.error = self._echo_reason(outcome, host, port, timeout) if self.echo else outcome.reason
        return result

    def _stage(self, line):
        if line is None:
            return 'sending'
        if line >= self.skip_lines:
            return 'waiting for the reply line'
        return 'waiting for the header line' if self.skip_lines == 1 else 'waiting for header line %d' % (line + 1)

    def _echo_reason(self, outcome, host, port, timeout):
        """The echo protocol's words for a failure (as before the conversation language)."""
        stage = 'connecting' if outcome.kind == 'connect' else self._stage(outcome.line)
        if outcome.kind == 'mismatch':
            return 'expected reply %r, got %r' % (self.expect, outcome.lines[outcome.line])
        if outcome.kind == 'timeout':
            if outcome.stage.startswith('connecting'):
                stage = 'connecting'
            return 'timed out after %s s %s' % (_fmt_seconds(timeout), stage)
        if outcome.kind == 'closed':
            return 'connection closed by the echo server while %s' % stage
        if outcome.kind == 'overlong':
            return 'invalid answer while %s: line longer than %d bytes' % (stage, MAX_LINE)
        if outcome.kind in ('connect', 'error') and outcome.exception is not None:
            return '%s (%s %s:%s)' % (describe_exception(outcome.exception, timeout), stage, host, port)
        return outcome.reason


def echo_check(host, port, send='check', expect='check', skip_lines=1, timeout=1.0, name=None):
    """Speak the echo protocol with ``host:port`` and return an :class:`EchoResult`.

    Connects, sends ``send`` plus a newline, skips ``skip_lines`` header lines,
    reads the next line and compares it with ``expect`` (the echo preset of
    conversation.py). ``timeout`` bounds the whole exchange, name resolution
    included, like HAProxy's probe. Never raises for network errors.
    """
    return Conversation(send=send, expect=expect, skip_lines=skip_lines).check(host, port, timeout, name)


class EchoVerdict(object):
    """The direct check of every target, judged by the page's policy."""

    def __init__(self, results, required, started):
        self.results = results
        self.required = required
        self.started = started

    @property
    def up(self):
        return sum(1 for result in self.results if result.ok)

    @property
    def ok(self):
        return self.up >= self.required

    @property
    def single(self):
        """The one result when there is a single target, else None."""
        return self.results[0] if len(self.results) == 1 else None


def required_targets(policy, count):
    """How many of ``count`` targets must be OK under ``policy`` (all, any or a number), as HAProxy's page counts.

    Raises ``ValueError`` for anything else.
    """
    text = str(policy).strip().lower()
    if text == 'all':
        return count
    if text == 'any':
        return 1
    if re.match(r'^[0-9]+$', text) and 1 <= int(text) <= count:
        return int(text)
    raise ValueError('must be all, any or a number from 1 to %d (the number of echo targets), got %r'
                     % (count, policy))


def check_targets(targets, required, send='check', expect='check', skip_lines=1, timeout=1.0, conversation=None):
    """Check every target (dicts with host, port and an optional name) side by side, as HAProxy does.

    ``conversation`` (a :class:`Conversation`) is what to say; by default the echo
    protocol with ``send``, ``expect`` and ``skip_lines``. Returns an
    :class:`EchoVerdict`; the whole check takes about one ``timeout`` however many
    targets there are.
    """
    if conversation is None:
        conversation = Conversation(send=send, expect=expect, skip_lines=skip_lines)
    started = _now()
    results = [None] * len(targets)

    def run(index, target):
        results[index] = conversation.check(target['host'], target['port'], timeout=timeout, name=target.get('name'))

    if len(targets) == 1:
        run(0, targets[0])
    else:
        threads = [threading.Thread(target=run, args=(index, target)) for index, target in enumerate(targets)]
        for thread in threads:
            thread.daemon = True
            thread.start()
        for thread in threads:
            thread.join()
    return EchoVerdict(results, required, started)


class Attempt(object):
    """One attempt: the HTTP result, the optional direct check and the verdict.

    ``consistent`` is None without an echo check, and also when the page's
    verdict disagrees with the direct check but was formed before that check
    began (``stale``): the echo server may have changed in between, so that is
    not a lie, and not a confirmation either.
    """

    def __init__(self, http, echo=None, status_ok=False, body_ok=False, consistent=None, stale=False):
        self.http = http
        self.echo = echo
        self.status_ok = status_ok
        self.body_ok = body_ok
        self.consistent = consistent
        self.stale = stale

    @property
    def success(self):
        """True when every expectation of this attempt holds."""
        if not (self.status_ok and self.body_ok):
            return False
        if self.echo is not None and self.consistent is not True:
            return False
        return True


def evaluate(http, expect_status, body_pattern=None, echo=None):
    """Judge one attempt.

    ``body_pattern`` is a compiled regex (or None); ``echo`` an :class:`EchoResult`
    or :class:`EchoVerdict` (anything with ``ok``), or None when the echo check is off.
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


def attempt_once(get, check, expect_status, body_pattern=None):
    """One attempt: the direct check (``check()``, or None), then the page (``get()``).

    When the page disagrees with the direct check, it is told apart from a
    change of state: a verdict formed before the direct check began (its age
    from the page's x-checktcp-age-ms header) is not judged; otherwise a second
    direct check decides: if it agrees with the page, the echo server changed
    state meanwhile and the page is right; if it disagrees too, the page lies.
    """
    if check is None:
        return evaluate(get(), expect_status, body_pattern)
    before = check()
    http = get()
    attempt = evaluate(http, expect_status, body_pattern, before)
    if attempt.consistent:
        return attempt
    verdict_at = http.verdict_at
    if verdict_at is not None and verdict_at < before.started:
        attempt.consistent = None
        attempt.stale = True
        return attempt
    return evaluate(http, expect_status, body_pattern, check())


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
    """What the echo server did (an :class:`EchoResult`), for messages; ``expect`` is None
    for a conversation other than the echo protocol."""
    if expect is None:
        if echo.ok:
            return 'conversation OK' + (' (last line %r)' % (echo.reply,) if echo.reply is not None else '')
        return 'conversation failed: %s' % (echo.error,)
    if echo.error is None and echo.ok:
        return 'echo server answered %r' % (echo.reply,)
    if echo.reply is not None:
        return 'echo server answered %r, expected %r' % (echo.reply, expect)
    return 'echo check failed: %s' % (echo.error,)


def describe_targets(verdict, expect):
    """``1 of 2 echo targets OK, 2 required (a: echo server answered 'check'; b: ...)``."""
    return '%d of %d echo targets OK, %d required (%s)' % (
        verdict.up, len(verdict.results), verdict.required,
        '; '.join('%s: %s' % (result.label, describe_echo(result, expect)) for result in verdict.results))


def describe_attempts(count, elapsed_ms):
    return '%d attempt%s in %d ms' % (count, '' if count == 1 else 's', elapsed_ms)
