"""Shared helpers for the testinfra tests of the molecule scenarios."""

import json
import os
import subprocess
import time

import pytest

STATUS_URL = "http://127.0.0.1/"
ECHO_UNIT = "checktcp-echo.service"


class Status:
    """The status page as an HTTP client sees it, fetched inside the host."""

    def __init__(self, host):
        self.host = host

    def get(self, url=STATUS_URL, method="GET", headers=()):
        args = ["curl", "-s", "-o", "/tmp/checktcp-body", "-X", method, "--max-time", "10",
                "-w", "%{http_code} %{time_total}"]
        for header in headers:
            args += ["-H", header]
        if method == "HEAD":
            args = [a for a in args if a not in ("-X", "HEAD")] + ["-I"]
        out = self.host.check_output(" ".join(_quote(a) for a in args + [url]))
        code, seconds = out.split()
        body = self.host.file("/tmp/checktcp-body").content_string
        return int(code), body, float(seconds)

    def wait_for(self, code, within=10.0):
        """Poll until the page answers `code`; return the last answer."""
        deadline = time.monotonic() + within
        while True:
            answer = self.get()
            if answer[0] == code or time.monotonic() > deadline:
                return answer
            time.sleep(0.2)

    def journal(self, lines=40):
        return self.host.run(
            f"journalctl --no-pager -n {lines} -u haproxy.service -u {ECHO_UNIT}").stdout


def _quote(arg):
    return "'" + arg.replace("'", "'\\''") + "'"


@pytest.fixture
def status(host):
    return Status(host)


@pytest.fixture
def echo_stopped(host):
    """Stop the echo server for one test, and always start it again."""
    host.run_expect([0], f"systemctl stop {ECHO_UNIT}")
    yield
    host.run_expect([0], f"systemctl start {ECHO_UNIT}")


def apply_site(host, extra_vars):
    """Run site.yml on this host from the controller, with extra variables."""
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         os.path.join(project, "site.yml"), "--limit", host.backend.host,
         "-e", json.dumps(extra_vars)],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout
