# Copyright: (c) 2024, checktcp.haproxy_lua contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Line echo server checked by the checktcp HAProxy Lua service.

Protocol, per TCP connection:

1. The server first sends one header line naming both ends, e.g.
   ``ECHO client=127.0.0.1:41234 server=127.0.0.1:8080\\n``
   (IPv6 addresses in brackets: ``client=[::1]:41234``).
2. It then echoes every line it receives byte for byte, line ending
   (``\\n`` or ``\\r\\n``) and binary bytes included.  Data left without a
   newline at end of input is echoed too, then the connection is closed.

Limits: a line may hold at most --max-line-bytes bytes before its ``\\n``;
a longer one closes the connection.  A connection is closed when no complete
line arrives for --idle-timeout seconds, or when the client does not read its
replies for that long.  At --max-connections open connections, a new one is
still accepted and the connection idle the longest is closed to make room.

Memory: in the process, each connection holds one receive buffer of
max-line-bytes + 1 bytes and at most about twice that of echoes not yet sent
(it stops reading a client that does not read, and drops it after
--idle-timeout); the kernel buffers of its socket are capped at
2 * SOCKET_BUFFER_BYTES each way.  So max-connections connections of any kind
need at most about
``max-connections * (3 * (max-line-bytes + 1) + CONNECTION_OVERHEAD_BYTES)``
bytes beyond the idle process (about 21 MiB), plus
``max-connections * 4 * SOCKET_BUFFER_BYTES`` of kernel socket buffers:
with the defaults, 21 + 16 + 32 = 69 MiB at most.

systemd: with $NOTIFY_SOCKET set (Type=notify), READY=1 is sent once the
port accepts connections, STOPPING=1 when shutting down.  Logs go to stderr,
one line per record with a ``<N>`` syslog priority prefix for journald;
messages that clients can trigger are rate-limited.
Standard library only; runs on Python 3.11 and later.
"""

import argparse
import asyncio
import collections
import logging
import math
import os
import signal
import socket
import sys

log = logging.getLogger("checktcp_echo")

# Each way, per socket (the kernel doubles it): lines still flow, and
# max-connections stuck sockets stay cheap in kernel memory too.
SOCKET_BUFFER_BYTES = 8192
# Transport, protocol, socket and timer of one connection besides its buffers:
# about 2.7 KiB measured on CPython 3.11 (1000 idle connections), rounded up.
CONNECTION_OVERHEAD_BYTES = 4096
# Client-triggered log messages: at most LOG_BURST per LOG_PERIOD_S seconds.
LOG_BURST = 10
LOG_PERIOD_S = 10.0
# Listens on every IPv6 and IPv4 address (IPV6_V6ONLY off).
DUAL_STACK_BIND = "::"


def format_addr(addr):
    """Return ``ip:port``, with IPv6 addresses in brackets."""
    if not addr:
        return "unknown"
    host, port = addr[0], addr[1]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def format_header(client_addr, server_addr):
    """Return the header line sent first on every connection."""
    return ("ECHO client=%s server=%s\n"
            % (format_addr(client_addr), format_addr(server_addr))).encode("ascii")


def notify_systemd(message):
    """sd_notify(3): send `message` to $NOTIFY_SOCKET if systemd set it; False if not."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(path)
        sock.sendall(message.encode("ascii"))
    return True


class RateLimitedLog:
    """At most `burst` messages per `period` seconds; the rest are counted, then reported."""

    def __init__(self, burst, period):
        self.burst = burst
        self.period = period
        self._window_end = None
        self._count = 0
        self._suppressed = 0

    def log(self, level, msg, *args):
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._window_end is None or now >= self._window_end:
            self._window_end = now + self.period
            self._count = 0
        self._count += 1
        if self._count <= self.burst:
            log.log(level, msg, *args)
            return
        if not self._suppressed:
            log.warning("more than %d client-triggered messages in %gs: suppressing the "
                        "rest for now", self.burst, self.period)
            loop.call_at(self._window_end, self._report)
        self._suppressed += 1

    def _report(self):
        log.warning("suppressed %d client-triggered messages in the last %gs",
                    self._suppressed, self.period)
        self._suppressed = 0


class _Connection(asyncio.BufferedProtocol):
    """One client.  Callbacks only, no task: an eviction is a plain abort()."""

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.client = "unknown"
        self._data = bytearray(server.max_line_bytes + 1)  # a longest line and its \n
        self._view = memoryview(self._data)
        self._used = 0
        self._loop = asyncio.get_running_loop()
        self._last_line = self._loop.time()
        self._blocked_since = None  # while the client does not read its echoes
        self._closing = False
        self._timer = None

    # -- asyncio callbacks

    def connection_made(self, transport):
        self.transport = transport
        server = self.server
        if server.closing:
            transport.abort()
            return
        # Above `high` unsent bytes, pause_writing() stops reading this client.
        transport.set_write_buffer_limits(high=server.max_line_bytes + 1)
        peer = transport.get_extra_info("peername")
        self.client = format_addr(peer)
        server.register(self)
        log.debug("%s: connected", self.client)
        self._arm(self._last_line + server.idle_timeout)
        transport.write(format_header(peer, transport.get_extra_info("sockname")))

    def get_buffer(self, sizehint):
        return self._view[self._used:]

    def buffer_updated(self, nbytes):
        searched = self._used
        self._used += nbytes
        end = self._data.rfind(b"\n", searched, self._used) + 1
        if end:
            self.transport.write(bytes(self._view[:end]))
            rest = bytes(self._view[end:self._used])
            self._view[:len(rest)] = rest
            self._used = len(rest)
            self._last_line = self._loop.time()
            self.server.touch(self)
        elif self._used == len(self._data):
            self.server.abuse_log.log(logging.WARNING, "%s: line longer than %d bytes, closing",
                                      self.client, self.server.max_line_bytes)
            self._close()

    def eof_received(self):
        if self._used:  # echo what came without a newline
            self.transport.write(bytes(self._view[:self._used]))
            self._used = 0
        self._closing = True
        self._arm(self._loop.time() + self.server.idle_timeout)
        return False  # the transport closes once the echoes are sent

    def pause_writing(self):
        self._blocked_since = self._loop.time()
        self.transport.pause_reading()

    def resume_writing(self):
        self._blocked_since = None
        self.transport.resume_reading()

    def connection_lost(self, exc):
        self.server.unregister(self)
        if self._timer is not None:
            self._timer.cancel()
        if exc is not None:
            log.debug("%s: %s", self.client, str(exc) or type(exc).__name__)
        log.debug("%s: closed", self.client)

    # -- limits

    def evict(self):
        self.transport.abort()  # drop unsent echoes: the socket goes away now

    def _close(self):
        """Close once the echoes are sent, or drop them after idle_timeout."""
        self._closing = True
        self.transport.close()
        self._arm(self._loop.time() + self.server.idle_timeout)

    def _arm(self, when):
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check_timeouts)

    def _check_timeouts(self):
        # One timer per connection, moved forward here rather than on every line.
        self._timer = None
        idle_timeout = self.server.idle_timeout
        now = self._loop.time()
        if self._closing:
            log.debug("%s: echoes still unsent after %gs, dropping them", self.client, idle_timeout)
            self.transport.abort()
        elif self._blocked_since is not None:
            if now >= self._blocked_since + idle_timeout:
                log.debug("%s: not reading its replies for %gs, closing", self.client, idle_timeout)
                self.transport.abort()  # drop the unsent echoes
            else:
                self._arm(self._blocked_since + idle_timeout)
        elif now >= self._last_line + idle_timeout:
            log.debug("%s: idle for %gs, closing", self.client, idle_timeout)
            self._close()
        else:
            self._arm(self._last_line + idle_timeout)


def _dual_stack_socket(port):
    """A TCP socket bound to [::]:port that takes IPv4 clients too.

    asyncio binds every IPv6 socket with IPV6_V6ONLY, so "::" would leave
    IPv4 clients (HAProxy probing 127.0.0.1 or the host's IPv4 address)
    refused; "::" means every address here, as 0.0.0.0 does for IPv4.
    """
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((DUAL_STACK_BIND, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class EchoServer:
    """The echo service; usable in-process: ``await start()``, ``await close()``."""

    def __init__(self, bind="127.0.0.1", port=8080, max_line_bytes=4096,
                 idle_timeout=30.0, max_connections=1024,
                 log_burst=LOG_BURST, log_period=LOG_PERIOD_S):
        self.bind = bind
        self.port = port
        self.max_line_bytes = max_line_bytes
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.abuse_log = RateLimitedLog(log_burst, log_period)
        self.closing = False
        self._server = None
        # connection -> None, least recently active first
        self._conns = collections.OrderedDict()

    @property
    def connection_count(self):
        return len(self._conns)

    async def start(self):
        """Listen; return the bound port (the real one when port 0 was asked)."""
        loop = asyncio.get_running_loop()
        if self.bind == DUAL_STACK_BIND:
            self._server = await loop.create_server(
                lambda: _Connection(self), sock=_dual_stack_socket(self.port), start_serving=False)
        else:
            self._server = await loop.create_server(
                lambda: _Connection(self), self.bind, self.port, start_serving=False)
        for sock in self._server.sockets:
            # Inherited by accepted sockets: set before the first connection,
            # as shrinking a buffer after the window was offered drops data.
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        await self._server.start_serving()
        for sock in self._server.sockets:
            log.info("listening on %s", format_addr(sock.getsockname()))
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self):
        """Stop accepting, close all connections."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.evict()
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)  # let connection_lost() run

    def register(self, conn):
        while len(self._conns) >= self.max_connections:
            oldest, _none = self._conns.popitem(last=False)
            self.abuse_log.log(logging.INFO, "connection limit %d reached, closing "
                               "longest-idle connection from %s",
                               self.max_connections, oldest.client)
            oldest.evict()
        self._conns[conn] = None

    def touch(self, conn):
        if conn in self._conns:  # not when already evicted
            self._conns.move_to_end(conn)

    def unregister(self, conn):
        self._conns.pop(conn, None)


class JournalFormatter(logging.Formatter):
    """One line per record, prefixed with ``<N>`` so journald records its priority."""

    PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                  logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record):
        prefix = "<%d>" % self.PRIORITIES.get(record.levelno, 6)
        # journald splits stderr at newlines: a traceback stays one record.
        text = super().format(record).replace("\r", "\\r").replace("\n", "\\n")
        return prefix + text


class JournalHandler(logging.StreamHandler):
    """stderr, formatted for journald."""


def setup_logging(level, stream=None):
    """Every logger, asyncio's included, goes to stderr with priorities; ours at `level`."""
    handler = JournalHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JournalFormatter("%(message)s"))
    root = logging.getLogger()
    # Idempotent when main() is called twice; other handlers (a test's) stay.
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, JournalHandler)]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    log.setLevel(level.upper())


def _int_range(low, high=None):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("invalid integer: %r" % text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                "must be between %d and %d" % (low, high) if high is not None
                else "must be at least %d" % low)
        return value
    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("invalid number: %r" % text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="TCP line echo server with a header line, for checktcp.")
    parser.add_argument("--bind", default="127.0.0.1",
                        help="IPv4/IPv6 address or hostname; :: listens on IPv6 and IPv4 "
                             "(default %(default)s)")
    parser.add_argument("--port", type=_int_range(0, 65535), default=8080,
                        help="TCP port, 0 picks a free one (default %(default)s)")
    parser.add_argument("--max-line-bytes", type=_int_range(1), default=4096,
                        help="longest line accepted, not counting its \\n "
                             "(default %(default)s)")
    parser.add_argument("--idle-timeout", type=_positive_float, default=30.0,
                        help="seconds without a line before closing (default %(default)s)")
    parser.add_argument("--max-connections", type=_int_range(1), default=1024,
                        help="open connections before evicting the most idle "
                             "(default %(default)s)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="least severe messages logged (default %(default)s)")
    return parser.parse_args(argv)


async def _run(args):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before binding so an early SIGTERM still exits cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = EchoServer(args.bind, args.port, args.max_line_bytes,
                        args.idle_timeout, args.max_connections)
    try:
        await server.start()
    except OSError as exc:  # address in use, not local, cannot resolve, ...
        log.error("cannot listen on %s: %s", format_addr((args.bind, args.port)),
                  exc.strerror or exc)
        return 1
    try:
        notify_systemd("READY=1\nSTATUS=listening on %s:%d" % (args.bind, server.port))
    except OSError as exc:  # systemd would wait for READY=1 and fail the start
        log.error("cannot notify systemd at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        await server.close()
        return 1
    await stop.wait()
    log.info("shutting down")
    try:
        notify_systemd("STOPPING=1")
    except OSError:
        pass  # stopping anyway
    await server.close()
    return 0


def main(argv=None):
    args = parse_args(argv)
    setup_logging(args.log_level)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
