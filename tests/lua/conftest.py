# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fixtures for the loopback tests of the checktcp Lua service.

Each configuration is rendered by the role itself (tests/lua/render.yml, run
by ansible-playbook) into a scratch directory, then served by a real HAProxy
(``haproxy -db``) on 127.0.0.1, probing fake echo servers: threads on
127.0.0.1 whose behaviour each test picks. Rendering costs seconds, so the
fixtures are module-scoped and render concurrently; the fake servers'
behaviour changes per test, the configuration does not.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import functools
import importlib.machinery
import importlib.util
import json
import os
import pathlib
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load_validator():
    """roles/haproxy/files/haproxy-validate, whose settled_states() the reloads here share with the unit's."""
    loader = importlib.machinery.SourceFileLoader(
        "haproxy_validate", str(REPO / "roles" / "haproxy" / "files" / "haproxy-validate"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("haproxy_validate", loader))
    loader.exec_module(module)
    return module


VALIDATOR = _load_validator()
# With CHECKTCP_HAPROXY_IMAGE set, "haproxy" (for the role's validation and
# for serving) is that image's, run on the host's network by bin/haproxy.
if os.environ.get("CHECKTCP_HAPROXY_IMAGE"):
    os.environ["PATH"] = str(REPO / "tests" / "lua" / "bin") + os.pathsep + os.environ["PATH"]
PLAYBOOK = REPO / "tests" / "lua" / "render.yml"
LOOPBACK = "127.0.0.1"
# Bounds the life of a fake server's connection whatever its behaviour.
CONNECTION_LIFETIME = 5.0
# More than HAProxy's clock resolution (1 ms): see FakeEchoServer.behave.
SETTLE = 0.005
RENDER_TIMEOUT_S = 600
# Inside the clone, so two clones testing side by side never share it.
FAILURE_TABLE_FILE = REPO / ".cache" / "failure-table.md"

FAILURE_TABLE = pytest.StashKey[list]()

# Every port given to a status service, a frontend or a fake server.
HANDED_OUT = set()
# The sockets that hold the ports free_ports() handed out, until the session ends.
HELD = []

Response = collections.namedtuple("Response", "status reason headers body elapsed_ms")


# --------------------------------------------------------------- helpers

def free_ports(count=1, hold=True):
    """Ports nothing listens on, never handed out before in this run.

    Each stays bound by this process (never listening, so connections to it are
    refused until HAProxy listens there) with SO_REUSEADDR and SO_REUSEPORT:
    the kernel gives it to no socket asking for any free port (another clone
    testing side by side, another test), while HAProxy, which binds with
    SO_REUSEPORT as the same user, binds it as if it were free. hold=False
    releases them at once, for a program that binds without SO_REUSEPORT: it
    must bind them right away."""
    ports = []
    while len(ports) < count:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
        if port in HANDED_OUT:
            sock.close()
            continue
        HANDED_OUT.add(port)
        ports.append(port)
        if hold:
            HELD.append(sock)
        else:
            sock.close()
    return ports


def http_request(port, method="GET", path="/", headers=None, body=b"", timeout=5.0, source=None):
    """One request on its own connection, read to EOF with raw sockets, so that
    the exact bytes (body after a HEAD, content-length mismatches) are seen;
    from the loopback address ``source`` if given. elapsed_ms runs from connect
    to the end of the response."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % (LOOPBACK, port), "Connection: close"]
    lines += ["%s: %s" % item for item in (headers or {}).items()]
    if body or method == "POST":
        lines.append("Content-Length: %d" % len(body))
    started = time.monotonic()
    with socket.create_connection((LOOPBACK, port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed_ms = (time.monotonic() - started) * 1000
    head, sep, content = data.partition(b"\r\n\r\n")
    assert sep, "incomplete HTTP response: %r" % data[:500]
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status_reason = status_line.split(" ", 2)
    parsed = {}
    for line in header_lines:
        name, value = line.split(":", 1)
        parsed[name.strip().lower()] = value.strip()
    return Response(int(status_reason[1]), status_reason[2] if len(status_reason) > 2 else "",
                    parsed, content, elapsed_ms)


def checked(response):
    """The response, once its content-length is found equal to its body's length."""
    assert response.headers.get("content-length") == str(len(response.body)), response
    return response


def word(response):
    """OK or KO, from the page's <h1> or the JSON document's status; None without one."""
    if response.headers.get("content-type") == "application/json":
        return json.loads(response.body)["status"]
    found = re.search(rb"<h1>(OK|KO)</h1>", response.body)
    return found.group(1).decode() if found else None


def wait_status(service, status, within_s, path="/"):
    """Request until ``status`` comes; fail after ``within_s`` seconds."""
    end = time.monotonic() + within_s
    while True:
        response = service.request(path=path)
        if response.status == status:
            return response
        if time.monotonic() > end:
            pytest.fail("no %d within %.1f s: %r\n%s" % (status, within_s, response, service.log_text()))
        time.sleep(0.02)


def utc(text):
    """Seconds since the epoch of an ISO 8601 UTC time with milliseconds (2026-01-02T03:04:05.678Z)."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def collections_path():
    """ANSIBLE_COLLECTIONS_PATH entries that already provide this collection as the repository."""
    found = []
    for entry in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep):
        link = pathlib.Path(entry, "ansible_collections", "checktcp", "haproxy_lua")
        if entry and link.exists() and link.resolve() == REPO:
            found.append(entry)
    return found


# ------------------------------------------------------ the fake echo servers

def header_line(conn, eol=b"\n"):
    """The real echo server's first line: ``ECHO client=IP:PORT server=IP:PORT``."""
    client, server = conn.getpeername()[:2], conn.getsockname()[:2]
    return ("ECHO client=%s:%d server=%s:%d" % (client + server)).encode("ascii") + eol


def read_line(conn, pending):
    """Return (line without its end, rest) or (None, rest) at EOF."""
    while b"\n" not in pending:
        chunk = conn.recv(4096)
        if not chunk:
            return None, pending
        pending += chunk
    line, rest = pending.split(b"\n", 1)
    return line.rstrip(b"\r"), rest


def drain(conn):
    """Read and drop everything until the peer closes."""
    while conn.recv(4096):
        pass


def echo(header=True, eol=b"\n", delay=0.0, reply=None, header_delay=0.0):
    """Behaviour: a header line after ``header_delay`` s, then each received line
    back (or ``reply``) after ``delay`` s."""
    def behave(conn, server):
        time.sleep(header_delay)
        if header:
            conn.sendall(header_line(conn, eol))
        pending = b""
        while True:
            line, pending = read_line(conn, pending)
            if line is None:
                return
            server.record_line(line)
            time.sleep(delay)
            conn.sendall((line if reply is None else reply) + eol)
    return behave


def silent():
    """Behaviour: accept, never write."""
    def behave(conn, server):
        drain(conn)
    return behave


def header_only():
    """Behaviour: the header line, then nothing."""
    def behave(conn, server):
        conn.sendall(header_line(conn))
        drain(conn)
    return behave


def close_after_header():
    """Behaviour: the header line, then an orderly close (FIN) of the sending side."""
    def behave(conn, server):
        conn.sendall(header_line(conn))
        conn.shutdown(socket.SHUT_WR)
        drain(conn)
    return behave


def reset(after_header=False):
    """Behaviour: an abortive close (SO_LINGER 0: RST), on accept or after the header."""
    def behave(conn, server):
        if after_header:
            conn.sendall(header_line(conn))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    return behave


def stream(chunk, every, duration):
    """Behaviour: the header line, then ``chunk`` every ``every`` s for ``duration`` s, no newline."""
    def behave(conn, server):
        conn.sendall(header_line(conn))
        end = time.monotonic() + duration
        while time.monotonic() < end:
            conn.sendall(chunk)
            # Until the next chunk, but a close by the peer is seen at once.
            readable = select.select([conn], [], [], every)[0]
            if readable and not conn.recv(4096):
                return
        drain(conn)
    return behave


BEHAVIOURS = {
    "echo": echo,
    "silent": silent,
    "header_only": header_only,
    "close_after_header": close_after_header,
    "reset": reset,
    "stream": stream,
}


class FakeEchoServer:
    """A TCP server on 127.0.0.1 that treats each connection with its current
    ``behaviour`` (a function of the connection and the server). It counts
    connections, records the lines it was sent, and can stop listening
    (refused connections) and listen again on the same port, which free_ports()
    holds meanwhile: no client connection is given it as its own port."""

    def __init__(self):
        self.behaviour = echo()
        self.lock = threading.Lock()
        self.connections = 0
        self.active = 0
        self.lines = []
        self.port = free_ports()[0]
        self._listener = None
        self._thread = None
        self._accepting = threading.Event()
        self.listen()

    @property
    def target(self):
        """The entry of haproxy_checktcp_targets for this server."""
        return {"host": LOOPBACK, "port": self.port}

    @property
    def name(self):
        return "%s:%d" % (LOOPBACK, self.port)

    def listen(self):
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Beside the socket that holds the port.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(256)
        # accept() is not woken by close() from another thread: poll a flag.
        listener.settimeout(0.02)
        self._listener = listener
        self._accepting.set()
        self._thread = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        self._thread.start()

    def refuse(self):
        """Stop listening: connections to the port are refused until listen()."""
        if self._listener is None:
            return
        self._accepting.clear()
        self._thread.join(5)
        self._listener.close()
        self._listener = None

    def behave(self, name, **options):
        """Switch to a behaviour by name (see BEHAVIOURS), or ``refuse`` connections.

        Then wait a few ms: HAProxy's clock counts milliseconds, and a live request
        shares a verdict that finished in the millisecond it arrived (as a probe
        in flight), so the next request could get the verdict of the old behaviour."""
        if name == "refuse":
            self.refuse()
        else:
            self.behaviour = BEHAVIOURS[name](**options)
            self.listen()
        time.sleep(SETTLE)

    def reset_counts(self):
        with self.lock:
            self.connections = 0
            self.lines = []

    def record_line(self, line):
        with self.lock:
            self.lines.append(line)

    def wait_idle(self, timeout=2.0):
        """Wait until no connection is open; return whether it happened."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if self.active == 0:
                    return True
            time.sleep(0.005)
        return False

    def _accept_loop(self, listener):
        while self._accepting.is_set():
            try:
                conn = listener.accept()[0]
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.active += 1
            threading.Thread(target=self._serve, args=(conn, self.behaviour), daemon=True).start()

    def _serve(self, conn, behaviour):
        try:
            conn.settimeout(CONNECTION_LIFETIME)
            with contextlib.suppress(OSError):
                behaviour(conn, self)
        finally:
            conn.close()
            with self.lock:
                self.active -= 1


# ------------------------------------------------- rendering and HAProxy

class StatusService:
    """One configuration rendered by tests/lua/render.yml into ``workdir``, and
    the HAProxy serving it on 127.0.0.1:``port`` (stderr kept in a file)."""

    def __init__(self, workdir, variables, env):
        self.workdir = pathlib.Path(workdir)
        self.env = env
        self.port = free_ports()[0]
        self.variables = {
            "haproxy_config_dir": str(self.workdir / "etc"),
            "haproxy_stats_socket": str(self.workdir / "admin.sock"),
            "haproxy_status_bind": "%s:%d" % (LOOPBACK, self.port),
            # A probe for every live request, as these tests switch a fake
            # server's behaviour and look at once; test_review.py tests the
            # role's default spacing.
            "haproxy_checktcp_min_probe_interval_ms": 0,
            # Read once per session, not by each render (CI's time: a
            # module run per render); molecule's runs read it as users' do.
            "haproxy_version": "%d.%d" % haproxy_version(),
        }
        self.variables.update(variables)
        self.config = self.workdir / "etc" / "haproxy.cfg"
        self.stderr = self.workdir / "haproxy.stderr"
        self.render_log = self.workdir / "render.log"
        self._render = None
        self.proc = None

    def files(self):
        """Every rendered file (haproxy.cfg, the Lua pair, the map), as {path: bytes}."""
        return {path: path.read_bytes() for path in sorted((self.workdir / "etc").rglob("*")) if path.is_file()}

    # rendering
    def write_vars(self, variables=None):
        """Write the variables (plus ``variables``, if given) to vars.json; return its path."""
        vars_file = self.workdir / "vars.json"
        vars_file.write_text(json.dumps(dict(self.variables, **(variables or {})), indent=2))
        return vars_file

    def render_start(self, variables=None):
        """Start ansible-playbook on the variables (plus ``variables``, if given)."""
        command = ansible_playbook("-i", "localhost,", "-e", "@%s" % self.write_vars(variables))
        with open(self.render_log, "wb") as output:
            self._render = subprocess.Popen(command, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=output, stderr=subprocess.STDOUT)

    def render_wait(self):
        """Return (exit status, output) of the render started last."""
        # A guard against a hung render, not a speed limit: renders started
        # together share 2 cores, and a 200-target one alone takes seconds.
        returncode = self._render.wait(RENDER_TIMEOUT_S)
        return returncode, self.render_log.read_text(errors="replace")

    def render(self, variables=None):
        self.render_start(variables)
        return self.render_wait()

    # HAProxy's server-state-file (cached checks), as haproxy.service's drop-in
    # handles it: a start begins with no states, a reload saves the running
    # worker's just before it signals the master.
    def server_state_file(self):
        match = re.search(r"^\s*server-state-file (\S+)", self.config.read_text(), re.M)
        return pathlib.Path(match.group(1)) if match else None

    def state_map(self):
        """The path of the map where checktcp.lua tells haproxy.cfg which cached checks were seen."""
        return re.search(r"map\(([^)]+checktcp-state\.map)\)", self.config.read_text()).group(1)

    def wait_seen(self, check="checktcp", timeout=5.0):
        """Wait until checktcp.lua has told haproxy.cfg that every target of the cached
        ``check`` was checked (its key in the state map): from then on haproxy.cfg answers
        the text, and the pages checktcp.lua publishes, itself."""
        end = time.monotonic() + timeout
        pattern = r"^0x[0-9a-f]+ %s 1$" % re.escape(check)
        show_map = "show map " + self.state_map()
        while not re.search(pattern, self.admin_command(show_map, timeout=2), re.M):
            assert time.monotonic() < end, self.admin_command(show_map, timeout=2)
            time.sleep(0.01)

    def clear_server_states(self):
        if self.server_state_file():
            self.server_state_file().write_text("1\n")

    def save_server_states(self):
        states = self.admin_command("show servers state")
        assert states.startswith("1\n"), states
        self.server_state_file().write_text(VALIDATOR.settled_states(states))

    # HAProxy
    def start(self, timeout=5.0, env=None):
        """Run HAProxy in the foreground, with ``env`` added to the environment
        (bin/haproxy passes LD_PRELOAD and FAKETIME* on), its output kept in
        ``stderr``; return once the status port answers."""
        self.clear_server_states()
        with open(self.stderr, "wb") as stderr:
            self.proc = subprocess.Popen([haproxy_binary(), "-db", "-f", str(self.config)],
                                         cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         env=dict(os.environ, **(env or {})),
                                         stdout=stderr, stderr=stderr)
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail("haproxy exited with %s:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > end:
                    pytest.fail("haproxy does not answer on port %d:\n%s" % (self.port, self.log_text()))
                time.sleep(0.02)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            if os.environ.get("CHECKTCP_HAPROXY_IMAGE"):
                # HAProxy is the container's PID 1 (bin/haproxy names it after
                # the podman client's PID): remove the container, not only the client.
                name = "%s-haproxy-%d" % (os.environ.get("CHECKTCP_ID", "checktcp"), self.proc.pid)
                subprocess.run(["podman", "rm", "-f", "-t", "0", name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # HAProxy leaves its Unix sockets (the probe relays, in the chroot) behind.
        if self.config.exists():
            for path in re.findall(r"^\s*bind unix@(\S+)", self.config.read_text(), re.M):
                pathlib.Path(path).unlink(missing_ok=True)

    def request(self, method="GET", path="/", headers=None, body=b"", timeout=5.0, source=None):
        return http_request(self.port, method, path, headers, body, timeout, source)

    def admin_command(self, command, timeout=5.0):
        """HAProxy's answer to ``command`` on its admin socket (no Lua)."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.workdir / "admin.sock"))
            conn.sendall(command.encode() + b"\n")
            return b"".join(iter(lambda: conn.recv(65536), b"")).decode()

    def show_stat(self):
        """Every row of HAProxy's ``show stat`` (admin socket: no Lua), as dicts."""
        lines = self.admin_command("show stat").splitlines()
        names = lines[0].lstrip("# ").split(",")
        return [dict(zip(names, line.split(","))) for line in lines[1:]]

    def stat_rows(self, proxy):
        """The rows of ``proxy`` in HAProxy's ``show stat``, as dicts."""
        return [row for row in self.show_stat() if row.get("pxname") == proxy]

    def backend_stats(self, proxy):
        """The BACKEND row of ``proxy`` in HAProxy's ``show stat``, as a dict."""
        rows = self.show_stat()
        for row in rows:
            if (row.get("pxname"), row.get("svname")) == (proxy, "BACKEND"):
                return row
        raise AssertionError("no backend %s in show stat; its backends: %s" % (
            proxy, sorted(row["pxname"] for row in rows if row.get("svname") == "BACKEND")))

    # HAProxy's standard error, where the Lua service logs its reasons, and its
    # standard output, where `log stdout` lines go
    def log_offset(self):
        return self.stderr.stat().st_size

    def log_bytes(self, offset=0):
        with open(self.stderr, "rb") as stream:
            stream.seek(offset)
            return stream.read()

    def log_text(self, offset=0):
        return self.log_bytes(offset).decode("utf-8", errors="backslashreplace")

    def wait_log(self, pattern, offset=0, timeout=1.0):
        """The first line after ``offset`` matching the regex ``pattern``, or None."""
        end = time.monotonic() + timeout
        while True:
            for line in self.log_text(offset).splitlines():
                if re.search(pattern, line):
                    return line
            if time.monotonic() > end:
                return None
            time.sleep(0.01)


def ansible_playbook(*arguments):
    """The command running tests/lua/render.yml with ``arguments``."""
    playbook = pathlib.Path(sys.executable).with_name("ansible-playbook")
    return [str(playbook) if playbook.exists() else "ansible-playbook",
            "-e", "ansible_python_interpreter=%s" % sys.executable, str(PLAYBOOK), *arguments]


def render_together(services):
    """Render every service's configuration with one ansible-playbook run, one
    inventory host per service, and fail the test on any error. A run's own
    start costs seconds: 9 renders took 31 s this way, 50 s as 9 runs side by
    side, on 2 cores."""
    if len(services) == 1:
        returncode, output = services[0].render()
        assert returncode == 0, "render failed for %s:\n%s" % (services[0].variables, output)
        return
    hosts = {"render-%d" % index: {"checktcp_render_vars": str(service.write_vars())}
             for index, service in enumerate(services)}
    inventory = services[0].workdir / "renders.json"
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}, indent=2))
    log = services[0].workdir / "renders.log"
    with open(log, "wb") as output:
        returncode = subprocess.run(ansible_playbook("-i", str(inventory), "--forks", str(len(services))),
                                    cwd=REPO, env=services[0].env, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, timeout=RENDER_TIMEOUT_S, check=False).returncode
    for service in services:
        service.render_log = log
    assert returncode == 0, "render failed for one of %s:\n%s" % (
        {name: service.variables for name, service in zip(hosts, services)}, log.read_text(errors="replace"))


def haproxy_binary():
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


@functools.lru_cache(maxsize=None)
def haproxy_version():
    """(major, minor) of the HAProxy the tests run."""
    out = subprocess.run([haproxy_binary(), "-v"], capture_output=True, text=True, check=True).stdout
    return tuple(int(part) for part in re.search(r"version (\d+)\.(\d+)", out).groups())


# --------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def ansible_env(tmp_path_factory):
    """The environment for ansible-playbook: the collection must be found as this repository
    (`source scripts/lib.sh && link_collection` does that; else a link under a temp dir)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    if not collections_path():
        root = tmp_path_factory.mktemp("collections")
        link = root / "ansible_collections" / "checktcp" / "haproxy_lua"
        link.parent.mkdir(parents=True)
        link.symlink_to(REPO)
        env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join(
            [str(root)] + [entry for entry in [os.environ.get("ANSIBLE_COLLECTIONS_PATH")] if entry])
    return env


@pytest.fixture(scope="session")
def free_port():
    """Factory: ``free_port()`` -> a loopback port nothing listens on."""
    return lambda: free_ports()[0]


@pytest.fixture(scope="session")
def http():
    """``http(port, method="GET", path="/", headers=None, body=b"", timeout=5.0)`` -> Response."""
    return http_request


@pytest.fixture(scope="session")
def haproxy_available():
    if not os.path.exists(haproxy_binary()):
        pytest.fail("HAProxy is not installed (scripts/lib.sh ensure_system_packages installs it)")
    if os.geteuid() != 0:
        pytest.fail("the loopback HAProxy tests run as root (haproxy.cfg chroots and drops privileges)")


@pytest.fixture(scope="module")
def make_service(tmp_path_factory, ansible_env, haproxy_available):
    """Factory: ``make_service(**role_vars)`` -> a StatusService not rendered yet; HAProxy stopped at teardown."""
    services = []

    def make(**variables):
        service = StatusService(tmp_path_factory.mktemp("checktcp"), variables, ansible_env)
        services.append(service)
        return service

    yield make
    for service in services:
        service.stop()


@pytest.fixture(scope="module")
def deploy(make_service):
    """Factory: ``deploy(vars1, vars2, ...)`` renders every configuration in one run,
    fails on any render error, starts each HAProxy and returns the StatusServices."""
    def run(*variable_sets):
        services = [make_service(**variables) for variables in variable_sets]
        render_together(services)
        return [service.start() for service in services]
    return run


@pytest.fixture(scope="module")
def fake_servers():
    """Factory: ``fake_servers(count, kind=FakeEchoServer)`` -> that many servers of that
    class (a list), stopped at teardown."""
    servers = []

    def start(count=1, kind=FakeEchoServer):
        started = [kind() for index in range(count)]
        servers.extend(started)
        return started

    yield start
    for server in servers:
        server.refuse()


# ------------------------------------------------- the failure-mode table

def pytest_configure(config):
    config.stash[FAILURE_TABLE] = []


@pytest.fixture(scope="session")
def failure_table(pytestconfig):
    """Rows (case, verdict, time to verdict in ms) printed and written at the end of the run."""
    return pytestconfig.stash[FAILURE_TABLE]


def pytest_terminal_summary(terminalreporter, config):
    rows = config.stash.get(FAILURE_TABLE, [])
    if not rows:
        return
    text = "| case | verdict | time to verdict (ms) |\n|---|---|---:|\n"
    text += "".join("| %s | %s | %d |\n" % row for row in rows)
    path = FAILURE_TABLE_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    terminalreporter.write_sep("-", "checktcp failure modes (also in %s)" % path)
    terminalreporter.write(text)
