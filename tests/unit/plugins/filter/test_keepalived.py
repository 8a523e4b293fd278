# -*- coding: utf-8 -*-

# Copyright (c) 2025, checktcp contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Unit tests of the keepalived_instance filter: the keepalived role's variables, checked and derived."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.checktcp.haproxy_lua.plugins.filter.keepalived import (
    HOLDER_WEIGHT, MAX_SPREAD, PAGE_WEIGHT, PRIORITY_RANGE, FilterModule, keepalived_instance)

LB1 = 'lb1.example.com'
LB2 = 'lb2.example.com'
LB3 = 'lb3.example.com'
DEFAULTS = {
    'keepalived_vip': '10.0.0.100/24',
    'keepalived_interface': None,
    'keepalived_virtual_router_id': 51,
    'keepalived_priority': None,
    'keepalived_preempt': False,
    'keepalived_peers': None,
    'keepalived_advert_int': 1,
}


def facts(address, interface='eth0', ipv6=None):
    """ansible_facts of a host with one interface holding `address` (and `ipv6`, global) and the default route."""
    return {
        'interfaces': ['lo', interface],
        'default_ipv4': {'interface': interface, 'address': address},
        interface.replace('-', '_'): {
            'ipv4': {'address': address},
            'ipv6': [{'address': 'fe80::1', 'scope': 'link'}] + ([{'address': ipv6, 'scope': 'global'}] if ipv6 else []),
        },
        'lo': {'ipv4': {'address': '127.0.0.1'}},
    }


HOSTS = {
    LB1: {'ansible_facts': facts('10.0.0.11', ipv6='2001:db8::11')},
    LB2: {'ansible_facts': facts('10.0.0.12', ipv6='2001:db8::12')},
}
GROUPS = {'haproxy': [LB1, LB2], 'all': [LB1, LB2]}


def instance(host=LB1, hostvars=None, groups=None, **variables):
    hostvars = HOSTS if hostvars is None else hostvars
    return keepalived_instance(dict(DEFAULTS, **variables), hostvars[host]['ansible_facts'],
                               GROUPS if groups is None else groups, hostvars, host)


def error(**kwargs):
    with pytest.raises(AnsibleFilterError) as err:
        instance(**kwargs)
    return str(err.value)


def test_defaults_on_the_first_host():
    result = instance()

    assert result['vip'] == '10.0.0.100/24'
    assert result['address'] == '10.0.0.100'
    assert result['interface'] == 'eth0'
    assert result['virtual_router_id'] == 51
    assert result['priority'] == 100
    assert result['preempt'] is False
    assert result['peers'] == ['10.0.0.12']
    assert result['advert_int'] == 1
    assert result['status_url'] == 'http://127.0.0.1:80/'


def test_priority_and_peers_follow_the_group_order():
    hostvars = dict(HOSTS, **{LB3: {'ansible_facts': facts('10.0.0.13', interface='ens3')}})
    groups = {'haproxy': [LB1, LB2, LB3]}

    second = instance(LB2, hostvars=hostvars, groups=groups)
    third = instance(LB3, hostvars=hostvars, groups=groups)

    assert (second['priority'], second['peers']) == (99, ['10.0.0.11', '10.0.0.13'])
    assert (third['priority'], third['peers'], third['interface']) == (98, ['10.0.0.11', '10.0.0.12'], 'ens3')


def test_a_peers_own_keepalived_interface_gives_its_address():
    lb2 = facts('10.0.0.12')
    lb2['interfaces'].append('eth1')
    lb2['eth1'] = {'ipv4': {'address': '192.168.7.12'}}
    hostvars = {LB1: HOSTS[LB1], LB2: {'ansible_facts': lb2, 'keepalived_interface': 'eth1'}}

    assert instance(hostvars=hostvars)['peers'] == ['192.168.7.12']


def test_an_ipv6_address_takes_the_peers_global_ipv6_addresses():
    result = instance(keepalived_vip='2001:db8::100/64')

    assert (result['family'], result['peers']) == ('ipv6', ['2001:db8::12'])


def test_the_scripts_and_their_weights():
    scripts = {s['name']: s for s in instance()['scripts']}

    assert scripts['checktcp_alive']['weight'] == 0          # FAULT: HAProxy does not answer
    assert scripts['checktcp_page']['weight'] == -PAGE_WEIGHT
    assert scripts['checktcp_holder']['weight'] == HOLDER_WEIGHT
    assert scripts['checktcp_page']['args'] == ['/usr/local/lib/checktcp/keepalived-check', 'ok', 'http://127.0.0.1:80/', '4']
    assert scripts['checktcp_holder']['args'][2:] == ['10.0.0.100', 'eth0']
    # A page answers within its timeout (1 s): the request waits 3 s more, keepalived 10 s more for the script.
    assert scripts['checktcp_page']['timeout'] == 14


def test_preempt_drops_the_holders_bonus():
    names = [s['name'] for s in instance(keepalived_preempt='true')['scripts']]

    assert names == ['checktcp_alive', 'checktcp_page']


@pytest.mark.parametrize('holder, backup', [(100, 99), (99, 100), (PRIORITY_RANGE[0], PRIORITY_RANGE[0] + MAX_SPREAD),
                                            (PRIORITY_RANGE[1], PRIORITY_RANGE[1] - MAX_SPREAD)])
def test_the_arithmetic_moves_the_address_only_from_ko_to_ok(holder, backup):
    """The effective priorities of filter's docstring, for priorities at the edges it allows."""
    def effective(base, page_ok, holds):
        value = base + (0 if page_ok else -PAGE_WEIGHT) + (HOLDER_WEIGHT if holds else 0)
        assert 1 <= value <= 254       # never clamped by keepalived
        return value

    assert effective(holder, True, True) > effective(backup, True, False)      # both OK: stays
    assert effective(holder, False, True) < effective(backup, True, False)     # holder KO, backup OK: moves
    assert effective(holder, False, True) > effective(backup, False, False)    # both KO: stays
    # preempt true (no bonus): the page decides whatever the priorities
    assert effective(holder, False, False) < effective(backup, True, False)


@pytest.mark.parametrize('variables, named, reason', [
    pytest.param({'keepalived_vip': '10.0.0.100'}, 'keepalived_vip', 'with its prefix', id='vip-without-prefix'),
    pytest.param({'keepalived_vip': '10.0.0.300/24'}, 'keepalived_vip', 'with its prefix', id='vip-not-an-address'),
    pytest.param({'keepalived_vip': 'lb.example.com/24'}, 'keepalived_vip', 'with its prefix', id='vip-a-name'),
    pytest.param({'keepalived_vip': '10.0.0.100/33'}, 'keepalived_vip', 'with its prefix', id='vip-prefix-too-long'),
    pytest.param({'keepalived_vip': '10.0.0.0/24'}, 'keepalived_vip', 'network address', id='vip-network-address'),
    pytest.param({'keepalived_vip': '10.0.0.255/24'}, 'keepalived_vip', 'broadcast address', id='vip-broadcast'),
    pytest.param({'keepalived_vip': 24}, 'keepalived_vip', 'with its prefix', id='vip-a-number'),
    pytest.param({'keepalived_interface': 'eth9'}, 'keepalived_interface', 'interface of this host', id='no-such-interface'),
    pytest.param({'keepalived_virtual_router_id': 0}, 'keepalived_virtual_router_id', 'from 1 to 255', id='router-id-0'),
    pytest.param({'keepalived_virtual_router_id': 256}, 'keepalived_virtual_router_id', 'from 1 to 255', id='router-id-256'),
    pytest.param({'keepalived_virtual_router_id': 'x'}, 'keepalived_virtual_router_id', 'from 1 to 255', id='router-id-word'),
    pytest.param({'keepalived_virtual_router_id': True}, 'keepalived_virtual_router_id', 'from 1 to 255', id='router-id-bool'),
    pytest.param({'keepalived_priority': 0}, 'keepalived_priority', 'from 51 to 234', id='priority-0'),
    pytest.param({'keepalived_priority': 255}, 'keepalived_priority', 'from 51 to 234', id='priority-255'),
    pytest.param({'keepalived_priority': 254}, 'keepalived_priority', 'less the room', id='priority-clamped'),
    pytest.param({'keepalived_priority': 50}, 'keepalived_priority', 'from 51 to 234', id='priority-below-the-page-weight'),
    pytest.param({'keepalived_priority': 130}, 'keepalived_priority', 'differ by at most 19', id='priority-spread'),
    pytest.param({'keepalived_preempt': 'maybe'}, 'keepalived_preempt', 'true or false', id='preempt-word'),
    pytest.param({'keepalived_peers': []}, 'keepalived_peers', 'non-empty list', id='peers-empty'),
    pytest.param({'keepalived_peers': '10.0.0.12'}, 'keepalived_peers', 'non-empty list', id='peers-a-string'),
    pytest.param({'keepalived_peers': ['lb2.example.com']}, 'keepalived_peers', 'IPv4 addresses', id='peers-a-name'),
    pytest.param({'keepalived_peers': ['2001:db8::12']}, 'keepalived_peers', 'IPv4 addresses', id='peers-other-family'),
    pytest.param({'keepalived_advert_int': 0}, 'keepalived_advert_int', 'from 1 to 255', id='advert-int-0'),
    pytest.param({'haproxy_status_bind': '/run/haproxy/status.sock'}, 'haproxy_status_bind', 'can reach', id='bind-a-socket'),
])
def test_a_bad_variable_is_named_with_the_reason(variables, named, reason):
    message = error(**variables)

    assert message.startswith(named + ' ')
    assert reason in message


def test_a_single_host_group_has_no_peer():
    message = error(groups={'haproxy': [LB1]})

    assert message.startswith('keepalived_peers ') and 'no other host' in message


def test_a_peer_without_facts_is_named():
    hostvars = {LB1: HOSTS[LB1], LB2: {}}

    message = error(hostvars=hostvars)

    assert message.startswith('keepalived_peers ') and LB2 in message and 'gather facts' in message


def test_no_default_route_needs_an_interface():
    lb1 = facts('10.0.0.11')
    lb1['default_ipv4'] = {}
    hostvars = {LB1: {'ansible_facts': lb1}, LB2: HOSTS[LB2]}

    message = error(hostvars=hostvars)

    assert message.startswith('keepalived_interface ') and 'default IPv4 route' in message


def test_a_host_outside_the_group_needs_its_priority():
    message = error(groups={'haproxy': [LB2]}, keepalived_peers=['10.0.0.12'])

    assert message.startswith('keepalived_priority ') and 'not in group haproxy' in message


def test_values_from_strings_are_coerced():
    result = instance(keepalived_virtual_router_id='7', keepalived_priority='90', keepalived_advert_int='2',
                      keepalived_preempt='no', keepalived_peers=['10.0.0.12 '])

    assert (result['virtual_router_id'], result['priority'], result['advert_int'], result['preempt']) == (7, 90, 2, False)
    assert result['peers'] == ['10.0.0.12']


def test_explicit_priorities_of_the_group_are_checked_together():
    hostvars = {LB1: HOSTS[LB1], LB2: dict(HOSTS[LB2], keepalived_priority=70)}

    message = error(hostvars=hostvars)

    assert message.startswith('keepalived_priority ') and LB2 in message and '70' in message


@pytest.mark.parametrize('bind, tls, url', [
    ('*:80', False, 'http://127.0.0.1:80/'),
    (':8404', False, 'http://127.0.0.1:8404/'),
    ('0.0.0.0:443', True, 'https://127.0.0.1:443/'),
    ('10.0.0.11:8080', False, 'http://10.0.0.11:8080/'),
    (':::80', False, 'http://[::1]:80/'),
    ('[::]:80', False, 'http://[::1]:80/'),
    ('ipv6@:::8443', True, 'https://[::1]:8443/'),
    ('[2001:db8::11]:80', False, 'http://[2001:db8::11]:80/'),
    ('*:80,*:8080', False, 'http://127.0.0.1:80/'),
    ('*:8000-8010', False, 'http://127.0.0.1:8000/'),
])
def test_the_status_url_follows_the_haproxy_bind(bind, tls, url):
    result = instance(haproxy_status_bind=bind, haproxy_status_tls=tls)

    assert result['status_url'] == url
    assert result['notify'][1] == url


def test_the_page_timeout_follows_the_slowest_check():
    result = instance(haproxy_checktcp_timeout_ms=500, haproxy_checktcp_checks=[{'name': 'slow', 'timeout_ms': 4500}])

    page = next(s for s in result['scripts'] if s['name'] == 'checktcp_page')
    assert (page['args'][3], page['timeout']) == ('8', 18)


def test_not_a_dict():
    with pytest.raises(AnsibleFilterError) as err:
        keepalived_instance('10.0.0.100/24', {}, GROUPS, HOSTS, LB1)

    assert 'expects a dict' in str(err.value)


def test_registered_name():
    assert FilterModule().filters()['keepalived_instance'] is keepalived_instance


def test_the_status_url_asks_the_overview_of_named_checks():
    # With named checks only the overview's path answers for all of them; any
    # other path that is no check's is 404, which would keep every node's page
    # KO for good.
    result = instance(haproxy_checktcp_checks=[{'name': 'web', 'targets': [{'host': '10.0.0.5', 'port': 80}]}],
                      haproxy_checktcp_overview_path='/status')

    assert result['status_url'] == 'http://127.0.0.1:80/status'
    assert result['notify'][1] == 'http://127.0.0.1:80/status'


@pytest.mark.parametrize('path', ['status', '/a b', '/a?b', 7])
def test_an_overview_path_the_scripts_cannot_ask_stops_the_play(path):
    message = error(haproxy_checktcp_overview_path=path)

    assert message.startswith('haproxy_checktcp_overview_path ')
