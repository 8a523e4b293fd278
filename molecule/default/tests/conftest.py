"""Shared helpers for the testinfra tests of the molecule scenarios."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from checktcp_testinfra import (  # noqa: E402 pylint: disable=wrong-import-position
    ECHO_UNIT, Status, podman_host)


@pytest.fixture(scope="module")
def host(host):
    """The instance, reached with `podman exec` (checktcp_testinfra.podman_host)."""
    return podman_host(host)


@pytest.fixture
def status(host):
    return Status(host)


@pytest.fixture
def echo_stopped(host):
    """Stop the echo server for one test, and always start it again."""
    host.run_expect([0], f"systemctl stop {ECHO_UNIT}")
    yield
    host.run_expect([0], f"systemctl start {ECHO_UNIT}")


def apply_site(host, extra_vars):
    """Run site.yml from the controller, with extra variables, on this host (every host if None)."""
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    limit = ["--limit", host.backend.get_hostname()] if host is not None else []
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         os.path.join(project, "site.yml")] + limit + ["-e", json.dumps(extra_vars)],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout
