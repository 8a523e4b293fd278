# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of the cidr_problems filter, which validates the status page's allow-lists."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.checktcp.haproxy_lua.plugins.filter.cidr import FilterModule, cidr_problems, cidr_src_patterns


@pytest.mark.parametrize('value', [
    pytest.param([], id='empty'),
    pytest.param(['10.0.0.0/8', '192.168.1.7/32', '127.0.0.1'], id='ipv4'),
    pytest.param(['2001:db8::/32', '::1/128', 'fe80::1'], id='ipv6'),
    pytest.param(['0.0.0.0/0', '::/0'], id='everyone'),
    pytest.param([' 10.1.0.0/16 '], id='surrounding-spaces'),
])
def test_valid_lists_have_no_problems(value):
    assert cidr_problems(value) == []


@pytest.mark.parametrize('entry, reason', [
    pytest.param('10.0.0.300/8', 'not an IPv4 or IPv6 network', id='octet-out-of-range'),
    pytest.param('10.0.0.0/33', 'not an IPv4 or IPv6 network', id='prefix-too-long'),
    pytest.param('2001:db8::/129', 'not an IPv4 or IPv6 network', id='ipv6-prefix-too-long'),
    pytest.param('10.0.0.1/8', 'host bits set', id='host-bits'),
    pytest.param('lb1.example.com', 'not an IPv4 or IPv6 network', id='a-name'),
    pytest.param('', 'not an IPv4 or IPv6 network', id='empty-string'),
    pytest.param('10.0.0.0/8 10.1.0.0/16', 'not an IPv4 or IPv6 network', id='two-in-one'),
    pytest.param(8, 'not a string', id='a-number'),
    pytest.param(None, 'not a string', id='null'),
    # Python's ipaddress takes an IPv6 zone; HAProxy's src never matches one.
    pytest.param('fe80::1%eth0', 'an IPv6 zone', id='ipv6-zone'),
])
def test_bad_entries_are_named_with_the_reason(entry, reason):
    problems = cidr_problems(['10.0.0.0/8', entry])

    assert len(problems) == 1
    assert repr(entry) in problems[0]
    assert reason in problems[0]


@pytest.mark.parametrize('value', ['10.0.0.0/8', {'cidr': '10.0.0.0/8'}, None])
def test_not_a_list(value):
    with pytest.raises(AnsibleFilterError) as err:
        cidr_problems(value)

    assert 'expects a list' in str(err.value)


def test_registered_name():
    assert FilterModule().filters()['cidr_problems'] is cidr_problems


@pytest.mark.parametrize('value, patterns', [
    pytest.param([], [], id='empty'),
    pytest.param(['10.0.0.0/8', ' 127.0.0.2 ', '0.0.0.0/0'],
                 ['::ffff:10.0.0.0/104', '::ffff:127.0.0.2/128', '::ffff:0.0.0.0/96'], id='ipv4-mapped'),
    pytest.param(['2001:db8::/32', '::1', '2002::/16'], ['2001:db8::/32', '::1/128', '2002::/16'], id='ipv6-as-is'),
])
def test_src_patterns_match_the_networks_and_nothing_else(value, patterns):
    assert cidr_src_patterns(value) == patterns


def test_src_patterns_refuse_what_is_no_cidr():
    with pytest.raises(AnsibleFilterError, match='10.0.0.300'):
        cidr_src_patterns(['10.0.0.300/8'])
