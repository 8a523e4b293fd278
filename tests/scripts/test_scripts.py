# Copyright: checktcp maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test bed's own scripts (scripts/), run for real in copies of this clone.

`scripts/test scripts` runs these with the pinned tools of .venv on PATH.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tarfile

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
# What a built tarball may carry at its top level, and what it must.
TARBALL_ALLOWED = {"COPYING", "README.md", "FILES.json", "MANIFEST.json", "changelogs", "docs",
                   "meta", "playbooks", "plugins", "roles", "site.yml"}
TARBALL_REQUIRED = {"COPYING", "README.md", "meta/runtime.yml", "playbooks/site.yml", "site.yml",
                    "plugins/modules/status_probe.py", "roles/haproxy/tasks/main.yml"}


def run(args, cwd=REPO, env=None, timeout=300):
    return subprocess.run(args, cwd=cwd, env=env, timeout=timeout, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


def clean_env(**extra):
    """The environment of a fresh shell: nothing a sourced lib.sh exported."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CHECKTCP_", "ANSIBLE_", "XDG_"))}
    env.update(extra)
    return env


def copy_clone(dest):
    """A copy of this clone's files (what git knows, committed or not) in a git repository of its own."""
    files = run(["git", "ls-files", "-z", "-co", "--exclude-standard"]).stdout.split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    assert run(["git", "init", "-q"], cwd=dest).returncode == 0
    assert run(["git", "add", "-A"], cwd=dest).returncode == 0
    return dest


def lib_value(clone, name):
    result = run(["bash", "-c", 'source scripts/lib.sh && printf "%%s" "$%s"' % name], cwd=clone, env=clean_env())
    assert result.returncode == 0, result.stdout
    return result.stdout


@pytest.fixture(scope="module")
def two_clones(tmp_path_factory):
    base = tmp_path_factory.mktemp("clones")
    return copy_clone(base / "one"), copy_clone(base / "two")


@pytest.mark.parametrize("args, message", [
    (["no-such-step"], "unknown step 'no-such-step'"),
    (["molecule", "no-such-scenario"], "unknown molecule scenario 'no-such-scenario'"),
    (["matrix", "2.13"], "unknown ansible-core '2.13'"),
    (["lint", "extra"], "step 'lint' takes no arguments"),
])
def test_unknown_step_fails_and_runs_nothing(args, message):
    result = run([str(REPO / "scripts" / "test")] + args, env=clean_env())
    assert result.returncode != 0
    assert message in result.stdout
    assert "test steps:" not in result.stdout


def test_failed_pip_install_fails_the_run_and_leaves_no_stamp(tmp_path):
    clone = copy_clone(tmp_path / "clone")
    (clone / "requirements" / "test.txt").write_text("checktcp-no-such-package==0.0.0\n")
    result = run([str(clone / "scripts" / "test"), "lint"], cwd=clone, env=clean_env(), timeout=600)
    assert result.returncode != 0
    assert "setting up the test bed failed" in result.stdout
    assert "test steps:" not in result.stdout
    assert not (clone / ".venv" / ".requirements.sha256").exists()


def test_two_clones_get_distinct_names_and_caches(two_clones):
    one, two = two_clones
    ids = [lib_value(clone, "CHECKTCP_ID") for clone in two_clones]
    assert ids[0] != ids[1]
    assert all(name.startswith("checktcp-") for name in ids)
    for clone in two_clones:
        assert lib_value(clone, "XDG_CACHE_HOME") == str(clone / ".cache")
        assert lib_value(clone, "ANSIBLE_COLLECTIONS_PATH").startswith(str(clone / ".cache"))
        assert lib_value(clone, "CHECKTCP_CACHE").startswith(str(clone / ".cache"))
    # Same recipe, same image; images are shared, never a clone's own.
    assert lib_value(one, "CHECKTCP_IMAGE_12") == lib_value(two, "CHECKTCP_IMAGE_12")


def test_ansible_test_copies_are_named_after_the_clone(two_clones, tmp_path):
    for clone in two_clones:
        result = run([str(clone / "scripts" / "ansible-test"), "--version"], cwd=clone,
                     env=clean_env(TMPDIR=str(tmp_path)))
        assert result.returncode == 0, result.stdout
    copies = sorted(path.name for path in tmp_path.iterdir())
    assert copies == sorted("%s-ansible-test" % lib_value(clone, "CHECKTCP_ID") for clone in two_clones)


def test_nothing_outside_the_clone_has_a_fixed_name():
    """Names the scripts and loopback tests give on the host carry CHECKTCP_ID or stay inside the clone.

    Allowed: the shared image names (tagged by recipe), names inside containers (the echo unit,
    the benchmark's fast echo servers and blackbox_exporter), the tarball's own name (inside a private temporary directory),
    the rendered checks file (inside a test's own configuration directory).
    """
    result = run(["git", "grep", "-nE", r"""[/"' ]checktcp-[a-z]|~/\.cache|HOME/\.cache""",
                  "--", "scripts", "tests/lua", "benchmarks/*.py", "benchmarks/run", "ansible.cfg"])
    allowed = ("checktcp-debian:", "checktcp-haproxy:", "checktcp-echo", "checktcp-fast-echo", "checktcp-bench-echo",
               "checktcp-bench-blackbox", "/checktcp-haproxy_lua-", '"checktcp-checks-"')
    fixed = [line for line in result.stdout.splitlines() if not any(name in line for name in allowed)]
    assert fixed == []


def test_a_changed_recipe_changes_the_image_tag(tmp_path):
    clone = copy_clone(tmp_path / "clone")
    before = {version: lib_value(clone, "CHECKTCP_IMAGE_%s" % version) for version in ("12", "13", "FORKY")}
    assert len(set(before.values())) == 3
    with (clone / "scripts" / "build-image").open("a") as recipe:
        recipe.write("# changed\n")
    for version, tag in before.items():
        assert lib_value(clone, "CHECKTCP_IMAGE_%s" % version) != tag


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    result = run(["ansible-galaxy", "collection", "build", "--output-path", str(out), str(REPO)])
    assert result.returncode == 0, result.stdout
    (path,) = out.glob("checktcp-haproxy_lua-*.tar.gz")
    with tarfile.open(path) as archive:
        return archive.getnames()


def test_tarball_carries_no_tooling(tarball):
    top = {name.split("/")[0] for name in tarball}
    assert top <= TARBALL_ALLOWED, "unexpected in the tarball: %s" % sorted(top - TARBALL_ALLOWED)


def test_tarball_carries_the_collection(tarball):
    assert TARBALL_REQUIRED <= set(tarball)


def test_galaxy_yml_names_the_licence_once():
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert ("license" in galaxy) != ("license_file" in galaxy)


@pytest.mark.parametrize("output, verdict", [
    ('WARNING: Required program "shellcheck" not found.\n', 1),
    ("Running sanity test \"shellcheck\"\n", 0),
])
def test_sanity_fails_when_a_program_is_missing(tmp_path, output, verdict):
    stub = tmp_path / "ansible-test"
    stub.write_text("#!/bin/sh\ncat <<'EOF'\n%sEOF\n" % output)
    stub.chmod(0o755)
    result = run(["bash", "-c", 'source scripts/lib.sh && sanity "$0"', str(stub)],
                 env=clean_env(TMPDIR=str(tmp_path)))
    assert result.returncode == verdict, result.stdout


def test_shellcheck_is_installed_by_the_setup():
    result = run(["bash", "-c", "source scripts/lib.sh && ensure_system_packages && command -v shellcheck"], env=clean_env())
    assert result.returncode == 0, result.stdout


def bash_array(name):
    result = run(["bash", "-c", 'source scripts/lib.sh && printf "%%s\\n" "${%s[@]}"' % name], env=clean_env())
    assert result.returncode == 0, result.stdout
    return set(result.stdout.split())


def test_the_quick_tier_installs_what_the_unit_tests_run():
    """`scripts/test quick` on a fresh machine failed 14 unit tests and errored
    21: it installed luacheck and HAProxy, not the Lua interpreters the filter's
    and the fake HAProxy's tests run, nor the real servers of the module's tests."""
    quick = bash_array("QUICK_PACKAGES")
    assert {"lua-check", "lua5.3", "lua5.4", "haproxy", "python3-venv"} <= quick, quick
    assert bash_array("REAL_SERVER_PACKAGES") <= quick, quick
