#!/usr/bin/env python
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

Logs go to stderr with ``<N>`` syslog priority prefixes for journald.
Standard library only; runs on Python 3.11 and later.
"""

import argparse
import asyncio
import collections
import logging
import math
import signal
import sys

log = logging.getLogger("checktcp_echo")


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


class EchoServer:
    """The echo service; usable in-process: ``await start()``, ``await close()``."""

    def __init__(self, bind="127.0.0.1", port=8080, max_line_bytes=4096,
                 idle_timeout=30.0, max_connections=1024):
        self.bind = bind
        self.port = port
        self.max_line_bytes = max_line_bytes
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._server = None
        self._closing = False
        # handler task -> client address, least recently active first
        self._conns = collections.OrderedDict()

    @property
    def connection_count(self):
        return len(self._conns)

    async def start(self):
        """Listen; return the bound port (the real one when port 0 was asked)."""
        # limit= bounds StreamReader's buffer: readuntil() fails instead of
        # buffering a line longer than max_line_bytes.
        self._server = await asyncio.start_server(
            self._handle, self.bind, self.port, limit=self.max_line_bytes)
        for sock in self._server.sockets:
            log.info("listening on %s", format_addr(sock.getsockname()))
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self):
        """Stop accepting, close all connections."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._conns)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _make_room(self):
        while len(self._conns) >= self.max_connections:
            task, client = self._conns.popitem(last=False)
            log.info("connection limit %d reached, closing longest-idle "
                     "connection from %s", self.max_connections, client)
            task.cancel()

    async def _handle(self, reader, writer):
        if self._closing:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        client = format_addr(writer.get_extra_info("peername"))
        self._make_room()
        self._conns[task] = client
        log.debug("%s: connected", client)
        try:
            await self._serve(reader, writer, client, task)
            # Flush what is left to echo, but do not wait forever for it.
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), self.idle_timeout)
        except OSError as exc:  # resets, or a flush that timed out
            log.debug("%s: %s", client, str(exc) or type(exc).__name__)
        except asyncio.CancelledError:
            # Evicted or shutting down.  Not re-raised: some 3.11.x streams
            # callbacks call task.exception() and log a traceback if cancelled.
            log.debug("%s: cancelled", client)
        finally:
            self._conns.pop(task, None)
            # No-op once closed; otherwise (evicted, cancelled, stuck client)
            # drop unsent data so the socket and its buffers go away now.
            writer.transport.abort()
            log.debug("%s: closed", client)

    async def _serve(self, reader, writer, client, task):
        writer.write(format_header(writer.get_extra_info("peername"),
                                   writer.get_extra_info("sockname")))
        while True:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"),
                                              self.idle_timeout)
            except asyncio.IncompleteReadError as exc:  # EOF: echo the rest
                writer.write(exc.partial)
                return
            except asyncio.LimitOverrunError:
                log.warning("%s: line longer than %d bytes, closing",
                            client, self.max_line_bytes)
                return
            except TimeoutError:
                log.debug("%s: idle for %gs, closing", client, self.idle_timeout)
                return
            self._conns.move_to_end(task)  # now the most recently active
            writer.write(line)
            # drain() blocks only while the write buffer is over its high-water
            # mark, i.e. the client is not reading; give up after idle_timeout.
            try:
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
            except TimeoutError:
                log.debug("%s: not reading its replies for %gs, closing",
                          client, self.idle_timeout)
                writer.transport.abort()  # drop the unsent echoes
                return


class JournalFormatter(logging.Formatter):
    """Prefix each line with ``<N>`` so journald records its priority."""

    PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4,
                  logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record):
        prefix = "<%d>" % self.PRIORITIES.get(record.levelno, 6)
        return "\n".join(prefix + line
                         for line in super().format(record).splitlines())


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
                        help="IPv4/IPv6 address or hostname (default %(default)s)")
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
    await stop.wait()
    log.info("shutting down")
    await server.close()
    return 0


def main(argv=None):
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter("%(message)s"))
    log.handlers[:] = [handler]  # idempotent when main() is called twice
    log.setLevel(args.log_level.upper())
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
