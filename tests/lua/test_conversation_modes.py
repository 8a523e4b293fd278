# -*- coding: utf-8 -*-

# Copyright (c) 2026, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Same steps, same verdict: every case of test_tcp_check_rules.py (each preset
against its real Debian server, custom steps, TLS with the right and wrong CA or
name, the PROXY protocol, timeouts, early closes, refusals) rendered by the role
as a named check, in live mode (the Lua service) and in cached mode (HAProxy's
health checks), must answer 200 exactly where HAProxy's own check says UP and
the status_probe module's evaluator says OK."""

from __future__ import annotations

import json
import types

import pytest

from conftest import http_request
from test_tcp_check_rules import CASES, services  # noqa: F401  pylint: disable=unused-import

TIMEOUT_MS = 2000
INTERVAL_MS = 300
# Every cached check's first verdict is in well within this.
SETTLE_S = 15


def check_of(item, services, mode):  # noqa: F811  pylint: disable=redefined-outer-name
    """The haproxy_checktcp_checks entry of a case."""
    words = dict(item.words)
    wrong_ca = words.pop("wrong_ca", False)
    check = {"name": item.name, "mode": mode, "targets": [services[item.server].target],
             "timeout_ms": TIMEOUT_MS, "interval_ms": INTERVAL_MS}
    if item.conversation["preset"]:
        check["preset"] = item.conversation["preset"]
    if item.conversation["steps"] is not None:
        check["steps"] = item.conversation["steps"]
    check.update(words)
    if words.get("tls"):
        check["tls_ca"] = str(services["ca"].wrong_ca if wrong_ca else services["ca"].ca)
    return check


@pytest.fixture(scope="module")
def beds(deploy, services):  # noqa: F811  pylint: disable=redefined-outer-name
    items = [param.values[0] for param in CASES]
    live, cached = deploy(*({"haproxy_checktcp_checks": [check_of(item, services, mode) for item in items]}
                            for mode in ("live", "cached")))
    return types.SimpleNamespace(live=live, cached=cached)


def verdict(service, name):
    response = http_request(service.port, path="/" + name, headers={"Accept": "application/json"})
    return response.status, json.loads(response.body)


@pytest.mark.parametrize("mode", ["live", "cached"])
@pytest.mark.parametrize("item", CASES)
def test_both_modes_agree_with_haproxys_check(beds, mode, item):
    service = getattr(beds, mode)
    wanted = 200 if item.up else 503
    status, page = verdict(service, item.name)
    if mode == "cached":
        # Until its first check is over, a cached check answers 503 (pending).
        import time  # pylint: disable=import-outside-toplevel
        end = time.monotonic() + SETTLE_S
        while status != wanted and time.monotonic() < end:
            time.sleep(0.1)
            status, page = verdict(service, item.name)
    assert status == wanted, "%s: %s\n%s" % (item.name, page, service.log_text()[-3000:])
