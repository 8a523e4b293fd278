# Copyright: checktcp maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The user's path through the scripts, run for real in copies of this clone: --help
everywhere, the test tiers, plain pytest from a clone, and the demo (re-deployed with
the user's variables, over TLS, with metrics, refused by an allow-list, purged)."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import urllib.parse

import pytest

from test_scripts import REPO, clean_env, copy_clone, run

# Every script a user or contributor runs (scripts/lib.sh is sourced, role_docs.py run by role-docs).
SCRIPTS = sorted(set(
    [path.relative_to(REPO).as_posix() for path in (REPO / "scripts").iterdir()
     if os.access(path, os.X_OK) and path.is_file() and path.suffix != ".py"]
    + ["benchmarks/run", "scripts/env.sh"]))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clone_with_venv(dest):
    """A copy of the clone that uses this clone's .venv (same requirements: nothing to install)."""
    clone = copy_clone(dest)
    (clone / ".venv").symlink_to(REPO / ".venv")
    return clone


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_help(script, tmp_path):
    clone = copy_clone(tmp_path / "clone")
    result = run([str(clone / script), "--help"], cwd=clone, env=clean_env(), timeout=60)
    assert result.returncode == 0, result.stdout
    assert len(result.stdout.splitlines()) >= 3, result.stdout
    assert "error" not in result.stdout.lower(), result.stdout
    # Help installs and creates nothing.
    assert not (clone / ".venv").exists() and not (clone / ".cache").exists()


def test_fail_fast_stops_at_the_first_failing_step_and_prints_the_times(tmp_path):
    clone = clone_with_venv(tmp_path / "clone")
    (clone / "broken.yml").write_text("key: [unclosed\n")
    result = run([str(clone / "scripts" / "test"), "--fail-fast", "lint"], cwd=clone, env=clean_env(), timeout=600)
    assert result.returncode != 0
    assert "yamllint: FAILED" in result.stdout
    assert "stopped at the first failure (--fail-fast)" in result.stdout
    assert "==> ansible-lint" not in result.stdout
    times = result.stdout.split("==> step times", 1)[1]
    assert re.search(r"^\s+\d+ s\s+FAILED\s+yamllint$", times, re.M), times
    assert result.stdout.rstrip().endswith("test steps: 0 passed, 1 failed")


def test_the_end_of_a_run_names_the_tests_that_failed(tmp_path):
    """CI shows a run's last lines: CI failed on a Lua test and its tail said only
    "FAILED  Lua service on loopback (the host's HAProxy)", not which test."""
    clone = clone_with_venv(tmp_path / "clone")
    for path in (clone / "tests" / "unit").rglob("test_*.py"):
        path.unlink()
    # Before pytest's summary, 25 lines like the failed tasks a scenario expects and ignores,
    # then a line like ansible-test's errors (CI failed on one, and did not name it).
    (clone / "tests" / "unit" / "test_one_fails.py").write_text(
        "def test_that_passes():\n    pass\n\n\n"
        "def test_that_fails():\n"
        "    print('fatal: [host]: FAILED! => {}\\n...ignoring\\n' * 25)\n"
        "    print('ERROR: tests/lua/test_x.py:143:8: disallowed-name: Disallowed name')\n"
        "    assert 'KO' == 'OK'\n")
    result = run([str(clone / "scripts" / "test"), "quick"], cwd=clone, env=clean_env(), timeout=600)
    assert result.returncode != 0
    lines = result.stdout.splitlines()
    assert lines[-1] == "test steps: 3 passed, 1 failed", result.stdout
    heading = lines.index("==> what failed (from the output of the failed steps)")
    named = lines[heading + 1:-1]
    assert len(named) <= 20 + 2, result.stdout
    step = "  unit tests, filters included (not those marked slow): "
    assert any(line.startswith(step + "FAILED tests/unit/test_one_fails.py::test_that_fails") for line in named), \
        result.stdout
    assert step + "ERROR: tests/lua/test_x.py:143:8: disallowed-name: Disallowed name" in named, result.stdout
    assert "test_that_passes" not in "\n".join(named)


def test_plain_pytest_of_the_unit_tests_works_from_a_clone(tmp_path):
    clone = clone_with_venv(tmp_path / "clone")
    result = run([str(REPO / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  "tests/unit/plugins/filter"], cwd=clone, env=clean_env(), timeout=300)
    assert result.returncode == 0, result.stdout
    assert re.search(r"\d+ passed", result.stdout), result.stdout


# ------------------------------------------------------------------ the demo

def get(url):
    """(status, body) of a GET over plain HTTP."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A copy of the clone whose demo uses ports of its own and an image tag of its own
    (its build-image recipe differs by a comment; the tag points at this clone's image,
    so nothing is built), and this clone's demo tools, so that purging it touches
    nothing of this clone's."""
    base = tmp_path_factory.mktemp("demo")
    clone = copy_clone(base / "clone")
    with (clone / "scripts" / "build-image").open("a") as recipe:
        recipe.write("# the demo test's own tag\n")
    env = clean_env(CHECKTCP_DEMO_HTTP_PORT=str(free_port()), CHECKTCP_DEMO_TLS_PORT=str(free_port()),
                    CHECKTCP_DEMO_METRICS_PORT=str(free_port()))
    setup = run(["bash", "-c", "source scripts/lib.sh && ensure_system_packages podman runc debootstrap curl "
                 "&& scripts/build-image bookworm >/dev/null && ensure_demo_venv && echo \"$CHECKTCP_IMAGE_12\" "
                 "&& echo \"$DEMO_VENV\""], env=clean_env(), timeout=1800)
    assert setup.returncode == 0, setup.stdout
    image, venv = setup.stdout.splitlines()[-2:]
    own = run(["bash", "-c", 'source scripts/lib.sh && echo "$CHECKTCP_IMAGE_12" "$CHECKTCP_ID"'],
              cwd=clone, env=clean_env()).stdout.split()
    assert own[0] != image
    assert run(["podman", "tag", image, own[0]]).returncode == 0
    (clone / ".cache").mkdir()
    (clone / ".cache" / "demo").symlink_to(venv)
    yield clone, env, own[0], own[1] + "-demo"
    run([str(clone / "scripts" / "demo"), "purge"], cwd=clone, env=env)


def demo_run(demo, *args, cwd=None):
    clone, env = demo[:2]
    return run([str(clone / "scripts" / "demo")] + list(args), cwd=cwd or clone, env=env, timeout=900)


def port(demo, name):
    return demo[1]["CHECKTCP_DEMO_%s_PORT" % name]


def test_demo_up_shows_200_and_publishes_the_metrics(demo):
    result = demo_run(demo, "up")
    assert result.returncode == 0, result.stdout
    assert "HTTP/1.1 200 OK" in result.stdout
    assert get("http://127.0.0.1:%s/" % port(demo, "HTTP"))[0] == 200
    # The README's metrics example, on the demo's metrics port.
    status, body = get("http://127.0.0.1:%s/checktcp/metrics" % port(demo, "METRICS"))
    assert status == 200 and "checktcp_" in body, body


def test_env_sh_is_the_one_command_before_ansible_playbook(demo):
    clone = demo[0]
    # CHECKTCP_ID unset: the demo inventory derives the container name from the clone.
    result = run(["bash", "-c", "source scripts/env.sh && unset CHECKTCP_ID && ansible-playbook site.yml"], cwd=clone,
                 env=dict(demo[1]), timeout=900)
    assert result.returncode == 0, result.stdout
    assert re.search(r"checktcp-demo\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", result.stdout), result.stdout


def test_demo_ko_and_ok(demo):
    assert "HTTP/1.1 503 KO" in demo_run(demo, "ko").stdout
    assert "HTTP/1.1 200 OK" in demo_run(demo, "ok").stdout


def test_demo_up_with_variables_from_a_file_serves_tls(demo, tmp_path):
    (tmp_path / "tls.json").write_text(json.dumps({"haproxy_status_tls": True, "haproxy_status_bind": "*:443"}))
    result = demo_run(demo, "up", "-e", "@tls.json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    cert = demo_run(demo, "cert")
    assert cert.returncode == 0 and "PRIVATE KEY" not in cert.stdout
    (tmp_path / "page-ca.pem").write_text(cert.stdout)
    # The README's TLS example: curl pinned to the page's certificate.
    curl = run(["curl", "-s", "--http2", "--cacert", str(tmp_path / "page-ca.pem"), "-o", "/dev/null",
                "-w", "%{http_code} %{http_version}", "https://localhost:%s/" % port(demo, "TLS")])
    assert curl.stdout == "200 2", curl.stdout


def test_demo_allow_list_refusal_names_the_address_the_page_sees(demo):
    result = demo_run(demo, "up", "-e", '{"haproxy_status_allow": ["127.0.0.1/32"]}')
    assert result.returncode == 0, result.stdout
    # The host's request reaches the container through podman's published port:
    # HAProxy sees the gateway's address, not 127.0.0.1.
    status, body = get("http://127.0.0.1:%s/" % port(demo, "HTTP"))
    assert status == 403, body
    seen = re.search(r"your address as this server sees it, (\S+), is not on", body).group(1)
    assert seen != "127.0.0.1"
    journal = run(["podman", "exec", demo[3], "journalctl", "-u", "haproxy", "--no-pager", "-o", "cat"])
    assert "checktcp: refused %s, not on the status page's allow-list" % seen in journal.stdout, journal.stdout


def test_demo_purge_removes_container_image_and_tools(demo):
    clone, env, image, name = demo
    result = demo_run(demo, "purge")
    assert result.returncode == 0, result.stdout
    assert run(["podman", "container", "exists", name]).returncode != 0
    assert run(["podman", "image", "exists", image]).returncode != 0
    assert not os.path.lexists(clone / ".cache" / "demo")
    # The image this clone's demo and tests use is still there.
    assert run(["bash", "-c", 'source scripts/lib.sh && podman image exists "$CHECKTCP_IMAGE_12"']).returncode == 0
