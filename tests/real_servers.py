# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Real servers from Debian packages on free loopback ports, for the tests of the
conversation language (tests/unit: the status_probe module; tests/lua: HAProxy's
health checks). scripts/lib.sh's ensure_system_packages installs them; Debian's own
units are not used (no default port is taken): each test starts its instances,
as root, in a directory of its own, and stops them.

- Redis, Memcached, Sshd, Exim, HttpServer (python3 -m http.server), EchoServer
  (the collection's checktcp_echo.py);
- HAProxyFront: the host's HAProxy as a TLS (``bind ... ssl crt``) or PROXY
  protocol (``accept-proxy``) speaking front of another server;
- CertificateAuthority: a CA and a server certificate made with openssl;
- silent_server(), closing_server(): a port that accepts and never answers, or
  closes at once (failure modes, threads in this process).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

LOOPBACK = '127.0.0.1'
REPO = pathlib.Path(__file__).resolve().parents[1]
ECHO_SCRIPT = REPO / 'roles' / 'echo_server' / 'files' / 'checktcp_echo.py'
HOST_HAPROXY = '/usr/sbin/haproxy'
START_TIMEOUT = 15.0

HANDED_OUT = set()
"""Ports given out by free_port(); tests/lua shares its conftest's set (HAProxy binds with
SO_REUSEPORT, so two of its instances could share a port without an error)."""


def free_port():
    """A loopback port nothing listens on, never handed out before by this process."""
    while True:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in HANDED_OUT:
            HANDED_OUT.add(port)
            return port


def listening(port):
    try:
        socket.create_connection((LOOPBACK, port), timeout=0.5).close()
        return True
    except OSError:
        return False


PR_SET_PDEATHSIG = 1  # prctl(2)


def _stop_with_starter():
    """Run in a server's process before it execs: SIGTERM once the process that started it
    ends. ansible-test units runs each test in a fork of its own that exits without a module
    fixture's teardown, and the servers that fixture started stayed (a Redis and two HAProxy
    per test of status_probe's services, found running after the matrix)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RealServer(object):
    """A server process on LOOPBACK:``port``, its output in ``workdir``/NAME.log."""

    name = 'server'

    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = pathlib.Path(workdir) / ('%s-%d' % (self.name, self.port))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / ('%s.log' % self.name)
        self.proc = None

    @property
    def target(self):
        return dict(host=LOOPBACK, port=self.port)

    def command(self):
        raise NotImplementedError

    def prepare(self):
        """Files the server needs before it starts."""

    def start(self):
        self.prepare()
        with open(self.log, 'ab') as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_stop_with_starter)  # pylint: disable=subprocess-popen-preexec-fn
        end = time.monotonic() + START_TIMEOUT
        while not listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError('%s did not start on port %d:\n%s' % (self.name, self.port, self.log_text()))
            time.sleep(0.02)
        return self

    def stop(self):
        """Stop the server; returns once its port refuses connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        end = time.monotonic() + 10
        while listening(self.port) and time.monotonic() < end:
            time.sleep(0.02)

    def log_text(self):
        return self.log.read_text(errors='replace') if self.log.exists() else ''


class Redis(RealServer):
    name = 'redis'

    def command(self):
        return ['redis-server', '--port', str(self.port), '--bind', LOOPBACK, '--save', '', '--appendonly', 'no',
                '--dir', str(self.workdir), '--daemonize', 'no']


class Memcached(RealServer):
    name = 'memcached'

    def command(self):
        # As root, memcached wants a user to run as.
        return ['memcached', '-l', LOOPBACK, '-p', str(self.port), '-U', '0'] + (
            ['-u', 'nobody'] if os.geteuid() == 0 else [])


class Sshd(RealServer):
    name = 'sshd'

    def prepare(self):
        key = self.workdir / 'host_key'
        if not key.exists():
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(key)], check=True)
        pathlib.Path('/run/sshd').mkdir(exist_ok=True)  # its privilege separation directory

    def command(self):
        return ['/usr/sbin/sshd', '-D', '-e', '-f', '/dev/null', '-h', str(self.workdir / 'host_key'),
                '-o', 'ListenAddress=%s:%d' % (LOOPBACK, self.port), '-o', 'PidFile=none']


class Exim(RealServer):
    name = 'exim'

    def command(self):
        return ['/usr/sbin/exim4', '-bdf', '-oX', '%s.%d' % (LOOPBACK, self.port),
                '-oP', str(self.workdir / 'exim.pid')]


class HttpServer(RealServer):
    name = 'http'

    def prepare(self):
        (self.workdir / 'index.html').write_text('<!DOCTYPE html><html><body>up</body></html>\n')

    def command(self):
        return [sys.executable, '-m', 'http.server', '--bind', LOOPBACK, '--directory', str(self.workdir),
                str(self.port)]


class EchoServer(RealServer):
    name = 'echo'

    def command(self):
        return [sys.executable, str(ECHO_SCRIPT), '--bind', LOOPBACK, '--port', str(self.port)]


class HAProxyFront(RealServer):
    """The host's HAProxy in front of ``backend_port``: TLS with ``crt`` (a PEM with the
    certificate and key), a PROXY protocol header required with ``accept_proxy``."""

    name = 'haproxy-front'

    def __init__(self, workdir, backend_port, crt=None, accept_proxy=False):
        RealServer.__init__(self, workdir)
        self.backend_port = backend_port
        self.crt = crt
        self.accept_proxy = accept_proxy

    def prepare(self):
        bind = 'bind %s:%d%s%s' % (LOOPBACK, self.port, ' ssl crt %s' % self.crt if self.crt else '',
                                   ' accept-proxy' if self.accept_proxy else '')
        (self.workdir / 'haproxy.cfg').write_text('\n'.join([
            'global', '  log stderr format raw local0 info',
            'defaults', '  mode tcp', '  log global', '  timeout connect 2s', '  timeout client 10s',
            '  timeout server 10s',
            'frontend front', '  ' + bind, '  default_backend back',
            'backend back', '  server s %s:%d' % (LOOPBACK, self.backend_port), '']))

    def command(self):
        return [HOST_HAPROXY, '-db', '-f', str(self.workdir / 'haproxy.cfg')]


class CertificateAuthority(object):
    """A CA and a certificate for ``names`` (subjectAltName DNS) signed by it, and a
    second CA that signed nothing here (the wrong one). ``ca``, ``wrong_ca``: PEM
    paths; ``server_pem``: certificate and key in one file, as HAProxy's crt wants."""

    def __init__(self, workdir, names=('localhost',)):
        folder = pathlib.Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = folder / 'ca.pem'
        self.wrong_ca = folder / 'wrong-ca.pem'
        self.server_pem = folder / 'server.pem'
        for name, path in (('checktcp test CA', self.ca), ('checktcp wrong CA', self.wrong_ca)):
            _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=%s' % name,
                     '-keyout', str(path.with_suffix('.key')), '-out', str(path))
        key, csr, cert = folder / 'server.key', folder / 'server.csr', folder / 'server.crt'
        _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=%s' % names[0], '-keyout', str(key),
                 '-out', str(csr))
        extensions = folder / 'san.cnf'
        extensions.write_text('subjectAltName=%s\n' % ','.join('DNS:%s' % name for name in names))
        _openssl('x509', '-req', '-in', str(csr), '-CA', str(self.ca), '-CAkey', str(self.ca.with_suffix('.key')),
                 '-CAcreateserial', '-days', '2', '-extfile', str(extensions), '-out', str(cert))
        self.server_pem.write_text(cert.read_text() + key.read_text())


def _openssl(*args):
    subprocess.run(['openssl'] + list(args), check=True, capture_output=True)


class _TinyServer(object):
    """A loopback port whose connections get ``handle(conn)`` in a thread."""

    def __init__(self, handle):
        self.listener = socket.socket()
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        HANDED_OUT.add(self.port)
        self.handle = handle
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def target(self):
        return dict(host=LOOPBACK, port=self.port)

    def _loop(self):
        while self.running:
            try:
                conn = self.listener.accept()[0]
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with contextlib.closing(conn), contextlib.suppress(OSError):
            conn.settimeout(30)
            self.handle(conn)

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.listener.close()


def silent_server():
    """Accepts, reads, never writes (a hung service)."""
    def handle(conn):
        while conn.recv(4096):
            pass
    return _TinyServer(handle)


def closing_server():
    """Accepts and closes at once (FIN) without a byte."""
    def handle(conn):
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(4096):
            pass
    return _TinyServer(handle)


def line_server(data):
    """Writes ``data`` at once, then reads until the client closes (an overlong line, say)."""
    def handle(conn):
        conn.sendall(data)
        while conn.recv(4096):
            pass
    return _TinyServer(handle)


def trickle_server(trigger, reply, delay=0.05):
    """Once ``trigger`` has arrived, writes ``reply`` a byte every ``delay`` seconds (a slow
    link: a line arrives in pieces), then reads until the client closes."""
    def handle(conn):
        received = b''
        while not received.endswith(trigger):
            chunk = conn.recv(4096)
            if not chunk:
                return
            received += chunk
        for index in range(len(reply)):
            conn.sendall(reply[index:index + 1])
            time.sleep(delay)
        while conn.recv(4096):
            pass
    return _TinyServer(handle)


def missing_programs():
    """The programs these servers need that are not installed (empty when all are)."""
    wanted = ['redis-server', 'memcached', '/usr/sbin/sshd', '/usr/sbin/exim4', HOST_HAPROXY, 'openssl', 'ssh-keygen']
    return [program for program in wanted if shutil.which(program) is None]
