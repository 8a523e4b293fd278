# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Inputs that must never reach a rendered file, numbers that must stay in
bounds, and names that must resolve to one address: the filters, and the
role tasks that call them."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from ansible.errors import AnsibleError

from ansible_collections.checktcp.haproxy_lua.plugins.filter import checktcp

ROOT = pathlib.Path(__file__).resolve().parents[4]
DEFAULTS = {
    "send": "check", "expect": "check", "skip_lines": 1, "timeout_ms": 1000, "policy": "all",
    "mode": "live", "interval_ms": 2000, "details": True, "targets": None, "targets_group": "echo_servers",
    "min_probe_interval_ms": 50, "preset": "echo", "steps": None, "tls": False, "tls_verify": True,
    "tls_ca": None, "tls_sni": None, "proxy_protocol": "none", "rise": 1, "fall": 1,
}
INJECTED = "*:80\n    http-request return status 200 content-type text/plain string OK"


def addresses(check_out):
    """A check's targets without their server names (tested on their own)."""
    return [{key: value for key, value in item.items() if key != "server"} for item in check_out["targets"]]


def expand(checks=None, defaults=None, groups=None, hostvars=None, me="haproxy1"):
    return checktcp.checktcp_checks(checks, dict(DEFAULTS, **(defaults or {})), groups or {}, hostvars or {}, me, "/")


def task(path, name):
    """The task named `name` in a role's task file."""
    for entry in yaml.safe_load((ROOT / path).read_text()):
        if entry.get("name") == name:
            return entry
    raise AssertionError(f"no task {name!r} in {path}")


# ------------------------------------------------------- control characters

@pytest.mark.parametrize("variables, expected", [
    ({"haproxy_status_bind": INJECTED}, ['haproxy_status_bind: must not contain control characters',
                                         '"*:80\\n    http-request return status 200']),
    ({"haproxy_timeout_client": "30s\r"}, ["haproxy_timeout_client: "]),
    ({"haproxy_global_extra_lines": ["maxconn 100", "nbthread 2\tx"]}, ["haproxy_global_extra_lines[1]: "]),
    ({"haproxy_frontends": [{"name": "web", "bind": ["*:8000", "*:8001\nbind *:9"]}]},
     ["haproxy_frontends[0].bind[1]: "]),
    ({"haproxy_backends": [{"name": "web", "servers": [{"name": "a", "address": "10.0.0.1:80\x00"}]}]},
     ["haproxy_backends[0].servers[0].address: "]),
    ({"haproxy_frontends": [{"name": "we\x7fb"}]}, ["haproxy_frontends[0].name: "]),
    ({"haproxy_status_allow": ["10.0.0.0/8\n"]}, ["haproxy_status_allow[0]: "]),
    ({"echo_server_bind_address": "127.0.0.1\n"}, ["echo_server_bind_address: "]),
])
def test_text_problems_name_the_variable_and_where(variables, expected):
    problems = checktcp.checktcp_text_problems(variables)

    assert len(problems) == 1, problems
    for text in expected:
        assert text in problems[0]


def test_text_problems_report_each_bad_string():
    problems = checktcp.checktcp_text_problems({"a": "x\ny", "b": ["ok", "\t"], "c": {"d": ["\n"]}})

    assert [problem.split(":")[0] for problem in problems] == ["a", "b[1]", "c.d[0]"]


@pytest.mark.parametrize("value", [
    "*:80", "", None, 30, 1.5, True, [], {}, ["maxconn 100"], [{"name": "web", "bind": ["*:8000"], "lines": []}],
    "ünïcode ok", "a # comment",
])
def test_text_problems_accept_single_lines_and_other_values(value):
    assert checktcp.checktcp_text_problems({"haproxy_status_bind": value}) == []


def test_text_problems_want_a_dict():
    with pytest.raises(AnsibleError, match="checktcp_text_problems"):
        checktcp.checktcp_text_problems(["haproxy_status_bind"])


def _checked_variables(path, name):
    """The variable names a role's task passes to checktcp_text_problems."""
    text = task(path, name)["vars"]["__problems"]
    return set(re.findall(r"'(\w+)':", text))


# Variables a template renders through | bool, | int or | float, or as a number
# checktcp_bufsize or checktcp_maxconn validated: never text.
NOT_TEXT = {"haproxy_status_tls", "haproxy_status_log_requests", "haproxy_tune_bufsize", "haproxy_status_maxconn",
            "echo_server_port", "echo_server_max_line_bytes", "echo_server_idle_timeout", "echo_server_max_connections"}


@pytest.mark.parametrize("template, tasks, task_name, prefix", [
    ("roles/haproxy/templates/haproxy.cfg.j2", "roles/haproxy/tasks/validate.yml",
     "Assert that no variable written into haproxy.cfg holds a control character", "haproxy_"),
    ("roles/echo_server/templates/checktcp-echo.service.j2", "roles/echo_server/tasks/main.yml",
     "Check that no variable written into the unit holds a control character", "echo_server_"),
])
def test_every_variable_a_template_writes_is_checked(template, tasks, task_name, prefix):
    # Not after a dot: checktcp.haproxy_lua.<filter> names the collection, not a variable.
    rendered = set(re.findall(r"(?<![\w.])" + prefix + r"\w+", (ROOT / template).read_text()))
    checked = _checked_variables(tasks, task_name)

    assert rendered - NOT_TEXT <= checked, f"not checked for control characters: {sorted(rendered - NOT_TEXT - checked)}"
    # The role's directories reach haproxy.cfg through internal variables.
    if prefix == "haproxy_":
        assert {"haproxy_config_dir", "haproxy_lua_dir"} <= checked


def test_the_control_character_check_runs_before_anything_else():
    for path in ("roles/haproxy/tasks/validate.yml", "roles/echo_server/tasks/main.yml"):
        first = yaml.safe_load((ROOT / path).read_text())[0]
        assert "checktcp_text_problems" in first["vars"]["__problems"], path
    assert yaml.safe_load((ROOT / "roles/haproxy/tasks/main.yml").read_text())[0]["ansible.builtin.import_tasks"] \
        == "validate.yml"


# ------------------------------------------------------- numbers in bounds

@pytest.mark.parametrize("value", [10 ** 20, 2 ** 63 - 1, "100000000000000000000", 86400001])
def test_interval_ms_has_an_upper_bound(value):
    with pytest.raises(AnsibleError) as raised:
        expand(None, {"interval_ms": value})

    assert "haproxy_checktcp_interval_ms: must be an integer from 100 to 86400000" in str(raised.value)


def test_interval_ms_of_a_named_check_has_an_upper_bound():
    with pytest.raises(AnsibleError) as raised:
        expand([{"name": "web", "targets": [{"host": "10.0.0.1", "port": 80}], "interval_ms": 10 ** 20}])

    assert 'haproxy_checktcp_checks[0] (name "web"): interval_ms: must be an integer from 100 to 86400000' \
        in str(raised.value)


def test_a_day_is_the_longest_interval():
    assert expand(None, {"interval_ms": 86400000})["checks"][0]["interval_ms"] == 86400000


@pytest.mark.parametrize("key, value", [
    ("timeout_ms", 10 ** 20), ("skip_lines", 10 ** 20), ("policy", 10 ** 20),
])
def test_every_number_of_a_check_is_bounded(key, value):
    with pytest.raises(AnsibleError, match="haproxy_checktcp_" + key):
        expand(None, {key: value})


@pytest.mark.parametrize("target", [{"host": "a", "port": 10 ** 20}, {"host": "a", "port": 2 ** 63 - 1}])
def test_a_huge_target_port_is_named(target):
    with pytest.raises(AnsibleError, match=r"haproxy_checktcp_targets\[0\]: port"):
        expand(None, {"targets": [target]})


def test_every_number_that_reaches_lua_fits_its_integers():
    """The largest values validation lets through, rendered: Lua reads each as an integer."""
    largest = expand([{"name": "web", "targets": [{"host": "10.0.0.1", "port": 65535}], "interval_ms": 86400000,
                       "timeout_ms": 60000, "skip_lines": 100}])
    numbers = []

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, int):
            numbers.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(largest)
    # interval + timeout + slack (checktcp.lua's stale_ms) and a monotonic clock in ms still fit.
    assert max(numbers) * 4 + 2 ** 62 < checktcp.LUA_INT_RANGE[1]


# ------------------------------------------------------- resolution

@pytest.mark.parametrize("answer", [
    ["192.0.2.9 STREAM echo", "192.0.2.1 STREAM", "192.0.2.10 STREAM"],
    ["192.0.2.10 STREAM echo", "192.0.2.9 STREAM", "192.0.2.1 STREAM"],
    ["192.0.2.1 STREAM echo", "192.0.2.10 STREAM", "192.0.2.9 STREAM"],
])
def test_a_name_with_several_addresses_is_pinned_to_the_lowest(answer):
    """Whatever order the resolver answers in (round-robin DNS), the same address."""
    assert checktcp._pick_address(answer, "ipv4") == "192.0.2.1"
    assert checktcp._pick_address(answer, "any") == "192.0.2.1"


def test_the_lowest_address_is_numeric_not_textual():
    assert checktcp._pick_address(["10.0.0.10 STREAM", "10.0.0.9 STREAM"], "any") == "10.0.0.9"
    assert checktcp._pick_address(["2001:db8::a STREAM", "2001:db8::9 STREAM"], "ipv6") == "2001:db8::9"


@pytest.mark.parametrize("answer, family", [
    ("getent (GNU libc) 2.36", "any"),
    (["--version", "Copyright (C) 2022"], "any"),
    ("echo.example", "ipv4"),
    ("", "ipv6"),
])
def test_words_that_are_not_addresses_are_never_chosen(answer, family):
    assert checktcp._pick_address(answer, family) is None


def test_a_target_named_like_an_option_does_not_resolve():
    wanted = expand([{"name": "web", "targets": [{"host": "--version", "port": 80}]}])

    with pytest.raises(AnsibleError) as raised:
        checktcp.checktcp_resolve(wanted, {"any --version": "getent (GNU libc) 2.36\nCopyright (C) 2022"})

    assert '(check "web", target "--version:80"): --version does not resolve on the HAProxy host' \
        in str(raised.value)


GETENT_TASK = "Resolve target names on the HAProxy host"


def _getent_argv(host, family="any"):
    """The argv of the role's getent task for one host, as Ansible renders it."""
    entry = task("roles/haproxy/tasks/validate.yml", GETENT_TASK)
    databases = entry["vars"]["__databases"]
    argv = entry["ansible.builtin.command"]["argv"]
    return [{"{{ __databases[item.family] }}": databases[family], "{{ item.host }}": host}.get(word, word)
            for word in argv]


@pytest.mark.skipif(shutil.which("getent") is None, reason="getent is not installed")
@pytest.mark.parametrize("host", ["--version", "--help", "-s"])
def test_the_getent_task_looks_up_a_name_like_an_option(host):
    """Run as the role runs it: a name that looks like an option is a name, which does not resolve (2)."""
    result = subprocess.run(_getent_argv(host), capture_output=True, text=True, check=False)

    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""


@pytest.mark.skipif(shutil.which("getent") is None, reason="getent is not installed")
def test_the_getent_task_resolves_localhost_to_loopback():
    result = subprocess.run(_getent_argv("localhost", "ipv4"), capture_output=True, text=True, check=True)

    assert checktcp._pick_address(result.stdout, "ipv4") == "127.0.0.1"


# ------------------------------------------------------- an echo server bound to ::

def test_an_echo_server_on_all_addresses_of_both_families_is_probed_over_ipv4():
    """:: is dual-stack (roles/echo_server/files/checktcp_echo.py): probed where 0.0.0.0 would be."""
    hostvars = {
        "haproxy1": {"echo_server_bind_address": "::"},
        "echo2": {"echo_server_bind_address": "::", "ansible_default_ipv4": {"address": "10.1.1.2"}},
        "echo3": {"echo_server_bind_address": "::", "ansible_host": "echo3.example"},
    }

    result = expand(None, groups={"echo_servers": list(hostvars)}, hostvars=hostvars)

    assert addresses(result["checks"][0]) == [
        {"host": "127.0.0.1", "port": 8080, "name": "haproxy1", "family": "any"},
        {"host": "10.1.1.2", "port": 8080, "name": "echo2", "family": "any"},
        # A name: resolved in either family, as the server listens on both.
        {"host": "echo3.example", "port": 8080, "name": "echo3", "family": "any"},
    ]
