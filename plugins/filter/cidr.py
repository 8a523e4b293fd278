# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The status page's allow-lists: cidr_problems (what is wrong in a list of
CIDRs) and cidr_src_patterns (the patterns haproxy.cfg matches src with)."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _problem(entry):
    """Why `entry` is not an IPv4 or IPv6 network HAProxy's `src` can match, or None."""
    if not isinstance(entry, str):
        return f"{entry!r}: not a string"
    if "%" in entry:
        return f"{entry!r}: an IPv6 zone (%...), which HAProxy's src cannot match"
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


def cidr_src_patterns(value):
    """The entries of a valid list of CIDRs as patterns for HAProxy's ``src``
    that match them and nothing else: an IPv4 network as the IPv4-mapped IPv6
    network (10.0.0.0/8 -> ::ffff:10.0.0.0/104), an IPv6 one as it is.

    Matched against an IPv4 pattern, an IPv6 source in 2002::/16 (6to4) or
    ::/96 (IPv4-compatible) is taken for the IPv4 address inside it, so on a
    dual-stack bind 127.0.0.1/32 would admit 2002:7f00:1::1 from anywhere.
    An IPv4 client matches the mapped pattern (HAProxy maps it to
    ::ffff:a.b.c.d first), on an IPv4 bind as on a dual-stack one.
    """
    problems = cidr_problems(value)
    if problems:
        raise AnsibleFilterError("cidr_src_patterns: " + "; ".join(problems))
    out = []
    for entry in value:
        network = ipaddress.ip_network(entry.strip(), strict=True)
        if network.version == 4:
            out.append(f"::ffff:{network.network_address}/{96 + network.prefixlen}")
        else:
            out.append(str(network))
    return out


class FilterModule:
    """Filters of checktcp.haproxy_lua."""

    def filters(self):
        return {"cidr_problems": cidr_problems, "cidr_src_patterns": cidr_src_patterns}
