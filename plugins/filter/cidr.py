# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""cidr_problems: what is wrong in a list of CIDRs (the status page's allow-lists)."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _problem(entry):
    """Why `entry` is not an IPv4 or IPv6 network HAProxy's `src` can match, or None."""
    if not isinstance(entry, str):
        return f"{entry!r}: not a string"
    try:
        ipaddress.ip_network(entry.strip(), strict=True)
    except ValueError as err:
        if "host bits set" in str(err):
            return f"{entry!r}: host bits set (did you mean {ipaddress.ip_network(entry.strip(), strict=False)}?)"
        return f"{entry!r}: not an IPv4 or IPv6 network ({err})"
    return None


def cidr_problems(value):
    """Return one message per entry of `value` that is not a CIDR (an address alone is a /32 or /128)."""
    if not isinstance(value, (list, tuple)):
        raise AnsibleFilterError(f"cidr_problems expects a list of CIDRs, got {type(value).__name__}")
    return [problem for problem in (_problem(entry) for entry in value) if problem]


class FilterModule:
    """Filters of checktcp.haproxy_lua."""

    def filters(self):
        return {"cidr_problems": cidr_problems}
