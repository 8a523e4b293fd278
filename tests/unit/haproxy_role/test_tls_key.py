# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The self-signed certificate's key is never readable by others, not even
between its creation and a later chmod: the role's task is run as the role
runs it (its argv from roles/haproxy/tasks/tls.yml), under umask 022, with
the real openssl and with an openssl that writes its output with the umask
(as OpenSSL before 1.1 and other builds do)."""

import os
import pathlib
import shutil
import stat
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
TASKS = ROOT / "roles" / "haproxy" / "tasks" / "tls.yml"
KEY_TASK = "Make the key of the self-signed certificate"
KEY_WORD = "{{ __haproxy_tls_selfsigned }}.key"
# Writes -out's file through the shell (mode 0666 minus the umask), as an
# openssl that does not restrict private key files would.
UMASK_OPENSSL = """#!/bin/sh
while [ $# -gt 0 ]; do
  if [ "$1" = -out ]; then out=$2; fi
  shift
done
echo "-----BEGIN PRIVATE KEY-----" > "$out"
"""


def key_task_argv(key):
    for task in yaml.safe_load(TASKS.read_text()):
        for inner in task.get("block", [task]):
            if inner.get("name") == KEY_TASK:
                argv = inner["ansible.builtin.command"]["argv"]
                assert inner["ansible.builtin.command"]["creates"] == KEY_WORD
                return [str(key) if word == KEY_WORD else word for word in argv]
    raise AssertionError(f"no task {KEY_TASK!r} in {TASKS}")


def run_with_umask(argv, env=None):
    """argv run under umask 022, Debian's default."""
    return subprocess.run(["sh", "-c", 'umask 022 && exec "$@"', "sh"] + argv, capture_output=True, text=True,
                          check=False, env=env)


@pytest.fixture
def umask_openssl(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "openssl"
    script.write_text(UMASK_OPENSSL)
    script.chmod(0o755)
    return dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_the_key_is_created_private_whatever_openssl_does(tmp_path, umask_openssl):
    key = tmp_path / "checktcp-selfsigned.pem.key"

    result = run_with_umask(key_task_argv(key), umask_openssl)

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_real_key_is_private_and_loads(tmp_path):
    key = tmp_path / "checktcp-selfsigned.pem.key"

    result = run_with_umask(key_task_argv(key))

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    check = subprocess.run(["openssl", "pkey", "-in", str(key), "-noout"], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stderr
