# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters of the haproxy role: expand and validate the checks, resolve their
targets, and render data as a Lua literal.

The role's variables reach these filters as plain values, or as strings when
they come from ``-e key=value`` or an INI inventory (ansible-core 2.19 hands
them over as tagged ``str``): every number and boolean is coerced here, and
every error names the variable to fix.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError, AnsibleUndefinedVariable

from ansible_collections.checktcp.haproxy_lua.plugins.module_utils import conversation

CHECKS_VAR = "haproxy_checktcp_checks"
OVERVIEW_VAR = "haproxy_checktcp_overview_path"
SINGLE_PREFIX = "haproxy_checktcp_"
# The check built from the single-check variables when no checks are given.
SINGLE_NAME = "checktcp"
SINGLE_PATH = "/"

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# The newline ends a line of the echo protocol, and no control character
# belongs on a page either.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# A path is matched literally: no query or fragment, nothing HAProxy or a
# browser would split or rewrite, and no quote or backslash, which haproxy.cfg
# (`{ path ... }`) would read as its own syntax.
PATH_FORBIDDEN_RE = re.compile(r"[\s\x00-\x1f\x7f?#'\"\\]")
POLICY_WORDS = ("all", "any")
MODES = ("live", "cached")
TRUE_WORDS = ("true", "yes", "on", "y", "t", "1")
FALSE_WORDS = ("false", "no", "off", "n", "f", "0")

PORT_RANGE = (1, 65535)
TIMEOUT_MS_RANGE = (1, 60000)
# At most a day: a verdict older than that is no health check.
INTERVAL_MS_RANGE = (100, 86400000)
# Live mode: a target's probes start at least this far apart, whatever the request rate.
MIN_PROBE_INTERVAL_MS_RANGE = (0, 60000)
SKIP_LINES_RANGE = (0, conversation.MAX_SKIP_LINES)
# Consecutive checks that change a target's state (cached mode, HAProxy's rise and fall).
RISE_FALL_RANGE = (1, 100)
SNI_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")

# The per-check settings, each defaulting to the single-check variable of the same name.
SETTINGS = ("send", "expect", "skip_lines", "timeout_ms", "policy", "mode", "interval_ms", "details",
            "min_probe_interval_ms", "preset", "steps", "tls", "tls_verify", "tls_ca", "tls_sni",
            "proxy_protocol", "rise", "fall")
CHECK_KEYS = ("name", "path", "targets", "targets_group") + SETTINGS
TARGET_KEYS = ("host", "port", "name")

# The echo server's defaults (roles/echo_server/defaults/main.yml).
ECHO_BIND_DEFAULT = "127.0.0.1"
ECHO_PORT_DEFAULT = 8080
# Probed when the single check has neither targets nor hosts in its group.
FALLBACK_TARGET = {"host": "127.0.0.1", "port": 8080}
WILDCARD_BINDS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("localhost",)
FAMILY_NAMES = {"ipv4": "IPv4", "ipv6": "IPv6"}

LUA_INT_RANGE = (-2 ** 63, 2 ** 63 - 1)
# HAProxy's buffer size (tune.bufsize).
BUFSIZE_VAR = "haproxy_tune_bufsize"
BUFSIZE_DEFAULT = 16384          # HAProxy's own default
BUFSIZE_RANGE = (16384, 1048576)
# The role's proxies are named checktcp_*; the user's are in these variables.
ROLE_PROXY_PREFIX = "checktcp_"
FRONTENDS_VAR = "haproxy_frontends"
BACKENDS_VAR = "haproxy_backends"
# The status page's connections at once (its frontend's maxconn).
MAXCONN_VAR = "haproxy_status_maxconn"
MAXCONN_RANGE = (1, 1000000)
LUA_INDENT = 2


# ------------------------------------------------------------------ helpers

def _plain(value):
    """A copy of value with plain Python types (for messages)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if value is None:
        return None
    return str(value)


def _shown(value):
    """value as JSON (the form a user writes in YAML), for messages."""
    try:
        return json.dumps(_plain(value), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _range_text(bounds):
    low, high = bounds
    if high is None:
        return "an integer of %d or more" % low
    return "an integer from %d to %d" % (low, high)


def _to_int(value):
    """value as an int, or None when it is not an integer (booleans are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and re.match(r"^\s*[+-]?[0-9]+\s*$", value):
        return int(value)
    return None


def _to_bool(value):
    """value as a bool, or None when it is not one."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    return None


class _Where:
    """Names the variable a value came from, for error messages."""

    def __init__(self, check_label=None):
        # None: the single-check variables; else "haproxy_checktcp_checks[i] (name "x")".
        self.check_label = check_label

    def setting(self, key, given):
        """The variable holding setting key: the check's own entry when given, else the single-check one."""
        if self.check_label is not None and given:
            return "%s: %s" % (self.check_label, key)
        return SINGLE_PREFIX + key

    def fail(self, key, given, problem, value):
        raise AnsibleFilterError("%s %s (got %s=%s)" % (self.setting(key, given) + ":", problem, key, _shown(value)))


def _int_setting(where, key, given, value, bounds):
    number = _to_int(value)
    low, high = bounds
    if number is None or number < low or (high is not None and number > high):
        where.fail(key, given, "must be %s" % _range_text(bounds), value)
    return number


def _line_setting(where, key, given, value):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        where.fail(key, given, "must be a string", value)
    text = value if isinstance(value, str) else str(value)
    if CONTROL_RE.search(text):
        where.fail(key, given, "must not contain control characters", value)
    return text


def _settings(where, check, defaults):
    """The check's settings, each from the check or from the single-check defaults, validated."""
    values = {}
    for key in SETTINGS:
        given = check is not None and key in check and check[key] is not None
        values[key] = (given, check[key] if given else defaults.get(key))

    out = {}
    for key in ("send", "expect"):
        out[key] = _line_setting(where, key, *values[key])
    out["skip_lines"] = _int_setting(where, "skip_lines", *values["skip_lines"], bounds=SKIP_LINES_RANGE)
    out["timeout_ms"] = _int_setting(where, "timeout_ms", *values["timeout_ms"], bounds=TIMEOUT_MS_RANGE)
    out["interval_ms"] = _int_setting(where, "interval_ms", *values["interval_ms"], bounds=INTERVAL_MS_RANGE)
    out["min_probe_interval_ms"] = _int_setting(where, "min_probe_interval_ms", *values["min_probe_interval_ms"],
                                                bounds=MIN_PROBE_INTERVAL_MS_RANGE)

    given, mode = values["mode"]
    mode_word = str(mode).strip().lower() if isinstance(mode, str) else None
    if mode_word not in MODES:
        where.fail("mode", given, "must be one of %s" % ", ".join(MODES), mode)
    out["mode"] = mode_word

    for key in ("details", "tls", "tls_verify"):
        given, value = values[key]
        out[key] = _to_bool(value)
        if out[key] is None:
            where.fail(key, given, "must be a boolean", value)
    for key in ("rise", "fall"):
        out[key] = _int_setting(where, key, *values[key], bounds=RISE_FALL_RANGE)

    given, preset = values["preset"]
    if not isinstance(preset, str) or preset not in conversation.PRESETS:
        where.fail("preset", given, "must be one of %s" % ", ".join(sorted(conversation.PRESETS)), preset)
    out["preset"] = str(preset)
    given, steps = values["steps"]
    if steps is not None:
        try:
            steps = conversation.validate_steps(_plain(steps))
        except conversation.ConversationError as exc:
            where.fail("steps", given, str(exc), steps)
    out["steps"] = steps
    given, proxy = values["proxy_protocol"]
    if proxy not in conversation.PROXY_PROTOCOLS:
        where.fail("proxy_protocol", given, "must be one of %s" % ", ".join(conversation.PROXY_PROTOCOLS), proxy)
    out["proxy_protocol"] = str(proxy)
    given, sni = values["tls_sni"]
    if sni is not None and (not isinstance(sni, str) or not SNI_RE.match(sni)):
        where.fail("tls_sni", given, "must be unset or a host name (letters, digits, dots and hyphens)", sni)
    out["tls_sni"] = None if sni is None else str(sni)
    given, ca = values["tls_ca"]
    if ca is not None and (not isinstance(ca, str) or not ca.strip() or CONTROL_RE.search(ca)):
        where.fail("tls_ca", given, "must be unset or the path of a PEM file on the controller", ca)
    out["tls_ca"] = None if ca is None else str(ca)
    if ca is not None:
        out["tls_ca_variable"] = where.setting("tls_ca", given)
    return out, values["policy"]


def _conversation(where, check, ca_dir):
    """The check's ops (what both engines run) and each target's server line words, from its settings."""
    targets = check["targets"]
    host = check["tls_sni"] or targets[0]["host"]
    try:
        check["ops"] = conversation.conversation_ops(
            check["preset"], check["steps"], send=check["send"], expect=check["expect"],
            skip_lines=check["skip_lines"], host=host)
    except conversation.ConversationError as exc:
        where.fail("steps" if check["steps"] is not None else "preset", True, str(exc),
                   check["steps"] if check["steps"] is not None else check["preset"])
    check["tcp_check_rules"] = conversation.tcp_check_rules(check["ops"])
    # The CA file is copied to the HAProxy host, named after its check.
    check["tls_ca_file"] = None
    if check["tls_ca"] is not None:
        check["tls_ca_file"] = "%s/checktcp-ca-%s.pem" % (ca_dir, check["name"])
    # The words of each target's server line (in the order of targets), for TLS and PROXY.
    check["server_words"] = [conversation.server_words(
        check["tls"], check["tls_verify"], check["tls_ca_file"],
        conversation.default_sni(target["host"], check["tls_sni"]), check["proxy_protocol"]) for target in targets]
    check["targets"] = [dict(target, server=name) for target, name in zip(targets, _server_names(check))]
    return check


def _server_names(check):
    """Each target's server name in HAProxy's health checks (cached mode).

    A reload hands the next worker each server's state by backend and server
    name (server-state-file), port included; naming a server after its address
    (once resolved: checktcp_resolve names them again) and the way it is probed
    (the rules, the server line's words, the timeout, rise and fall) means a
    state only returns to the same target, checked the same way: a changed
    target starts unchecked. A CA file's contents are not in the name."""
    names, seen = [], {}
    for target, words in zip(check["targets"], check["server_words"]):
        what = json.dumps([target["host"], target["port"], words, check["tcp_check_rules"],
                           check["timeout_ms"], check["rise"], check["fall"]], sort_keys=True)
        name = "t" + hashlib.sha1(what.encode("utf-8")).hexdigest()[:12]
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else "%s-%d" % (name, seen[name]))
    return names


def _policy(where, given, policy, count):
    """(policy word or number as a string, number of targets that must be OK)."""
    word = str(policy).strip().lower() if isinstance(policy, str) else None
    if word in POLICY_WORDS:
        return word, count if word == "all" else 1
    number = _to_int(policy)
    if number is None or number < 1 or number > count:
        where.fail("policy", given, "must be all, any or a number from 1 to the number of targets (%d)" % count,
                   policy)
    return str(number), number


def _target(label, index, target, shown_as):
    """One explicit target, validated: {host, port, name, family}."""
    entry = "%s[%d]" % (label, index)
    if not isinstance(target, Mapping):
        raise AnsibleFilterError("%s: must be a dict with host, port and name (got %s)"
                                 % (entry, shown_as(target)))
    unknown = sorted(str(key) for key in target if key not in TARGET_KEYS)
    if unknown:
        raise AnsibleFilterError("%s: unknown key(s) %s; a target has host, port and name (got %s)"
                                 % (entry, ", ".join(unknown), shown_as(target)))
    host = target.get("host")
    if not isinstance(host, str) or not host.strip() or re.search(r"\s", host) or CONTROL_RE.search(host):
        raise AnsibleFilterError("%s: host must be a non-empty address or name without spaces (got %s)"
                                 % (entry, shown_as(target)))
    if "%" in host:
        raise AnsibleFilterError("%s: host must be an address or a name with no IPv6 zone (%%...): HAProxy takes "
                                 "none (got %s)" % (entry, _shown(host)))
    port = _to_int(target.get("port"))
    if port is None or not PORT_RANGE[0] <= port <= PORT_RANGE[1]:
        raise AnsibleFilterError("%s: port must be %s (got %s)" % (entry, _range_text(PORT_RANGE), shown_as(target)))
    name = target.get("name")
    if name is None or name == "":
        # An IPv6 address is bracketed, as in a URL: [::1]:8080.
        name = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
    elif isinstance(name, bool) or not isinstance(name, (str, int, float)):
        raise AnsibleFilterError("%s: name must be a string (got %s)" % (entry, shown_as(target)))
    else:
        name = name if isinstance(name, str) else str(name)
    if CONTROL_RE.search(name):
        raise AnsibleFilterError("%s: name must not contain control characters (got %s)" % (entry, shown_as(target)))
    return {"host": host, "port": port, "name": name, "family": "any"}


def _repr_target(target):
    return repr(_plain(target))


def _bind_family(bind):
    """The address family the echo server listens on for its bind address
    (it binds "::" to IPv6 and IPv4, and "" or a name to every address)."""
    if bind == "::":
        return "any"
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        return "any"
    return "ipv4" if address.version == 4 else "ipv6"


def _is_loopback(host):
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostvar(hostvars, host, key, default):
    try:
        value = hostvars[host][key]
    except (KeyError, TypeError, AnsibleUndefinedVariable):
        return default
    # Undefined or omitted values count as unset.
    return default if value is None else value


def _derived_targets(label, group, groups, hostvars, inventory_hostname):
    """The targets of the hosts of an inventory group, as the echo_server role binds them."""
    targets = []
    for host in (groups or {}).get(group) or []:
        host = str(host)
        bind = str(_hostvar(hostvars, host, "echo_server_bind_address", ECHO_BIND_DEFAULT)).strip()
        raw_port = _hostvar(hostvars, host, "echo_server_port", ECHO_PORT_DEFAULT)
        port = _to_int(raw_port)
        if port is None or not PORT_RANGE[0] <= port <= PORT_RANGE[1]:
            raise AnsibleFilterError("%s: echo_server_port of host %s (group %s) must be %s (got %s)"
                                     % (label, host, group, _range_text(PORT_RANGE), _shown(raw_port)))
        if bind not in WILDCARD_BINDS:
            address = bind
        elif host == inventory_hostname:
            # A wildcard bind is reached on loopback from the same host...
            address = "127.0.0.1"
        else:
            # ...else on the host's default address.
            facts = _hostvar(hostvars, host, "ansible_default_ipv4", {})
            address = facts.get("address") if isinstance(facts, Mapping) else None
            address = str(address or _hostvar(hostvars, host, "ansible_host", host))
        if _is_loopback(address) and host != inventory_hostname:
            raise AnsibleFilterError(
                "%s: echo server %s binds %s, which HAProxy on %s cannot reach: set echo_server_bind_address "
                "for it (for example 0.0.0.0)" % (label, host, address, inventory_hostname))
        if re.search(r"[\s%]", address) or CONTROL_RE.search(address) or not address:
            raise AnsibleFilterError("%s: echo server %s has no usable address (got %s)"
                                     % (label, host, _shown(address)))
        targets.append({"host": address, "port": port, "name": host, "family": _bind_family(bind)})
    return targets


def _text_problems(name, value, out):
    """Append a message for each string under value (lists and dicts walked) with a control character."""
    if isinstance(value, str):
        if CONTROL_RE.search(value):
            out.append("%s: must not contain control characters (newline, tab, ...) (got %s)" % (name, _shown(value)))
    elif isinstance(value, Mapping):
        for key in value:
            _text_problems("%s.%s" % (name, key), value[key], out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _text_problems("%s[%d]" % (name, index), item, out)


def _path_problem(path):
    if not isinstance(path, str) or not path.startswith("/"):
        return "must start with /"
    if PATH_FORBIDDEN_RE.search(path):
        return "must not contain spaces, control characters, ?, #, quotes or backslashes"
    return None


# ------------------------------------------------------------------ filters

def checktcp_checks(checks, defaults, groups, hostvars, inventory_hostname, overview_path="/",
                    ca_dir="/etc/haproxy/ssl"):
    """Expand and validate the haproxy role's checks.

    checks: haproxy_checktcp_checks (a list of dicts; empty or None: one check from
    the single-check variables, answering on every path). defaults: the
    single-check variables without their prefix (SETTINGS, targets,
    targets_group). groups, hostvars, inventory_hostname: Ansible's magic
    variables, to derive targets from the hosts of an inventory group.
    overview_path: haproxy_checktcp_overview_path. ca_dir: where the checks'
    tls_ca files go on the HAProxy host.

    Returns {"catch_all", "overview_path", "max_line_bytes", "line_regex_flags",
    "checks": [check, ...]}, each check {name, path, targets: [{host, port, name,
    family, server}], the SETTINGS, required, tls_ca_file, ops, tcp_check_rules,
    server_words} with plain types. Raises AnsibleFilterError naming the
    variable at fault.
    """
    if not isinstance(defaults, Mapping):
        raise AnsibleFilterError("checktcp_checks: defaults must be a dict of the single-check variables")
    problem = _path_problem(overview_path)
    if problem:
        raise AnsibleFilterError("%s: %s (got %s)" % (OVERVIEW_VAR, problem, _shown(overview_path)))
    overview_path = str(overview_path)

    common = {"overview_path": overview_path, "max_line_bytes": conversation.MAX_LINE_BYTES,
              "line_regex_flags": conversation.LINE_REGEX_FLAGS}
    if checks is None or (isinstance(checks, (list, tuple)) and not checks):
        return dict(common, catch_all=True,
                    checks=[_single_check(defaults, groups, hostvars, inventory_hostname, ca_dir)])
    if isinstance(checks, str) or not isinstance(checks, (list, tuple)):
        raise AnsibleFilterError("%s: must be a list of checks (dicts); with -e pass it as JSON or YAML, "
                                 "not key=value (got %s)" % (CHECKS_VAR, _shown(checks)))

    out = []
    names = {}
    paths = {}
    for index, check in enumerate(checks):
        out.append(_named_check(index, check, defaults, groups, hostvars, inventory_hostname, ca_dir))
        name, path = out[-1]["name"], out[-1]["path"]
        if name in names:
            raise AnsibleFilterError("%s: checks %d and %d have the same name %s; names must be unique"
                                     % (CHECKS_VAR, names[name], index, _shown(name)))
        if path in paths:
            raise AnsibleFilterError("%s: checks %d and %d answer on the same path %s; paths must be unique"
                                     % (CHECKS_VAR, paths[path], index, _shown(path)))
        if path == overview_path:
            raise AnsibleFilterError("%s[%d] (name %s): path %s is the overview's (%s); choose another path"
                                     % (CHECKS_VAR, index, _shown(name), _shown(path), OVERVIEW_VAR))
        names[name] = index
        paths[path] = index
    return dict(common, catch_all=False, checks=out)


def checktcp_text_problems(variables):
    """What would break out of its line in a rendered file.

    variables: {variable name: value}. Every string in a value, in its lists
    and dicts too, is one line of a file (haproxy.cfg, a systemd unit): a
    control character (a newline above all) would start a line of its own.
    Returns one message per such string, naming the variable and where in it
    ("haproxy_frontends[0].bind[1]"); empty when all are fine.
    """
    if not isinstance(variables, Mapping):
        raise AnsibleFilterError("checktcp_text_problems: expects a dict of variable names and values")
    out = []
    for name in variables:
        _text_problems(str(name), variables[name], out)
    return out


def _role_int(variable, wanted, bounds, also=""):
    """A role variable's value as an int once checked to lie within bounds (both
    given); raises AnsibleFilterError naming the variable (``also``: what else it
    may be, as "unset or ")."""
    number = _to_int(wanted)
    if number is None or not bounds[0] <= number <= bounds[1]:
        raise AnsibleFilterError("%s: must be %s%s (got %s)" % (variable, also, _range_text(bounds), _shown(wanted)))
    return number


def checktcp_bufsize(wanted):
    """HAProxy's tune.bufsize: haproxy_tune_bufsize once checked, or HAProxy's
    default, 16384, when unset (None). Raises AnsibleFilterError naming
    haproxy_tune_bufsize."""
    if wanted is None:
        return BUFSIZE_DEFAULT
    return _role_int(BUFSIZE_VAR, wanted, BUFSIZE_RANGE, "unset or ")


def checktcp_proxy_problems(frontends, backends):
    """What HAProxy would refuse in the names of haproxy_frontends and
    haproxy_backends, one message each, naming the entry: a name starting with
    checktcp_ (the role's own proxies), or one given twice among the frontends
    or among the backends (a frontend and a backend may share a name)."""
    out = []
    for variable, proxies in ((FRONTENDS_VAR, frontends), (BACKENDS_VAR, backends)):
        seen = {}
        for index, proxy in enumerate(proxies or []):
            name = str(proxy.get("name")) if isinstance(proxy, Mapping) else ""
            where = '%s[%d].name %s' % (variable, index, _shown(name))
            if name.startswith(ROLE_PROXY_PREFIX):
                out.append("%s: the prefix %s is the role's, for its own proxies" % (where, ROLE_PROXY_PREFIX))
            elif name in seen:
                out.append("%s: the name of %s[%d] too" % (where, variable, seen[name]))
            seen.setdefault(name, index)
    return out


def checktcp_maxconn(wanted):
    """haproxy_status_maxconn once checked: the connections the status page's
    frontends accept at once. Raises AnsibleFilterError naming it."""
    return _role_int(MAXCONN_VAR, wanted, MAXCONN_RANGE)


def _single_check(defaults, groups, hostvars, inventory_hostname, ca_dir):
    where = _Where()
    settings, policy = _settings(where, None, defaults)
    targets = defaults.get("targets")
    label = SINGLE_PREFIX + "targets"
    if targets is not None:
        if not isinstance(targets, (list, tuple)) or not targets:
            raise AnsibleFilterError("%s: must be a non-empty list of {host, port, name} (got targets=%s)"
                                     % (label, _shown(targets)))
        expanded = [_target(label, index, target, _repr_target) for index, target in enumerate(targets)]
    else:
        group = defaults.get("targets_group")
        expanded = _derived_targets(SINGLE_PREFIX + "targets_group", str(group), groups, hostvars,
                                    inventory_hostname) if group else []
        if not expanded:
            expanded = [_target(label, 0, FALLBACK_TARGET, _repr_target)]
    word, required = _policy(where, "policy" in defaults, policy[1], len(expanded))
    return _conversation(where, dict(settings, name=SINGLE_NAME, path=SINGLE_PATH, targets=expanded, policy=word,
                                     required=required), ca_dir)


def _named_check(index, check, defaults, groups, hostvars, inventory_hostname, ca_dir):
    entry = "%s[%d]" % (CHECKS_VAR, index)
    if not isinstance(check, Mapping):
        raise AnsibleFilterError("%s: must be a dict with at least name and targets or targets_group (got %s)"
                                 % (entry, _shown(check)))
    name = check.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise AnsibleFilterError("%s: name must match %s (lower-case letters, digits, _ and -, starting with a "
                                 "letter or digit) (got name=%s)" % (entry, NAME_RE.pattern, _shown(name)))
    name = str(name)
    label = "%s (name %s)" % (entry, _shown(name))
    unknown = sorted(str(key) for key in check if key not in CHECK_KEYS)
    if unknown:
        raise AnsibleFilterError("%s: unknown key(s) %s; a check has %s"
                                 % (label, ", ".join(unknown), ", ".join(CHECK_KEYS)))

    path = check.get("path")
    path = "/" + name if path is None else path
    problem = _path_problem(path)
    if problem:
        raise AnsibleFilterError("%s: path %s (got path=%s)" % (label, problem, _shown(path)))

    where = _Where(label)
    settings, policy = _settings(where, check, defaults)

    targets, group = check.get("targets"), check.get("targets_group")
    if targets is not None and group is not None:
        raise AnsibleFilterError("%s: give targets or targets_group, not both" % label)
    if targets is not None:
        if not isinstance(targets, (list, tuple)) or not targets:
            raise AnsibleFilterError("%s: targets must be a non-empty list of {host, port, name} (got targets=%s)"
                                     % (label, _shown(targets)))
        expanded = [_target(label + ": targets", number, target, _shown) for number, target in enumerate(targets)]
    elif group is not None:
        if not isinstance(group, str) or not group.strip():
            raise AnsibleFilterError("%s: targets_group must be an inventory group name (got targets_group=%s)"
                                     % (label, _shown(group)))
        expanded = _derived_targets(label, str(group), groups, hostvars, inventory_hostname)
        if not expanded:
            raise AnsibleFilterError("%s: no targets: inventory group %s has no hosts" % (label, _shown(group)))
    else:
        raise AnsibleFilterError("%s: no targets: give targets or targets_group" % label)

    given = check.get("policy") is not None
    word, required = _policy(where, given, policy[1], len(expanded))
    return _conversation(where, dict(settings, name=name, path=str(path), targets=expanded, policy=word,
                                     required=required), ca_dir)


def _pick_address(lines, family):
    """The address to probe among getent's answer (one address first on each line).

    A name with several addresses is pinned to the lowest address of the
    preferred family (IPv4 for "any"): the same one on every run, whatever
    order the resolver answers in. Words that are not IP addresses are ignored.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    addresses = set()
    for line in lines or []:
        fields = str(line).split()
        try:
            addresses.add(ipaddress.ip_address(fields[0]))
        except (IndexError, ValueError):
            continue
    ipv4 = sorted(address for address in addresses if address.version == 4)
    # getent ahostsv6 answers an IPv4-only name with IPv4-mapped addresses, which
    # reach the IPv4 stack, not an echo server listening on IPv6.
    ipv6 = sorted(address for address in addresses if address.version == 6 and address.ipv4_mapped is None)
    if family == "ipv4":
        candidates = ipv4
    elif family == "ipv6":
        candidates = ipv6
    else:
        # A name with both families is probed over IPv4, which most echo servers listen on.
        candidates = ipv4 + ipv6
    return str(candidates[0]) if candidates else None


def checktcp_resolve(checktcp, addresses):
    """Replace each target's host by its address, as resolved on the HAProxy host.

    checktcp: the result of checktcp_checks. addresses: a dict whose key is a
    host name, or "<family> <host>" (family ipv4, ipv6 or any; preferred when
    both exist), and whose value is an address, or getent's output (a string
    or a list of lines with the address first), in which case the lowest
    address of the target's family is taken (for "any", IPv4 first; see
    _pick_address). Hosts without an entry are kept as they are (addresses
    need none).
    """
    if not isinstance(checktcp, Mapping) or "checks" not in checktcp:
        raise AnsibleFilterError("checktcp_resolve: expects the result of checktcp_checks")
    addresses = addresses or {}
    out = dict(checktcp)
    out["checks"] = []
    for check in checktcp["checks"]:
        check = dict(check)
        resolved = []
        for target in check["targets"]:
            target = dict(target)
            key = "%s %s" % (target["family"], target["host"])
            answer = addresses.get(key, addresses.get(target["host"]))
            if answer is not None:
                address = _pick_address(answer, target["family"])
                if address is None:
                    if target["family"] == "any":
                        problem = "%s does not resolve on the HAProxy host" % target["host"]
                    else:
                        problem = ("%s has no %s address on the HAProxy host, the family its echo server listens on"
                                   % (target["host"], FAMILY_NAMES[target["family"]]))
                    raise AnsibleFilterError("%s (check %s, target %s): %s (got %s)"
                                             % (CHECKS_VAR if not checktcp.get("catch_all") else SINGLE_PREFIX + "targets",
                                                _shown(check["name"]), _shown(target["name"]), problem, _shown(answer)))
                target["host"] = address
            resolved.append(target)
        # Named again: a server's saved state must follow the address probed, not the name.
        check["targets"] = [dict(target, server=name) for target, name in zip(resolved, _server_names(
            dict(check, targets=resolved)))]
        out["checks"].append(check)
    return out


def checktcp_unresolved(checktcp):
    """The target hosts of checktcp_checks' result that are names, not addresses:
    a list of unique {host, family, key}, where key is the one checktcp_resolve
    looks up ("<family> <host>") and family picks getent's database."""
    seen = set()
    out = []
    for check in checktcp["checks"]:
        for target in check["targets"]:
            try:
                ipaddress.ip_address(target["host"])
                continue
            except ValueError:
                pass
            key = "%s %s" % (target["family"], target["host"])
            if key not in seen:
                seen.add(key)
                out.append({"host": target["host"], "family": target["family"], "key": key})
    return out


def checktcp_relay_sockets(checktcp, prefix):
    """The Unix socket files of the probe relays haproxy.cfg binds for these
    checks (the output of checktcp_checks): "<prefix>-<check>-<target>.sock",
    both numbered from 1, for the targets of live checks only (cached checks
    have no relay). haproxy.cfg.j2 and the Lua service name them the same way."""
    out = []
    for check_index, check in enumerate(checktcp["checks"], start=1):
        if check["mode"] != "live":
            continue
        for target_index in range(1, len(check["targets"]) + 1):
            out.append("%s-%d-%d.sock" % (prefix, check_index, target_index))
    return out


def _lua_string(text):
    out = ['"']
    for byte in text.encode("utf-8", "surrogateescape"):
        if byte in (0x22, 0x5c):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte <= 0x7e:
            out.append(chr(byte))
        else:
            # Three digits, so that a following digit is never read as part of the escape.
            out.append("\\%03d" % byte)
    out.append('"')
    return "".join(out)


def _lua(value, depth, indent):
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not LUA_INT_RANGE[0] <= value <= LUA_INT_RANGE[1]:
            raise AnsibleFilterError("to_lua: integer %d does not fit Lua's 64-bit integers" % value)
        if value == LUA_INT_RANGE[0]:
            # "-9223372036854775808" is minus a literal too large for an integer: Lua reads a float.
            return "(%d - 1)" % (value + 1)
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise AnsibleFilterError("to_lua: %r has no Lua literal" % value)
        return repr(float(value))
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise AnsibleFilterError("to_lua: table keys must be strings (got %r)" % (key,))
        items = ["[%s] = %s" % (_lua_string(key), _lua(value[key], depth + 1, indent))
                 for key in sorted(value, key=str)]
    elif isinstance(value, (list, tuple)):
        items = [_lua(item, depth + 1, indent) for item in value]
    else:
        raise AnsibleFilterError("to_lua: cannot write a %s as Lua" % type(value).__name__)
    if not items:
        return "{}"
    if not indent:
        return "{" + ", ".join(items) + "}"
    inner = "\n" + " " * (indent * (depth + 1))
    return "{" + inner + ("," + inner).join(items) + ",\n" + " " * (indent * depth) + "}"


def to_lua(value, indent=LUA_INDENT):
    """A Lua literal of JSON-like data, for a data file that is a ``return <literal>`` chunk.

    dict -> table with ["key"] = value entries, in sorted key order; list ->
    sequence table; str -> quoted, every byte outside printable ASCII written
    as \\ddd and " and \\ escaped; bool; int; float; None -> nil. indent: spaces
    per level (0 writes one line). Loads in Lua 5.3 and 5.4.
    """
    indent = _to_int(indent)
    if indent is None or indent < 0:
        raise AnsibleFilterError("to_lua: indent must be 0 or more")
    return _lua(value, 0, indent)


class FilterModule:
    """The haproxy role's filters."""

    def filters(self):
        return {
            "checktcp_bufsize": checktcp_bufsize,
            "checktcp_checks": checktcp_checks,
            "checktcp_maxconn": checktcp_maxconn,
            "checktcp_proxy_problems": checktcp_proxy_problems,
            "checktcp_relay_sockets": checktcp_relay_sockets,
            "checktcp_resolve": checktcp_resolve,
            "checktcp_text_problems": checktcp_text_problems,
            "checktcp_unresolved": checktcp_unresolved,
            "to_lua": to_lua,
        }
