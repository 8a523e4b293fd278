"""checktcp-echo.service as systemd runs it: readiness, restarts without end, a late bind
address, a unit on disk newer than the loaded one, numbers given as strings.

Each case that changes the unit puts the converged state back before it ends.
"""

import json
import os
import subprocess
import textwrap

import pytest
from conftest import Run, _playbook_env  # pylint: disable=import-error

ECHO_UNIT = "checktcp-echo.service"
UNIT_FILE = "/etc/systemd/system/checktcp-echo.service"
LATE_ADDRESS = "192.0.2.10"  # TEST-NET-1: on no host until the test adds it
ABUSE = "/usr/local/lib/checktcp-tests/abuse.py"
MAX_RSS_BYTES = 64 * 1024 * 1024  # half the default echo_server_memory_max

ECHO_PLAY = textwrap.dedent("""\
    ---
    - name: Apply the echo_server role alone
      hosts: echo_servers
      become: true
      gather_facts: false
      roles:
        - role: checktcp.haproxy_lua.echo_server
    """)

# Runs inside the host, so that no `podman exec` delay hides a start-up gap.
RESTART_AND_CONNECT = r"""
import json, socket, subprocess
refused = []
for attempt in range(5):
    subprocess.run(["systemctl", "restart", "checktcp-echo.service"], check=True)
    try:  # no retry: `systemctl restart` returned, so the port must answer now
        with socket.create_connection(("127.0.0.1", 8080), timeout=5) as sock:
            header = sock.makefile("rb").readline().decode()
            sock.sendall(b"check\n")
            ok = header.startswith("ECHO client=") and sock.recv(6) == b"check\n"
    except OSError as exc:
        refused.append(f"{attempt}: {exc}")
        continue
    if not ok:
        refused.append(f"{attempt}: no echo")
print(json.dumps(refused))
"""

KILL_REPEATEDLY = r"""
import json, subprocess, time
UNIT = "checktcp-echo.service"
def show(prop):
    return subprocess.run(["systemctl", "show", "-p", prop, "--value", UNIT],
                          capture_output=True, text=True, check=True).stdout.strip()
seen = []
for kill in range(KILLS):
    old = show("MainPID")
    subprocess.run(["systemctl", "kill", "-s", "KILL", UNIT], check=True)
    started = time.monotonic()
    while time.monotonic() - started < 5:
        if show("ActiveState") == "active" and show("MainPID") not in ("0", old):
            break
        time.sleep(0.05)
    seen.append({"kill": kill, "state": show("ActiveState"), "seconds": round(time.monotonic() - started, 2)})
print(json.dumps(seen))
"""


class EchoPlay:
    """ansible-playbook of the echo_server role alone, with extra vars as `-e` strings."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "echo.yml")
        with open(self.path, "w", encoding="utf-8") as play:
            play.write(ECHO_PLAY)

    def start(self, *extra):
        args = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], self.path]
        for item in extra:
            args += ["-e", item]
        # pylint: disable-next=consider-using-with
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=_playbook_env())

    def run(self, *extra, timeout=300):
        proc = self.start(*extra)
        output = proc.communicate(timeout=timeout)[0]
        return Run(proc.returncode, output)


@pytest.fixture(scope="module")
def echo_play(tmp_path_factory):
    return EchoPlay(str(tmp_path_factory.mktemp("echo-play")))


@pytest.fixture
def converged_afterwards(host, echo_play):
    """Whatever the test did, end with the converged unit running on 127.0.0.1:8080."""
    yield
    host.run(f"ip address del {LATE_ADDRESS}/32 dev lo")
    run = echo_play.run()
    host.run(f"systemctl reset-failed {ECHO_UNIT}; systemctl start {ECHO_UNIT}")
    assert run.returncode == 0, run.tail()


def _journal(status):
    return status.journal(units=(ECHO_UNIT,))


def test_restart_returns_once_the_port_answers(host, status, converged_afterwards):
    out = host.check_output(f"python3 - <<'EOF'\n{RESTART_AND_CONNECT}\nEOF")
    refused = json.loads(out)
    assert not refused, f"connections right after `systemctl restart` failed: {refused}\n{_journal(status)}"


def test_repeated_kills_never_leave_the_unit_failed(host, status, figures, converged_afterwards):
    kills = 8  # more than systemd's default start limit (5 starts in 10 s)
    out = host.check_output(f"python3 - <<'EOF'\nKILLS = {kills}\n{KILL_REPEATEDLY}\nEOF")
    seen = json.loads(out)
    figures("kill -9 recovery", f"{kills} kills in a row: back after "
            + ", ".join(f"{entry['seconds']} s" for entry in seen))
    assert all(entry["state"] == "active" for entry in seen), f"{seen}\n{_journal(status)}"


def test_a_bind_address_configured_late_is_served_once_it_exists(
        host, status, echo_play, figures, converged_afterwards):
    """At boot an address may come up after the unit starts: the unit keeps trying, never ends failed."""
    echo_play.run(f"echo_server_bind_address={LATE_ADDRESS}")
    # More restarts than the default start limit allows (5 starts in 10 s).
    restarts = host.run(
        f"timeout 30 sh -c 'until [ \"$(systemctl show -p NRestarts --value {ECHO_UNIT})\" -gt 5 ]; do sleep 0.2; done'"
        f" && systemctl show -p NRestarts --value {ECHO_UNIT}")
    assert restarts.rc == 0, f"the unit did not restart 6 times within 30 s\n{_journal(status)}"
    state = host.check_output(f"systemctl show -p ActiveState --value {ECHO_UNIT}")
    assert state != "failed", f"the unit gave up\n{_journal(status)}"
    host.check_output(f"ip address add {LATE_ADDRESS}/32 dev lo")
    waited = host.run(
        "for i in $(seq 50); do "
        f"  python3 -c 'import socket; socket.create_connection((\"{LATE_ADDRESS}\", 8080), 1)' "
        "    2>/dev/null && echo $i && exit 0; sleep 0.1; "
        "done; exit 1")
    assert waited.rc == 0, f"nothing listens on {LATE_ADDRESS}:8080\n{_journal(status)}"
    figures("Echo server start-up", f"bind address added after {restarts.stdout.strip()} restarts: served "
            f"{int(waited.stdout) / 10:.1f} s after it appeared")


def test_a_unit_on_disk_newer_than_the_loaded_one_is_reloaded(host, status, echo_play,
                                                              converged_afterwards):
    """A run interrupted between writing the unit and `daemon-reload` must be completed by the next."""
    # systemd wants a reload when the file is newer than what it loaded: plain cp.
    host.check_output(f"cp -p {UNIT_FILE} /root/echo-unit.bak && echo '# drift' >> {UNIT_FILE} "
                      f"&& systemctl daemon-reload && cp /root/echo-unit.bak {UNIT_FILE}")
    assert host.check_output(f"systemctl show -p NeedDaemonReload --value {ECHO_UNIT}") == "yes"
    run = echo_play.run()
    assert run.returncode == 0, run.tail()
    need = host.check_output(f"systemctl show -p NeedDaemonReload --value {ECHO_UNIT}")
    assert need == "no", f"the loaded unit is still not the one on disk\n{run.tail()}"


def test_numbers_and_booleans_given_as_strings(host, echo_play):
    """-e key=value (and INI inventories) give strings: the same values as numbers change nothing."""
    run = echo_play.run("echo_server_port=8080", "echo_server_max_line_bytes=4096",
                        "echo_server_idle_timeout=2", "echo_server_max_connections=1024",
                        "echo_server_manage_service=true")
    assert run.returncode == 0, run.tail()
    assert run.recap().get("changed") == 0, run.tail()
    assert host.service(ECHO_UNIT).is_running


# -e value -> what the failure must say (the variable's name first).
BAD_VALUES = {
    "echo_server_memory_max=$LIMIT": ["echo_server_memory_max", '"$LIMIT"'],
    "echo_server_memory_max=1G%n": ["echo_server_memory_max", '"1G%n"'],
    "echo_server_bind_address=$HOSTNAME": ["echo_server_bind_address", '"$HOSTNAME"'],
    "echo_server_bind_address=%H": ["echo_server_bind_address", '"%H"'],
    "echo_server_port=0": ["echo_server_port", "(got 0)"],
    "echo_server_idle_timeout=0": ["echo_server_idle_timeout", "(got 0)"],
}
UNIT_TASK = "Install the systemd unit"


@pytest.fixture(scope="module")
def bad_runs(host, system, echo_play):
    """All bad values at once (none may change anything), the live files before and after."""
    before = system.file_states()
    procs = {extra: echo_play.start(extra) for extra in BAD_VALUES}
    runs = {extra: Run(None, proc.communicate(timeout=300)[0]) for extra, proc in procs.items()}
    for extra, proc in procs.items():
        runs[extra].returncode = proc.returncode
    after = system.file_states()
    running = host.service(ECHO_UNIT).is_running
    yield {"runs": runs, "before": before, "after": after, "running": running}
    if after != before or not running:
        echo_play.run()


@pytest.mark.parametrize("extra", list(BAD_VALUES))
def test_bad_unit_values_stop_the_play_before_any_change(bad_runs, extra):
    run = bad_runs["runs"][extra]
    said = run.failure_text()
    assert run.returncode != 0, f"{extra} was accepted\n{run.tail()}"
    for text in BAD_VALUES[extra]:
        assert text in said, f"the failure does not say {text!r}:\n{said}\n{run.tail()}"
    assert run.recap().get("changed") == 0, run.tail()
    assert not run.task_status(UNIT_TASK), f"{UNIT_TASK} ran\n{run.tail()}"
    assert bad_runs["after"] == bad_runs["before"]
    assert bad_runs["running"]


def test_a_value_systemd_rejects_fails_at_unit_validation(host, system, echo_play, converged_afterwards):
    """0 passes the role's pattern (101%, this test's value before, no longer does); systemd
    would ignore it ("out of range, ignoring": no memory ceiling at all)."""
    before = system.file_states()
    run = echo_play.run("echo_server_memory_max=0")
    assert run.returncode != 0, run.tail()
    assert run.task_status(UNIT_TASK) == ["fatal"], run.tail()
    said = run.failure_text()
    assert "failed to validate" in said, said
    stderr = "".join(str(result.get("stderr", "")) for result in run.failures())
    assert "Memory limit '0' out of range" in stderr, run.tail()
    assert system.file_states() == before
    assert host.service(ECHO_UNIT).is_running


def test_never_reading_clients_stay_under_the_memory_ceiling(host, status, system, echo_play, figures,
                                                             converged_afterwards):
    """1000 clients send lines and never read the echoes, with the default idle timeout
    (30 s: the scenario's 2 s would close them first): bounded memory, no kill, still serving."""
    run = echo_play.run(json.dumps({"echo_server_idle_timeout": 30}))
    assert run.returncode == 0, run.tail()
    pid = system.main_pid(ECHO_UNIT)
    result = json.loads(host.check_output(f"python3 {ABUSE} never_reading"))["never_reading"]
    context = f"{result}\n{_journal(status)}"
    assert result.get("clients") == 1000, context
    figures("Echo server abuse",
            f"1000 never-reading clients (echo_server_idle_timeout 30; {result['sent_mib']} MiB of lines "
            f"sent in {result['seconds']} s): VmRSS {result['before']['rss'] / 1048576:.1f} MiB before, "
            f"peak {(result['during'].get('hwm') or 0) / 1048576:.1f} MiB (VmHWM) "
            f"(MemoryCurrent {result['peak'].get('memory_current')}); echo_server_memory_max 128M; "
            f"status page {result['status_page']['status']} in {result['status_page']['ms']} ms")
    assert system.main_pid(ECHO_UNIT) == pid == result["during"]["pid"], "the echo server was killed: " + context
    # VmHWM: the process's peak, which samples of VmRSS could miss.
    assert result["during"]["hwm"] is not None and result["during"]["hwm"] < MAX_RSS_BYTES, context
    assert result["well_behaved"]["ok"] and result["well_behaved"]["seconds"] <= 1.0, context
    assert result["status_page"]["status"] == 200, context
