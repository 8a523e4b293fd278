"""A keepalived pair that follows the status page: who holds the address, and what the client gets.

The tests share the containers and run in this order, each starting from the
holder the previous one left: lb1 holds after converge; HAProxy stopped on
lb1 -> lb2; lb2's path to the echo server cut -> lb1; both pages KO -> lb1
keeps it; keepalived stopped on lb1 -> lb2; the lb2 container stopped -> lb1;
keepalived_preempt true, HAProxy stopped on lb1 -> lb2, and back to lb1.
"""

import time

import pytest

from conftest import (  # pylint: disable=import-error
    ADDRESS, ADVERT_INT, CONFIG, ECHO, FALL, INTERVAL, LB1, LB2, LOAD_SLACK_S, NODES, RISE, VIP,
    journal, journals, podman, record_figure, recap, run_playbook, sh, short)

# The client gets 200 again within: the failing script's FALL runs (a KO
# page takes up to the check's 1 s timeout to say so), the backup's down
# timer (3 adverts), and the machine's load.
BOUND_DEAD_S = FALL * INTERVAL + 3 * ADVERT_INT + LOAD_SLACK_S
BOUND_KO_S = FALL * (INTERVAL + 1) + 3 * ADVERT_INT + LOAD_SLACK_S
# A node that comes back takes the address within its scripts' RISE runs and
# 3 adverts, if it is to take it at all (keepalived_preempt true): watch that
# long, and a little more, for a move that must not happen.
QUIET_S = 3 * ADVERT_INT + 3
# Starting units and containers on the loaded machine.
BACK_S = 60
NFT_TABLE = "checktcp_test"


def other(node):
    return LB2 if node == LB1 else LB1


def echo_address():
    return podman("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", ECHO).stdout.strip()


def main_pid(node):
    return sh(node, "systemctl show --property MainPID --value keepalived").stdout.strip()


def settled(monitor, holder):
    """The address is on `holder` alone, and the client gets 200 through it."""
    since = time.time()
    monitor.wait(lambda: monitor.holders() == {holder} and monitor.first_200_since(since),
                 BACK_S, f"{short(holder)} alone holds {ADDRESS} and the page answers 200 through it")


def failover(monitor, holder, inject, label, bound):
    """Run inject(); wait for the other node to hold the address and the client's next 200; record the times."""
    settled(monitor, holder)
    new = other(holder)
    t0 = time.time()
    inject()
    try:
        moved = monitor.wait(lambda: monitor.sole_holder_since(new, t0), bound,
                             f"{label}: the address moves to {short(new)}")
        ok = monitor.wait(lambda: monitor.first_200_since(moved), bound,
                          f"{label}: the client gets 200 through the address again")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{journals(t0 - 2)}") from None
    failed = monitor.failed_between(t0, ok)
    record_figure(f"{label}: address on {short(new)} after {moved - t0:.2f} s, client 200 again after "
                  f"{ok - t0:.2f} s, longest gap between two 200s {monitor.longest_gap(t0, ok):.2f} s, "
                  f"{len(failed)} failed or slow answers")
    return t0


def wait_journal(node, since, pattern, within=BACK_S):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if pattern in journal(node, since):
            return
        time.sleep(0.2)
    raise AssertionError(f"no '{pattern}' in {short(node)}'s journal within {within} s:\n{journal(node, since)}")


def stays(monitor, holder, label, since=None):
    """The address stays on `holder` for QUIET_S (no sample without it, none with another holder)."""
    start = time.time() if since is None else since
    deadline = time.time() + QUIET_S
    while time.time() < deadline:
        moves = monitor.moves_since(start)
        assert not moves, f"{label}: the address left {short(holder)}: {moves[:5]}\n{journals(start - 2)}"
        time.sleep(0.1)
    assert monitor.holders() == {holder}
    record_figure(f"{label}: the address stayed on {short(holder)} for {time.time() - start:.1f} s")


def test_one_node_holds_the_address_after_converge(monitor):
    settled(monitor, LB1)
    for node in NODES:
        assert sh(node, "systemctl is-active keepalived", check=False).stdout.strip() == "active"
    conf = sh(LB1, f"cat {CONFIG}").stdout
    assert "enable_script_security" in conf and "script_user keepalived_script" in conf
    assert f"{VIP} dev eth0" in conf
    # The scripts run as the unprivileged script user: the notify script's
    # journal lines carry its uid.
    uid = sh(LB1, "id -u keepalived_script").stdout.strip()
    uids = set(sh(LB1, "journalctl -t checktcp-keepalived -o json --output-fields=_UID --no-pager").stdout.split())
    assert uid != "0" and uids and all(f'"_UID":"{uid}"' in line for line in uids), uids


def test_check_mode_on_the_converged_hosts_changes_nothing():
    """The keepalived role in check mode (site.yml's other roles: molecule/default's check step)."""
    result = run_playbook("apply.yml", extra=("--check", "--diff"))
    hosts = recap(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert hosts and all(counts["changed"] == 0 for counts in hosts.values()), result.stdout[-4000:]


@pytest.mark.parametrize("variables, named", [
    pytest.param({"keepalived_vip": ADDRESS}, "keepalived_vip", id="vip-without-prefix"),
    pytest.param({"keepalived_interface": "eth9"}, "keepalived_interface", id="interface-the-host-lacks"),
])
def test_a_bad_variable_stops_the_play_and_changes_nothing(monitor, variables, named):
    before = {node: (sh(node, f"sha256sum {CONFIG}").stdout, main_pid(node)) for node in NODES}
    t0 = time.time()
    result = run_playbook("apply.yml", variables)
    assert result.returncode != 0
    assert f"failed: {named} " in result.stdout + result.stderr, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Write keepalived.conf" not in result.stdout
    for node in NODES:
        assert (sh(node, f"sha256sum {CONFIG}").stdout, main_pid(node)) == before[node]
    assert not monitor.moves_since(t0)


def test_haproxy_stopped_on_the_holder_moves_the_address(monitor):
    t0 = failover(monitor, LB1, lambda: sh(LB1, "systemctl stop haproxy"), "HAProxy stopped on the holder",
                  BOUND_DEAD_S)
    # The reason, in the journal of the node that gave the address up.
    wait_journal(LB1, t0, "is now FAULT")
    log = journal(LB1, t0)
    assert "Script `checktcp_alive` now returning" in log and "no answer, HAProxy is not serving it" in log, log


def test_the_failed_node_back_does_not_take_the_address_back(monitor):
    t0 = time.time()
    sh(LB1, "systemctl start haproxy")
    wait_journal(LB1, t0, "VRRP_Script(checktcp_page) succeeded")
    stays(monitor, LB2, "HAProxy back on lb1, keepalived_preempt false", since=t0)


@pytest.fixture
def path_cut():
    """lb2 drops what it sends to the echo server (nftables), so its probes time out."""
    cut = []

    def apply(node):
        sh(node, f"nft add table inet {NFT_TABLE} && "
                 f"nft add chain inet {NFT_TABLE} out '{{ type filter hook output priority 0; }}' && "
                 f"nft add rule inet {NFT_TABLE} out ip daddr {echo_address()} drop")
        cut.append(node)

    yield apply
    for node in cut:
        sh(node, f"nft delete table inet {NFT_TABLE}", check=False)


def test_the_holders_path_to_the_echo_server_cut_moves_the_address(monitor, path_cut):
    t0 = failover(monitor, LB2, lambda: path_cut(LB2), "lb2's path to the echo server cut", BOUND_KO_S)
    # lb2's page says KO while lb1's says OK.
    assert sh(LB2, "curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1/").stdout == "503"
    assert sh(LB1, "curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1/").stdout == "200"
    wait_journal(LB2, t0, "is now BACKUP")
    assert "503 KO, the echo service does not answer" in journal(LB2, t0)
    # Its path back: the page OK again, and the address stays on lb1.
    t1 = time.time()
    sh(LB2, f"nft delete table inet {NFT_TABLE}")
    wait_journal(LB2, t1, "VRRP_Script(checktcp_page) succeeded")
    stays(monitor, LB1, "lb2's path back, keepalived_preempt false", since=t1)


def test_both_pages_ko_keeps_the_address_where_it_is(monitor):
    settled(monitor, LB1)
    t0 = time.time()
    sh(ECHO, "systemctl stop checktcp-echo.service")
    try:
        for node in NODES:
            wait_journal(node, t0, "VRRP_Script(checktcp_page) failed")
        # Both priorities dropped: nothing may move for QUIET_S after the later one.
        stays(monitor, LB1, "echo server stopped, both pages 503", since=t0)
        codes = {a[2] for a in monitor.answers_between(t0 + FALL * INTERVAL + 1, time.time())}
        assert codes == {503}, codes
    finally:
        sh(ECHO, "systemctl start checktcp-echo.service")
    t1 = time.time()
    for node in NODES:
        wait_journal(node, t1, "VRRP_Script(checktcp_page) succeeded")
    stays(monitor, LB1, "echo server back, both pages 200", since=t0)


def test_keepalived_stopped_on_the_holder_moves_the_address(monitor):
    failover(monitor, LB1, lambda: sh(LB1, "systemctl stop keepalived"), "keepalived stopped on the holder",
             BOUND_DEAD_S)
    t1 = time.time()
    sh(LB1, "systemctl start keepalived")
    wait_journal(LB1, t1, "VRRP_Script(checktcp_page) succeeded")
    stays(monitor, LB2, "keepalived back on lb1, keepalived_preempt false", since=t1)


def test_the_holders_container_stopped_moves_the_address(monitor):
    failover(monitor, LB2, lambda: podman("stop", LB2), "the holder's container stopped (podman stop)",
             BOUND_DEAD_S + 10)
    t1 = time.time()
    podman("start", LB2)
    wait_journal(LB2, t1, "VRRP_Script(checktcp_page) succeeded")
    wait_journal(LB2, t1, "Entering BACKUP STATE")
    stays(monitor, LB1, "lb2's container back, keepalived_preempt false", since=t1)


def test_a_config_change_reloads_keepalived_without_giving_the_address_up(monitor):
    """keepalived_preempt true: lb1 (the first host, priority 100) keeps the address over the reload."""
    settled(monitor, LB1)
    pids = {node: main_pid(node) for node in NODES}
    t0 = time.time()
    result = run_playbook("apply.yml", {"keepalived_preempt": True})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "RUNNING HANDLER [checktcp.haproxy_lua.keepalived : Reload keepalived]" in result.stdout
    for node in NODES:
        assert "checktcp_holder" not in sh(node, f"cat {CONFIG}").stdout
        assert main_pid(node) == pids[node], "keepalived was restarted, not reloaded"
    stays(monitor, LB1, "keepalived_preempt true applied (reload)", since=t0)


def test_with_preempt_the_first_node_back_takes_the_address_back(monitor):
    failover(monitor, LB1, lambda: sh(LB1, "systemctl stop haproxy"), "keepalived_preempt true, HAProxy stopped on lb1",
             BOUND_DEAD_S)
    t1 = time.time()
    sh(LB1, "systemctl start haproxy")
    back = monitor.wait(lambda: monitor.sole_holder_since(LB1, t1), (RISE + 3) * ADVERT_INT + LOAD_SLACK_S + 5,
                        "lb1, its page OK again, takes the address back")
    record_figure(f"keepalived_preempt true: lb1 holds the address again {back - t1:.2f} s after HAProxy started")


def test_never_two_holders(monitor):
    with monitor.lock:
        split = list(monitor.split_brain)
        samples = len(monitor.samples)
    assert samples > 100
    assert not split, f"two nodes held {ADDRESS} at once: {split[:5]}"
