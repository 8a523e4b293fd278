"""haproxy-validate accepts valid configurations, and a reload counts only once HAProxy runs the new files.

- `noreuseport`: HAProxy then holds its ports without SO_REUSEPORT, and the
  test bind of the next run must not fail on them;
- a bind with an environment variable ("${VAR-default}") is expanded, never a
  traceback;
- a reload HAProxy fails to load (a port taken after validation, before the
  handlers) fails the play and leaves the "files loaded" fingerprint
  unrecorded, so the next run reloads again;
- a restart in one play does not stand for the reload of a change made by a
  later play of the same run.
"""

import re

import pytest

LOADED = "/etc/haproxy/lua/loaded.sha256"
VALIDATED_TASK = "Render haproxy.cfg, validated by HAProxy"
WAIT_TASK = "Wait until HAProxy runs the new files"
RECORD_TASK = "Record the files HAProxy loaded"
THIEF_UNIT = "checktcp-port-thief"
RACE_PORT = 8444
RACE_FRONTEND = {"haproxy_frontends": [{
    "name": "race", "bind": [f"127.0.0.1:{RACE_PORT}"],
    "lines": ["http-request return status 200 content-type text/plain string race"]}]}


def _context(run, status):
    return f"\n--- run ---\n{run.tail()}\n--- journal ---\n{status.journal()}"


def _reloaded(run, status, system, before_pids):
    context = _context(run, status)
    assert run.returncode == 0, "the run failed" + context
    assert "changed" in run.task_status("Reload HAProxy"), "no reload" + context
    assert run.task_status(WAIT_TASK) == ["ok"], "the reload was not confirmed" + context
    master, workers = system.haproxy_pids()
    assert master == before_pids[0], "HAProxy restarted" + context
    assert workers - before_pids[1], "no new worker" + context
    code, body, _seconds = status.get()
    assert code == 200 and "<h1>OK</h1>" in body, f"the page answers {code}" + context


@pytest.fixture(scope="module")
def default_after(playbook, status):
    """Every case starts from and ends with the scenario's own configuration."""
    yield
    run = playbook.run()
    assert run.returncode == 0, _context(run, status)


# The module fixture's last run goes back to SO_REUSEPORT while HAProxy still
# holds its port without it.
@pytest.mark.parametrize("extra", [
    {"haproxy_global_extra_lines": ["noreuseport"]},
    # A second run while HAProxy holds its port without SO_REUSEPORT, with an
    # environment variable in the bind, which HAProxy expands.
    {"haproxy_global_extra_lines": ["noreuseport"], "haproxy_status_bind": '"*:${CHECKTCP_STATUS_PORT-80}"'},
], ids=["noreuseport", "noreuseport-again-env-bind"])
def test_valid_configuration_is_accepted_and_loaded(default_after, playbook, status, system, extra):
    before = system.haproxy_pids()
    run = playbook.run(extra)
    context = _context(run, status)
    assert run.task_status(VALIDATED_TASK) == ["changed"], f"{VALIDATED_TASK} did not pass" + context
    assert "Traceback" not in run.output, context
    _reloaded(run, status, system, before)


def test_failed_reload_fails_the_play_and_the_next_run_reloads(default_after, host, playbook, status, system):
    host.run(f"systemctl stop {THIEF_UNIT}; systemctl reset-failed {THIEF_UNIT}")
    fingerprint = host.file(LOADED).content_string
    before = system.haproxy_pids()
    try:
        race = playbook.run(RACE_FRONTEND, playbook_file="reload_race.yml")
        context = _context(race, status)
        assert race.returncode != 0, "a reload HAProxy failed to load passed" + context
        assert race.task_status(VALIDATED_TASK) == ["changed"], context
        assert race.task_status(WAIT_TASK) == ["fatal"], f"{WAIT_TASK} did not fail" + context
        assert "HAProxy failed to load the new files" in race.failure_text() + race.output, context
        assert not race.task_status(RECORD_TASK), "the fingerprint was recorded" + context
        assert host.file(LOADED).content_string == fingerprint, "the fingerprint changed" + context
        # HAProxy still serves, with the previous files.
        assert system.haproxy_pids()[0] == before[0], context
        code, _body, _seconds = status.get()
        assert code == 200, context
        assert not host.socket(f"tcp://127.0.0.1:{RACE_PORT}").is_listening or \
            "haproxy" not in host.run(f"ss -Hltnp 'sport = :{RACE_PORT}'").stdout, context
    finally:
        host.run(f"systemctl stop {THIEF_UNIT}")
    # The files no longer change, but HAProxy does not run them: reload again.
    again = playbook.run(RACE_FRONTEND)
    context = _context(again, status)
    assert again.task_status(VALIDATED_TASK) == ["ok"], context
    assert again.task_status("Reload HAProxy when it runs other files") == ["changed"], context
    _reloaded(again, status, system, before)
    assert again.task_status(RECORD_TASK) == ["changed"], context
    assert host.file(LOADED).content_string != fingerprint, context
    answer = host.run(f"curl -s --max-time 5 http://127.0.0.1:{RACE_PORT}/")
    assert answer.stdout == "race", answer.stdout + context


def test_a_change_in_a_later_play_is_reloaded_after_a_restart(default_after, playbook, status):
    """two_plays.yml: the first play restarts HAProxy, the second adds the check "second"."""
    run = playbook.run(playbook_file="two_plays.yml")
    context = _context(run, status)
    assert run.returncode == 0, "the run failed" + context
    assert "changed" in run.task_status("Restart HAProxy"), "the first play did not restart HAProxy" + context
    assert run.task_status(VALIDATED_TASK)[-1] == "changed", "the second play did not change haproxy.cfg" + context
    assert "changed" in run.task_status("Reload HAProxy"), "the second play's change was not reloaded" + context
    # The first play's wait is skipped when its own change was loaded by its restart.
    waits = run.task_status(WAIT_TASK)
    assert waits and waits[-1] == "ok", "the reload was not confirmed" + context
    assert set(waits[:-1]) <= {"skipping"}, waits
    # The new check answers (its echo server runs: 200), where HAProxy running
    # the first play's files would say 404.
    code, body, _seconds = status.get("http://127.0.0.1/second")
    assert code == 200 and "<h1>OK</h1>" in body, f"/second answers {code}" + context


def _relay_sockets(host):
    """The relay sockets in HAProxy's chroot, and those the live haproxy.cfg binds."""
    on_disk = set(host.run("find /var/lib/haproxy -maxdepth 1 -type s -name 'checktcp-*.sock'").stdout.split())
    bound = set(re.findall(r"^\s*bind unix@(\S+)", host.file("/etc/haproxy/haproxy.cfg").content_string, re.M))
    return on_disk, bound


def test_the_sockets_of_removed_relays_go_once_haproxy_runs_without_them(default_after, host, playbook, status):
    """Three live targets in two checks, then the scenario's one: the two relays gone leave no socket."""
    wider = playbook.run({"haproxy_checktcp_checks": [
        {"name": "one", "targets": [{"host": "127.0.0.1", "port": 8080}]},
        {"name": "two", "targets": [{"host": "127.0.0.1", "port": 8080, "name": "a"},
                                    {"host": "127.0.0.1", "port": 8080, "name": "b"}]},
    ]})
    assert wider.returncode == 0, _context(wider, status)
    on_disk, bound = _relay_sockets(host)
    assert len(bound) == 3 and on_disk == bound, (on_disk, bound)

    narrower = playbook.run()
    context = _context(narrower, status)
    assert narrower.returncode == 0, context
    on_disk, bound = _relay_sockets(host)
    assert len(bound) == 1, bound
    assert on_disk == bound, f"left over: {sorted(on_disk - bound)}" + context
    code, _body, _seconds = status.get()
    assert code == 200, context
