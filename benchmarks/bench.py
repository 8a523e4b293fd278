# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the checktcp status page on HAProxy 2.6 and 3.2; run it through benchmarks/run.

Deploys site.yml with benchmarks/inventory.yml into one podman container per
HAProxy version (Debian 12: 2.6, Debian forky: 3.2), runs benchmarks/fast_echo.c
as the echo server (and a second one that accepts and never answers), and
measures from the host with wrk: live and cached checks next to a native
HAProxy answer, a silent target under 500 clients (latency and HAProxy's CPU),
200 targets, the HAProxy worker's memory over a million live requests, and the
peers (HAProxy's own tcp-check answered with nbsrv, Prometheus'
blackbox_exporter) probing the same kind of echo server, with the probes per
second each sends it.
Prints the tables and writes them, as Markdown, to benchmarks/results.md.
Only HTTP answers and /proc figures are used: nothing of the Lua's internals.
"""

import argparse
import datetime
import http.client
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
INVENTORY = os.path.join(BENCH, "inventory.yml")
ID = os.environ["CHECKTCP_ID"]  # set by scripts/lib.sh, which benchmarks/run sources
# host in inventory.yml -> (HAProxy version, image variable of scripts/lib.sh, podman command)
FORKY_INIT = "umount -R /sys/fs/cgroup; mount -t cgroup2 none /sys/fs/cgroup && exec /sbin/init"
VERSIONS = {
    "2.6": ("bench-debian12", "CHECKTCP_IMAGE_12", ["/sbin/init"]),
    "3.2": ("bench-forky", "CHECKTCP_IMAGE_FORKY", ["bash", "-c", FORKY_INIT]),
}
PARTS = ("throughput", "silent", "many", "peers", "memory")
STATUS_PORT = 80         # haproxy_status_bind, the role's default
NATIVE_PORT = 8090       # the native frontend of benchmarks/inventory.yml
STATIC_PORT = 8091       # its static frontend: copies of the cached pages, as files
STATIC_DIR = "/srv/bench-pages"  # where those copies are (inventory.yml)
ONE_SEGMENT = "cached-one-segment"  # the copy of the page's first bytes, an answer in one TCP segment
PEER_NATIVE_PORT = 8092  # its frontend answering from a hand-written tcp-check backend (nbsrv)
ECHO_PORT = 8080         # the targets of the live, cached and many checks
SILENT_PORT = 8082       # the target of the silent check
PEER_PORT = 8083         # the target of the peers part: peer-live, peer-cached, peer_native, blackbox
CONTROL_PORT = 9081      # fast_echo's control ports
SILENT_CONTROL_PORT = 9082
PEER_CONTROL_PORT = 9083
BLACKBOX_PORT = 9116     # blackbox_exporter (not Debian's unit, on 9115)
BLACKBOX_CONFIG = "/etc/checktcp-bench-blackbox.yml"
# The echo conversation as blackbox_exporter's tcp prober speaks it: the
# header line, "check", the same line back. Its timeout is the role's.
BLACKBOX_MODULES = """modules:
  checktcp_echo:
    prober: tcp
    timeout: {timeout_s}s
    tcp:
      query_response:
        - expect: "^"
        - send: "check"
        - expect: "^check$"
"""
FAST_ECHO = "/usr/local/bin/checktcp-fast-echo"
LOGS = os.path.join(os.environ["XDG_CACHE_HOME"], "bench-logs")  # the clone's .cache (scripts/lib.sh)


def role_default(name):
    with open(os.path.join(ROOT, "roles/haproxy/defaults/main.yml")) as f:
        match = re.search(rf"^{name}:\s*(\S+)", f.read(), re.M)
    return match.group(1)


TIMEOUT_MS = int(role_default("haproxy_checktcp_timeout_ms"))
INTERVAL_MS = int(role_default("haproxy_checktcp_interval_ms"))

# The goals of issue 17, printed next to the figures, never asserted. Live
# mode "no slower than before the rebuild": its ratios in the run of
# 2026-11-25 (results.md of commit b4b81bf).
GOAL_LIVE_50 = {"2.6": 0.15, "3.2": 0.24}
GOAL_LIVE_P50_MS = 0.5
GOAL_CACHED_TEXT = 0.95
GOAL_CACHED_HTML = 0.8
GOAL_SILENT_P99_MS = TIMEOUT_MS + 200
GOAL_MANY_TEXT = 0.9


def log(msg):
    print(f"\n==> {msg}", file=sys.stderr, flush=True)


def note(msg):
    print(f"   {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def sh(cmd, check=True, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if check and proc.returncode != 0:
        die(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def save_log(name, text):
    os.makedirs(LOGS, exist_ok=True)
    with open(os.path.join(LOGS, name), "w") as f:
        f.write(text)


def container(host):
    return f"{ID}-{host}"


def cexec(host, script, check=True):
    """Run a shell script in the container of an inventory host."""
    return sh(["podman", "exec", container(host), "sh", "-c", script], check=check)


def load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# --- containers and the deployment ------------------------------------------

def start_container(version, reuse):
    host, image_var, init = VERSIONS[version]
    name = container(host)
    exists = sh(["podman", "container", "exists", name], check=False).returncode == 0
    if exists and reuse:
        log(f"reusing container {name}")
        sh(["podman", "start", name])
    else:
        if exists:
            sh(["podman", "rm", "-f", name])
        image = os.environ.get(image_var) or die(f"{image_var} is not set: run benchmarks/run")
        log(f"starting {name} ({image})")
        sh(["podman", "run", "-d", "--name", name, "--hostname", host, "--privileged",
            "--systemd=always", image, *init])
    deadline = time.monotonic() + 120
    while True:
        state = cexec(host, "systemctl is-system-running 2>/dev/null", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return not (exists and reuse)
        if time.monotonic() > deadline:
            die(f"systemd in {name} did not come up (state {state!r})")
        time.sleep(0.5)


def playbook(label, hosts):
    """Run site.yml on the hosts; return (seconds, {host: changed})."""
    cmd = ["ansible-playbook", "-i", INVENTORY, "site.yml", "--limit", ",".join(hosts)]
    log(f"{label}: {' '.join(cmd[1:])}")
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    save_log(f"ansible-{re.sub(r'[^a-z0-9]+', '-', label.lower())}.log", proc.stdout + proc.stderr)
    if proc.returncode != 0:
        die(f"ansible-playbook failed ({label}):\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    changed = {h: int(m) for h, m in re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout, re.M)}
    log(f"{label}: {seconds:.1f} s, changed {changed}")
    return seconds, changed


def container_ip(host):
    ip = sh(["podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", container(host)]).stdout.strip()
    return ip or die(f"{container(host)} has no IP address on podman's network")


def fast_echo_binary():
    """Compile benchmarks/fast_echo.c on the host, static, so any container runs it."""
    out = os.path.join(LOGS, "fast_echo")
    os.makedirs(LOGS, exist_ok=True)
    sh(["gcc", "-O2", "-Wall", "-static", "-o", out, os.path.join(BENCH, "fast_echo.c")])
    return out


def control(ip, port, command):
    """Send a command to a fast_echo control port; return its answer."""
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.sendall(command.encode() + b"\n")
        return sock.makefile().readline().strip()


def start_echo_servers(host, ip, binary):
    """fast_echo on the echo port, and a second one on the silent port, hung."""
    sh(["podman", "cp", binary, f"{container(host)}:{FAST_ECHO}"])
    for unit, port, ctl in (("checktcp-bench-echo", ECHO_PORT, CONTROL_PORT),
                            ("checktcp-bench-echo-silent", SILENT_PORT, SILENT_CONTROL_PORT)):
        cexec(host, f"systemctl stop {unit} 2>/dev/null; systemctl reset-failed {unit} 2>/dev/null; "
              f"systemd-run --unit {unit} --collect {FAST_ECHO} 127.0.0.1 {port} 0.0.0.0 {ctl}")
        deadline = time.monotonic() + 10
        while True:
            try:
                control(ip, ctl, "up")
                break
            except OSError:
                if time.monotonic() > deadline:
                    die(f"fast_echo did not start in {container(host)}")
                time.sleep(0.1)
    control(ip, SILENT_CONTROL_PORT, "hang")


def start_peer_servers(host, ip):
    """The peers part's fast_echo (its own, so its connection count is theirs
    alone; start_echo_servers copied it) and blackbox_exporter, installed from
    Debian when missing."""
    cexec(host, f"systemctl stop checktcp-bench-echo-peer 2>/dev/null; "
          f"systemctl reset-failed checktcp-bench-echo-peer 2>/dev/null; "
          f"systemd-run --unit checktcp-bench-echo-peer --collect {FAST_ECHO} 127.0.0.1 {PEER_PORT} "
          f"0.0.0.0 {PEER_CONTROL_PORT}")
    cexec(host, "command -v prometheus-blackbox-exporter >/dev/null || "
          "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
          "prometheus-blackbox-exporter >/dev/null)")
    subprocess.run(["podman", "exec", "-i", container(host), "sh", "-c", f"cat > {BLACKBOX_CONFIG}"],
                   input=BLACKBOX_MODULES.format(timeout_s=TIMEOUT_MS / 1000).encode(), check=True)
    cexec(host, "systemctl stop checktcp-bench-blackbox 2>/dev/null; "
          "systemctl reset-failed checktcp-bench-blackbox 2>/dev/null; "
          "systemd-run --unit checktcp-bench-blackbox --collect prometheus-blackbox-exporter "
          f"--config.file={BLACKBOX_CONFIG} --web.listen-address=0.0.0.0:{BLACKBOX_PORT}")
    deadline = time.monotonic() + 15
    while True:
        try:
            control(ip, PEER_CONTROL_PORT, "up")
            body = page_bytes(ip, BLACKBOX_PORT, blackbox_path()) or b""
        except OSError:
            body = b""
        if re.search(rb"^probe_success 1$", body, re.M):
            version = cexec(host, "prometheus-blackbox-exporter --version 2>&1 | head -n 1").stdout
            return re.search(r"version (\S+)", version).group(1)
        if time.monotonic() > deadline:
            die(f"blackbox_exporter in {container(host)} does not probe the peer echo server: {body[-500:]!r}")
        time.sleep(0.2)


def blackbox_path():
    return f"/probe?module=checktcp_echo&target=127.0.0.1:{PEER_PORT}"


def peer_probes(ip):
    """Connections the peers' echo server has accepted so far."""
    return int(control(ip, PEER_CONTROL_PORT, "count").split()[0])


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


def status_of(ip, path, port=STATUS_PORT):
    conn = http.client.HTTPConnection(ip, port, timeout=5)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()


def page_bytes(ip, port, path):
    """The body of a 200 answer to GET path, or None."""
    conn = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return body if resp.status == 200 and body else None
    except OSError:
        return None
    finally:
        conn.close()


def answer_bytes(ip, port, path):
    """The whole answer to GET path, status line and headers included, as sent."""
    with socket.create_connection((ip, port), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    # Connection: close adds a header the benchmark's keep-alive answers do not have.
    return re.sub(rb"(?i)\r\nconnection: close(?=\r\n)", b"", b"".join(chunks))


def segment_bytes(host):
    """TCP payload of one full segment on the container's link: its MTU less the
    IPv4 and TCP headers with timestamps (20 + 20 + 12 bytes)."""
    return int(cexec(host, "cat /sys/class/net/eth0/mtu").stdout) - 52


def static_pages(host, ip):
    """Copy the /cached page into the file the static frontend answers
    with (`http-request return ... file`, read when HAProxy loads its config),
    and, when its answer outgrows one TCP segment, its first bytes, as many as
    fit in one with the answer's headers, into another; reload HAProxy: the same
    bodies answered without Lua, a map or log-format. Returns the sizes of the
    answers (one_segment None when the page's fits) and of a segment."""
    # One answer gives both the page and its headers' size: two could differ (the page is dated).
    head, _blank, body = answer_bytes(ip, STATUS_PORT, "/cached").partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 ") or not body:
        die("/cached gave no 200 page to copy")
    segment = segment_bytes(host)
    copies = {"cached": body}
    if len(head) + 4 + len(body) > segment:
        copies[ONE_SEGMENT] = body[:segment - len(head) - 4]
    for name, copy in copies.items():
        subprocess.run(["podman", "exec", "-i", container(host), "sh", "-c", f"cat > {STATIC_DIR}/{name}.html"],
                       input=copy, check=True)
    cexec(host, "systemctl reload haproxy")
    # Each copy is dated, so answering it byte for byte shows the reload took it.
    deadline = time.monotonic() + 15
    while any(page_bytes(ip, STATIC_PORT, "/" + n) != copy for n, copy in copies.items()):
        if time.monotonic() > deadline:
            die(f"the static frontend of {container(host)} does not answer with the copied pages")
        time.sleep(0.2)
    sizes = {"page": len(answer_bytes(ip, STATIC_PORT, "/cached")), "one_segment": None, "segment": segment}
    if ONE_SEGMENT in copies:
        sizes["one_segment"] = len(answer_bytes(ip, STATIC_PORT, "/" + ONE_SEGMENT))
        if sizes["one_segment"] > segment:
            die(f"the one-segment answer is {sizes['one_segment']} bytes, over a segment's {segment}")
    note(f"answers: the cached page {sizes['page']} bytes, "
         + (f"its one-segment copy {sizes['one_segment']}" if sizes["one_segment"] is not None else "within one segment")
         + f", a segment {segment}")
    return sizes


def wait_for(ip, path, want, limit_s=15, port=STATUS_PORT):
    deadline = time.monotonic() + limit_s
    while status_of(ip, path, port) != want:
        if time.monotonic() > deadline:
            die(f"{path} does not answer {want} (echo servers as set up)")
        time.sleep(0.1)


def worker(host):
    """pid of the newest HAProxy process: the current worker (master-worker mode)."""
    master = cexec(host, "systemctl show -p MainPID --value haproxy").stdout.strip()
    pid = cexec(host, f"pgrep -n -P {master} -x haproxy", check=False).stdout.strip()
    return pid or die(f"no HAProxy worker in {container(host)}")


def cpu_seconds(host, pid):
    fields = cexec(host, f"cat /proc/{pid}/stat").stdout.rsplit(")", 1)[1].split()
    ticks = int(cexec(host, "getconf CLK_TCK").stdout)
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def rss_mib(host, pid):
    status = cexec(host, f"cat /proc/{pid}/status").stdout
    return int(re.search(r"VmRSS:\s*(\d+)", status).group(1)) / 1024


def point(results, key, url, conns, seconds, tag, native=None, probes=None):
    """One wrk point; probes: a function giving the peers' echo server's
    connection count, to record the probes per second the point caused."""
    before, started = (probes(), time.monotonic()) if probes else (None, None)
    res = wrk(url, conns, seconds, tag)
    if probes:
        res["probes_per_s"] = (probes() - before) / (time.monotonic() - started)
    if native:
        res["ratio"] = res["rps"] / native["rps"] if native["rps"] else 0.0
    results[key] = res
    extra = f" ({res['ratio']:.2f}x native)" if native else ""
    if probes:
        extra += f", {res['probes_per_s']:.1f} probes/s"
    note(f"{tag} c{conns}: {res['rps']:.0f} req/s{extra}, p50 {fmt_ms(res['p50'])} ms, "
         f"p99 {fmt_ms(res['p99'])} ms, non-2xx {res['non2xx']}, errors {res['errors']}")
    return res


def group(results, version, native_key, native_url, points, args, probes=None):
    """args.rounds rounds of a native point, then each of points [(key, url)]
    with its ratio over that round's native point (all at native_key's
    connection count). results keeps, per key, the round of the median ratio
    (native: of the median req/s) and every round's ratio in "ratios": one
    round's ratio moves with the machine's load by more than a goal's margin."""
    conns, rounds = native_key[1], []
    for _round in range(args.rounds):
        r = {}
        native = point(r, native_key, native_url, conns, args.seconds, f"{version}-native")
        for key, url in points:
            point(r, key, url, conns, args.seconds, f"{version}-{key[0]}", native, probes)
        rounds.append(r)
    for key in rounds[0]:
        runs = sorted((r[key] for r in rounds), key=lambda p: p.get("ratio", p["rps"]))
        results[key] = dict(runs[len(runs) // 2])
        if "ratio" in runs[0]:
            results[key]["ratios"] = [p["ratio"] for p in runs]


def measure(version, ip, host, args):
    base = f"http://{ip}:{STATUS_PORT}"
    native_url = f"http://{ip}:{NATIVE_PORT}/"
    static = f"http://{ip}:{STATIC_PORT}"
    res = {"load_start": load_average()}
    for path in ("/cached", "/many"):
        wait_for(ip, path, 200)
    res["sizes"] = static_pages(host, ip)
    for path in ("/live", "/cached", "/many"):
        wait_for(ip, path, 200)
    # Warm-up: a reload's old worker finishes, every path runs once.
    for path in ("/live", "/cached"):
        wrk(base + path, 50, 1, f"{version}-warmup")
    sec = args.seconds
    if "throughput" in args.parts:
        # Each round of status points follows a native one at the same connection count.
        # The page's first bytes in one segment only when the page's answer takes two:
        # what its second segment costs.
        split = res["sizes"]["one_segment"] is not None
        for conns in (1, 50, 500):
            log(f"HAProxy {version}: {conns} connection(s), {args.rounds} round(s): native, cached (text, HTML), "
                f"static ({'whole, one segment' if split else 'whole'}){', live' if conns < 500 else ''}")
            points = [(("cached-text", conns), base + "/cached?format=text"), (("cached", conns), base + "/cached"),
                      (("static", conns), static + "/cached")]
            if split:
                points.append((("static-segment", conns), static + "/" + ONE_SEGMENT))
            if conns < 500:
                points.append((("live", conns), base + "/live"))
            group(res, version, ("native", conns), native_url, points, args)
    if "many" in args.parts:
        log(f"HAProxy {version}: 200 targets, cached, 50 connections, {args.rounds} round(s)")
        group(res, version, ("native-many", 50), native_url,
              [(("many-text", 50), base + "/many?format=text"), (("many", 50), base + "/many")], args)
        res["many_page"] = len(page_bytes(ip, STATUS_PORT, "/many") or die("/many gave no 200 page"))
        note(f"/many: {res['many_page']} bytes")
    if "peers" in args.parts:
        res["blackbox"] = start_peer_servers(host, ip)
        for path in ("/peer-live", "/peer-cached"):
            wait_for(ip, path, 200)
        wait_for(ip, "/", 200, port=PEER_NATIVE_PORT)
        peers = (("peer-cached", base + "/peer-cached?format=text"), ("peer-live", base + "/peer-live?format=text"),
                 ("peer-native", f"http://{ip}:{PEER_NATIVE_PORT}/"),
                 ("peer-blackbox", f"http://{ip}:{BLACKBOX_PORT}{blackbox_path()}"))
        for conns in (1, 50):
            log(f"HAProxy {version}: peers, {conns} connection(s), {args.rounds} round(s): native, then each "
                "answer to the same question")
            group(res, version, ("native-peers", conns), native_url, [((key, conns), url) for key, url in peers],
                  args, lambda: peer_probes(ip))
    if "silent" in args.parts:
        log(f"HAProxy {version}: silent target, live, 500 connections")
        pid = worker(host)
        cpu, started = cpu_seconds(host, pid), time.monotonic()
        r = point(res, ("silent", 500), base + "/silent", 500, max(sec, 6), f"{version}-silent")
        r["cpu"] = 100 * (cpu_seconds(host, pid) - cpu) / (time.monotonic() - started)
        note(f"HAProxy worker CPU {r['cpu']:.0f}% of one core")
    if "memory" in args.parts:
        log(f"HAProxy {version}: live mode memory, up to {args.memory_requests} requests "
            f"or {args.memory_seconds} s, 50 keep-alive connections")
        pid = worker(host)
        samples = [(0, rss_mib(host, pid))]
        total, started = 0, time.monotonic()
        while total < args.memory_requests and time.monotonic() - started < args.memory_seconds:
            r = wrk(base + "/live", 50, 10, f"{version}-memory")
            total += r["requests"]
            samples.append((total, rss_mib(host, pid)))
            note(f"{total} requests: worker RSS {samples[-1][1]:.1f} MiB, non-2xx {r['non2xx']}")
        if worker(host) != pid:
            note("the HAProxy worker changed during the memory run: figures not comparable")
        res["memory"] = samples
    res["load_end"] = load_average()
    return res


# --- the report -------------------------------------------------------------

def fmt_ms(value):
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def cut(ratio):
    """Two decimals, cut (not rounded), so a ratio never reads as a goal it missed."""
    return f"{math.floor(ratio * 100 + 1e-9) / 100:.2f}"


def fmt_ratio(p):
    """A point's ×native: the median round's, then the range of the rounds."""
    if "ratio" not in p:
        return "—"
    ratios = p.get("ratios", [])
    spread = f" ({cut(ratios[0])}–{cut(ratios[-1])})" if len(ratios) > 1 else ""
    return cut(p["ratio"]) + spread


def verdict(ok):
    return "yes" if ok else "**no**"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def goal_rows(version, r):
    """(figure, measured, goal, met) for one version; figures not measured are left out."""
    rows = []
    if ("live", 50) in r:
        goal = GOAL_LIVE_50[version]
        rows.append(("live ×native, 50 conns (goal: as before the rebuild)", fmt_ratio(r[("live", 50)]),
                     f"≥ {goal}", r[("live", 50)]["ratio"] >= goal))
    if ("live", 1) in r:
        p50 = r[("live", 1)]["p50"]
        rows.append(("live p50 ms, 1 conn", fmt_ms(p50), f"≤ {GOAL_LIVE_P50_MS}", p50 <= GOAL_LIVE_P50_MS))
    for conns in (1, 50, 500):
        if ("cached-text", conns) in r:
            p = r[("cached-text", conns)]
            rows.append((f"cached text (`?format=text`) ×native, {conns} conns", fmt_ratio(p),
                         f"≥ {GOAL_CACHED_TEXT}", p["ratio"] >= GOAL_CACHED_TEXT))
        if ("cached", conns) in r:
            p = r[("cached", conns)]
            rows.append((f"cached HTML page ×native, {conns} conns", fmt_ratio(p), f"≥ {GOAL_CACHED_HTML}",
                         p["ratio"] >= GOAL_CACHED_HTML))
        sizes = r["sizes"]
        if ("static", conns) in r:
            rows.append((f"ceiling: the cached page as a static file (an answer of {sizes['page']} bytes; a segment "
                         f"{sizes['segment']}) ×native, {conns} conns", fmt_ratio(r[("static", conns)]), "—", None))
        if ("static-segment", conns) in r:
            rows.append((f"its first bytes as a static file, the answer in one TCP segment ({sizes['one_segment']} "
                         f"of {sizes['page']} bytes; a segment {sizes['segment']}) ×native, {conns} conns",
                         fmt_ratio(r[("static-segment", conns)]), "—", None))
    if ("silent", 500) in r:
        s = r[("silent", 500)]
        rows.append(("silent target p99 ms, 500 conns", fmt_ms(s["p99"]), f"≤ {GOAL_SILENT_P99_MS}",
                     s["p99"] is not None and s["p99"] <= GOAL_SILENT_P99_MS))
        rows.append(("silent target, HAProxy worker CPU", f"{s['cpu']:.0f}% of a core", "—", None))
    if ("many-text", 50) in r:
        p = r[("many-text", 50)]
        rows.append(("200 targets cached text ×native, 50 conns", fmt_ratio(p), f"≥ {GOAL_MANY_TEXT}",
                     p["ratio"] >= GOAL_MANY_TEXT))
    if ("many", 50) in r:
        rows.append((f"200 targets cached HTML page ×native, 50 conns (page {r['many_page'] // 1024} KiB, "
                     "rendered by the Lua service)",
                     fmt_ratio(r[("many", 50)]), "—", None))
    if "memory" in r:
        m = r["memory"]
        mid = m[len(m) // 2]
        rows.append(("live worker RSS MiB: start → middle → end",
                     f"{m[0][1]:.1f} → {mid[1]:.1f} → {m[-1][1]:.1f} over {m[-1][0]:,} requests", "flat",
                     m[-1][1] - mid[1] <= 0.05 * mid[1] + 1))
    return rows


PEER_LABELS = {
    "peer-cached": "checktcp cached, text",
    "peer-live": "checktcp live, text",
    "peer-native": "HAProxy tcp-check by hand, `nbsrv`",
    "peer-blackbox": "blackbox_exporter `/probe`",
}


def report(ctx):
    versions = list(ctx["results"])
    out = [
        "# checktcp status page: benchmark results",
        "",
        f"Written by `{' '.join(['benchmarks/run', *ctx['argv']])}` on {ctx['date']}; "
        f"the whole run took {ctx['total_s']:.0f} s. See benchmarks/README.md for how to read it. "
        "These figures are measured, never asserted by a test.",
        "",
        f"- Machine: {ctx['cores']} cores ({ctx['cpu']}), {ctx['mem']}, Linux {platform.release()}, "
        f"shared with other work: load average {ctx['load_start']} at the start, {ctx['load_end']} at the end "
        f"(1, 5, 15 min)",
        f"- Other containers running: {ctx['others']}",
        f"- Load generator: {ctx['wrk']} on the host, `-t2` (`-t1` for 1 connection), "
        f"{ctx['seconds']} s per point, to each container's address",
        f"- Echo server: benchmarks/fast_echo.c (epoll, C) on 127.0.0.1:{ECHO_PORT} in each container; "
        f"silent target: a second one on :{SILENT_PORT} that accepts and never answers; "
        f"probe timeout {TIMEOUT_MS} ms, cached interval {INTERVAL_MS} ms (role defaults)",
        "",
    ]
    for version in versions:
        out.append(f"- HAProxy {version}: {ctx['haproxy'][version]}; load average "
                   f"{ctx['results'][version]['load_start']} before its measurements, "
                   f"{ctx['results'][version]['load_end']} after")
    out += ["", "## Goals (issue 17)", ""]
    rows = []
    for version in versions:
        for figure, measured, goal, met in goal_rows(version, ctx["results"][version]):
            rows.append((version, figure, measured, goal, "—" if met is None else verdict(met)))
    out.append(table(("HAProxy", "figure", "measured", "goal", "met"), rows))
    out += ["", "## Every point", "",
            "Each group of points opens with a native one (`http-request return`, no Lua) at the same "
            "connection count; ×native is a point's req/s over that one. Each group runs "
            f"{ctx['rounds']} round(s): a row is the round of the median ×native (native: of the median req/s), "
            "and the range of every round's ×native follows it. The silent check answers 503 by "
            "design; elsewhere non-2xx are false 503s.", ""]
    labels = {"native": "native", "cached-text": "cached, text", "cached": "cached, HTML",
              "static": "cached page as a static file", "static-segment": "its first bytes in one segment, static",
              "live": "live (HTML)",
              "native-many": "native", "many-text": "200 targets, cached, text", "many": "200 targets, cached, HTML",
              "silent": "silent target, live"}
    rows = []
    for version in versions:
        r = ctx["results"][version]
        for key, p in r.items():
            if not isinstance(key, tuple) or key[0] in PEER_LABELS or key[0] == "native-peers":
                continue
            rows.append((version, labels[key[0]], key[1], f"{p['rps']:.0f}",
                         fmt_ratio(p), fmt_ms(p["p50"]), fmt_ms(p["p99"]),
                         p["non2xx"], p["errors"]))
    out.append(table(("HAProxy", "endpoint", "conns", "req/s", "×native", "p50 ms", "p99 ms", "non-2xx",
                      "socket errors"), rows))
    peers = [v for v in versions if "blackbox" in ctx["results"][v]]
    if peers:
        out += ["", "## Peers", "",
                "The same question (does the echo server answer the echo conversation?) asked of each, about "
                f"its own fast_echo on 127.0.0.1:{PEER_PORT}, probed by nothing else; the group opens with a "
                "native point as above. **probes/s** is the connections that echo server accepted per second "
                "during the point: the request-driven probes plus the background health checks of "
                "`peer-cached` and the native backend (every 2 s each, whatever the point). blackbox_exporter "
                "answers 200 whatever the verdict (`probe_success` in its body).", ""]
        rows = []
        for version in peers:
            r = ctx["results"][version]
            for key, p in r.items():
                if isinstance(key, tuple) and (key[0] in PEER_LABELS or key[0] == "native-peers"):
                    label = PEER_LABELS.get(key[0], "native `http-request return`")
                    if key[0] == "peer-blackbox":
                        label += f" {r['blackbox']}"
                    rows.append((version, label, key[1], f"{p['rps']:.0f}",
                                 fmt_ratio(p), fmt_ms(p["p50"]), fmt_ms(p["p99"]),
                                 p["non2xx"], f"{p['probes_per_s']:.1f}" if "probes_per_s" in p else "—"))
        out.append(table(("HAProxy", "answer", "conns", "req/s", "×native", "p50 ms", "p99 ms", "non-2xx",
                          "probes/s"), rows))
    mem = [(v, ctx["results"][v]["memory"]) for v in versions if "memory" in ctx["results"][v]]
    if mem:
        out += ["", "## Live mode memory", "",
                "RSS of the HAProxy worker (`/proc/PID/status`) after each 10 s of `wrk -c50` "
                "(keep-alive) on the live check.", ""]
        rows = []
        for version, samples in mem:
            rows.append((version, ", ".join(f"{n // 1000}k: {rss:.1f}" for n, rss in samples)))
        out.append(table(("HAProxy", "requests: RSS MiB"), rows))
    if ctx["deploy"]:
        rows = [(label, f"{sec:.0f}", changed) for label, sec, changed in ctx["deploy"]]
        out += ["", "## Deployment", "", table(("run", "seconds", "changed per host"), rows)]
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
    names = sh(["podman", "ps", "--format", "{{.Names}}"]).stdout.split()
    return len([n for n in names if not n.startswith(f"{ID}-bench-")])


def main():
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--version", action="append", choices=sorted(VERSIONS),
                        help="HAProxy version to measure (repeatable; default both)")
    parser.add_argument("--part", action="append", dest="parts", choices=PARTS,
                        help="part to measure (repeatable; default all)")
    parser.add_argument("--reuse", action="store_true", help="reuse running containers (re-apply, no fresh converge)")
    parser.add_argument("--no-deploy", action="store_true",
                        help="reuse running containers as they are deployed (no playbook run)")
    parser.add_argument("--idempotence", action="store_true", help="time a second, idempotent playbook run too")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration of each point (default 5)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of each group of points, of which the median is kept (default 5)")
    parser.add_argument("--memory-requests", type=int, default=1_000_000,
                        help="live requests of the memory part (default 1000000)")
    parser.add_argument("--memory-seconds", type=int, default=150,
                        help="time limit of the memory part per version (default 150)")
    parser.add_argument("--down", action="store_true", help="remove the benchmark's containers and exit")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    versions = args.version or sorted(VERSIONS)
    args.parts = args.parts or list(PARTS)
    if args.down:
        for version in versions:
            sh(["podman", "rm", "-f", "--ignore", container(VERSIONS[version][0])])
        log("removed the benchmark's containers")
        return
    started = time.monotonic()
    cpu, mem = machine_facts()
    ctx = {"argv": sys.argv[1:], "seconds": args.seconds, "rounds": args.rounds, "deploy": [], "results": {},
           "haproxy": {},
           "cores": os.cpu_count(), "cpu": cpu, "mem": mem, "load_start": load_average(),
           "others": other_containers(),
           "wrk": sh(["wrk", "--version"], check=False).stdout.split(" [")[0].strip() or "wrk"}
    binary = fast_echo_binary()
    hosts = [VERSIONS[v][0] for v in versions]
    fresh = [start_container(v, args.reuse or args.no_deploy) for v in versions]
    for host in hosts:
        # HAProxy reads the static frontend's files with its config: they must exist
        # before the play validates it; static_pages() fills them.
        cexec(host, f"mkdir -p {STATIC_DIR} && for p in cached {ONE_SEGMENT}; do "
              f"[ -s {STATIC_DIR}/$p.html ] || echo placeholder > {STATIC_DIR}/$p.html; done")
    if not args.no_deploy:
        seconds, changed = playbook("converge" if any(fresh) else "re-apply", hosts)
        ctx["deploy"].append(("converge" if any(fresh) else "re-apply", seconds, changed))
    if args.idempotence:
        seconds, changed = playbook("idempotent re-run", hosts)
        ctx["deploy"].append(("idempotent re-run", seconds, changed))
    for version in versions:
        host = VERSIONS[version][0]
        ip = container_ip(host)
        ctx["haproxy"][version] = cexec(host, "haproxy -v | head -n 1").stdout.split(" - ")[0].strip()
        start_echo_servers(host, ip, binary)
    # One version at a time, so they never compete for the cores.
    for version in versions:
        host = VERSIONS[version][0]
        log(f"measuring {ctx['haproxy'][version]} in {container(host)} (load {load_average()})")
        ctx["results"][version] = measure(version, container_ip(host), host, args)

    ctx["others"] = f"{ctx['others']} at the start, {other_containers()} at the end"
    ctx["load_end"] = load_average()
    ctx["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ctx["total_s"] = time.monotonic() - started
    text = report(ctx)
    with open(os.path.join(BENCH, "results.md"), "w") as f:
        f.write(text)
    print("\n" + text)
    log(f"wrote benchmarks/results.md in {ctx['total_s']:.0f} s; logs in {LOGS}; containers left running "
        "(benchmarks/run --reuse, or --down to remove them)")


if __name__ == "__main__":
    main()
