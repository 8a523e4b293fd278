"""Shared helpers for the testinfra tests of the failures scenario."""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from checktcp_testinfra import (  # noqa: E402 pylint: disable=wrong-import-position
    HAPROXY_UNIT, Status, podman_host, quote)

# Where prepare.yml copies files/load.py and files/fake_echo.py.
HELPERS_DIR = "/usr/local/lib/checktcp-tests"
# The files the roles deploy; a failed run must leave them untouched.
LIVE_FILES = (
    "/etc/haproxy/haproxy.cfg",
    # the Lua pair haproxy.cfg loads, named after its content (a glob)
    "/etc/haproxy/lua/checktcp*.lua",
    "/etc/systemd/system/checktcp-echo.service",
    "/usr/local/lib/checktcp/checktcp_echo.py",
)
SCENARIO_DIR = os.environ.get("MOLECULE_SCENARIO_DIRECTORY",
                              os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Figures the tests measure, printed at the end of the session (and quoted
# by the README): title -> lines.
FIGURES = {}


def record_figure(title, *lines):
    """Print a measured figure now (molecule runs pytest with -s) and keep it for the summary."""
    FIGURES.setdefault(title, []).extend(lines)
    for line in lines:
        print(f"[{title}] {line}")


def record_table_row(title, columns, row):
    """Add a row to a Markdown table figure, starting it with its header."""
    if title not in FIGURES:
        FIGURES[title] = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    FIGURES[title].append("| " + " | ".join(str(cell) for cell in row) + " |")


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("checktcp failures: measured figures")
    for title, lines in FIGURES.items():
        terminalreporter.write_line(f"### {title}")
        terminalreporter.write_line("")
        for line in lines:
            terminalreporter.write_line(line)
        terminalreporter.write_line("")


@pytest.fixture(scope="module")
def host(host):
    """The instance, reached with `podman exec` (checktcp_testinfra.podman_host)."""
    return podman_host(host)


@pytest.fixture(scope="module")
def status(host):
    return Status(host)


class Journal:
    """Journal lines of a unit written after a point in time.

    A timestamp to the microsecond, taken inside the host: journalctl 252
    returns nothing for --after-cursor combined with -u.
    """

    def __init__(self, host):
        self.host = host
        self.start = host.check_output("date '+%Y-%m-%d %H:%M:%S.%6N'")

    def since(self, unit=HAPROXY_UNIT):
        return self.host.run(
            f"journalctl --no-pager -o cat -u {quote(unit)} --since {quote(self.start)}").stdout

    def wait_for(self, pattern, unit=HAPROXY_UNIT, within=3.0):
        """Poll until a line written since the cursor matches `pattern`; return all such lines."""
        deadline = time.monotonic() + within
        while True:
            text = self.since(unit)
            if re.search(pattern, text) or time.monotonic() > deadline:
                return text
            time.sleep(0.2)


@pytest.fixture
def journal(host):
    return Journal(host)


class System:
    """Processes and files inside the host."""

    def __init__(self, host):
        self.host = host

    def file_states(self, paths=LIVE_FILES):
        """sha256 and mtime (to the nanosecond) of each path."""
        quoted = " ".join(p if "*" in p else quote(p) for p in paths)
        states = {}
        for line in self.host.check_output(f"sha256sum {quoted}").splitlines():
            digest, path = line.split(None, 1)
            states[path] = {"sha256": digest}
        for line in self.host.check_output(f"stat -c '%n %y' {quoted}").splitlines():
            path, mtime = line.split(" ", 1)
            states[path]["mtime"] = mtime
        return states

    def main_pid(self, unit):
        return int(self.host.check_output(f"systemctl show -p MainPID --value {quote(unit)}"))

    def children(self, pid):
        """PIDs whose parent is `pid` (procps is not in the image: read /proc)."""
        out = self.host.run("cat /proc/[0-9]*/stat 2>/dev/null").stdout
        found = set()
        for line in out.splitlines():
            head, sep, rest = line.rpartition(")")
            fields = rest.split()
            if sep and len(fields) > 1 and int(fields[1]) == pid:
                found.add(int(head.split(" (", 1)[0]))
        return found

    def haproxy_pids(self):
        """(master PID, set of worker PIDs) of haproxy.service."""
        master = self.main_pid(HAPROXY_UNIT)
        return master, self.children(master)


@pytest.fixture(scope="module")
def system(host):
    return System(host)


def _playbook_env():
    env = dict(os.environ)
    env.update({
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        # One JSON document per result line: failure messages are parsed, not scraped.
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "true",
        # The roles use no facts; not gathering them saves seconds per run.
        "ANSIBLE_GATHERING": "explicit",
    })
    return env


class Run:
    """The outcome of one ansible-playbook run."""

    def __init__(self, returncode, output):
        self.returncode = returncode
        self.output = output

    def failures(self):
        """The decoded results of the failed tasks."""
        found = []
        for line in self.output.splitlines():
            match = re.match(r"^fatal: \[[^]]+\]: FAILED! => (\{.*\})\s*$", line)
            if match:
                found.append(json.loads(match.group(1)))
        return found

    def failure_text(self):
        """What the failed tasks said: assertion, message, argument errors."""
        parts = []
        for result in self.failures():
            parts += [str(result.get("assertion", "")), str(result.get("msg", ""))]
            parts += [str(err) for err in result.get("argument_errors", [])]
        return "\n".join(parts)

    def task_status(self, title):
        """Statuses (ok, changed, skipping, fatal) of the tasks or handlers whose title contains `title`."""
        statuses, current = [], None
        for line in self.output.splitlines():
            header = re.match(r"^(TASK|RUNNING HANDLER) \[(.*)\]", line)
            if header:
                current = header.group(2)
                continue
            word = re.match(r"^(ok|changed|skipping|fatal|failed): \[", line)
            if word and current is not None and title in current:
                statuses.append(word.group(1))
        return statuses

    def tail(self, lines=60):
        """The end of the output, for assertion messages."""
        return "\n".join(self.output.splitlines()[-lines:])

    def recap(self):
        """The PLAY RECAP counters of the host, e.g. {'ok': 20, 'changed': 2, ...}."""
        for line in self.output.splitlines():
            if " : ok=" in line:
                return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        return {}


class Playbook:
    """Runs apply.yml (site.yml) against the scenario's instance, as a subprocess."""

    @staticmethod
    def start(extra_vars=None, playbook_file="apply.yml"):
        """Start a run with extra vars given as JSON; finish it with finish()."""
        args = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
                os.path.join(SCENARIO_DIR, playbook_file)]
        if extra_vars is not None:
            args += ["-e", json.dumps(extra_vars)]
        # pylint: disable-next=consider-using-with
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=_playbook_env())

    @staticmethod
    def finish(proc, timeout=300):
        output = proc.communicate(timeout=timeout)[0]
        return Run(proc.returncode, output)

    def run(self, extra_vars=None, timeout=300, playbook_file="apply.yml"):
        return self.finish(self.start(extra_vars, playbook_file), timeout)


@pytest.fixture(scope="module")
def playbook():
    return Playbook()


@pytest.fixture(scope="module")
def figures():
    return record_figure


@pytest.fixture(scope="module")
def table():
    return record_table_row
