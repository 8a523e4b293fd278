# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of the haproxy role's filters: the checks' expansion and
validation, name resolution, and Lua literals loaded by real Lua 5.3 and 5.4."""

from __future__ import annotations

import copy
import shutil
import subprocess

import pytest

from ansible.errors import AnsibleError, AnsibleUndefinedVariable

from ansible_collections.checktcp.haproxy_lua.plugins.filter import checktcp
from ansible_collections.checktcp.haproxy_lua.plugins.module_utils import conversation

# The role's defaults (roles/haproxy/defaults/main.yml), without their prefix.
DEFAULTS = {
    "send": "check", "expect": "check", "skip_lines": 1, "timeout_ms": 1000, "policy": "all",
    "mode": "live", "interval_ms": 2000, "details": True, "targets": None, "targets_group": "echo_servers",
    "min_probe_interval_ms": 50, "preset": "echo", "steps": None, "tls": False, "tls_verify": True,
    "tls_ca": None, "tls_sni": None, "proxy_protocol": "none", "rise": 1, "fall": 1,
}
SETTINGS = {"send": "check", "expect": "check", "skip_lines": 1, "timeout_ms": 1000, "mode": "live",
            "interval_ms": 2000, "details": True, "min_probe_interval_ms": 50, "preset": "echo", "steps": None,
            "tls": False, "tls_verify": True, "tls_ca": None, "tls_sni": None, "proxy_protocol": "none",
            "rise": 1, "fall": 1}
# What every expansion carries for the Lua service, from conversation.py.
LANGUAGE = {"max_line_bytes": conversation.MAX_LINE_BYTES, "line_regex_flags": conversation.LINE_REGEX_FLAGS}
LUA_INTERPRETERS = ("lua5.3", "lua5.4")


class UndefinedHostVars(dict):
    """hostvars of a host whose variable is defined as an undefined expression."""

    def __getitem__(self, key):
        if key == "ansible_default_ipv4":
            raise AnsibleUndefinedVariable("'ansible_default_ipv4' is undefined")
        return dict.__getitem__(self, key)


def addresses(check_out):
    """A check's targets without their server names (tested on their own)."""
    return [{key: value for key, value in item.items() if key != "server"} for item in check_out["targets"]]


def expand(checks=None, defaults=None, groups=None, hostvars=None, me="haproxy1", overview="/"):
    merged = dict(DEFAULTS, **(defaults or {}))
    return checktcp.checktcp_checks(checks, merged, groups or {}, hostvars or {}, me, overview)


def target(host, port, name=None, family="any"):
    default = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    return {"host": host, "port": port, "name": name or default, "family": family}


def check(name, path, targets, policy="all", required=None, **settings):
    """A check as checktcp_checks returns it; its conversation compiled by conversation.py."""
    out = dict(SETTINGS, name=name, path=path, targets=targets, policy=policy,
               required=len(targets) if required is None else required, tls_ca_file=None, **settings)
    out["ops"] = conversation.conversation_ops(out["preset"], out["steps"], send=out["send"], expect=out["expect"],
                                               skip_lines=out["skip_lines"], host=targets[0]["host"])
    out["tcp_check_rules"] = conversation.tcp_check_rules(out["ops"])
    # No TLS, no PROXY protocol: no words on the server lines.
    out["server_words"] = [{"relay": [], "check": []} for _target in targets]
    # Server names: their properties are tested below (test_server_names_*).
    out["targets"] = [dict(item, server=name) for item, name in zip(targets, checktcp._server_names(out))]
    return out


# ------------------------------------------------------- the single check

@pytest.mark.parametrize("checks", [None, []], ids=["none", "empty"])
def test_unset_checks_give_one_catch_all_check_with_the_fallback_target(checks):
    result = expand(checks)

    assert result == {"catch_all": True, "overview_path": "/", **LANGUAGE,
                      "checks": [check("checktcp", "/", [target("127.0.0.1", 8080)])]}


@pytest.mark.parametrize("defaults, expected", [
    pytest.param({"timeout_ms": "500", "interval_ms": "150", "skip_lines": "0", "details": "no",
                  "policy": "1", "targets": [{"host": "10.0.0.1", "port": "9000"}, {"host": "h", "port": 9}]},
                 check("checktcp", "/", [target("10.0.0.1", 9000), target("h", 9)], policy="1", required=1,
                       timeout_ms=500, interval_ms=150, skip_lines=0, details=False),
                 id="strings-from-extra-vars"),
    pytest.param({"policy": "any", "mode": "cached", "details": "yes", "send": 42, "expect": "",
                  "targets": [{"host": "a", "port": 1, "name": "first"}, {"host": "b", "port": 2, "name": ""}]},
                 check("checktcp", "/", [target("a", 1, "first"), target("b", 2)], policy="any", required=1,
                       mode="cached", send="42", expect=""),
                 id="any-cached-defaulted-name"),
    pytest.param({"policy": 2, "details": 0, "targets": [{"host": "a", "port": 1}, {"host": "b", "port": 2}]},
                 check("checktcp", "/", [target("a", 1), target("b", 2)], policy="2", required=2, details=False),
                 id="policy-number"),
])
def test_single_check_settings(defaults, expected):
    result = expand(None, defaults)

    assert result["checks"] == [expected]
    assert result["catch_all"] is True


HOSTVARS = {
    "haproxy1": {"echo_server_bind_address": "0.0.0.0", "echo_server_port": "8081"},
    "echo-facts": {"echo_server_bind_address": "0.0.0.0", "ansible_default_ipv4": {"address": "10.1.1.1"},
                   "ansible_host": "echo-facts.example"},
    "echo-host": {"echo_server_bind_address": "", "ansible_host": "echo.example", "echo_server_port": 7000},
    "echo-name": {"echo_server_bind_address": "::"},
    "echo-v4": {"echo_server_bind_address": "192.0.2.7", "echo_server_port": 7007},
    "echo-v6": {"echo_server_bind_address": "2001:db8::7"},
    "echo-undefined": UndefinedHostVars({"echo_server_bind_address": "0.0.0.0", "echo_server_port": None}),
}


def test_targets_derived_from_the_group_as_the_echo_servers_bind():
    groups = {"echo_servers": list(HOSTVARS)}

    result = expand(None, groups=groups, hostvars=HOSTVARS)

    assert addresses(result["checks"][0]) == [
        # wildcard bind on this host: loopback
        {"host": "127.0.0.1", "port": 8081, "name": "haproxy1", "family": "ipv4"},
        # wildcard bind elsewhere: the default address, else ansible_host, else the inventory name
        {"host": "10.1.1.1", "port": 8080, "name": "echo-facts", "family": "ipv4"},
        {"host": "echo.example", "port": 7000, "name": "echo-host", "family": "any"},
        # "::" listens on IPv6 and IPv4 (the echo server is dual-stack there).
        {"host": "echo-name", "port": 8080, "name": "echo-name", "family": "any"},
        {"host": "192.0.2.7", "port": 7007, "name": "echo-v4", "family": "ipv4"},
        {"host": "2001:db8::7", "port": 8080, "name": "echo-v6", "family": "ipv6"},
        {"host": "echo-undefined", "port": 8080, "name": "echo-undefined", "family": "ipv4"},
    ]
    assert result["checks"][0]["required"] == len(HOSTVARS)


def test_a_loopback_echo_server_on_this_host_is_a_target():
    result = expand(None, groups={"echo_servers": ["haproxy1"]}, hostvars={"haproxy1": {}})

    assert addresses(result["checks"][0]) == [
        {"host": "127.0.0.1", "port": 8080, "name": "haproxy1", "family": "ipv4"}]


@pytest.mark.parametrize("groups", [{}, {"echo_servers": []}], ids=["no-group", "empty-group"])
def test_single_check_without_group_hosts_probes_the_fallback(groups):
    result = expand(None, groups=groups)

    assert addresses(result["checks"][0]) == [target("127.0.0.1", 8080)]


# Bad single-check variables: the message names the variable and shows the value
# (molecule/failures/tests/test_bad_input.py relies on these forms).
@pytest.mark.parametrize("defaults, groups, hostvars, expected", [
    ({"targets": []}, {}, {}, ["haproxy_checktcp_targets: ", "targets=[]"]),
    ({"targets": "10.0.0.1:80"}, {}, {}, ["haproxy_checktcp_targets: ", "non-empty list"]),
    ({"targets": [{"host": "127.0.0.1", "port": 0}]}, {}, {}, ["haproxy_checktcp_targets[0]: port", "'port': 0"]),
    ({"targets": [{"host": "a", "port": "http"}]}, {}, {}, ["haproxy_checktcp_targets[0]: port", "'port': 'http'"]),
    ({"targets": [{"host": "a", "port": 65536}]}, {}, {}, ["haproxy_checktcp_targets[0]: port", "65535"]),
    ({"targets": [{"host": "a", "port": True}]}, {}, {}, ["haproxy_checktcp_targets[0]: port"]),
    ({"targets": [{"host": "", "port": 1}]}, {}, {}, ["haproxy_checktcp_targets[0]: host"]),
    ({"targets": [{"host": "a b", "port": 1}]}, {}, {}, ["haproxy_checktcp_targets[0]: host", "without spaces"]),
    ({"targets": [{"port": 1}]}, {}, {}, ["haproxy_checktcp_targets[0]: host"]),
    ({"targets": [{"host": "a", "port": 1, "name": "two\nlines"}]}, {}, {},
     ["haproxy_checktcp_targets[0]: name must not contain control characters"]),
    ({"targets": [{"host": "a", "port": 1, "adress": "x"}]}, {}, {}, ["haproxy_checktcp_targets[0]: unknown", "adress"]),
    ({"targets": ["a:1"]}, {}, {}, ["haproxy_checktcp_targets[0]: must be a dict"]),
    ({"timeout_ms": -5}, {}, {}, ["haproxy_checktcp_timeout_ms: ", "timeout_ms=-5"]),
    ({"timeout_ms": 0}, {}, {}, ["haproxy_checktcp_timeout_ms: ", "from 1 to 60000"]),
    ({"timeout_ms": 60001}, {}, {}, ["haproxy_checktcp_timeout_ms: ", "timeout_ms=60001"]),
    ({"timeout_ms": "soon"}, {}, {}, ["haproxy_checktcp_timeout_ms: ", 'timeout_ms="soon"']),
    ({"timeout_ms": 1.5}, {}, {}, ["haproxy_checktcp_timeout_ms: "]),
    ({"interval_ms": 99}, {}, {}, ["haproxy_checktcp_interval_ms: ", "from 100 to 86400000"]),
    ({"skip_lines": 101}, {}, {}, ["haproxy_checktcp_skip_lines: ", "from 0 to 100"]),
    ({"skip_lines": "-1"}, {}, {}, ["haproxy_checktcp_skip_lines: "]),
    ({"send": "a\nb"}, {}, {}, ["haproxy_checktcp_send: ", 'send="a\\nb"']),
    ({"expect": "ok\x7f"}, {}, {}, ["haproxy_checktcp_expect: ", "control characters"]),
    ({"send": None}, {}, {}, ["haproxy_checktcp_send: ", "must be a string"]),
    ({"policy": 5}, {}, {}, ["haproxy_checktcp_policy: ", "policy=5", "(1)"]),
    ({"policy": 0}, {}, {}, ["haproxy_checktcp_policy: ", "policy=0"]),
    ({"policy": "most"}, {}, {}, ["haproxy_checktcp_policy: ", 'policy="most"']),
    ({"mode": "turbo"}, {}, {}, ["haproxy_checktcp_mode: ", 'mode="turbo"']),
    ({"details": "maybe"}, {}, {}, ["haproxy_checktcp_details: ", 'details="maybe"']),
    ({}, {"echo_servers": ["echo1"]}, {"echo1": {"echo_server_port": 70000}},
     ["haproxy_checktcp_targets_group: ", "echo_server_port of host echo1", "(got 70000)"]),
    ({}, {"echo_servers": ["echo1"]}, {"echo1": {}},
     ["haproxy_checktcp_targets_group: ", "echo server echo1 binds 127.0.0.1", "echo_server_bind_address"]),
    ({}, {"echo_servers": ["echo1"]}, {"echo1": {"echo_server_bind_address": "::1"}},
     ["echo server echo1 binds ::1"]),
])
def test_bad_single_check_variables(defaults, groups, hostvars, expected):
    with pytest.raises(AnsibleError) as raised:
        expand(None, defaults, groups, hostvars)

    for text in expected:
        assert text in str(raised.value)


# ------------------------------------------------------- named checks

GROUPS = {"web_echo": ["echo-v4", "echo-name"], "empty": []}


@pytest.mark.parametrize("checks, expected", [
    pytest.param([{"name": "web", "targets": [{"host": "10.0.0.1", "port": 80}]}],
                 [check("web", "/web", [target("10.0.0.1", 80)])], id="defaults"),
    pytest.param([{"name": "web", "path": "/status/web", "targets_group": "web_echo", "policy": "any",
                   "timeout_ms": "300", "mode": "cached", "interval_ms": 500, "details": "false",
                   "send": "ping", "expect": "pong", "skip_lines": 0},
                  {"name": "db-1_a", "targets": [{"host": "db", "port": "5000", "name": "primary"}],
                   "policy": None, "path": None}],
                 [check("web", "/status/web", [
                     {"host": "192.0.2.7", "port": 7007, "name": "echo-v4", "family": "ipv4"},
                     {"host": "echo-name", "port": 8080, "name": "echo-name", "family": "any"}],
                     policy="any", required=1, timeout_ms=300, mode="cached", interval_ms=500, details=False,
                     send="ping", expect="pong", skip_lines=0),
                  check("db-1_a", "/db-1_a", [target("db", 5000, "primary")])],
                 id="overrides-and-group"),
    pytest.param([{"name": "0", "targets": [{"host": "a", "port": 1}, {"host": "b", "port": 2}], "policy": "2"}],
                 [check("0", "/0", [target("a", 1), target("b", 2)], policy="2", required=2)], id="policy-number"),
])
def test_named_checks(checks, expected):
    result = expand(checks, groups=GROUPS, hostvars=HOSTVARS)

    assert result == {"catch_all": False, "overview_path": "/", **LANGUAGE, "checks": expected}


def test_an_unnamed_ipv6_target_is_shown_bracketed():
    result = expand([{"name": "v6", "targets": [{"host": "::1", "port": 8080}]}])
    assert [t["name"] for t in result["checks"][0]["targets"]] == ["[::1]:8080"]


# HAProxy takes no IPv6 zone (fe80::1%lo) in a server's address, while Python's ipaddress does.
def test_a_target_with_an_ipv6_zone_is_named():
    with pytest.raises(AnsibleError, match=r'^haproxy_checktcp_checks\[0\] \(name "v6"\): targets\[0\]: host must be '
                                           r'an address or a name with no IPv6 zone .* \(got "fe80::1%lo"\)$'):
        expand([{"name": "v6", "targets": [{"host": "fe80::1%lo", "port": 8080}]}])


def test_an_echo_server_bound_to_an_ipv6_zone_is_named():
    hostvars = {"echo-zone": {"echo_server_bind_address": "fe80::1%eth0"}}
    with pytest.raises(AnsibleError, match='echo server echo-zone has no usable address'):
        expand(None, groups={"echo_servers": ["echo-zone"]}, hostvars=hostvars)


def test_named_checks_take_the_single_check_variables_as_defaults():
    defaults = {"timeout_ms": "250", "mode": "cached", "policy": "any", "send": "hi", "details": "off",
                "targets": [{"host": "ignored", "port": 1}]}

    result = expand([{"name": "web", "targets": [{"host": "a", "port": 1}, {"host": "b", "port": 2}]}],
                    defaults, overview="/checks")

    assert result["checks"] == [check("web", "/web", [target("a", 1), target("b", 2)], policy="any", required=1,
                                      timeout_ms=250, mode="cached", send="hi", details=False)]
    assert result["overview_path"] == "/checks"


def test_named_checks_leave_the_input_unchanged():
    checks = [{"name": "web", "targets": [{"host": "a", "port": "1"}]}]
    before = copy.deepcopy(checks)

    expand(checks)

    assert checks == before


WEB = {"host": "10.0.0.1", "port": 80}


@pytest.mark.parametrize("checks, overview, expected", [
    ([{"name": "web", "targets": [WEB]}, {"name": "web", "path": "/other", "targets": [WEB]}], "/",
     ["haproxy_checktcp_checks: ", "checks 0 and 1", 'same name "web"']),
    ([{"name": "a", "path": "/b", "targets": [WEB]}, {"name": "b", "targets": [WEB]}], "/",
     ["haproxy_checktcp_checks: ", "checks 0 and 1", 'same path "/b"']),
    ([{"name": "web", "targets": [WEB]}], "/web", ['haproxy_checktcp_checks[0] (name "web"): ', "overview"]),
    ([{"name": "Web", "targets": [WEB]}], "/", ["haproxy_checktcp_checks[0]: name must match", 'name="Web"']),
    ([{"name": "-web", "targets": [WEB]}], "/", ["haproxy_checktcp_checks[0]: name must match"]),
    ([{"name": "", "targets": [WEB]}], "/", ["haproxy_checktcp_checks[0]: name must match"]),
    ([{"name": "a b", "targets": [WEB]}], "/", ["haproxy_checktcp_checks[0]: name must match"]),
    ([{"targets": [WEB]}], "/", ["haproxy_checktcp_checks[0]: name must match", "name=null"]),
    ([{"name": 7, "targets": [WEB]}], "/", ["haproxy_checktcp_checks[0]: name must match"]),
    ([{"name": "web", "path": "web", "targets": [WEB]}], "/",
     ['haproxy_checktcp_checks[0] (name "web"): path must start with /', 'path="web"']),
    ([{"name": "web", "path": "/a b", "targets": [WEB]}], "/", ['(name "web"): path must not contain']),
    ([{"name": "web", "path": "/a?b=1", "targets": [WEB]}], "/", ['(name "web"): path must not contain']),
    ([{"name": "web", "path": "/a#b", "targets": [WEB]}], "/", ['(name "web"): path must not contain']),
    ([{"name": "web", "path": "/a\x01", "targets": [WEB]}], "/", ['(name "web"): path must not contain']),
    ([{"name": "web"}], "/", ['haproxy_checktcp_checks[0] (name "web"): no targets']),
    ([{"name": "web", "targets": []}], "/", ['haproxy_checktcp_checks[0] (name "web"): targets must be a non-empty']),
    ([{"name": "web", "targets_group": "empty"}], "/", ['(name "web"): no targets', '"empty" has no hosts']),
    ([{"name": "web", "targets_group": "absent"}], "/", ['(name "web"): no targets', '"absent" has no hosts']),
    ([{"name": "web", "targets_group": "web_echo", "targets": [WEB]}], "/", ['(name "web"): give targets or']),
    ([{"name": "web", "targets": [WEB], "timout_ms": 5}], "/", ['(name "web"): unknown key(s) timout_ms']),
    ([{"name": "web", "targets": [{"host": "a", "port": 0}]}], "/",
     ['haproxy_checktcp_checks[0] (name "web"): targets[0]: port', '"port": 0']),
    ([{"name": "web", "targets": [{"host": "a", "port": 1, "name": "x\x00"}]}], "/",
     ['(name "web"): targets[0]: name must not contain control characters']),
    ([{"name": "web", "targets": [WEB], "timeout_ms": "0"}], "/",
     ['haproxy_checktcp_checks[0] (name "web"): timeout_ms: ', 'timeout_ms="0"']),
    ([{"name": "web", "targets": [WEB], "interval_ms": 10}], "/", ['(name "web"): interval_ms: ']),
    ([{"name": "web", "targets": [WEB], "skip_lines": 1000}], "/", ['(name "web"): skip_lines: ']),
    ([{"name": "web", "targets": [WEB], "send": "a\rb"}], "/", ['(name "web"): send: ', "control characters"]),
    ([{"name": "web", "targets": [WEB], "expect": ["x"]}], "/", ['(name "web"): expect: ', "must be a string"]),
    ([{"name": "web", "targets": [WEB], "policy": 2}], "/", ['(name "web"): policy: ', "(1)", "policy=2"]),
    ([{"name": "web", "targets": [WEB], "mode": "turbo"}], "/", ['(name "web"): mode: ']),
    ([{"name": "web", "targets": [WEB], "details": "maybe"}], "/", ['(name "web"): details: ']),
    ([{"name": "ok", "targets": [WEB]}, "web"], "/", ["haproxy_checktcp_checks[1]: must be a dict"]),
    ("[{'name': 'web'}]", "/", ["haproxy_checktcp_checks: must be a list", "JSON"]),
    ({"name": "web"}, "/", ["haproxy_checktcp_checks: must be a list"]),
    ([{"name": "web", "targets": [WEB]}], "status", ["haproxy_checktcp_overview_path: must start with /"]),
    ([{"name": "web", "targets": [WEB]}], None, ["haproxy_checktcp_overview_path: must start with /"]),
    ([{"name": "web", "targets_group": "far"}], "/",
     ['(name "web"): echo server echo1 binds 127.0.0.1, which HAProxy on haproxy1 cannot reach']),
])
def test_bad_checks(checks, overview, expected):
    with pytest.raises(AnsibleError) as raised:
        expand(checks, groups=dict(GROUPS, far=["echo1"]), hostvars=dict(HOSTVARS, echo1={}), overview=overview)

    for text in expected:
        assert text in str(raised.value)


@pytest.mark.parametrize("defaults, expected", [
    ({"timeout_ms": 0}, "haproxy_checktcp_timeout_ms: "),
    ({"send": "a\nb"}, "haproxy_checktcp_send: "),
    ({"policy": "most"}, "haproxy_checktcp_policy: "),
])
def test_a_bad_default_is_named_as_the_single_check_variable(defaults, expected):
    with pytest.raises(AnsibleError) as raised:
        expand([{"name": "web", "targets": [WEB]}], defaults)

    assert str(raised.value).startswith(expected) or (": " + expected) in str(raised.value)
    assert "haproxy_checktcp_checks" not in str(raised.value)


# ------------------------------------------------------- resolution

GETENT_BOTH = "2001:db8::1  STREAM echo.example\n2001:db8::1  DGRAM  \n192.0.2.1  STREAM \n192.0.2.1  DGRAM"


@pytest.mark.parametrize("family, answer, expected", [
    ("any", GETENT_BOTH, "192.0.2.1"),
    ("any", GETENT_BOTH.splitlines(), "192.0.2.1"),
    ("any", "2001:db8::1 STREAM x", "2001:db8::1"),
    ("ipv6", GETENT_BOTH, "2001:db8::1"),
    # Several addresses: the lowest, whatever order getent gives them in.
    ("ipv4", ["192.0.2.9  STREAM x", "192.0.2.1 STREAM"], "192.0.2.1"),
    ("any", "10.0.0.5", "10.0.0.5"),
])
def test_resolve_takes_the_address_of_the_targets_family(family, answer, expected):
    wanted = {"catch_all": False, "overview_path": "/", **LANGUAGE, "checks": [
        check("web", "/web", [target("echo.example", 80, family=family), target("10.0.0.1", 81)])]}
    before = copy.deepcopy(wanted)

    result = checktcp.checktcp_resolve(wanted, {"echo.example": answer})

    assert [t["host"] for t in result["checks"][0]["targets"]] == [expected, "10.0.0.1"]
    assert result["checks"][0]["targets"][0]["name"] == "echo.example:80"
    assert wanted == before


def test_resolve_prefers_the_family_key():
    wanted = {"catch_all": False, "overview_path": "/", **LANGUAGE, "checks": [
        check("a", "/a", [target("echo", 80, family="ipv4")]),
        check("b", "/b", [target("echo", 80, family="ipv6")])]}

    result = checktcp.checktcp_resolve(wanted, {"ipv4 echo": ["192.0.2.1 STREAM"], "ipv6 echo": "2001:db8::1 RAW",
                                                "echo": "198.51.100.1"})

    assert [c["targets"][0]["host"] for c in result["checks"]] == ["192.0.2.1", "2001:db8::1"]


@pytest.mark.parametrize("catch_all, family, answer, expected", [
    (False, "ipv6", "", ['haproxy_checktcp_checks (check "web", target "echo.example:80"): ',
                         "echo.example has no IPv6 address on the HAProxy host"]),
    # getent ahostsv6 maps an IPv4-only name: an IPv6-only echo server is not there.
    (False, "ipv6", "::ffff:192.0.2.1 STREAM echo.example\n::ffff:192.0.2.1 DGRAM",
     ["echo.example has no IPv6 address", "the family its echo server listens on"]),
    (True, "ipv6", ["192.0.2.1 STREAM"], ['haproxy_checktcp_targets (check "web", target "echo.example:80"): ',
                                          "echo.example has no IPv6 address"]),
    (False, "ipv4", ["2001:db8::1 STREAM"], ["echo.example has no IPv4 address"]),
    (False, "any", [], ['(check "web", target "echo.example:80"): echo.example does not resolve on the HAProxy host']),
])
def test_resolve_without_an_address_of_the_family_fails(catch_all, family, answer, expected):
    wanted = {"catch_all": catch_all, "overview_path": "/", **LANGUAGE, "checks": [
        check("web", "/", [target("echo.example", 80, family=family)])]}

    with pytest.raises(AnsibleError) as raised:
        checktcp.checktcp_resolve(wanted, {"echo.example": answer})

    for text in expected:
        assert text in str(raised.value)


def test_unresolved_lists_each_name_and_family_once():
    wanted = expand([
        {"name": "a", "targets": [{"host": "echo", "port": 1}, {"host": "10.0.0.1", "port": 2},
                                  {"host": "2001:db8::1", "port": 3}, {"host": "echo", "port": 4}]},
        {"name": "b", "targets_group": "web_echo"},
    ], groups=GROUPS, hostvars=HOSTVARS)

    assert checktcp.checktcp_unresolved(wanted) == [
        {"host": "echo", "family": "any", "key": "any echo"},
        {"host": "echo-name", "family": "any", "key": "any echo-name"},
    ]


def test_relay_sockets_are_those_of_the_live_checks_targets():
    wanted = expand([
        {"name": "a", "targets": [{"host": "10.0.0.1", "port": 1}, {"host": "10.0.0.2", "port": 2}]},
        {"name": "b", "targets": [{"host": "10.0.0.3", "port": 3}], "mode": "cached"},
        {"name": "c", "targets": [{"host": "10.0.0.4", "port": 4}]},
    ])

    assert checktcp.checktcp_relay_sockets(wanted, "/var/lib/haproxy/checktcp-0123abcd") == [
        "/var/lib/haproxy/checktcp-0123abcd-1-1.sock",
        "/var/lib/haproxy/checktcp-0123abcd-1-2.sock",
        "/var/lib/haproxy/checktcp-0123abcd-3-1.sock",
    ]


# ------------------------------------------------------- Lua literals

@pytest.mark.parametrize("value, expected", [
    (None, "nil"),
    (True, "true"),
    (False, "false"),
    (-5, "-5"),
    (2 ** 63 - 1, "9223372036854775807"),
    (-2 ** 63, "(-9223372036854775807 - 1)"),
    (0.5, "0.5"),
    ("", '""'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("\x0123", '"\\00123"'),
    ("é\n\x7f", '"\\195\\169\\010\\127"'),
    ([], "{}"),
    ({}, "{}"),
    ({"b": [1, "x"], "a": {}}, '{["a"] = {}, ["b"] = {1, "x"}}'),
])
def test_to_lua_one_line(value, expected):
    assert checktcp.to_lua(value, indent=0) == expected


def test_to_lua_indents_and_sorts():
    assert checktcp.to_lua({"z": 1, "a": [True, None]}) == '{\n  ["a"] = {\n    true,\n    nil,\n  },\n  ["z"] = 1,\n}'


@pytest.mark.parametrize("value, expected", [
    (float("nan"), "no Lua literal"),
    (float("inf"), "no Lua literal"),
    (2 ** 63, "64-bit"),
    (-2 ** 63 - 1, "64-bit"),
    ({1: "a"}, "keys must be strings"),
    ({"a": {1, 2}}, "cannot write a set"),
    (b"bytes", "cannot write a bytes"),
])
def test_to_lua_refuses_what_lua_cannot_hold(value, expected):
    with pytest.raises(AnsibleError) as raised:
        checktcp.to_lua(value)

    assert expected in str(raised.value)


# A Lua program that loads the data file (a "return <literal>" chunk) and prints
# one line per leaf: its path, then its Lua type and value, strings as hex bytes.
LUA_DUMP = r"""
local value = assert(loadfile(arg[1], "t"))()
local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function dump(v, path)
  if type(v) == "table" then
    local empty = true
    for k, item in pairs(v) do
      empty = false
      local key = type(k) == "string" and ("s" .. hex(k)) or ("i" .. math.tointeger(k))
      dump(item, path .. "/" .. key)
    end
    if empty then print(path .. " table") end
    if #v > 0 then print(path .. " length " .. #v) end
  elseif type(v) == "string" then print(path .. " string " .. hex(v))
  elseif math.type(v) == "integer" then print(path .. " integer " .. string.format("%d", v))
  elseif math.type(v) == "float" then print(path .. " float " .. string.format("%.17g", v))
  else print(path .. " " .. type(v) .. " " .. tostring(v)) end
end
dump(value, "")
"""


def leaves(value, path=""):
    """What LUA_DUMP prints for value, computed in Python."""
    if isinstance(value, dict):
        items = [("s" + key.encode("utf-8").hex(), item) for key, item in value.items() if item is not None]
    elif isinstance(value, list):
        items = [("i%d" % (index + 1), item) for index, item in enumerate(value)]
    elif isinstance(value, bool):
        return ["%s boolean %s" % (path, str(value).lower())]
    elif isinstance(value, int):
        return ["%s integer %d" % (path, value)]
    elif isinstance(value, float):
        return ["%s float %.17g" % (path, value)]
    else:
        return ["%s string %s" % (path, value.encode("utf-8").hex())]
    out = [line for key, item in items for line in leaves(item, path + "/" + key)]
    if not items:
        out.append(path + " table")
    if isinstance(value, list) and value:
        out.append("%s length %d" % (path, len(value)))
    return out


# What a name may hold (no control character), and what raw data may hold.
PRINTABLE = "".join(chr(code) for code in range(32, 256) if code != 127) + "\u20ac\U0001f600]]--[[\\\"'%s"
NASTY = "".join(chr(code) for code in range(256)) + PRINTABLE + "\x009"
ROUND_TRIP = [
    pytest.param(expand([{"name": "web", "targets": [{"host": "a", "port": 1, "name": PRINTABLE}], "send": "é"},
                         {"name": "db", "path": "/d/b", "targets_group": "web_echo"}],
                        groups=GROUPS, hostvars=HOSTVARS), id="checks"),
    pytest.param(expand(None), id="single-check"),
    pytest.param({NASTY: [NASTY, "", -1, 0, 2 ** 63 - 1, -2 ** 63, 0.1, 1e300, -2.5e-300, 5.0, True, False],
                  "empty": {"list": [], "dict": {}}, "nested": [[[["deep"]]]], "none": None}, id="nasty"),
]


@pytest.mark.parametrize("interpreter", LUA_INTERPRETERS)
@pytest.mark.parametrize("indent", [0, 2])
@pytest.mark.parametrize("value", ROUND_TRIP)
def test_to_lua_round_trips_through_lua(tmp_path, interpreter, indent, value):
    executable = shutil.which(interpreter)
    if executable is None:
        pytest.fail("%s is not installed (apt-get install lua5.3 lua5.4): HAProxy 2.6 runs Lua 5.3 and "
                    "3.x Lua 5.4, and each must load the data file" % interpreter)
    data = tmp_path / "data.lua"
    data.write_text("return " + checktcp.to_lua(value, indent) + "\n", encoding="ascii")
    program = tmp_path / "dump.lua"
    program.write_text(LUA_DUMP)

    run = subprocess.run([executable, str(program), str(data)], capture_output=True, check=False, timeout=30)

    assert run.returncode == 0, run.stderr.decode("utf-8", "replace")
    assert sorted(run.stdout.decode("ascii").splitlines()) == sorted(leaves(value))


# ------------------------------------------------------------ the buffer

def test_an_unset_bufsize_is_haproxys_default():
    assert checktcp.checktcp_bufsize(None) == 16384


def test_a_given_bufsize_wins():
    assert checktcp.checktcp_bufsize("65536") == 65536


@pytest.mark.parametrize("wanted", [8192, 1048577, "big", True, 20000.5])
def test_a_bad_bufsize_is_named(wanted):
    with pytest.raises(AnsibleError, match="^haproxy_tune_bufsize: must be unset or an integer from 16384 to 1048576"):
        checktcp.checktcp_bufsize(wanted)


# ------------------------------------------------------------ the status page's connections

def test_a_given_maxconn_is_an_int():
    assert checktcp.checktcp_maxconn("250") == 250


@pytest.mark.parametrize("wanted", [0, -1, 1000001, None, "many", True, 10.5])
def test_a_bad_maxconn_is_named(wanted):
    with pytest.raises(AnsibleError, match="^haproxy_status_maxconn: must be an integer from 1 to 1000000"):
        checktcp.checktcp_maxconn(wanted)


# ------------------------------------------------------------ the user's own proxies

def test_proxies_of_the_users_own_with_names_of_their_own_pass():
    assert checktcp.checktcp_proxy_problems([{"name": "web"}, {"name": "api"}], [{"name": "web"}]) == []


def test_proxy_names_haproxy_would_refuse_are_named():
    frontends = [{"name": "checktcp_status"}, {"name": "web"}, {"name": "web"}]
    backends = [{"name": "checktcp_service"}, {"name": "db"}, {"name": "db"}]

    assert checktcp.checktcp_proxy_problems(frontends, backends) == [
        "haproxy_frontends[0].name \"checktcp_status\": the prefix checktcp_ is the role's, for its own proxies",
        "haproxy_frontends[2].name \"web\": the name of haproxy_frontends[1] too",
        "haproxy_backends[0].name \"checktcp_service\": the prefix checktcp_ is the role's, for its own proxies",
        "haproxy_backends[2].name \"db\": the name of haproxy_backends[1] too",
    ]


def test_filter_module_lists_the_filters():
    assert sorted(checktcp.FilterModule().filters()) == [
        "checktcp_bufsize", "checktcp_checks", "checktcp_maxconn", "checktcp_proxy_problems",
        "checktcp_relay_sockets", "checktcp_resolve", "checktcp_text_problems", "checktcp_unresolved",
        "to_lua"]


# ------------------------------------------------------ server names (cached mode)

def server_names(checks):
    return {item["name"]: item["server"] for item in expand(checks)["checks"][0]["targets"]}


def test_server_names_are_stable_and_follow_their_target_not_its_position():
    a, b = {"host": "10.0.0.1", "port": 7, "name": "a"}, {"host": "10.0.0.2", "port": 7, "name": "b"}
    first = server_names([{"name": "web", "targets": [a, b]}])
    assert first == server_names([{"name": "web", "targets": [a, b]}])
    assert first == server_names([{"name": "web", "targets": [b, a]}])
    assert server_names([{"name": "web", "targets": [b]}]) == {"b": first["b"]}


@pytest.mark.parametrize("change", [
    {"port": 8}, {"host": "10.0.0.9"}, {"preset": "redis"}, {"expect": "other"}, {"proxy_protocol": "v2"},
    {"timeout_ms": 900}, {"fall": 2},
], ids=["port", "host", "preset", "expect", "proxy", "timeout", "fall"])
def test_a_server_name_changes_with_the_address_or_the_way_it_is_probed(change):
    """A saved state must never return to a target probed elsewhere or otherwise."""
    target_keys = {"port", "host"}
    base = {"host": "10.0.0.1", "port": 7, "name": "a"}
    changed_target = dict(base, **{k: v for k, v in change.items() if k in target_keys})
    settings = {k: v for k, v in change.items() if k not in target_keys}
    before = server_names([{"name": "web", "targets": [base]}])["a"]
    after = server_names([dict({"name": "web", "targets": [changed_target]}, **settings)])["a"]
    assert before != after


def test_the_same_target_twice_gets_two_server_names():
    names = server_names([{"name": "web", "targets": [{"host": "10.0.0.1", "port": 7, "name": "one"},
                                                      {"host": "10.0.0.1", "port": 7, "name": "two"}]}])
    assert names["two"] == names["one"] + "-2"
    assert all(name.startswith("t") and name.replace("-", "").isalnum() for name in names.values())


def test_a_name_resolved_to_another_address_gets_another_server_name():
    """Named after the address probed: a DNS record that moves must not carry its old address's state."""
    wanted = expand([{"name": "web", "targets": [{"host": "echo.example", "port": 7}]}])
    first, second = (checktcp.checktcp_resolve(wanted, {"echo.example": address})["checks"][0]["targets"][0]
                     for address in ("10.0.0.1", "10.0.0.2"))
    assert (first["host"], second["host"]) == ("10.0.0.1", "10.0.0.2")
    assert first["server"] != second["server"]
    again = checktcp.checktcp_resolve(wanted, {"echo.example": "10.0.0.1"})["checks"][0]["targets"][0]
    assert again["server"] == first["server"]
