# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the checktcp echo server tests: load the script as a module,
run it in-process on a private event loop thread, or as a subprocess."""

import asyncio
import importlib.util
import pathlib
import queue
import subprocess
import sys
import threading

import pytest

SCRIPT = (pathlib.Path(__file__).resolve().parents[3]
          / "roles" / "echo_server" / "files" / "checktcp_echo.py")


def _load_script():
    spec = importlib.util.spec_from_file_location("checktcp_echo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checktcp_echo = _load_script()


class ThreadedServer:
    """An EchoServer on its own event loop thread; tests use blocking sockets."""

    def __init__(self, **options):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = checktcp_echo.EchoServer(**options)

    def call(self, coro, timeout=5):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self):
        self.thread.start()
        self.port = self.call(self.server.start())
        self.host = self.server.bind
        return self

    def connection_count(self):
        async def count():
            return self.server.connection_count
        return self.call(count())

    def stop(self):
        try:
            self.call(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


@pytest.fixture
def echo_module():
    return checktcp_echo


@pytest.fixture
def start_server():
    """Factory: start_server(**EchoServer options) -> ThreadedServer."""
    servers = []

    def start(**options):
        options.setdefault("bind", "127.0.0.1")
        options.setdefault("port", 0)
        server = ThreadedServer(**options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class ServerProcess:
    """The script run as systemd would run it, stderr collected line by line."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.lines = []
        self._queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, needle, timeout=5):
        """Return the first stderr line containing needle (None at EOF)."""
        for line in self.lines:
            if needle in line:
                return line
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                return None
            self.lines.append(line)
            if needle in line:
                return line

    def wait(self, timeout=5):
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return rc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def run_script():
    """Factory: run_script(*cli_args) -> ServerProcess, killed at teardown."""
    procs = []

    def run(*args):
        proc = ServerProcess(*args)
        procs.append(proc)
        return proc

    yield run
    for proc in procs:
        proc.stop()
