# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The role's validation of what it renders: a configuration HAProxy rejects
(in haproxy.cfg, or in the Lua file) fails the playbook and leaves the files
of the previous good render byte for byte as they were."""

from __future__ import annotations

import pytest


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
    # A raw newline ends the name's Lua string literal: checktcp.lua no longer loads.
    pytest.param({"haproxy_checktcp_targets": [{"host": "127.0.0.1", "port": 1, "name": "two\nlines"}]},
                 "checktcp.lua", id="lua-syntax-error"),
])
def test_rejected_render_keeps_the_previous_files(rendered, variables, rejected):
    before = {path: path.read_bytes() for path in (rendered.config, rendered.lua)}

    returncode, output = rendered.render(variables)

    assert returncode != 0, output
    # It failed where HAProxy checked the rejected file, not earlier.
    failed_task = output[:output.index("fatal:")].rsplit("TASK [", 1)[1].split("]", 1)[0]
    assert failed_task.endswith("Render %s, validated by HAProxy" % rejected), output
    assert "failed to validate" in output
    assert before == {path: path.read_bytes() for path in (rendered.config, rendered.lua)}
