# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fixtures for the status_probe tests: real loopback servers and a module runner."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading

from http.server import ThreadingHTTPServer

import pytest

from ansible_collections.checktcp.haproxy_lua.tests.unit.plugins.probe_servers import (
    LOOPBACK,
    EchoHandler,
    EchoServer,
    HttpHandler,
    RawHandler,
    RawServer,
    TunnelHandler,
)


@pytest.fixture
def http_server():
    """Factory: ``http_server(responder, tls=None)`` starts an HTTP server and returns it (``.url``, ``.count``)."""
    servers = []

    def start(responder, tls=None):
        server = ThreadingHTTPServer((LOOPBACK, 0), HttpHandler)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        server.responder = responder
        server.lock = threading.Lock()
        server.count = 0
        server.requests = []
        server.url = '%s://%s:%d/' % (('http' if tls is None else 'https',) + server.server_address[:2])
        thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def raw_server():
    """Factory: ``raw_server(handle)`` serves each connection with ``handle(sock)``; returns its URL."""
    servers = []

    def start(handle):
        server = RawServer((LOOPBACK, 0), RawHandler)
        server.handle = handle
        thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        thread.start()
        servers.append(server)
        return 'http://%s:%d/' % server.server_address[:2]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tunnel_proxy():
    """A forward proxy that tunnels CONNECT requests; ``.url`` and ``.lines`` (request lines seen)."""
    server = RawServer((LOOPBACK, 0), TunnelHandler)
    server.lines = []
    server.url = 'http://%s:%d' % server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope='session')
def tls_context(tmp_path_factory):
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    if shutil.which('openssl') is None:
        pytest.skip('openssl is needed to make a test certificate')
    folder = tmp_path_factory.mktemp('tls')
    key, cert = folder / 'key.pem', folder / 'cert.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1',
                    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', str(key), '-out', str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context


@pytest.fixture
def https_server(http_server, tls_context):
    """Factory: like ``http_server`` but over TLS with a self-signed certificate (``.url`` is https)."""
    return lambda responder: http_server(responder, tls=tls_context)


@pytest.fixture
def echo_server():
    """Factory: ``echo_server(mode)`` with mode ok, crlf, wrong, silent, close, reset, long, wide (a 2000-byte header line),
    slow (answers after 1.5 s) or flip (the first connection is closed at once, later ones answer); returns (host, port)."""
    servers = []

    def start(mode='ok'):
        server = EchoServer((LOOPBACK, 0), EchoHandler)
        server.mode = mode
        thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        thread.start()
        servers.append(server)
        return server.server_address[:2]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections (kernel backlog) but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def closed_port():
    """A port with nothing listening (connections are refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def run_module(capsys):
    """Run a module's ``main()`` with arguments; returns ``(rc, result)`` from its JSON output."""
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core < 2.19
        from unittest import mock

        from ansible.module_utils import basic
        from ansible.module_utils.common.text.converters import to_bytes

        @contextlib.contextmanager
        def patch_module_args(args):
            with mock.patch.object(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args}))):
                yield

    def run(module, args, check_mode=False):
        args = dict(args)
        if check_mode:
            args['_ansible_check_mode'] = True
        capsys.readouterr()
        with patch_module_args(args):
            with pytest.raises(SystemExit) as excinfo:
                module.main()
        out = capsys.readouterr().out
        return excinfo.value.code, json.loads(out)

    return run
