"""A configuration change reloads HAProxy without a restart, on every HAProxy
of the scenario (2.6, 3.0, 3.2): one run of site.yml changes all three hosts at
once, and one run takes them back.

Its own module, not a test per host: test_default.py's tests run host by host,
and two runs of site.yml for each of three hosts cost minutes of CI's time."""

import os
import re
import time

import pytest
import testinfra

from conftest import apply_site

PREFIX = os.environ["CHECKTCP_ID"] + "-default-"
HOSTS = [PREFIX + suffix for suffix in ("debian12", "debian13", "forky")]
CHECKS_FILE = r"/etc/haproxy/lua/checktcp-checks-[0-9a-f]*\.lua"
STATE_FILE = "/etc/haproxy/lua/checktcp-server-state"


def pids(host):
    master = host.check_output("systemctl show -p MainPID --value haproxy.service")
    workers = host.check_output(f"pgrep -P {master} haproxy || true").split()
    return master, workers


def checks_text(host):
    """The rendered checks the live haproxy.cfg loads (named after their content)."""
    return host.file(host.check_output(f"grep -o '{CHECKS_FILE}' /etc/haproxy/haproxy.cfg")).content_string


@pytest.fixture(scope="module")
def reloaded():
    """Every host's HAProxy before and after a run of site.yml that changes the timeout."""
    hosts = {name: testinfra.get_host("podman://" + name) for name in HOSTS}
    before = {name: pids(host) for name, host in hosts.items()}
    try:
        out = apply_site(None, {"haproxy_checktcp_timeout_ms": 900})
        # Old workers finish their connections, then leave.
        deadline = time.monotonic() + 10
        after = {name: pids(host) for name, host in hosts.items()}
        while any(set(after[name][1]) & set(before[name][1]) for name in hosts) and time.monotonic() < deadline:
            time.sleep(0.2)
            after = {name: pids(host) for name, host in hosts.items()}
        yield hosts, before, after, out, {name: checks_text(host) for name, host in hosts.items()}
    finally:
        apply_site(None, {})
    for name, host in hosts.items():
        assert '["timeout_ms"] = 1000' in checks_text(host), name


@pytest.mark.parametrize("name", HOSTS)
def test_config_change_reloads_without_restart(reloaded, name):
    hosts, before, after, out, checks = reloaded
    assert "RUNNING HANDLER [checktcp.haproxy_lua.haproxy : Reload HAProxy]" in out
    assert '["timeout_ms"] = 900' in checks[name]
    assert after[name][0] == before[name][0], "a config change must reload, not restart"
    assert after[name][1] and set(after[name][1]).isdisjoint(before[name][1]), \
        hosts[name].check_output("journalctl -u haproxy --no-pager -n 30")
    code = hosts[name].check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/")
    assert code == "200"


@pytest.mark.parametrize("name", HOSTS)
def test_the_reload_handed_the_server_states_over_then_forgot_them(reloaded, name):
    """haproxy.service's drop-in saved the worker's states through the master CLI (every server,
    the probe relays' too), and emptied the file once the new worker had loaded it."""
    hosts = reloaded[0]
    journal = hosts[name].check_output("journalctl -u haproxy.service --no-pager -n 300")
    assert re.search(r"checktcp: saved [1-9][0-9]* server states for the next worker", journal), journal[-3000:]
    assert hosts[name].file(STATE_FILE).content_string == "1\n"
