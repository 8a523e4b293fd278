# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Real loopback servers and responders for the status_probe tests (used by conftest.py)."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
import time

from http.server import BaseHTTPRequestHandler

LOOPBACK = '127.0.0.1'


class HttpHandler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):  # noqa: N802 - http.server naming
        server = self.server
        with server.lock:
            server.count += 1
            count = server.count
            server.requests.append(dict(path=self.path, headers=dict(self.headers.items()),
                                        header_list=list(self.headers.items())))
        status, body, headers = server.responder(count, self)
        if isinstance(body, str):
            body = body.encode('utf-8')
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault('Content-Type', 'text/html; charset=utf-8')
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass


def status_page(verdict):
    """An HTML page like the Lua status service's."""
    return ('<!DOCTYPE html>\n<html><head><title>checktcp</title>'
            '<style>body { font-family: sans-serif; }</style></head>\n'
            '<body><h1>%s</h1></body></html>\n' % verdict)


def constant(status, body=None, headers=None):
    """A responder that always answers the same."""
    if body is None:
        body = status_page('OK' if status == 200 else 'KO')

    def responder(count, handler):
        return status, body, headers
    return responder


def transition(first_status, then_status, after):
    """A responder answering ``first_status`` for ``after`` requests, then ``then_status``."""
    def responder(count, handler):
        status = first_status if count <= after else then_status
        return status, status_page('OK' if status == 200 else 'KO'), None
    return responder


class EchoHandler(socketserver.BaseRequestHandler):
    """Echo protocol: a header line, then every received line back (per the server's mode)."""

    def handle(self):
        mode = self.server.mode
        sock = self.request
        sock.settimeout(10)
        client = '%s:%d' % self.client_address[:2]
        local = '%s:%d' % sock.getsockname()[:2]
        with self.server.lock:
            self.server.connections += 1
            if mode == 'flip':  # the first connection finds the server down, later ones up
                mode = 'close' if self.server.connections == 1 else 'ok'
        with contextlib.suppress(OSError):
            if mode == 'close':  # orderly close (FIN) before writing anything
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):
                    pass
                return
            if mode == 'reset':  # abortive close (RST)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                sock.close()
                return
            if mode in ('silent', 'long'):
                if mode == 'long':
                    sock.sendall(b'x' * 20000)
                while sock.recv(4096):
                    pass
                return
            eol = b'\r\n' if mode == 'crlf' else b'\n'
            header = ('ECHO client=%s server=%s' % (client, local)).encode()
            if mode == 'wide':  # a 2000-byte header line, then a normal echo
                header = header.ljust(2000, b'x')
            sock.sendall(header + eol)
            buffer = b''
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                buffer += chunk
                while b'\n' in buffer:
                    line, buffer = buffer.split(b'\n', 1)
                    if mode == 'wrong':
                        line = b'nope'
                    if mode == 'slow':  # answers, but later than a probe's timeout
                        time.sleep(self.server.delay)
                    sock.sendall(line.rstrip(b'\r') + eol)


class EchoServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    delay = 1.5
    connections = 0

    def __init__(self, *args, **kwargs):
        socketserver.TCPServer.__init__(self, *args, **kwargs)
        self.lock = threading.Lock()


def slow_http(phase, step=0.05, limit=6.0):
    """A raw HTTP server handler that trickles one part of its answer, a byte each ``step`` seconds.

    ``phase`` is status-line, headers, body or chunked: every read of the client gets data
    before a per-read timeout would fire, so only a deadline over the whole exchange stops it.
    Gives up after ``limit`` seconds.
    """
    def handle(sock):
        _read_request(sock)
        if phase == 'status-line':
            head, trickle = b'', b'HTTP/1.1 200 ' + b'O' * 1000
        elif phase == 'headers':
            head, trickle = b'HTTP/1.1 200 OK\r\n', b'X-Pad: ' + b'a' * 1000
        elif phase == 'body':
            head, trickle = b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n', b'a' * 1000
        else:
            head = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n'
            trickle = b'1\r\na\r\n' * 200
        sock.sendall(head)
        stop = time.monotonic() + limit
        for index in range(len(trickle)):
            if time.monotonic() > stop:
                break
            sock.sendall(trickle[index:index + 1])
            time.sleep(step)
    return handle


def _read_request(sock):
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class RawHandler(socketserver.BaseRequestHandler):
    """Hands the accepted socket to the server's ``handle(sock)`` function."""

    def handle(self):
        self.request.settimeout(10)
        with contextlib.suppress(OSError):
            self.server.handle(self.request)


class RawServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class TunnelHandler(socketserver.BaseRequestHandler):
    """A forward proxy: CONNECT host:port tunnels; records each request line."""

    def handle(self):
        sock = self.request
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            head = _read_request(sock)
            line = head.split(b'\r\n', 1)[0].decode('latin-1')
            self.server.lines.append(line)
            method, target = line.split(' ')[:2]
            if method != 'CONNECT':
                body = b'not a tunnel'
                sock.sendall(b'HTTP/1.1 405 Not Allowed\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s'
                             % (len(body), body))
                return
            host, port = target.rsplit(':', 1)
            upstream = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
            pump = threading.Thread(target=_pump, args=(upstream, sock), daemon=True)
            pump.start()
            _pump(sock, upstream)
            pump.join(5)
            upstream.close()


def _pump(source, sink):
    with contextlib.suppress(OSError):
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
