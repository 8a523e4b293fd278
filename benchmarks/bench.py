# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the checktcp status page; run it through benchmarks/run.

Deploys site.yml into the podman container $CHECKTCP_ID-bench (or reuses it),
swaps the Python echo server for benchmarks/fast_echo.c, and measures, in
each mode (cached, then live), the native HAProxy ceiling and the status page
with wrk, the probes the echo server receives, and how fast a dead or hung
echo server is detected and a recovered one seen again. Prints the tables and
writes them, as Markdown, to benchmarks/results.md.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time

NAME = os.environ["CHECKTCP_ID"] + "-bench"  # named after the clone (scripts/lib.sh)
# Tagged with a hash of its recipe; benchmarks/run gets it from scripts/lib.sh.
IMAGE = os.environ["CHECKTCP_IMAGE_12"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
INVENTORY = os.path.join(BENCH, "inventory.yml")
STATUS_PORT = 80         # haproxy_status_bind, the role's default
NATIVE_PORT = 8090       # the native frontend of benchmarks/inventory.yml
ECHO_PORT = 8080         # echo_server_port, the role's default
CONTROL_PORT = 9081      # fast_echo's control port
FAST_ECHO = "/usr/local/bin/checktcp-fast-echo"
FAST_ECHO_UNIT = "checktcp-bench-echo"
CONNECTIONS = (1, 50, 500)
LOGS = os.path.join(os.environ["CHECKTCP_CACHE"], "bench-logs")  # inside the clone (scripts/lib.sh)


def log(msg):
    print(f"\n==> {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def sh(cmd, check=True, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if check and proc.returncode != 0:
        die(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def cexec(script, check=True):
    """Run a shell script in the container."""
    return sh(["podman", "exec", NAME, "sh", "-c", script], check=check)


def save_log(name, text):
    os.makedirs(LOGS, exist_ok=True)
    with open(os.path.join(LOGS, name), "w") as f:
        f.write(text)


def role_default(name):
    with open(os.path.join(ROOT, "roles/haproxy/defaults/main.yml")) as f:
        match = re.search(rf"^{name}:\s*(\S+)", f.read(), re.M)
    return match.group(1)


TIMEOUT_MS = int(role_default("haproxy_checktcp_timeout_ms"))
INTERVAL_MS = int(role_default("haproxy_checktcp_interval_ms"))


# --- the container and the deployment ---------------------------------------

def start_container(reuse):
    exists = sh(["podman", "container", "exists", NAME], check=False).returncode == 0
    fresh = not (reuse and exists)
    if exists and fresh:
        log(f"removing the previous {NAME}")
        sh(["podman", "rm", "-f", NAME])
    if fresh:
        log(f"starting a fresh container {NAME}")
        sh(["podman", "run", "-d", "--name", NAME, "--hostname", NAME, "--privileged",
            "--systemd=always", IMAGE, "/sbin/init"])
    else:
        log(f"reusing container {NAME}")
        sh(["podman", "start", NAME])
    deadline = time.monotonic() + 60
    while True:
        state = cexec("systemctl is-system-running 2>/dev/null", check=False).stdout.strip()
        if state in ("running", "degraded"):
            break
        if time.monotonic() > deadline:
            die(f"systemd in {NAME} did not come up (state {state!r})")
        time.sleep(0.5)
    if not fresh:
        # A run stopped half-way leaves the fast echo server on the echo port.
        cexec(f"systemctl stop {FAST_ECHO_UNIT} 2>/dev/null", check=False)
    return fresh


def playbook(label, *extra):
    """Run site.yml; return (seconds, {ok, changed, failed})."""
    cmd = ["ansible-playbook", "-i", INVENTORY, "site.yml", *extra]
    log(f"{label}: {' '.join(cmd[1:])}")
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    save_log(f"ansible-{re.sub(r'[^a-z0-9]+', '-', label.lower())}.log", proc.stdout + proc.stderr)
    if proc.returncode != 0:
        die(f"ansible-playbook failed ({label}):\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    recap = re.search(rf"^{NAME}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                      proc.stdout, re.M)
    counts = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, recap.groups())))
    log(f"{label}: {seconds:.1f} s, ok={counts['ok']} changed={counts['changed']}")
    return seconds, counts


def container_ip():
    ip = sh(["podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", NAME]).stdout.strip()
    if not ip:
        die(f"{NAME} has no IP address on podman's network")
    return ip


def install_fast_echo():
    """Compile benchmarks/fast_echo.c in the container (once per source)."""
    with open(os.path.join(BENCH, "fast_echo.c"), "rb") as f:
        source = f.read()
    import hashlib
    digest = hashlib.sha256(source).hexdigest()
    stamp = FAST_ECHO + ".sha256"
    if cexec(f"cat {stamp} 2>/dev/null", check=False).stdout.strip() == digest:
        return 0.0
    log("compiling the fast echo server in the container (apt-get install gcc libc6-dev)")
    started = time.monotonic()
    cexec("command -v gcc >/dev/null || { apt-get update -qq && "
          "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null; }")
    sh(["podman", "cp", os.path.join(BENCH, "fast_echo.c"), f"{NAME}:/usr/local/src/fast_echo.c"])
    cexec(f"gcc -O2 -Wall -o {FAST_ECHO} /usr/local/src/fast_echo.c && echo {digest} > {stamp}")
    return time.monotonic() - started


def control(ip, command):
    """Send a command to fast_echo's control port; return its answer."""
    with socket.create_connection((ip, CONTROL_PORT), timeout=5) as sock:
        sock.sendall(command.encode() + b"\n")
        return sock.makefile().readline().strip()


def probes_seen(ip):
    return int(control(ip, "count").split()[0])


def swap_echo(ip, fast):
    """Run fast_echo on the echo port in place of checktcp-echo, or back."""
    if fast:
        cexec(f"systemctl stop checktcp-echo.service; systemctl stop {FAST_ECHO_UNIT} 2>/dev/null; "
              f"systemctl reset-failed {FAST_ECHO_UNIT} 2>/dev/null; "
              f"systemd-run --unit {FAST_ECHO_UNIT} --collect "
              f"{FAST_ECHO} 127.0.0.1 {ECHO_PORT} 0.0.0.0 {CONTROL_PORT}")
        deadline = time.monotonic() + 10
        while True:
            try:
                control(ip, "count")
                return
            except OSError:
                if time.monotonic() > deadline:
                    die("the fast echo server did not start: " +
                        cexec(f"journalctl -u {FAST_ECHO_UNIT} -n 20", check=False).stdout)
                time.sleep(0.1)
    else:
        cexec(f"systemctl stop {FAST_ECHO_UNIT} 2>/dev/null; systemctl start checktcp-echo.service")


def journal_cursor():
    return cexec("journalctl -u haproxy.service -n 0 --show-cursor | sed -n 's/^-- cursor: //p'",
                 check=False).stdout.strip()


def ko_reasons(cursor):
    """checktcp's KO log lines since cursor, by reason (at most one line per second and reason)."""
    out = cexec(f"journalctl -u haproxy.service -o cat --after-cursor '{cursor}'", check=False).stdout
    reasons = {}
    for line in out.splitlines():
        match = re.search(r"checktcp: .*? KO: (.*?)(?: \(\d+ ms\))?$", line)
        if match:
            reasons[match.group(1)] = reasons.get(match.group(1), 0) + 1
    return reasons


# --- measurements -----------------------------------------------------------

def parse_duration(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url, conns, seconds, tag):
    threads = min(2, conns)  # wrk wants at least one connection per thread
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s", url]
    proc = sh(cmd)
    save_log(f"wrk-{tag}-c{conns}.txt", " ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    out = proc.stdout
    res = {"rps": float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1)),
           "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "99"):
        match = re.search(rf"^\s*{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        res[f"p{pct}"] = parse_duration(*match.groups()) if match else None
    match = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    res["non2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["errors"] = sum(map(int, match.groups())) if match else 0
    return res


def status_of(ip, port=STATUS_PORT, timeout=5.0):
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()


def poll_until(ip, want, since, limit_s):
    """Poll the status page every 10 ms until it answers want.

    Returns (seconds from since to that answer, answers other than want before it),
    or (None, count) when it did not come within limit_s."""
    others = 0
    while True:
        sent = time.monotonic()
        got = status_of(ip)
        now = time.monotonic()
        if got == want:
            return now - since, others
        others += 1
        if now - since > limit_s:
            return None, others
        time.sleep(max(0.0, sent + 0.010 - time.monotonic()))


def wait_healthy(ip, limit_s=15):
    seconds, _oks = poll_until(ip, 200, time.monotonic(), limit_s)
    if seconds is None:
        die("the status page does not answer 200 OK with a healthy echo server")


def throughput(ip, mode, seconds, rows):
    for conns in CONNECTIONS:
        log(f"{mode} mode, {conns} connection(s): native, then status, {seconds} s each")
        native = wrk(f"http://{ip}:{NATIVE_PORT}/", conns, seconds, f"{mode}-native")
        before, cursor, started = probes_seen(ip), journal_cursor(), time.monotonic()
        status = wrk(f"http://{ip}:{STATUS_PORT}/", conns, seconds, f"{mode}-status")
        elapsed, probes = time.monotonic() - started, probes_seen(ip) - before
        status.update(probes_per_s=probes / elapsed, ratio=status["rps"] / native["rps"],
                      reasons=ko_reasons(cursor))
        rows.append(("native", mode, conns, native))
        rows.append((mode, mode, conns, status))
        print(f"   native {native['rps']:.0f} req/s; {mode} {status['rps']:.0f} req/s "
              f"({status['ratio']:.2f}x), non-2xx {status['non2xx']}, {status['probes_per_s']:.1f} probes/s",
              file=sys.stderr, flush=True)


def detection(ip, mode, trials):
    """Dead and hung echo server: time to the first 503, then to the first 200."""
    limit = 3 * (INTERVAL_MS + TIMEOUT_MS) / 1000
    results = {key: [] for key in ("dead", "dead_up", "hang", "hang_up")}
    oks_after = {"dead": [], "hang": []}
    for trial in range(trials):
        log(f"{mode} mode: failure detection, trial {trial + 1} of {trials}")
        for event in ("dead", "hang"):
            control(ip, "up")
            wait_healthy(ip)
            if mode == "cached":
                # Any point of the background probe's period, not always the same.
                time.sleep(random.uniform(0, INTERVAL_MS / 1000))
            else:
                time.sleep(0.05)
            control(ip, event)
            seconds, oks = poll_until(ip, 503, time.monotonic(), limit)
            results[event].append(seconds)
            oks_after[event].append(oks)
            control(ip, "up")
            seconds, _oks = poll_until(ip, 200, time.monotonic(), limit)
            results[event + "_up"].append(seconds)
            print(f"   {event}: 503 after {results[event][-1]}, {oks} answer(s) 200 before; "
                  f"200 again after {seconds}", file=sys.stderr, flush=True)
    return results, oks_after


# --- the report -------------------------------------------------------------

def fmt_ms(value):
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def fmt_s(values):
    if any(v is None for v in values):
        return f"not seen ({sum(v is None for v in values)} of {len(values)})"
    med = statistics.median(values)
    return f"{med:.3f} (max {max(values):.3f})" if len(values) > 1 else f"{med:.3f}"


def yes_no(ok):
    return "yes" if ok else "**no**"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(ctx):
    out = [
        "# checktcp status page: benchmark results",
        "",
        f"Written by `{' '.join(['benchmarks/run', *ctx['argv']])}` on {ctx['date']}; "
        f"the whole run took {ctx['total_s']:.0f} s. See benchmarks/README.md for how to read it.",
        "",
        f"- Machine: {ctx['cores']} cores ({ctx['cpu']}), {ctx['mem']}, Linux {platform.release()}, "
        f"load average {ctx['load_start']} at the start, {ctx['load_end']} at the end",
        f"- Other containers running (a concurrent CI run competes for the same cores): {ctx['others']}",
        f"- HAProxy in the container: {ctx['haproxy']}; load generator: {ctx['wrk']} on the host, "
        f"`-t2` (`-t1` for 1 connection), {ctx['seconds']} s per point, to the container's address",
        f"- Echo server: benchmarks/fast_echo.c (epoll, counts accepted connections) in place of checktcp-echo; "
        f"probe timeout {TIMEOUT_MS} ms, cached interval {INTERVAL_MS} ms (role defaults)",
        "",
        "## Throughput and latency, healthy echo server",
        "",
        "Native is measured right before each status point; ×native is the status figure over that one. "
        "Non-2xx are false 503 KO (the echo server was up all along).",
        "",
    ]
    rows, by_key = [], {}
    for endpoint, mode, conns, r in ctx["rows"]:
        by_key[(endpoint, mode, conns)] = r
    for mode in ("cached", "live"):
        for conns in CONNECTIONS:
            n = by_key[("native", mode, conns)]
            rows.append((f"native ({mode} phase)", conns, f"{n['rps']:.0f}", "1.00", fmt_ms(n["p50"]),
                         fmt_ms(n["p99"]), n["non2xx"], n["errors"], "—", ""))
        for conns in CONNECTIONS:
            s = by_key[(mode, mode, conns)]
            if mode == "cached":
                target = f"≥ 0.75× native: {yes_no(s['ratio'] >= 0.75)}"
            elif conns == 500:
                target = f"0 false 503 at 500: {yes_no(s['non2xx'] == 0 and s['errors'] == 0)}"
            else:
                target = ""
            rows.append((f"**{mode}**", conns, f"{s['rps']:.0f}", f"{s['ratio']:.2f}", fmt_ms(s["p50"]),
                         fmt_ms(s["p99"]), s["non2xx"], s["errors"], f"{s['probes_per_s']:.1f}", target))
    if ctx.get("python_live"):
        s = ctx["python_live"]
        rows.append(("live, Python checktcp-echo", 500, f"{s['rps']:.0f}", "—", fmt_ms(s["p50"]),
                     fmt_ms(s["p99"]), s["non2xx"], s["errors"], "—", "(for comparison)"))
    out.append(table(("endpoint", "conns", "req/s", "×native", "p50 ms", "p99 ms", "non-2xx",
                      "socket errors", "probes/s at echo", "target"), rows))

    reasons = []
    for endpoint, mode, conns, r in ctx["rows"]:
        for reason, lines in sorted(r.get("reasons", {}).items()):
            reasons.append((mode, conns, reason, lines))
    if ctx.get("python_live"):
        for reason, lines in sorted(ctx["python_live"].get("reasons", {}).items()):
            reasons.append(("live, Python echo", 500, reason, lines))
    out += ["", "KO reasons HAProxy logged during the status points (checktcp logs at most one line "
            "per second and reason):", ""]
    out.append(table(("mode", "conns", "reason", "log lines"), reasons) if reasons else "none.")

    out += ["", "## Failure detection and recovery",
            "",
            f"The echo server is made dead (listener and connections closed: refused), or hung (accepts, "
            f"never answers), then up again, through its control port; the status page is polled every "
            f"10 ms from the host. Seconds from the change to the first 503 (or 200), median of "
            f"{ctx['trials']} trials (max).", ""]
    rows = []
    limit_hang_live = (TIMEOUT_MS + 100) / 1000
    limit_cached = (INTERVAL_MS + TIMEOUT_MS) / 1000
    for mode in ("live", "cached"):
        res, oks = ctx["detect"][mode]
        for event, what in (("dead", "dead echo server"), ("hang", "hung echo server")):
            values = res[event]
            seen = all(v is not None for v in values)
            if mode == "live" and event == "dead":
                target = "next request"
                met = seen and max(oks[event]) == 0
            elif mode == "live":
                target = f"≤ {limit_hang_live:.1f} s"
                met = seen and max(values) <= limit_hang_live
            else:
                target = f"≤ {limit_cached:.1f} s"
                met = seen and max(values) <= limit_cached
            rows.append((mode, f"{what}: first 503", fmt_s(values), max(oks[event]),
                         f"{target}: {yes_no(met)}"))
            rows.append((mode, f"{what} back: first 200", fmt_s(res[event + "_up"]), "", "—"))
    out.append(table(("mode", "event", "seconds", "200s after the change", "target"), rows))

    out += ["", "## Deployment", "",
            "`ansible-playbook -i benchmarks/inventory.yml site.yml` into the container, timed.", ""]
    rows = [(label, f"{sec:.1f}", c["ok"], c["changed"], c["failed"]) for label, sec, c in ctx["deploy"]]
    out.append(table(("run", "seconds", "ok", "changed", "failed"), rows))
    if ctx["compile_s"]:
        out += ["", f"Installing gcc and compiling the fast echo server took {ctx['compile_s']:.1f} s "
                "(not part of the deployment)."]
    return "\n".join(out) + "\n"


def machine_facts():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        match = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        if match:
            cpu = re.sub(r"\s+", " ", match.group(1))
    with open("/proc/meminfo") as f:
        mem_kb = int(re.search(r"MemTotal:\s*(\d+)", f.read()).group(1))
    return cpu, f"{mem_kb / 1024 / 1024:.1f} GiB RAM"


def other_containers():
    """Running containers besides ours (a CI run shares the machine)."""
    names = sh(["podman", "ps", "--format", "{{.Names}}"]).stdout.split()
    return len([n for n in names if n != NAME])


def load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--reuse", action="store_true",
                        help=f"reuse a running {NAME} (re-apply instead of a fresh converge)")
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration of each point (default 8)")
    parser.add_argument("--trials", type=int, default=3, help="trials of each failure (default 3)")
    parser.add_argument("--down", action="store_true", help=f"remove {NAME} and exit")
    args = parser.parse_args()
    started = time.monotonic()
    cpu, mem = machine_facts()
    ctx = {"argv": sys.argv[1:], "seconds": args.seconds, "trials": args.trials, "rows": [],
           "deploy": [], "detect": {}, "cores": os.cpu_count(), "cpu": cpu, "mem": mem,
           "load_start": load_average(),
           "wrk": sh(["wrk", "--version"], check=False).stdout.split(" [")[0].strip() or "wrk"}

    ctx["others"] = other_containers()
    fresh = start_container(args.reuse)
    seconds, counts = playbook("converge" if fresh else "re-apply")
    ctx["deploy"].append(("converge, fresh container" if fresh else "re-apply, reused container",
                          seconds, counts))
    seconds, counts = playbook("idempotent re-run")
    ctx["deploy"].append(("idempotent re-run", seconds, counts))
    ip = container_ip()
    ctx["haproxy"] = cexec("haproxy -v | head -n 1").stdout.split(" - ")[0].strip()
    ctx["compile_s"] = install_fast_echo()
    swap_echo(ip, fast=True)

    # The echo role must not start checktcp-echo again while fast_echo holds its port.
    # (JSON: a key=value -e is a string, which the role's `when:` rejects.)
    for mode in ("cached", "live"):
        seconds, counts = playbook(f"switch to {mode} mode", "-e", json.dumps(
            {"echo_server_manage_service": False, "haproxy_checktcp_mode": mode}))
        ctx["deploy"].append((f"switch to {mode} mode (`-e haproxy_checktcp_mode={mode}`)", seconds, counts))
        control(ip, "up")
        wait_healthy(ip)
        # Let a reload's old worker finish, and warm up.
        wrk(f"http://{ip}:{STATUS_PORT}/", 50, 1, f"{mode}-warmup")
        throughput(ip, mode, args.seconds, ctx["rows"])
        ctx["detect"][mode] = detection(ip, mode, args.trials)

    # Back to the deployed state (live mode, checktcp-echo); one more point
    # with the real echo server for comparison.
    control(ip, "up")
    swap_echo(ip, fast=False)
    wait_healthy(ip)
    log(f"live mode with the Python checktcp-echo, 500 connections, {args.seconds} s")
    cursor = journal_cursor()
    ctx["python_live"] = wrk(f"http://{ip}:{STATUS_PORT}/", 500, args.seconds, "live-python-echo")
    ctx["python_live"]["reasons"] = ko_reasons(cursor)

    ctx["others"] = f"{ctx['others']} at the start, {other_containers()} at the end"
    ctx["load_end"] = load_average()
    ctx["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ctx["total_s"] = time.monotonic() - started
    text = report(ctx)
    with open(os.path.join(BENCH, "results.md"), "w") as f:
        f.write(text)
    print("\n" + text)
    log(f"wrote benchmarks/results.md in {ctx['total_s']:.0f} s; logs in {LOGS}; "
        f"{NAME} left running (benchmarks/run --reuse, or --down to remove it)")


if __name__ == "__main__":
    main()
