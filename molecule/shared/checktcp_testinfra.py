"""The status page as an HTTP client sees it, for the testinfra tests of every scenario.

Each scenario's tests/conftest.py puts this folder on sys.path and imports it.
"""

import time

import testinfra

STATUS_URL = "http://127.0.0.1/"
ECHO_UNIT = "checktcp-echo.service"
HAPROXY_UNIT = "haproxy.service"


def podman_host(host):
    """The instance of testinfra's ``host``, reached with `podman exec` when its
    Ansible connection is podman.

    testinfra runs every command of a podman-connected host as an Ansible ad
    hoc task (about a second each); podman exec is what that ends up doing,
    twenty times faster, which the timing-sensitive tests need.
    """
    backend = host.backend
    if backend.NAME == "ansible":
        hostvars = backend.ansible_runner.get_variables(backend.host)
        if hostvars.get("ansible_connection") in ("podman", "containers.podman.podman", "podman_pipelined"):
            return testinfra.get_host("podman://" + hostvars.get("ansible_host", backend.host))
    return host


def quote(arg):
    return "'" + str(arg).replace("'", "'\\''") + "'"


class Status:
    """The status page as an HTTP client sees it, fetched inside the host."""

    def __init__(self, host):
        self.host = host

    def get(self, url=STATUS_URL, headers=()):
        args = ["curl", "-s", "-o", "/tmp/checktcp-body", "--max-time", "10",
                "-w", "%{http_code} %{time_total}"]
        for header in headers:
            args += ["-H", header]
        out = self.host.check_output(" ".join(quote(a) for a in args + [url]))
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

    def journal(self, units=(HAPROXY_UNIT, ECHO_UNIT), lines=40):
        """The last lines of the units' journal, for assertion messages."""
        selectors = " ".join(f"-u {quote(unit)}" for unit in units)
        return self.host.run(f"journalctl --no-pager -n {lines} {selectors}").stdout
