# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""keepalived_instance: validate the keepalived role's variables and derive its VRRP instance.

Every error names the variable to fix. Numbers and booleans may arrive as strings
(``-e key=value``, INI inventories) and are coerced here.

How the address follows the status page (the track scripts' arithmetic)
-----------------------------------------------------------------------
Each node runs three track scripts against its own HAProxy's status page:

- ``alive``: HAProxy answers the page at all (200, 503 or 404). Weight 0: after
  ``FALL`` failures the instance goes to FAULT, drops the address and sends a
  priority-0 advert, so the peer takes over at once, whatever the priorities.
- ``page``: the page says 200 OK. Weight ``-PAGE_WEIGHT`` (50) while it does not.
- ``holder`` (only with ``keepalived_preempt: false``): this node holds the
  address. Weight ``+HOLDER_WEIGHT`` (20) while it does.

keepalived's ``nopreempt`` is not used: it would also keep a backup whose page
is OK from taking the address from a master whose page is KO. The holder's bonus
keeps the address put instead. With base priorities p (the holder's) and q (a
backup's), both within ``MAX_SPREAD`` (19) of each other, |p - q| <= 19:

- both pages OK:      holder p + 20 > q, since 20 > 19          -> stays
- holder KO, peer OK: holder p - 50 + 20 = p - 30 < q, since 30 > 19 -> moves
- both KO:            holder p - 50 + 20 = p - 30 > q - 50, since 20 > 19 -> stays
- a failed node back, OK, while the holder is OK: as "both pages OK"  -> stays

With ``keepalived_preempt: true`` there is no bonus: the highest priority among
the nodes whose page is OK holds the address (p - 50 < q for any p, q within 19),
so the first host of the group takes it back once its page is OK again.

Effective priorities stay in p - 50 .. p + 20, so p must be from 51 to 234 for
keepalived never to clamp them to its 1 .. 254 (a clamped priority would tie).
A backup whose priority is above the holder's takes over when its down timer
runs out, 3 x advert_int after the last advert it accepted: the page's fall
(2 x 1 s) plus that (3 x 1 s) is about 5 s, and it also means both nodes have
3 s to see a shared failure (both pages KO) before either could take over.
"""

from __future__ import annotations

import ipaddress
import math
import re

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

GROUP = "haproxy"
ROUTER_ID_RANGE = (1, 255)
# VRRP's 1 .. 254, less the room the track scripts' weights need.
PAGE_WEIGHT = 50
HOLDER_WEIGHT = 20
PRIORITY_RANGE = (1 + PAGE_WEIGHT, 254 - HOLDER_WEIGHT)
MAX_SPREAD = HOLDER_WEIGHT - 1
# keepalived_priority's default: the first host of the group highest, then one less each.
FIRST_PRIORITY = 100
# VRRPv2 carries advert_int as whole seconds in one byte.
ADVERT_INT_RANGE = (1, 255)
# Every track script runs each INTERVAL s; FALL failures or RISE successes change its state.
INTERVAL = 1
FALL = 2
RISE = 2
# A page answers within the checks' timeout (a few ms more). A script's request
# waits PAGE_SLACK_S longer, room for a busy host; keepalived kills a script
# SCRIPT_SLACK_S after that (a timed-out script counts as failed), so only a
# script stuck far past its own limit is killed. A refused connection or a 503
# fails at once: neither slows a failover.
PAGE_SLACK_S = 3
SCRIPT_SLACK_S = 10
PAGE_TIMEOUT_MS_DEFAULT = 1000
# The track and notify scripts (roles/keepalived/files/), in the folder the role
# installs them to (its __keepalived_script_dir, handed over as script_dir).
CHECK_SCRIPT = "keepalived-check"
NOTIFY_SCRIPT = "keepalived-notify"
SCRIPT_DIR_DEFAULT = "/usr/local/lib/checktcp"
INSTANCE_NAME = "checktcp"
TRUE_WORDS = ("true", "yes", "on", "y", "t", "1")
FALSE_WORDS = ("false", "no", "off", "n", "f", "0")
# What the scripts may be handed: no shell or keepalived quoting character.
SAFE_ARG_RE = re.compile(r"^[A-Za-z0-9.:/\[\]_@%-]+$")
WILDCARDS = {"": "127.0.0.1", "*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def _fail(variable, message, value):
    raise AnsibleFilterError(f"{variable} {message} (got {value!r})")


def _int(variable, value, bounds):
    low, high = bounds
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        number = int(value)
    if number is None or not low <= number <= high:
        _fail(variable, f"must be an integer from {low} to {high}", value)
    return number


def _bool(variable, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return _fail(variable, "must be true or false", value)


def _vip(value):
    """The VIP as an ip_interface; refuses a missing prefix, a network or broadcast address."""
    variable = "keepalived_vip"
    if not isinstance(value, str) or "/" not in value:
        _fail(variable, "must be an IPv4 or IPv6 address with its prefix, such as 10.0.0.100/24", value)
    try:
        vip = ipaddress.ip_interface(value.strip())
    except ValueError as err:
        return _fail(variable, f"must be an IPv4 or IPv6 address with its prefix, such as 10.0.0.100/24 ({err})", value)
    network = vip.network
    if network.num_addresses > 2 and vip.ip == network.network_address:
        _fail(variable, f"is the network address of {network}, not a host address in it", value)
    if vip.version == 4 and network.num_addresses > 2 and vip.ip == network.broadcast_address:
        _fail(variable, f"is the broadcast address of {network}, not a host address in it", value)
    return vip


def _facts_of(hostvars, host):
    facts = hostvars[host].get("ansible_facts") if host in hostvars else None
    return facts if isinstance(facts, Mapping) else {}


def _default_interface(facts):
    route = facts.get("default_ipv4")
    if isinstance(route, Mapping) and route.get("interface"):
        return str(route["interface"])
    return None


def _address_on(facts, interface, version):
    """The host's address on `interface` in IP version `version` (a global one for IPv6), or None."""
    data = facts.get(interface.replace("-", "_").replace(".", "_").replace(":", "_"))
    if not isinstance(data, Mapping):
        return None
    if version == 4:
        ipv4 = data.get("ipv4")
        return str(ipv4["address"]) if isinstance(ipv4, Mapping) and ipv4.get("address") else None
    for entry in data.get("ipv6") or []:
        if isinstance(entry, Mapping) and entry.get("scope") == "global" and entry.get("address"):
            return str(entry["address"])
    return None


def _interface(value, facts):
    variable = "keepalived_interface"
    if value is None:
        interface = _default_interface(facts)
        if interface is None:
            raise AnsibleFilterError(
                f"{variable} is unset and the host has no default IPv4 route in its facts: set {variable}")
    else:
        interface = value
    known = facts.get("interfaces")
    if not isinstance(interface, str) or not isinstance(known, (list, tuple)) or interface not in known:
        _fail(variable, f"must be an interface of this host ({', '.join(sorted(map(str, known or [])))})", interface)
    return interface


def _priority(value, position):
    variable = "keepalived_priority"
    low, high = PRIORITY_RANGE
    if value is None:
        if position is None:
            raise AnsibleFilterError(
                f"{variable} is unset and the host is not in group {GROUP}, whose order gives the default: set {variable}")
        value = FIRST_PRIORITY - position
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        number = int(value)
    if number is None or not low <= number <= high:
        _fail(variable,
              f"must be an integer from {low} to {high}: VRRP's 1 to 254, less the room the track scripts "
              f"need (-{PAGE_WEIGHT} while the page is KO, +{HOLDER_WEIGHT} for the holder)", value)
    return number


def _group_priorities(groups, hostvars):
    """Each host of the group with its priority: its keepalived_priority, else by position."""
    result = {}
    for position, host in enumerate(groups.get(GROUP) or []):
        given = hostvars[host].get("keepalived_priority") if host in hostvars else None
        result[host] = FIRST_PRIORITY - position if given is None else given
    return result


def _check_spread(priorities):
    numbers = {}
    for host, value in priorities.items():
        try:
            numbers[host] = int(value)
        except (TypeError, ValueError):
            continue
    if len(numbers) < 2:
        return
    low = min(numbers, key=numbers.get)
    high = max(numbers, key=numbers.get)
    if numbers[high] - numbers[low] > MAX_SPREAD:
        raise AnsibleFilterError(
            f"keepalived_priority must differ by at most {MAX_SPREAD} between the hosts of group {GROUP} "
            f"(the holder's bonus is {HOLDER_WEIGHT}): {high} has {numbers[high]} and {low} {numbers[low]}")


def _peers(value, vip, groups, hostvars, inventory_hostname):
    variable = "keepalived_peers"
    family = f"IPv{vip.version}"
    if value is None:
        peers = []
        for host in groups.get(GROUP) or []:
            if host == inventory_hostname:
                continue
            facts = _facts_of(hostvars, host)
            given = hostvars[host].get("keepalived_interface") if host in hostvars else None
            interface = given or _default_interface(facts)
            address = _address_on(facts, interface, vip.version) if interface else None
            if address is None:
                raise AnsibleFilterError(
                    f"{variable} is unset and host {host} of group {GROUP} has no {family} address in its facts"
                    f"{' on ' + interface if interface else ''}: gather facts on every host of the group, or "
                    f"list the peers' addresses in {variable}")
            peers.append(address)
        if not peers:
            raise AnsibleFilterError(
                f"{variable} is unset and group {GROUP} has no other host: VRRP needs a peer "
                f"(list its address in {variable})")
        return peers
    if not isinstance(value, (list, tuple)) or not value:
        _fail(variable, f"must be a non-empty list of {family} addresses", value)
    peers = []
    for entry in value:
        try:
            address = ipaddress.ip_address(entry.strip() if isinstance(entry, str) else entry)
        except ValueError:
            address = None
        if address is None or isinstance(entry, bool) or not isinstance(entry, str) or address.version != vip.version:
            _fail(variable, f"must list {family} addresses, the family of keepalived_vip; one entry is not", entry)
        peers.append(str(address))
    return peers


def _overview_path(path):
    """The path the track scripts ask: the overview's, which with named checks is
    the one path that answers for all of them (with one check, any path does)."""
    variable = "haproxy_checktcp_overview_path"
    if not isinstance(path, str) or not path.startswith("/") or not SAFE_ARG_RE.match(path):
        _fail(variable, "must be a path starting with / of letters, digits and . : / _ @ % - (the track scripts "
              "ask the local status page there)", path)
    return path


def _status_url(bind, tls, path="/"):
    """Where this host reaches its own status page, from haproxy_status_bind."""
    variable = "haproxy_status_bind"
    first = bind.split(",")[0].strip() if isinstance(bind, str) else ""
    first = re.sub(r"^ipv[46]@", "", first)
    match = re.fullmatch(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s\[\]]*)):(?P<port>[0-9]+)(?:-[0-9]+)?", first)
    if match is None:
        return _fail(variable, "must be an address and port the track scripts can reach, such as *:80 (the keepalived "
                     "role asks the local status page there)", bind)
    host = match.group("v6") if match.group("v6") is not None else match.group("host")
    host = WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    url = f"{'https' if tls else 'http'}://{host}:{int(match.group('port'))}{path}"
    if not SAFE_ARG_RE.match(url):
        _fail(variable, "must be an address and port the track scripts can reach, such as *:80", bind)
    return url


def _page_timeout_ms(single, checks):
    """The longest a page may take to answer: the longest check timeout."""
    timeouts = [single if single is not None else PAGE_TIMEOUT_MS_DEFAULT]
    for check in checks or []:
        if isinstance(check, Mapping) and check.get("timeout_ms") is not None:
            timeouts.append(check["timeout_ms"])
    numbers = []
    for value in timeouts:
        try:
            numbers.append(int(value))
        except (TypeError, ValueError):
            numbers.append(PAGE_TIMEOUT_MS_DEFAULT)
    return max(numbers)


def keepalived_instance(variables, facts, groups, hostvars, inventory_hostname):
    """Validate the role's variables and return the VRRP instance keepalived.conf is rendered from."""
    if not isinstance(variables, Mapping):
        raise AnsibleFilterError("keepalived_instance expects a dict of the keepalived role's variables")
    facts = facts if isinstance(facts, Mapping) else {}
    groups = groups if isinstance(groups, Mapping) else {}
    group = list(groups.get(GROUP) or [])
    position = group.index(inventory_hostname) if inventory_hostname in group else None

    vip = _vip(variables.get("keepalived_vip"))
    interface = _interface(variables.get("keepalived_interface"), facts)
    router_id = _int("keepalived_virtual_router_id", variables.get("keepalived_virtual_router_id"), ROUTER_ID_RANGE)
    priority = _priority(variables.get("keepalived_priority"), position)
    if position is not None:
        priorities = _group_priorities(groups, hostvars)
        priorities[inventory_hostname] = priority
        _check_spread(priorities)
    preempt = _bool("keepalived_preempt", variables.get("keepalived_preempt"))
    peers = _peers(variables.get("keepalived_peers"), vip, groups, hostvars, inventory_hostname)
    advert_int = _int("keepalived_advert_int", variables.get("keepalived_advert_int"), ADVERT_INT_RANGE)
    url = _status_url(variables.get("haproxy_status_bind", "*:80"),
                      _bool("haproxy_status_tls", variables.get("haproxy_status_tls", False)),
                      _overview_path(variables.get("haproxy_checktcp_overview_path", "/")))
    if not SAFE_ARG_RE.match(interface):
        _fail("keepalived_interface", "must be an interface name of letters, digits, '.', '_', '-', '@' or ':'", interface)

    script_dir = str(variables.get("script_dir") or SCRIPT_DIR_DEFAULT).rstrip("/")
    check, notify = f"{script_dir}/{CHECK_SCRIPT}", f"{script_dir}/{NOTIFY_SCRIPT}"
    # The scripts give up on a page PAGE_SLACK_S after the slowest check's timeout.
    page_timeout_s = math.ceil(_page_timeout_ms(variables.get("haproxy_checktcp_timeout_ms"),
                                                variables.get("haproxy_checktcp_checks")) / 1000) + PAGE_SLACK_S
    script_timeout = page_timeout_s + SCRIPT_SLACK_S
    scripts = [
        {"name": "checktcp_alive", "args": [check, "alive", url, str(page_timeout_s)],
         "interval": INTERVAL, "timeout": script_timeout, "weight": 0, "fall": FALL, "rise": RISE},
        {"name": "checktcp_page", "args": [check, "ok", url, str(page_timeout_s)],
         "interval": INTERVAL, "timeout": script_timeout, "weight": -PAGE_WEIGHT, "fall": FALL, "rise": RISE},
    ]
    if not preempt:
        scripts.append(
            {"name": "checktcp_holder", "args": [check, "holds", str(vip.ip), interface],
             "interval": INTERVAL, "timeout": SCRIPT_SLACK_S, "weight": HOLDER_WEIGHT, "fall": FALL, "rise": 1})
    return {
        "name": INSTANCE_NAME,
        "vip": str(vip),
        "address": str(vip.ip),
        "family": f"ipv{vip.version}",
        "interface": interface,
        "virtual_router_id": router_id,
        "priority": priority,
        "preempt": preempt,
        "peers": peers,
        "advert_int": advert_int,
        "status_url": url,
        "scripts": scripts,
        "notify": [notify, url],
    }


class FilterModule:
    """The keepalived role's filters."""

    def filters(self):
        return {"keepalived_instance": keepalived_instance}
