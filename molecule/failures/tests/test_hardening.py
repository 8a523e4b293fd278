"""Hardening: sandboxed echo server, unprivileged chrooted HAProxy, no leaks on the page."""

import re

ECHO_UNIT = "checktcp-echo.service"
# What the README claims, as measured on Debian 12 (systemd 252) with the defaults.
MAX_EXPOSURE = 1.1


def _proc_status(host, pid):
    text = host.file(f"/proc/{pid}/status").content_string
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_echo_unit_exposure_score(host, figures, status):
    out = host.run(f"systemd-analyze security --no-pager {ECHO_UNIT}").stdout
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", out)
    assert match, f"{out}\n{status.journal(units=(ECHO_UNIT,))}"
    score = float(match.group(1))
    figures("Hardening", f"systemd-analyze security {ECHO_UNIT}: {score} {match.group(2)}")
    assert score <= MAX_EXPOSURE, f"{out}\n{status.journal(units=(ECHO_UNIT,))}"


def test_echo_server_unprivileged_without_new_privileges(host, system, status):
    pid = system.main_pid(ECHO_UNIT)
    assert pid > 0, status.journal()
    proc = _proc_status(host, pid)
    uids = proc["Uid"].split()
    assert all(int(uid) != 0 for uid in uids), f"{proc['Uid']}\n{status.journal()}"
    assert proc["NoNewPrivs"].strip() == "1", f"{proc}\n{status.journal()}"


def test_haproxy_workers_unprivileged_and_chrooted(host, system, status):
    master, workers = system.haproxy_pids()
    assert workers, f"no worker of master {master}\n{status.journal()}"
    haproxy_uid = host.check_output("id -u haproxy")
    for pid in workers:
        proc = _proc_status(host, pid)
        assert proc["Name"].strip() == "haproxy", f"{proc}\n{status.journal()}"
        assert proc["Uid"].split() == [haproxy_uid] * 4, f"{proc['Uid']}\n{status.journal()}"
        root = host.check_output(f"readlink /proc/{pid}/root")
        assert root == "/var/lib/haproxy", f"worker {pid} root is {root}\n{status.journal()}"


def test_admin_socket_is_local_and_restricted(host, status):
    sock = host.file("/run/haproxy/admin.sock")
    assert sock.is_socket, status.journal()
    assert (sock.mode, sock.user, sock.group) == (0o660, "root", "haproxy"), status.journal()
    # Not reachable over TCP: the stats socket is a unix socket only.
    unix = host.check_output("ss -Hxlp")
    assert "/run/haproxy/admin.sock" in unix, f"{unix}\n{status.journal()}"


def test_haproxy_listens_only_on_the_status_port(host, status):
    out = host.check_output("ss -Hltnp")
    ports = set()
    for line in out.splitlines():
        if '"haproxy"' in line:
            ports.add(int(line.split()[3].rpartition(":")[2]))
    assert ports == {80}, f"{out}\n{status.journal()}"


def test_page_does_not_reveal_haproxy_or_its_version(host, status):
    version = re.search(r"version (\d+\.\d+\.\d+)", host.check_output("haproxy -v")).group(1)
    for args in ("", "-H 'Accept: application/json'", "-X POST"):
        out = host.check_output(f"curl -s -i {args} http://127.0.0.1/")
        assert "haproxy" not in out.lower(), f"{out}\n{status.journal()}"
        assert version not in out, f"{out}\n{status.journal()}"


# haproxy_checktcp_details: false is checked in test_reload_under_load.py, whose
# two runs of apply.yml turn it off and back on.
