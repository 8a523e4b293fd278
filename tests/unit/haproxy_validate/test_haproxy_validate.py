# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/haproxy/files/haproxy-validate against real sockets and a real HAProxy.

The script is loaded by path and run in-process (main(argv)); the HAProxy
it looks for is the one a test starts, through its pidfile.
"""

import importlib.machinery
import importlib.util
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

SCRIPT = (pathlib.Path(__file__).resolve().parents[3]
          / "roles" / "haproxy" / "files" / "haproxy-validate")
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")


def _load_script():
    loader = importlib.machinery.SourceFileLoader("haproxy_validate", str(SCRIPT))
    spec = importlib.util.spec_from_loader("haproxy_validate", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


validator = _load_script()

CONFIG = """\
global
{global_lines}
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend status
{bind_lines}
    http-request return status 200
"""


def free_ports(count, family=socket.AF_INET, host="127.0.0.1"):
    """Distinct ports free right now (all held together while chosen)."""
    socks = [socket.socket(family, socket.SOCK_STREAM) for _n in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    return free_ports(1, family, host)[0]


def write_config(tmp_path, binds, global_lines=(), name="haproxy.cfg"):
    path = tmp_path / name
    path.write_text(CONFIG.format(global_lines="\n".join(f"    {line}" for line in global_lines),
                                  bind_lines="\n".join(f"    bind {bind}" for bind in binds)))
    return path


@pytest.fixture
def foreign_listener():
    """Listen on a port the way a program other than HAProxy does (no SO_REUSEPORT)."""
    opened = []

    def listen(port, host="127.0.0.1", family=socket.AF_INET):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
        opened.append(sock)
        return sock

    yield listen
    for sock in opened:
        sock.close()


class HAProxy:
    """A real HAProxy in master-worker mode with a master CLI, like Debian's haproxy.service."""

    def __init__(self, tmp_path, config, env=None):
        self.pidfile = tmp_path / "haproxy.pid"
        self.master_socket = tmp_path / "master.sock"
        self.config = config
        subprocess.run([HAPROXY, "-W", "-D", "-S", str(self.master_socket), "-p", str(self.pidfile),
                        "-f", str(config)], check=True, env=dict(os.environ, **(env or {})),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        # The daemonized master writes its pid file after the command has returned.
        self._wait(lambda: self.pidfile.exists() and self.pidfile.read_text().strip())
        self.pid = int(self.pidfile.read_text().split()[0])
        self._wait(self._answers)

    def _answers(self):
        try:
            return "master" in validator.master_command(str(self.master_socket), "show proc")
        except OSError:
            return False

    @staticmethod
    def _wait(predicate, within=10.0):
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, "HAProxy did not come up"
            time.sleep(0.05)

    def reload(self):
        os.kill(self.pid, signal.SIGUSR2)

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


@pytest.fixture
def haproxy(tmp_path, monkeypatch):
    """Start HAProxy with a config; the validator finds it through its pidfile."""
    started = []
    monkeypatch.setattr(validator, "PIDFILE", str(tmp_path / "haproxy.pid"), raising=False)
    # No systemd here, but be sure a host's own haproxy.service is never consulted.
    monkeypatch.setattr(validator, "SERVICE", "checktcp-no-such-unit.service", raising=False)

    def start(config, env=None):
        started.append(HAProxy(tmp_path, config, env))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


def run(argv, capsys):
    code = validator.main(["haproxy-validate"] + [str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@needs_haproxy
def test_noreuseport_config_passes_while_haproxy_holds_its_ports(tmp_path, haproxy, capsys):
    port = free_port()
    config = write_config(tmp_path, [f"127.0.0.1:{port}"], ["noreuseport"])
    haproxy(config)
    # The next run renders the same listeners (another line changed).
    new = write_config(tmp_path, [f"127.0.0.1:{port}"], ["noreuseport", "maxconn 2000"], "new.cfg")
    code, _out, err = run([new], capsys)
    assert code == 0, err


@needs_haproxy
def test_noreuseport_ipv6_listener_held_by_haproxy_passes(tmp_path, haproxy, capsys):
    port = free_port(socket.AF_INET6, "::1")
    config = write_config(tmp_path, [f"[::1]:{port}"], ["noreuseport"])
    haproxy(config)
    code, _out, err = run([config], capsys)
    assert code == 0, err


@needs_haproxy
def test_port_held_by_another_program_still_fails(tmp_path, haproxy, foreign_listener, capsys):
    own, other = free_ports(2)
    haproxy(write_config(tmp_path, [f"127.0.0.1:{own}"], ["noreuseport"]))
    foreign_listener(other)
    new = write_config(tmp_path, [f"127.0.0.1:{own}", f"127.0.0.1:{other}"], ["noreuseport"], "new.cfg")
    code, _out, err = run([new], capsys)
    assert code == 1
    assert f"cannot bind 127.0.0.1:{other}: Address already in use" in err, err
    assert f":{own}" not in err, err


@needs_haproxy
def test_other_address_on_a_port_haproxy_holds_fails_with_noreuseport(tmp_path, haproxy, capsys):
    """HAProxy reuses a socket only for the same address: a wildcard on its port would not bind."""
    port = free_port()
    haproxy(write_config(tmp_path, [f"127.0.0.1:{port}"], ["noreuseport"]))
    new = write_config(tmp_path, [f"*:{port}"], ["noreuseport"], "new.cfg")
    code, _out, err = run([new], capsys)
    assert code == 1
    assert f"cannot bind *:{port}: Address already in use" in err, err


@needs_haproxy
def test_environment_variable_in_bind_is_expanded(tmp_path, monkeypatch, foreign_listener, capsys):
    port = free_port()
    monkeypatch.setattr(validator, "PIDFILE", str(tmp_path / "none.pid"), raising=False)
    monkeypatch.setattr(validator, "SERVICE", "checktcp-no-such-unit.service", raising=False)
    monkeypatch.setenv("CHECKTCP_STATUS_PORT", str(port))
    config = write_config(tmp_path, ['"127.0.0.1:${CHECKTCP_STATUS_PORT}"'])
    code, _out, err = run([config], capsys)
    assert code == 0, err
    # The expanded port is the one test-bound.
    foreign_listener(port)
    code, _out, err = run([config], capsys)
    assert code == 1
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in err, err


@needs_haproxy
def test_environment_comes_from_the_running_haproxy(tmp_path, haproxy, monkeypatch, foreign_listener, capsys):
    """A reload re-executes the master with its environment, not the validator's."""
    port, other = free_ports(2)
    config = write_config(tmp_path, ['"127.0.0.1:${CHECKTCP_STATUS_PORT}"'], ["noreuseport"])
    haproxy(config, env={"CHECKTCP_STATUS_PORT": str(port)})
    monkeypatch.setenv("CHECKTCP_STATUS_PORT", str(other))
    foreign_listener(other)
    code, _out, err = run([config], capsys)
    assert code == 0, err


@needs_haproxy
def test_default_value_of_an_unset_variable(tmp_path, monkeypatch, foreign_listener, capsys):
    port = free_port()
    monkeypatch.setattr(validator, "PIDFILE", str(tmp_path / "none.pid"), raising=False)
    monkeypatch.setattr(validator, "SERVICE", "checktcp-no-such-unit.service", raising=False)
    monkeypatch.delenv("CHECKTCP_UNSET", raising=False)
    foreign_listener(port)
    config = write_config(tmp_path, [f'"127.0.0.1:${{CHECKTCP_UNSET-{port}}}"'])
    code, _out, err = run([config], capsys)
    assert code == 1
    assert f"cannot bind 127.0.0.1:{port}" in err, err


@needs_haproxy
def test_every_port_of_a_range_is_tested(tmp_path, monkeypatch, foreign_listener, capsys):
    monkeypatch.setattr(validator, "PIDFILE", str(tmp_path / "none.pid"), raising=False)
    first = free_port()
    for port in range(first + 1, first + 4):
        try:
            foreign_listener(port)
            break
        except OSError:
            continue
    else:
        pytest.skip("no free port next to the first one")
    config = write_config(tmp_path, [f"127.0.0.1:{first}-{port}"])
    code, _out, err = run([config], capsys)
    assert code == 1
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in err, err


@pytest.mark.parametrize(("line", "environ", "expected"), [
    ('bind "127.0.0.1:${PORT}"', {"PORT": "8404"}, ["bind", "127.0.0.1:8404"]),
    ('bind "127.0.0.1:$PORT" ssl', {"PORT": "8404"}, ["bind", "127.0.0.1:8404", "ssl"]),
    ("bind '127.0.0.1:${PORT}'", {"PORT": "8404"}, ["bind", "127.0.0.1:${PORT}"]),
    ("bind 127.0.0.1:${PORT}", {"PORT": "8404"}, ["bind", "127.0.0.1:${PORT}"]),
    ('bind "${ADDR-0.0.0.0}:80"', {}, ["bind", "0.0.0.0:80"]),
    ('bind "${ADDR-0.0.0.0}:80"', {"ADDR": ""}, ["bind", ":80"]),
    ('bind "${NOPE}:80"', {}, ["bind", ":80"]),
    ("bind :80 # comment", {}, ["bind", ":80"]),
    ("bind \\#:80", {}, ["bind", "#:80"]),
    ('bind "a b":80 x', {}, ["bind", "a b:80", "x"]),
])
def test_words_split_and_expand_like_haproxy(line, environ, expected):
    assert validator.words(line, environ) == expected


@pytest.mark.parametrize("line", [
    'bind "127.0.0.1:80',
    "bind 127.0.0.1:http",
    'bind "${NOPE}"',
    "bind 127.0.0.1:80\\",
])
def test_unreadable_bind_is_skipped_with_a_reason(line):
    problems, notes = validator.check_binds(line + "\n", {}, set())
    assert problems == []
    assert len(notes) == 1 and "line 1: not test-bound" in notes[0], notes


def test_non_tcp_binds_are_not_test_bound():
    text = "bind unix@/run/x.sock\nbind /run/y.sock\nbind abns@z\nbind fd@${FD}\nbind quic4@:443\n"
    assert list(validator.listeners(text, {})) == []


@needs_haproxy
def test_reload_that_loads_is_confirmed(tmp_path, haproxy, capsys):
    port = free_port()
    proc = haproxy(write_config(tmp_path, [f"127.0.0.1:{port}"]))
    code, before, _err = run(["--reloads"], capsys)
    assert code == 0 and before.strip() == "0", before
    write_config(tmp_path, [f"127.0.0.1:{port}"], ["maxconn 2000"])
    proc.reload()
    code, out, err = run(["--wait-reload", before.strip(), 20], capsys)
    assert code == 0, out + err
    assert "HAProxy loaded the new files" in out


@needs_haproxy
def test_reload_that_fails_to_load_is_reported(tmp_path, haproxy, foreign_listener, capsys):
    port, taken = free_ports(2)
    proc = haproxy(write_config(tmp_path, [f"127.0.0.1:{port}"]))
    code, before, _err = run(["--reloads"], capsys)
    assert code == 0
    # Taken after validation: the new master cannot bind it.
    foreign_listener(taken)
    write_config(tmp_path, [f"127.0.0.1:{port}", f"127.0.0.1:{taken}"])
    proc.reload()
    code, out, err = run(["--wait-reload", before.strip(), 20], capsys)
    assert code == 1, out + err
    assert "HAProxy failed to load the new files" in err, err
    # And the running HAProxy still answers on its old listener.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 200")


def test_no_haproxy_running_gives_a_clear_answer(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(validator, "PIDFILE", str(tmp_path / "none.pid"), raising=False)
    monkeypatch.setattr(validator, "SERVICE", "checktcp-no-such-unit.service", raising=False)
    code, out, _err = run(["--reloads"], capsys)
    assert code == 0 and out.strip() == "none"
    code, _out, err = run(["--wait-reload", "none", 0.5], capsys)
    assert code == 1
    assert "did not confirm the reload within 0.5 s" in err and "is not running" in err, err


def _kernel_v6only():
    with open("/proc/sys/net/ipv6/bindv6only", encoding="ascii") as handle:
        return handle.read().strip() == "1"


def _ipv6_works():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_works(), reason="no IPv6 on this host")


@pytest.fixture
def no_running_haproxy(tmp_path, monkeypatch):
    monkeypatch.setattr(validator, "PIDFILE", str(tmp_path / "none.pid"), raising=False)
    monkeypatch.setattr(validator, "SERVICE", "checktcp-no-such-unit.service", raising=False)


@needs_haproxy
@needs_ipv6
@pytest.mark.parametrize("options", ["", " v4v6"], ids=["kernel-default", "v4v6"])
def test_a_dual_stack_bind_fails_while_another_program_holds_the_ipv4_port(
        tmp_path, no_running_haproxy, foreign_listener, capsys, options):
    """HAProxy's `bind :::PORT` takes IPv4 clients too (unless `v6only`): a program on
    0.0.0.0:PORT makes HAProxy's bind fail, so the validation must fail too."""
    if not options and _kernel_v6only():
        pytest.skip("net.ipv6.bindv6only is 1 here: a plain :: bind is IPv6-only")
    port = free_port(socket.AF_INET, "0.0.0.0")
    foreign_listener(port, "0.0.0.0")
    config = write_config(tmp_path, [f":::{port}{options}"])

    code, _out, err = run([config], capsys)

    assert code == 1, err
    assert f"cannot bind :::{port} (IPv6 and IPv4): Address already in use" in err, err


@needs_haproxy
@needs_ipv6
def test_a_v6only_bind_passes_while_another_program_holds_the_ipv4_port(
        tmp_path, no_running_haproxy, foreign_listener, capsys):
    port = free_port(socket.AF_INET, "0.0.0.0")
    foreign_listener(port, "0.0.0.0")
    config = write_config(tmp_path, [f":::{port} v6only"])

    code, _out, err = run([config], capsys)

    assert code == 0, err


@needs_haproxy
@needs_ipv6
def test_haproxy_itself_refuses_the_dual_stack_bind_the_validator_refuses(
        tmp_path, no_running_haproxy, foreign_listener, capsys):
    """The validator's verdict is HAProxy's: HAProxy cannot start on that bind either."""
    if _kernel_v6only():
        pytest.skip("net.ipv6.bindv6only is 1 here: a plain :: bind is IPv6-only")
    port = free_port(socket.AF_INET, "0.0.0.0")
    foreign_listener(port, "0.0.0.0")
    config = write_config(tmp_path, [f":::{port}"])

    started = subprocess.run([HAPROXY, "-f", str(config), "-c"], capture_output=True, text=True, check=False)
    assert started.returncode == 0, started.stderr  # `haproxy -c` binds nothing...
    serving = subprocess.run([HAPROXY, "-db", "-f", str(config)], capture_output=True, text=True, check=False,
                             timeout=30)
    assert serving.returncode != 0 and "cannot bind" in serving.stderr.lower() + serving.stdout.lower(), \
        serving.stderr  # ...but HAProxy cannot start on it
    assert run([config], capsys)[0] == 1


@pytest.mark.parametrize("options, expected", [
    ([], None), (["v6only"], True), (["v4v6"], False), (["ssl", "crt", "/x.pem", "v6only"], True),
])
def test_v6only_option_of_a_bind(options, expected):
    assert validator.v6only_option(options) is expected


def test_every_listener_carries_its_v6only_option():
    text = "bind :::80 v6only\nbind :::81,[::1]:82 v4v6\nbind *:83\n"
    assert [(host, port, v6only) for _n, _spec, host, port, v6only in validator.listeners(text, {})] == [
        ("::", 80, True), ("::", 81, False), ("::1", 82, False), ("*", 83, None)]


# ------------------------------------------------ server states at a reload

STATE_CONFIG = """\
global
    stats timeout 5s
    server-state-file {state_file}
defaults
    mode tcp
    timeout connect 1s
    timeout client 1s
    timeout server 1s
backend engine
    option tcp-check
    load-server-state-from-file global
    server down-one 127.0.0.1:{port} check inter 100ms
frontend page
    bind 127.0.0.1:{page_port}
    default_backend engine
"""


def start_master_worker(tmp_path, monkeypatch):
    """A master-worker HAProxy with a master CLI, as Debian's unit runs it, and its state file (no states)."""
    state_file = tmp_path / "server-state"
    state_file.write_text(validator.NO_SERVER_STATES)
    config = tmp_path / "haproxy.cfg"
    config.write_text(STATE_CONFIG.format(port=free_port(socket.AF_INET, "127.0.0.1"), state_file=state_file,
                                          page_port=free_port(socket.AF_INET, "127.0.0.1")))
    proc = subprocess.Popen([HAPROXY, "-W", "-db", "-S", str(tmp_path / "master.sock"), "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monkeypatch.setattr(validator, "master_pid", lambda: proc.pid)
    return proc, state_file


@needs_haproxy
def test_saved_server_states_are_the_running_workers(tmp_path, monkeypatch):
    """What a reload hands the next worker: the current worker's states, from a real master CLI."""
    proc, state_file = start_master_worker(tmp_path, monkeypatch)
    try:
        deadline = time.monotonic() + 10
        while True:
            validator.save_server_state(str(state_file))
            rows = [line.split() for line in state_file.read_text().splitlines()[1:] if line and not line.startswith("#")]
            # srv_op_state 0: the check found the server down.
            if [(row[1], row[3], row[5]) for row in rows] == [("engine", "down-one", "0")]:
                break
            assert time.monotonic() < deadline, state_file.read_text()
            time.sleep(0.05)
        assert state_file.read_text().startswith("1\n")
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_master_saves_no_states_not_a_stale_file(tmp_path, monkeypatch):
    state_file = tmp_path / "server-state"
    state_file.write_text("1\n# be_id be_name ...\n3 engine 1 t1 127.0.0.1 2 0 1 1 9 1 0 2 0 0 0 0 - 7 0 0 - - 0\n")
    monkeypatch.setattr(validator, "master_pid", lambda: None)
    assert validator.save_server_state(str(state_file)) == 0
    assert state_file.read_text() == "1\n"


def test_an_answer_that_is_not_states_saves_none(tmp_path, monkeypatch):
    state_file = tmp_path / "server-state"
    monkeypatch.setattr(validator, "master_pid", lambda: 1)
    monkeypatch.setattr(validator, "master_socket", lambda _pid: "/nonexistent")
    assert validator.save_server_state(str(state_file), answer_of=lambda _path, _cmd: "Unknown command.\n") == 0
    assert state_file.read_text() == "1\n"


@needs_haproxy
def test_a_reload_hands_the_states_over_then_forgets_them(tmp_path, monkeypatch, capsys):
    """The unit's reload: the new worker starts with the old one's states (here an admin's
    maintenance, which a fresh worker would not have), and the file holds none afterwards, so a
    reload outside the unit (a bare SIGUSR2) never loads them later."""
    proc, state_file = start_master_worker(tmp_path, monkeypatch)
    master_cli = str(tmp_path / "master.sock")

    def server_state():
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = validator.master_command(master_cli, "@1 show servers state")
                rows = [line.split() for line in answer.splitlines()[1:] if line and not line.startswith("#")]
                if rows:
                    return validator.show_proc(proc.pid)[1][2], rows[0]
            except OSError:
                pass  # the master CLI is down while the master re-executes
            assert time.monotonic() < deadline
            time.sleep(0.05)

    try:
        old_workers, _row = server_state()
        validator.master_command(master_cli, "@1 set server engine/down-one state maint")
        assert validator.reload_with_server_state(str(state_file), proc.pid) == 0
        new_workers, row = server_state()
        # srv_admin_state 1: forced maintenance, from the saved states.
        assert row[6] == "1", row
        assert [pid for pid, reloads in new_workers if reloads == 0] != [pid for pid, reloads in old_workers]
        assert state_file.read_text() == validator.NO_SERVER_STATES
        assert "saved 1 server states" in capsys.readouterr().out
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_file_that_cannot_be_written_is_removed(tmp_path):
    state_file = tmp_path / "server-state"
    state_file.write_text("1\n3 engine 1 t1 127.0.0.1 2 0 1 1 9 1 0 2 0 0 0 0 - 7 0 0 - - 0\n")
    (tmp_path / "server-state.new").mkdir()  # the temporary file cannot be created
    validator.write_server_states(str(state_file), validator.NO_SERVER_STATES)
    assert not state_file.exists()


HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
          "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
          "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
          "srv_check_addr srv_agent_addr srv_agent_port\n")


def state_line(name, op_state, check_result):
    return "3 engine 1 %s 127.0.0.1 %d 0 1 1 9 15 %d 0 6 0 0 0 - 7 - 0 0 - - 0\n" % (name, op_state, check_result)


def test_a_server_seen_up_after_a_failed_check_is_not_handed_over():
    """HAProxy would restore it up at full health: it must start unchecked instead."""
    answer = "1\n" + HEADER + "".join([
        state_line("up-passed", 2, 3), state_line("up-failed", 2, 2), state_line("up-neutral", 2, 1),
        state_line("down-failed", 0, 2), state_line("never-checked", 2, 0), state_line("starting-failed", 1, 2)])
    kept = [line.split()[3] for line in validator.settled_states(answer).splitlines()[2:]]
    assert kept == ["up-passed", "down-failed", "never-checked"]
    assert validator.settled_states(answer).startswith("1\n" + HEADER)


def test_an_answer_without_the_columns_hands_nothing_over():
    assert validator.settled_states("1\n# be_id be_name\n3 engine\n") == validator.NO_SERVER_STATES
