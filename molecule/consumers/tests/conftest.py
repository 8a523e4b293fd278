"""Hosts and helpers of the consumers scenario: the page host and the load balancer."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import pytest
import testinfra

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from checktcp_testinfra import ECHO_UNIT  # noqa: E402 pylint: disable=wrong-import-position

PREFIX = os.environ["CHECKTCP_ID"] + "-consumers-"
PAGE, LB = PREFIX + "page", PREFIX + "lb"
SCENARIO_DIR = pathlib.Path(__file__).resolve().parents[1]
# The self-signed certificate on the page host, and the copy converge.yml
# pins on the load balancer.
PAGE_CERT = "/etc/haproxy/ssl/checktcp-selfsigned.pem"
LB_CA = "/etc/ssl/checktcp-page.pem"
FAKE = "/usr/local/lib/checktcp-tests/fake_echo.py"
FAKE_UNIT = "checktcp-fake-echo"
# The fake reads its behaviour from here on each connection.
FAKE_BEHAVIOUR = "/run/checktcp-fake-behaviour"
ADMIN_SOCKET = "/run/haproxy/admin.sock"
# The load balancer's check interval (converge.yml: inter 1s fall 2 rise 2).
CHECK_INTERVAL = 1.0


def q(*args):
    return " ".join(shlex.quote(str(a)) for a in args)


@pytest.fixture(scope="session")
def page():
    # podman exec directly: an Ansible-backed host costs a second a command.
    return testinfra.get_host("podman://" + PAGE)


@pytest.fixture(scope="session")
def lb():
    return testinfra.get_host("podman://" + LB)


@pytest.fixture(scope="session")
def page_ip(page):
    return page.check_output("hostname --all-ip-addresses").split()[0]


def admin(host, command):
    """Send one command to HAProxy's admin socket (no socat in the image)."""
    code = ("import socket,sys;s=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);"
            "s.sendall(sys.argv[2].encode()+b'\\n');sys.stdout.write(s.makefile().read())")
    return host.check_output(q("python3", "-c", code, ADMIN_SOCKET, command))


def server_stats(lb_host):
    """{(backend, server): row} from the load balancer's `show stat` (status, chkfail, ...)."""
    lines = admin(lb_host, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("svname") not in (None, "FRONTEND", "BACKEND"):
            out[(row["pxname"], row["svname"])] = row
    return out


def server_status(lb_host):
    """{(backend, server): status} from the load balancer's `show stat`."""
    return {key: row["status"] for key, row in server_stats(lb_host).items()}


# Runs inside the load balancer: polls its admin socket every 20 ms and prints
# the wall-clock time at which the server reaches the wanted status. Both
# containers share the host's kernel clock, so this time is comparable with one
# taken on the page host.
WATCH = """
import socket, sys, time
backend, server, wanted, within = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

def status():
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect("/run/haproxy/admin.sock")
        sock.sendall(b"show stat\\n")
        lines = sock.makefile().read().splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if (row.get("pxname"), row.get("svname")) == (backend, server):
            return row["status"]
    return ""

print("ready", flush=True)
deadline = time.time() + within
while time.time() < deadline:
    if status().startswith(wanted):
        print(time.time(), flush=True)
        break
    time.sleep(0.02)
"""


class Watch:
    """Waits, inside the load balancer, for a server to reach a status (see WATCH)."""

    def __init__(self, key, wanted, within):
        # pylint: disable-next=consider-using-with
        self.proc = subprocess.Popen(["podman", "exec", LB, "python3", "-c", WATCH, *key, wanted, str(within)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def reached_at(self):
        """The wall-clock time the status was reached, or None."""
        out = self.proc.communicate(timeout=60)[0].strip()
        return float(out) if out else None


def wait_status(lb_host, key, wanted, within):
    """Poll the load balancer until `key` has status `wanted`; return the seconds it took (None if never)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if server_status(lb_host).get(key, "").startswith(wanted):
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def wait_full_health(lb_host, key, within):
    """Poll until `key`'s check health is at its top (rise + fall - 1): a server
    that has just come UP sits at rise, where one failed check takes it DOWN.
    Return the row then (None if never)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        row = server_stats(lb_host).get(key, {})
        if row.get("check_health") and \
                int(row["check_health"]) == int(row["check_rise"]) + int(row["check_fall"]) - 1:
            return row
        time.sleep(0.05)
    return None


class Fake:
    """The fake echo server on the page host, in place of checktcp-echo.service."""

    def __init__(self, host):
        self.host = host
        self.invocation = None

    def start(self, behaviour):
        self.behave(behaviour)
        self.host.run_expect([0], f"systemctl stop {ECHO_UNIT}")
        self.host.run(f"systemctl stop {FAKE_UNIT} 2>/dev/null; systemctl reset-failed {FAKE_UNIT} 2>/dev/null")
        self.host.run_expect([0], q("systemd-run", "--unit", FAKE_UNIT, "--collect", "python3", "-u", FAKE,
                                    "--port", "8080", "--behaviour", behaviour, "--behaviour-file", FAKE_BEHAVIOUR))
        # This run's lines only: earlier runs of the unit are in the journal too.
        self.invocation = self.host.check_output(f"systemctl show -p InvocationID --value {FAKE_UNIT}")
        deadline = time.monotonic() + 10
        while "listening" not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "listening" in self.log(), self.log()

    def log(self):
        return self.host.run(f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={self.invocation}").stdout

    def connections(self, source):
        return len(re.findall(rf"^connection from {re.escape(source)}:", self.log(), re.M))

    def behave(self, behaviour):
        """Switch the running fake's behaviour, from its next connection on; return the wall-clock time."""
        return float(self.host.check_output(f"echo {behaviour} > {FAKE_BEHAVIOUR} && date +%s.%N"))

    def stop(self):
        self.host.run(f"systemctl stop {FAKE_UNIT}")
        self.host.run_expect([0], f"systemctl start {ECHO_UNIT}")
        # The next test starts from a working echo server.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.host.run(q("curl", "-sf", "-o", "/dev/null", "--cacert", PAGE_CERT, "https://localhost/")).rc == 0:
                return
            time.sleep(0.2)
        raise AssertionError("the real echo server did not answer again within 30 s")


@pytest.fixture
def fake(page):
    """A fake echo server for one test; the real one runs again afterwards."""
    fake_echo = Fake(page)
    yield fake_echo
    fake_echo.stop()


@pytest.fixture
def echo_stopped(page):
    page.run_expect([0], f"systemctl stop {ECHO_UNIT}")
    yield
    page.run_expect([0], f"systemctl start {ECHO_UNIT}")


def run_playbook(extra_vars):
    """Run apply.yml (the haproxy role on the page host) with extra variables; (rc, output)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO_DIR / "apply.yml"),
         "-e", json.dumps(extra_vars)],
        capture_output=True, text=True, check=False, env=env, timeout=300)
    return result.returncode, result.stdout + result.stderr
