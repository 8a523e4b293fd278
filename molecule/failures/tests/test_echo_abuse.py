"""The echo server under abuse: garbage, huge lines, 1000 idle clients, a slow client, idle timeout."""

import json

import pytest

ECHO_UNIT = "checktcp-echo.service"
ABUSE = "/usr/local/lib/checktcp-tests/abuse.py"
IDLE_TIMEOUT_S = 2.0  # echo_server_idle_timeout in molecule.yml
MAX_MEMORY = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def abuse(host, system):
    """Run files/abuse.py once inside the host; its report, and the unit's PID before and after."""
    pid_before = system.main_pid(ECHO_UNIT)
    out = host.check_output(f"python3 {ABUSE}")
    return {"report": json.loads(out), "pid_before": pid_before, "pid_after": system.main_pid(ECHO_UNIT)}


def _journal(status):
    return status.journal(units=(ECHO_UNIT,))


def test_binary_garbage_is_echoed_byte_for_byte(abuse, status):
    result = abuse["report"]["garbage"]
    assert result == {"header_ok": True, "echoed_exactly": True}, f"{result}\n{_journal(status)}"


def test_a_1_mib_line_closes_the_connection_only(host, abuse, status):
    result = abuse["report"]["long_line"]
    assert result.get("closed") is True, f"{result}\n{_journal(status)}"
    assert host.service(ECHO_UNIT).is_running, _journal(status)
    assert abuse["pid_after"] == abuse["pid_before"], f"the echo server restarted\n{_journal(status)}"
    assert "line longer than" in _journal(status), "the abuse is logged"


def test_1000_idle_connections_do_not_lock_out_a_client(abuse, status, figures):
    result = abuse["report"]["idle_many"]
    context = f"{result}\n{_journal(status)}"
    assert result.get("opened") == 1000 and result["headers"] == 1000, context
    figures("Echo server abuse",
            f"1000 idle connections opened in {result['open_seconds']} s (client RLIMIT_NOFILE "
            f"{result['rlimit_nofile']}); a well-behaved client served in "
            f"{result['well_behaved']['seconds']} s meanwhile; {result['still_open']} still open "
            f"after {result['held_seconds']} s")
    assert result["still_open"] == 1000, "all were held open at once: " + context
    assert result["well_behaved"]["ok"] and result["well_behaved"]["seconds"] <= 1.0, context
    assert result["status_page"] == 200, context


def test_a_slow_client_does_not_block_others(abuse, status):
    result = abuse["report"]["slow_client"]
    context = f"{result}\n{_journal(status)}"
    assert result.get("slow_echo_ok") is True, context
    assert result["well_behaved"]["ok"] and result["well_behaved"]["seconds"] < 0.5, context


def test_idle_connections_are_closed_after_the_idle_timeout(abuse, status, figures):
    result = abuse["report"]["idle_close"]
    figures("Echo server abuse", f"an idle connection closed after {result.get('seconds')} s "
            f"(echo_server_idle_timeout {IDLE_TIMEOUT_S:g})")
    assert result.get("closed") is True, f"{result}\n{_journal(status)}"
    assert IDLE_TIMEOUT_S - 0.5 <= result["seconds"] <= IDLE_TIMEOUT_S + 2, f"{result}\n{_journal(status)}"


def test_memory_stays_bounded_and_the_page_answers_200(host, abuse, status, system, figures):
    after = abuse["report"]["after"]
    assert after["well_behaved"]["ok"] and after["status_page"] == 200, f"{after}\n{status.journal()}"
    # The peak, not what is left after the flood: VmHWM of the process that took it.
    pid = system.main_pid(ECHO_UNIT)
    assert pid == abuse["pid_before"], f"the echo server restarted, its peak is lost\n{_journal(status)}"
    peak = int(host.check_output(f"awk '/^VmHWM:/ {{print $2}}' /proc/{pid}/status")) * 1024
    current = host.check_output(f"systemctl show -p MemoryCurrent --value {ECHO_UNIT}")
    figures("Echo server abuse", f"memory of the echo server through the abuse: peak {peak / 1048576:.1f} MiB "
            f"(VmHWM of its process); MemoryCurrent of the unit after it: "
            + (f"{int(current) / 1048576:.1f} MiB" if current.isdigit() else "not accounted here"))
    assert peak < MAX_MEMORY, f"peak {peak} bytes\n{_journal(status)}"
    code, body, _seconds = status.wait_for(200)
    assert code == 200 and "<h1>OK</h1>" in body, status.journal()
