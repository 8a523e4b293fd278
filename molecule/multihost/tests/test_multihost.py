"""Several echo hosts: the verdict follows haproxy_checktcp_policy."""

import json
import os
import subprocess
import time

import pytest
import testinfra

# Platform names carry the clone's CHECKTCP_ID (scripts/lib.sh). The containers
# are reached with `podman exec`, not an Ansible ad hoc task per command (about
# a second each).
PREFIX = os.environ["CHECKTCP_ID"] + "-mh-"
testinfra_hosts = [f"podman://{PREFIX}haproxy"]

ECHO1, ECHO2 = PREFIX + "echo1", PREFIX + "echo2"
ECHO_HOSTS = {ECHO1: 8080, ECHO2: 9090}
UNIT = "checktcp-echo.service"
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def echo_host(name):
    return testinfra.get_host(f"podman://{name}")


def page(host, path="/"):
    out = host.check_output(f"curl -s -H 'Accept: application/json' -w '\\n%{{http_code}}' http://127.0.0.1{path}")
    body, code = out.rsplit("\n", 1)
    return int(code), json.loads(body)


def apply_role(variables):
    """Re-run the haproxy role with extra variables, from the controller."""
    result = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, os.path.join(SCENARIO, "policy.yml"), "-e", json.dumps(variables)],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.fixture
def echo1_down():
    host = echo_host(ECHO1)
    host.run_expect([0], f"systemctl stop {UNIT}")
    yield
    host.run_expect([0], f"systemctl start {UNIT}")


@pytest.fixture
def all_down():
    hosts = [echo_host(name) for name in ECHO_HOSTS]
    for host in hosts:
        host.run_expect([0], f"systemctl stop {UNIT}")
    yield
    for host in hosts:
        host.run_expect([0], f"systemctl start {UNIT}")


def test_targets_are_derived_from_the_echo_group(host):
    code, doc = page(host)
    assert sorted(t["target"] for t in doc["targets"]) == sorted(ECHO_HOSTS)
    checks = host.check_output("cat /etc/haproxy/lua/checktcp-checks-*.lua")
    for name, port in ECHO_HOSTS.items():
        address = echo_host(name).interface("eth0").addresses[0]
        assert f'["host"] = "{address}",' in checks and f'["port"] = {port},' in checks, checks
    assert code == 200, doc


def test_all_up_is_ok(host):
    code, doc = page(host)
    assert code == 200 and doc["status"] == "OK" and doc["up"] == 2, doc
    assert all(t["ok"] and t["probe_ms"] >= 0 for t in doc["targets"]), doc


def test_one_down_with_policy_all_is_ko(host, echo1_down):
    code, doc = page(host)
    assert code == 503 and doc["up"] == 1 and doc["required"] == 2, doc
    verdicts = {t["target"]: t["ok"] for t in doc["targets"]}
    assert verdicts == {ECHO1: False, ECHO2: True}


# The tests below share one run of the role (about a minute each, CI's time):
# one named check per policy over both echo hosts, one per echo group.
POLICIES = {"any": "any", "at-least-1": 1, "at-least-2": 2}


@pytest.fixture(scope="module")
def named_checks():
    """The named checks for the tests below, then the single check again."""
    apply_role({"haproxy_checktcp_checks": [
        {"name": "one", "targets_group": "echo_one"}, {"name": "two", "targets_group": "echo_two"}] + [
        {"name": name, "targets_group": "echo_servers", "policy": value} for name, value in POLICIES.items()]})
    yield
    apply_role({})


def page_once(host, path, up):
    """The page of ``path`` once it counts ``up`` targets up (a live verdict may
    be up to the role's probe spacing old), within 5 s."""
    end = time.monotonic() + 5
    while True:
        code, doc = page(host, path)
        if doc["up"] == up or time.monotonic() > end:
            return code, doc
        time.sleep(0.1)


@pytest.mark.parametrize("name, expected", [("any", 200), ("at-least-1", 200), ("at-least-2", 503)])
def test_one_down_follows_the_policy(host, named_checks, echo1_down, name, expected):
    code, doc = page_once(host, "/" + name, up=1)
    assert code == expected, doc
    assert doc["up"] == 1 and len(doc["targets"]) == 2, doc


def test_all_down_is_ko_even_with_policy_any(host, named_checks, all_down):
    code, doc = page_once(host, "/any", up=0)
    assert code == 503 and doc["up"] == 0, doc
    assert all("refused" in t["reason"] for t in doc["targets"]), doc


def test_named_checks_over_two_groups(host, named_checks):
    assert [page(host, path)[0] for path in ("/one", "/two", "/")] == [200, 200, 200]
    echo1 = echo_host(ECHO1)
    echo1.run_expect([0], f"systemctl stop {UNIT}")
    try:
        (one, one_doc), (two, two_doc) = page_once(host, "/one", up=0), page(host, "/two")
        assert (one, one_doc["status"], one_doc["check"]) == (503, "KO", "one"), one_doc
        assert [t["target"] for t in one_doc["targets"]] == [ECHO1], one_doc
        assert (two, two_doc["status"]) == (200, "OK"), two_doc
        assert [t["target"] for t in two_doc["targets"]] == [ECHO2], two_doc
        overview, doc = page(host, "/")
        assert overview == 503 and doc["status"] == "KO", doc
        assert [(c["name"], c["path"], c["status"]) for c in doc["checks"]] == [
            ("one", "/one", "KO"), ("two", "/two", "OK"),
            ("any", "/any", "OK"), ("at-least-1", "/at-least-1", "OK"), ("at-least-2", "/at-least-2", "KO")], doc
        assert host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/nowhere").stdout == "404"
    finally:
        echo1.run_expect([0], f"systemctl start {UNIT}")
