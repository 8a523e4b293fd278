# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""checktcp.lua under a fake HAProxy (fake_haproxy.lua: a virtual clock, a
cooperative scheduler, sockets that never answer), for states a real HAProxy
reaches too rarely to test. HAProxy corrects its clock after a stall instead
of jumping it forward, so holding the Lua lock does not make a probe outlive
its deadline; a probe that never ends has to be faked."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

from ansible_collections.checktcp.haproxy_lua.plugins.filter import checktcp

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
SERVICE = REPO / "roles" / "haproxy" / "files" / "checktcp.lua"
LUA_INTERPRETERS = ("lua5.3", "lua5.4")
TIMEOUT_MS = 500
# The single-check variables of the role, without their prefix (defaults/main.yml).
SETTINGS = {
    "send": "check", "expect": "check", "skip_lines": 1, "timeout_ms": TIMEOUT_MS, "policy": "all",
    "mode": "live", "interval_ms": 2000, "details": True, "targets": [{"host": "127.0.0.1", "port": 7}],
    "targets_group": "echo_servers", "min_probe_interval_ms": 0, "preset": "echo", "steps": None,
    "tls": False, "tls_verify": True, "tls_ca": None, "tls_sni": None, "proxy_protocol": "none",
    "rise": 1, "fall": 1,
}


def write_data_file(tmp_path_factory, settings):
    """The checks data file the role would render for ``settings``."""
    config = checktcp.checktcp_checks(None, settings, {}, {}, "haproxy1")
    config.update(state_map="/nonexistent/state.map", engine_backend="checktcp_check",
                  answer_backend="checktcp_answer", relay_proxy="checktcp_relay", relay_socket="checktcp-fake",
                  page_var="checktcp_page", page_reuse_ms=100, page_max_bytes=8192,
                  style=(REPO / "roles" / "haproxy" / "files" / "checktcp.css").read_text())
    path = tmp_path_factory.mktemp("fake") / "checktcp-checks.lua"
    path.write_text("checktcp_config = %s\n" % checktcp.to_lua(config))
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_data_file(tmp_path_factory, SETTINGS)


@pytest.fixture(scope="module")
def cached_data_file(tmp_path_factory):
    return write_data_file(tmp_path_factory, dict(SETTINGS, mode="cached"))


def run_scenario(lua, data_file, scenario):
    if shutil.which(lua) is None:
        pytest.fail("%s is not installed (scripts/lib.sh installs it)" % lua)
    result = subprocess.run([lua, str(HERE / "fake_haproxy.lua"), str(data_file), str(SERVICE), str(HERE / scenario)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("lua", LUA_INTERPRETERS)
def test_a_stuck_probe_is_logged_once_however_many_requests_wait_on_it(lua, data_file):
    """Issue 18 item 14: the warning carried the time the probe had been stuck,
    so the check for an unchanged reason never matched and each waiting
    request logged it again."""
    lines = run_scenario(lua, data_file, "stuck_probe.lua")
    pages, logged = lines[:-1], lines[-1]
    assert len(pages) == 6, lines
    for page in pages:
        assert re.fullmatch(r"status\t503\tno verdict within %d ms: probe stuck in header line 1 for \d+ ms"
                            % (TIMEOUT_MS + 50), page), page
    assert logged == "logged\t1", lines


@pytest.mark.parametrize("lua", LUA_INTERPRETERS)
def test_a_check_result_not_yet_applied_is_neither_up_nor_seen(lua, cached_data_file):
    """HAProxy's thread that ran a check writes its status, then the server's
    health, then its state, and get_stats() takes no lock: a read between them
    can see a failed check on a server still "UP". The old code's page said 200
    for it, and published the check as seen; CI saw a dead target answer 200 on
    HAProxy 3.0 once (stop 30), and such a read is the one way to it found."""
    lines = [line.split("\t") for line in run_scenario(lua, cached_data_file, "unsettled_state.lua")]
    assert [line[:4] for line in lines] == [
        ["unchecked", "503", "false", "false"],
        ["failure-unapplied", "503", "false", "false"],
        ["failure-half-applied", "503", "false", "false"],
        ["failure-half-applied-rise-2", "503", "false", "false"],
        ["success-unapplied", "503", "false", "false"],
        ["down", "503", "true", "false"],
        ["up", "200", "true", "true"],
    ], lines
    assert lines[1][4].startswith("L4CON: Connection refused"), lines
