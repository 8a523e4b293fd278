"""Bad input stops the play before any file changes; bad values HAProxy rejects fail at validation.

All the runs start together (none may change anything, so they can run side
by side): a module fixture snapshots the live files, HAProxy's PIDs and the
page, runs them all, and snapshots again; each case then checks its own run.
"""

import pytest

INJECTED_BIND = "*:80\n    http-request return status 200 content-type text/plain string OK"

# variables -> strings the failure must contain: the variable's name, then
# what pins this failure down (the rejected value as the role reports it).
BAD_INPUTS = {
    "echo_server_port=70000": ({"echo_server_port": 70000}, ["echo_server_port", "(got 70000)"]),
    "targets=[]": ({"haproxy_checktcp_targets": []}, ["haproxy_checktcp_targets", "targets=[]"]),
    "timeout_ms=-5": ({"haproxy_checktcp_timeout_ms": -5}, ["haproxy_checktcp_timeout_ms", "timeout_ms=-5"]),
    "timeout_ms=soon": ({"haproxy_checktcp_timeout_ms": "soon"},
                        ["argument 'haproxy_checktcp_timeout_ms' is of type str"]),
    "mode=turbo": ({"haproxy_checktcp_mode": "turbo"}, ["haproxy_checktcp_mode", "turbo"]),
    "target-port=0": ({"haproxy_checktcp_targets": [{"host": "127.0.0.1", "port": 0}]},
                      ["haproxy_checktcp_targets", "'port': 0"]),
    "policy=5": ({"haproxy_checktcp_policy": 5}, ["haproxy_checktcp_policy", "policy=5"]),
    "send=a\\nb": ({"haproxy_checktcp_send": "a\nb"}, ["haproxy_checktcp_send", 'send="a\\nb"']),
    # A newline would write a line of its own into haproxy.cfg: here an always-200 page.
    "status_bind=newline": ({"haproxy_status_bind": INJECTED_BIND},
                            ["haproxy_status_bind: must not contain control characters",
                             '"*:80\\n    http-request return status 200']),
    "frontend-bind=newline": ({"haproxy_frontends": [{"name": "web", "bind": ["127.0.0.1:8000", INJECTED_BIND]}]},
                              ["haproxy_frontends[0].bind[1]: must not contain control characters"]),
    "timeout=newline": ({"haproxy_timeout_client": "30s\n    timeout tunnel 1h"},
                        ["haproxy_timeout_client: must not contain control characters"]),
    "echo_bind=newline": ({"echo_server_bind_address": "127.0.0.1\n"},
                          ["echo_server_bind_address: must not contain control characters"]),
    "interval_ms=10**20": ({"haproxy_checktcp_interval_ms": 10 ** 20},
                           ["haproxy_checktcp_interval_ms", "from 100 to 86400000"]),
    "max_line_bytes=10**20": ({"echo_server_max_line_bytes": 10 ** 20},
                              ["echo_server_max_line_bytes must be from 64 to 1048576"]),
}

# Values that pass the role's checks but HAProxy (or the bind test) rejects.
REJECTED = {
    "bind=nosuchhost.invalid:80": {"haproxy_status_bind": "nosuchhost.invalid:80"},
    "bind=192.0.2.1:80": {"haproxy_status_bind": "192.0.2.1:80"},
    "global=no-such-keyword": {"haproxy_global_extra_lines": ["no-such-keyword"]},
}
VALIDATED_TASK = "Render haproxy.cfg, validated by HAProxy"


class Batch:
    """Runs started together, with the state of the host before and after."""

    def __init__(self, system, status, playbook, cases):
        self.before_files = system.file_states()
        self.before_pids = system.haproxy_pids()
        self.before_status = status.get()
        procs = {name: playbook.start(extra_vars) for name, extra_vars in cases.items()}
        self.runs = {name: playbook.finish(proc) for name, proc in procs.items()}
        self.after_files = system.file_states()
        self.after_pids = system.haproxy_pids()
        self.after_status = status.get()
        self.journal = status.journal()

    def check_host_untouched(self, run):
        context = f"\n--- run ---\n{run.tail()}\n--- journal ---\n{self.journal}"
        assert self.before_status[0] == 200, "the page was not 200 before the runs" + context
        for path, before in self.before_files.items():
            after = self.after_files[path]
            assert after["sha256"] == before["sha256"], f"{path} changed" + context
            assert after["mtime"] == before["mtime"], f"{path} was rewritten" + context
        assert self.after_pids[0] == self.before_pids[0], "HAProxy restarted" + context
        assert self.after_pids[1] == self.before_pids[1], "HAProxy reloaded" + context
        code, body, _seconds = self.after_status
        assert code == 200 and "<h1>OK</h1>" in body, f"the page answers {code}" + context


@pytest.fixture(scope="module")
def runs(system, status, playbook):
    cases = {name: case[0] for name, case in BAD_INPUTS.items()}
    cases.update(REJECTED)
    return Batch(system, status, playbook, cases)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_stops_the_play_before_any_change(runs, name):
    run = runs.runs[name]
    expected = BAD_INPUTS[name][1]
    said = run.failure_text()
    assert run.returncode != 0, f"{name} was accepted\n{run.tail()}"
    assert run.failures(), f"no task failed\n{run.tail()}"
    for text in expected:
        assert text in said, f"the failure does not say {text!r}:\n{said}"
    recap = run.recap()
    assert recap.get("failed") == 1 and recap.get("changed") == 0, f"{recap}\n{run.tail()}"
    # Failed before the first task that writes a file of the roles.
    for task in ("Install the echo server program", "Install the checktcp Lua service",
                 "Render the checks for the Lua service", "Render haproxy.cfg"):
        assert "changed" not in run.task_status(task), f"{task} ran\n{run.tail()}"
    runs.check_host_untouched(run)


@pytest.mark.parametrize("name", list(REJECTED))
def test_values_haproxy_rejects_fail_at_validation(runs, name):
    run = runs.runs[name]
    assert run.returncode != 0, f"{name} was accepted\n{run.tail()}"
    assert run.task_status(VALIDATED_TASK) == ["fatal"], f"{VALIDATED_TASK} did not fail\n{run.tail()}"
    said = run.failure_text()
    assert "failed to validate" in said, said
    assert "changed" not in run.task_status("Render the checks for the Lua service"), run.tail()
    for handler in ("Reload HAProxy", "Restart HAProxy"):
        assert not run.task_status(handler), f"{handler} ran\n{run.tail()}"
    runs.check_host_untouched(run)
