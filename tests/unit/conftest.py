# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Puts this collection on the import path as ``ansible_collections.checktcp.haproxy_lua``,
so that plain ``python -m pytest tests/unit`` works from a clone (inside the venv), as
``ansible-test units`` does from its copy; and registers the ``slow`` marker, for the
tests ``scripts/test quick`` leaves to the full run."""

from __future__ import annotations

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
# The same link scripts/lib.sh (link_collection) makes, inside the clone.
COLLECTIONS = REPO / ".cache" / "collections"


def _put_collection_on_path():
    try:
        import ansible_collections.checktcp.haproxy_lua  # noqa: F401 (ansible-test's copy, or already there)
        return
    except ImportError:
        pass
    link = COLLECTIONS / "ansible_collections" / "checktcp" / "haproxy_lua"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    sys.path.insert(0, str(COLLECTIONS))


_put_collection_on_path()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes long; `scripts/test quick` leaves it to the full run")
