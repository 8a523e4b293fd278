# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The role's validation of haproxy_checktcp_checks, through the role itself: a
bad list fails the play at the validation task, naming the variable, and leaves
the files of a good render byte for byte as they were; numbers given
as strings (as ``-e key=value`` and INI inventories give them) are accepted.

One good render, copied as the starting files of each case; then the cases'
renders, a few at a time."""

from __future__ import annotations

import pathlib
import shutil

import pytest

VALIDATION_TASK = "Assert that the variables are valid"


def good_checks(port):
    return [{"name": "web", "targets": [{"host": "127.0.0.1", "port": port}]},
            {"name": "db", "path": "/status/db", "targets": [{"host": "127.0.0.1", "port": port}]}]


def target(port):
    return [{"host": "127.0.0.1", "port": port}]


# A CA file that is not there, inside the clone.
MISSING_CA = str(pathlib.Path(__file__).resolve().parent / "no-such-ca.pem")
# A directory with a space, inside the clone (nothing is written there: the play stops first).
SPACED_DIR = str(pathlib.Path(__file__).resolve().parents[2] / ".cache" / "haproxy etc")
# An admin socket's path with a #, inside the clone (nothing is made there).
COMMENTED_SOCKET = str(pathlib.Path(__file__).resolve().parents[2] / ".cache" / "admin#1.sock")
# Renders (ansible-playbook runs) at once.
CONCURRENT_RENDERS = 6

# case -> (variables, given the port of a target; strings the failure must contain)
REJECTED = {
    "duplicate-names": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port)}, {"name": "web", "path": "/web2", "targets": target(port)}]},
        ["haproxy_checktcp_checks: ", 'same name "web"']),
    "duplicate-paths": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port)}, {"name": "db", "path": "/web", "targets": target(port)}]},
        ["haproxy_checktcp_checks: ", 'same path "/web"']),
    "bad-name": (lambda port: {"haproxy_checktcp_checks": [{"name": "Web Site", "targets": target(port)}]},
                 ["haproxy_checktcp_checks[0]: name must match", 'name="Web Site"']),
    "path-without-slash": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "path": "web", "targets": target(port)}]},
        ['haproxy_checktcp_checks[0] (name "web"): path must start with /']),
    "path-is-the-overview": (lambda port: {"haproxy_checktcp_overview_path": "/web", "haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port)}]},
        ['haproxy_checktcp_checks[0] (name "web"): path "/web" is the overview']),
    # A quote or a backslash is HAProxy's config syntax: `{ path /we"b }` fails
    # HAProxy's validation without naming the variable, and /a\\b would be
    # matched as /a\b by haproxy.cfg but looked up as written by the Lua service.
    "path-with-a-quote": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "path": '/we"b', "targets": target(port)}]},
        ['haproxy_checktcp_checks[0] (name "web"): path must not contain', "quotes"]),
    "path-with-a-backslash": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "path": "/a\\\\b", "targets": target(port)}]},
        ['haproxy_checktcp_checks[0] (name "web"): path must not contain', "backslashes"]),
    # The admin socket on a TCP address would give anyone who reaches it HAProxy's admin level.
    "stats-socket-on-tcp": (lambda port: {"haproxy_stats_socket": "127.0.0.1:9999"},
                            ["haproxy_stats_socket must be", '"127.0.0.1:9999"']),
    # HAProxy reads a #, a space, a quote or a backslash in a path as its syntax: after
    # a #, "mode 660 level admin" would be a comment, and the socket open to all.
    "stats-socket-with-a-comment": (lambda port: {"haproxy_stats_socket": COMMENTED_SOCKET},
                                    ["haproxy_stats_socket must be", '"%s"' % COMMENTED_SOCKET]),
    "config-dir-with-a-space": (lambda port: {"haproxy_config_dir": SPACED_DIR},
                                ["haproxy_config_dir must be an absolute path", SPACED_DIR]),
    # Python takes an IPv6 zone (%lo) as part of an address; HAProxy takes none.
    "target-with-a-zone": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": [{"host": "fe80::1%lo", "port": port}]}]},
        ['haproxy_checktcp_checks[0] (name "web"): targets[0]: host must', "no IPv6 zone", '"fe80::1%lo"']),
    "allow-list-with-a-zone": (lambda port: {"haproxy_status_allow": ["fe80::1%eth0"]},
                               ["haproxy_status_allow must be a list of CIDRs", "fe80::1%eth0", "an IPv6 zone"]),
    "version-not-a-number": (lambda port: {"haproxy_version": "v3.2"},
                             ['haproxy_version must be null or major.minor', '"v3.2"']),
    "timeout-with-a-space": (lambda port: {"haproxy_timeout_connect": "5 s"},
                             ["haproxy_timeout_connect must be a duration HAProxy reads", '"5 s"']),
    "frontend-named-like-the-roles": (lambda port: {"haproxy_frontends": [
        {"name": "checktcp_status", "bind": ["127.0.0.1:%d" % port]}]},
        ['haproxy_frontends[0].name "checktcp_status"', "the prefix checktcp_ is the role"]),
    "no-targets": (lambda port: {"haproxy_checktcp_checks": [{"name": "web"}]},
                   ['haproxy_checktcp_checks[0] (name "web"): no targets']),
    "empty-targets-group": (lambda port: {"haproxy_checktcp_checks": [{"name": "web", "targets_group": "nowhere"}]},
                            ['haproxy_checktcp_checks[0] (name "web"): no targets', '"nowhere" has no hosts']),
    "bad-port": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": [{"host": "127.0.0.1", "port": 70000}]}]},
        ['haproxy_checktcp_checks[0] (name "web"): targets[0]: port', '"port": 70000']),
    "bad-check-timeout": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port), "timeout_ms": "0"}]},
        ['haproxy_checktcp_checks[0] (name "web"): timeout_ms: ', 'timeout_ms="0"']),
    "bad-default-timeout": (lambda port: {"haproxy_checktcp_timeout_ms": "60001", "haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port)}]},
        ["haproxy_checktcp_timeout_ms: ", 'timeout_ms="60001"']),
    # The conversation language (issue 17): the check and the step are named.
    "unknown-preset": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port), "preset": "postgres"}]},
        ["value of preset must be one of: echo, redis, memcached, smtp, ssh, http, got: postgres found in "
         "haproxy_checktcp_checks"]),
    "unknown-step-key": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port), "steps": [{"send": "PING\r\n"}, {"expext": "+PONG"}]}]},
        ['haproxy_checktcp_checks[0] (name "web"): steps: step 2 has an unknown key "expext"']),
    "two-keys-in-a-step": (lambda port: {"haproxy_checktcp_steps": [{"send": "PING\r\n", "expect": "+PONG"}]},
                           ["haproxy_checktcp_steps: step 1 must have exactly one key"]),
    "invalid-regex": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port), "steps": [{"expect_regex": "^220 ("}]}]},
        ['haproxy_checktcp_checks[0] (name "web"): steps: step 1 (expect_regex) is not a valid regular expression']),
    "invalid-hex": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port), "steps": [{"send_hex": "0g"}]}]},
        ['haproxy_checktcp_checks[0] (name "web"): steps: step 1 (send_hex) must be an even number of hex digits']),
    # Steps no reply could pass (HAProxy's limits), and a regex HAProxy and Python read otherwise.
    "send-larger-than-a-buffer": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port), "mode": "cached", "steps": [{"send": "b" * 16384}]}]},
        ['haproxy_checktcp_checks[0] (name "web"): steps: step 1 (send) is 16384 bytes long, more than HAProxy '
         'sends in one step']),
    "open-count-regex": (lambda port: {"haproxy_checktcp_steps": [{"expect_regex": "^x{,2}y$"}]},
                         ["haproxy_checktcp_steps: step 1 (expect_regex) is read differently by HAProxy (PCRE) "
                          "and Python: {,2}"]),
    "proxy-v3": (lambda port: {"haproxy_checktcp_proxy_protocol": "v3"},
                 ["value of haproxy_checktcp_proxy_protocol must be one of: none, v1, v2, got: v3"]),
    "tls-ca-missing": (lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": target(port), "tls": True, "tls_ca": MISSING_CA}]},
        ['haproxy_checktcp_checks[0] (name "web"): tls_ca: "%s" is not a file on the controller' % MISSING_CA]),
    "small-bufsize": (lambda port: {"haproxy_tune_bufsize": 8192},
                      ["haproxy_tune_bufsize: must be unset or an integer from 16384 to 1048576 (got 8192)"]),
    "no-status-connections": (lambda port: {"haproxy_status_maxconn": 0},
                              ["haproxy_status_maxconn: must be an integer from 1 to 1000000 (got 0)"]),
}
# Cases that fail in another validation task than VALIDATION_TASK.
# The role's argument specs refuse a value outside their choices first.
ARGUMENT_SPEC_TASK = "Validating arguments against arg spec 'main' - Install HAProxy and serve the checktcp Lua status page."
REJECTED_BY_TASK = {"small-bufsize": "Choose HAProxy's buffer size and the status page's connection limit",
                    "no-status-connections": "Choose HAProxy's buffer size and the status page's connection limit",
                    "unknown-preset": ARGUMENT_SPEC_TASK, "proxy-v3": ARGUMENT_SPEC_TASK,
                    "tls-ca-missing": "Assert that the CA files the checks verify TLS with exist on the controller",
                    "stats-socket-on-tcp": "Assert that the admin socket is a Unix socket's path",
                    "stats-socket-with-a-comment": "Assert that the admin socket is a Unix socket's path",
                    "config-dir-with-a-space": "Assert that the directories are paths HAProxy reads as one word",
                    "allow-list-with-a-zone": "Assert that the status page's allow-lists hold CIDRs",
                    "version-not-a-number": "Assert that haproxy_version is a version",
                    "timeout-with-a-space": "Assert that the timeouts are durations HAProxy reads",
                    "frontend-named-like-the-roles": "Assert that the proxies of your own have names of their own"}

ACCEPTED = {
    "timeout-as-string": lambda port: {"haproxy_checktcp_timeout_ms": "500", "haproxy_checktcp_skip_lines": "1",
                                       "haproxy_checktcp_details": "no",
                                       "haproxy_checktcp_targets": [{"host": "127.0.0.1", "port": str(port)}]},
    "check-numbers-as-strings": lambda port: {"haproxy_checktcp_checks": [
        {"name": "web", "targets": [{"host": "127.0.0.1", "port": str(port)}], "timeout_ms": "500",
         "interval_ms": "1000", "skip_lines": "0", "policy": "1", "details": "yes"}]},
}


def files(service):
    """Every file the role renders, path -> bytes."""
    root = service.workdir / "etc"
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def failure_at(output):
    """Where the failure starts: "fatal:", or "failed:" for a task over a loop."""
    return min(output.index(word) for word in ("fatal:", "failed: [") if word in output)


def failed_task(output):
    return output[:failure_at(output)].rsplit("TASK [", 1)[1].split("]", 1)[0]


class Run:
    """One case: the files of the good render, then the case's render."""

    def __init__(self, service, variables):
        self.service = service
        self.variables = variables
        self.before = None
        self.after = None
        self.returncode = None
        self.output = None


@pytest.fixture(scope="module")
def runs(make_service, free_port):
    cases = {}
    for name, (variables, _expected) in REJECTED.items():
        cases[name] = variables
    cases.update(ACCEPTED)
    port = free_port()
    # One good render, whose files each case starts from (a copy of its own).
    good = make_service(haproxy_checktcp_checks=good_checks(port))
    returncode, output = good.render()
    assert returncode == 0, output
    assert files(good), "the good render wrote no file"
    runs = {}
    for name, variables in cases.items():
        run = Run(make_service(haproxy_checktcp_checks=good_checks(port)), variables(port))
        shutil.copytree(good.workdir / "etc", run.service.workdir / "etc", symlinks=True)
        run.before = files(run.service)
        runs[name] = run
    # A few renders at a time: all at once, each would take longer than its timeout on 2 cores.
    batches = [list(runs.values())[start:start + CONCURRENT_RENDERS]
               for start in range(0, len(runs), CONCURRENT_RENDERS)]
    for batch in batches:
        for run in batch:
            run.service.render_start(run.variables)
        for run in batch:
            run.returncode, run.output = run.service.render_wait()
            run.after = files(run.service)
    return runs


@pytest.mark.parametrize("name", list(REJECTED))
def test_bad_checks_stop_the_play_before_any_file_changes(runs, name):
    run = runs[name]

    assert run.returncode != 0, run.output
    assert failed_task(run.output).endswith(REJECTED_BY_TASK.get(name, VALIDATION_TASK)), run.output
    message = run.output[failure_at(run.output):]
    # The message is wrapped by the callback: compare it unwrapped.
    unwrapped = " ".join(message.split())
    for text in REJECTED[name][1]:
        assert text in unwrapped, (text, run.output)
    assert run.after == run.before


def rendered_checks(service):
    """The rendered checks file (checktcp-checks-<hash>.lua) as text."""
    [text] = [data.decode() for path, data in service.files().items() if path.name.startswith("checktcp-checks-")]
    return text


def test_a_string_timeout_is_rendered_as_a_number(runs):
    run = runs["timeout-as-string"]

    assert run.returncode == 0, run.output
    assert '["timeout_ms"] = 500,' in rendered_checks(run.service)


def test_numbers_of_a_check_given_as_strings_are_accepted(runs):
    run = runs["check-numbers-as-strings"]

    assert run.returncode == 0, run.output
    port = run.variables["haproxy_checktcp_checks"][0]["targets"][0]["port"]
    checks = rendered_checks(run.service)
    assert '["host"] = "127.0.0.1",' in checks and '["port"] = %d,' % int(port) in checks, checks
