# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The role's validation of what it renders: a configuration HAProxy rejects
(in haproxy.cfg, or in the Lua file) fails the playbook and leaves the files
of the previous good render byte for byte as they were."""

from __future__ import annotations

import subprocess

import pytest

from conftest import haproxy_binary


@pytest.fixture(scope="module")
def rendered(make_service, free_port):
    """A service directory holding a good render (HAProxy is not started)."""
    service = make_service(haproxy_checktcp_targets=[{"host": "127.0.0.1", "port": free_port()}])
    returncode, output = service.render()
    assert returncode == 0, output
    return service


@pytest.mark.parametrize("variables, rejected", [
    # haproxy -c refuses the unknown keyword.
    pytest.param({"haproxy_global_extra_lines": ["no-such-directive"]}, "haproxy.cfg", id="cfg-unknown-directive"),
    # New Lua data and a rejected haproxy.cfg: the pair on disk stays the old one
    # (the new Lua files may be left beside it, unused: files() would show them).
    pytest.param({"haproxy_checktcp_mode": "cached", "haproxy_checktcp_timeout_ms": 700,
                  "haproxy_global_extra_lines": ["no-such-directive"]}, "haproxy.cfg", id="new-lua-rejected-cfg"),
])
def test_rejected_render_keeps_the_previous_files(rendered, variables, rejected):
    before = rendered.files()

    returncode, output = rendered.render(variables)

    assert returncode != 0, output
    # It failed where HAProxy checked the rejected file, not earlier.
    failed_task = output[:output.index("fatal:")].rsplit("TASK [", 1)[1].split("]", 1)[0]
    assert failed_task.endswith("Render %s, validated by HAProxy" % rejected), output
    assert "failed to validate" in output
    assert before == rendered.files()


def test_control_character_in_a_name_stops_before_any_file(rendered):
    """A raw newline would end the name's Lua string literal: the role's
    assertions refuse it before anything is rendered."""
    before = rendered.files()

    returncode, output = rendered.render(
        {"haproxy_checktcp_targets": [{"host": "127.0.0.1", "port": 1, "name": "two\nlines"}]})

    assert returncode != 0, output
    failed_task = output[:output.index("fatal:")].rsplit("TASK [", 1)[1].split("]", 1)[0]
    assert failed_task.endswith("Assert that the variables are valid"), output
    assert "control characters" in output
    assert before == rendered.files()


def sections(config_text, kind):
    return [line.split()[1] for line in config_text.splitlines() if line.startswith(kind + " ")]


@pytest.mark.parametrize("mode", ["live", "cached"])
def test_config_has_no_warning_and_no_shared_section_names(make_service, free_port, mode):
    """HAProxy 3.3 refuses a frontend and a backend of the same name; 3.1+
    warns unless tune.lua.bool-sample-conversion is set. The role's output
    passes `haproxy -c` with no warning on the HAProxy under test."""
    service = make_service(haproxy_checktcp_mode=mode, haproxy_metrics_bind="127.0.0.1:%d" % free_port(),
                           haproxy_checktcp_targets=[{"host": "127.0.0.1", "port": free_port()}])
    returncode, output = service.render()
    assert returncode == 0, output

    text = service.config.read_text()
    frontends, backends = sections(text, "frontend"), sections(text, "backend")
    assert frontends and backends
    assert not set(frontends) & set(backends), (frontends, backends)
    check = subprocess.run([haproxy_binary(), "-c", "-f", str(service.config)], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "WARNING" not in (check.stdout + check.stderr).upper(), check.stdout + check.stderr
