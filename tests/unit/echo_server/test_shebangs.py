# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every Python program of the collection names python3: Debian has no `python`."""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[3]
# Not the collection's own files: .ansible is where ansible-core and ansible-lint
# install collections inside the project (.gitignore lists it).
SKIP_DIRS = {".git", ".venv", ".cache", ".ansible", "output", "__pycache__", "node_modules"}
# Ansible replaces a module's shebang with the interpreter it discovers on the
# target, and ansible-test requires exactly this one.
MODULE_SHEBANG = "#!/usr/bin/python"


def python_shebangs():
    # os.walk, pruned: the skipped folders (a venv among them) are never entered.
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [name for name in dirs if name not in SKIP_DIRS]
        for name in files:
            path = pathlib.Path(folder, name)
            if not path.is_file():
                continue
            with path.open("rb") as handle:
                first = handle.readline(200)
            if first.startswith(b"#!") and b"python" in first:
                yield path.relative_to(ROOT).as_posix(), first.decode(errors="replace").strip()


def test_python_shebangs_name_python3():
    """No shebang names a bare `python`; the programs the roles deploy have none at
    all (ansible-test allows only `env python`) and are run by /usr/bin/python3."""
    found = dict(python_shebangs())
    wrong = {path: line for path, line in found.items()
             if not (path.startswith("plugins/modules/") and line == MODULE_SHEBANG)
             and line.split("/")[-1].split()[-1] != "python3"}
    assert not wrong, wrong
    for deployed in ("roles/echo_server/files/checktcp_echo.py", "roles/haproxy/files/haproxy-validate"):
        assert deployed not in found, deployed
    unit = (ROOT / "roles/echo_server/templates/checktcp-echo.service.j2").read_text()
    assert "ExecStart=/usr/bin/python3 " in unit
    tasks = (ROOT / "roles/haproxy/tasks/configure.yml").read_text()
    assert "validate: /usr/bin/python3 {{ __haproxy_validator }} %s" in tasks
