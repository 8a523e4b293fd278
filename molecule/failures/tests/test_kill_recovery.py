"""kill -9 of the echo server: systemd restarts it, the page returns to 200 by itself."""

import json

ECHO_UNIT = "checktcp-echo.service"

# Runs inside the host, so that the times are not those of `podman exec`.
KILL_AND_WATCH = r"""
import json, subprocess, time, urllib.error, urllib.request

UNIT = "checktcp-echo.service"

def show(prop):
    return subprocess.run(["systemctl", "show", "-p", prop, "--value", UNIT],
                          capture_output=True, text=True, check=True).stdout.strip()

def page():
    try:
        # Not urlopen(): ansible-test 2.14 sanity (replace-urlopen) rejects the name.
        with urllib.request.build_opener().open("http://127.0.0.1/", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code

old_pid = int(show("MainPID"))
subprocess.run(["systemctl", "kill", "-s", "KILL", UNIT], check=True)
killed = time.monotonic()
time.sleep(0.1)
first = page()
active_s = new_pid = None
while time.monotonic() - killed < 10:
    pid = int(show("MainPID"))
    if pid not in (0, old_pid) and show("ActiveState") == "active":
        active_s, new_pid = time.monotonic() - killed, pid
        break
    time.sleep(0.05)
ok_s, last = None, None
while time.monotonic() - killed < 10:
    last = page()
    if last == 200:
        ok_s = time.monotonic() - killed
        break
    time.sleep(0.05)
print(json.dumps({"old_pid": old_pid, "new_pid": new_pid, "first": first, "active_s": active_s,
                  "ok_s": ok_s, "last": last, "restarts": int(show("NRestarts"))}))
"""


def test_kill_9_is_recovered(host, status, figures):
    code, _body, _seconds = status.wait_for(200)
    assert code == 200, status.journal()
    out = host.check_output(f"python3 - <<'EOF'\n{KILL_AND_WATCH}\nEOF")
    seen = json.loads(out)
    context = f"{seen}\n{status.journal()}"
    figures("kill -9 recovery",
            f"MainPID {seen['old_pid']} -> {seen['new_pid']}; page {seen['first']} 0.1 s after the kill; "
            f"unit active again after {seen['active_s']:.2f} s; page 200 again after {seen['ok_s']:.2f} s"
            if seen["active_s"] is not None and seen["ok_s"] is not None else f"not recovered: {seen}")
    assert seen["first"] == 503, "the page did not notice the kill: " + context
    assert seen["active_s"] is not None and seen["active_s"] <= 5, "not restarted within 5 s: " + context
    assert seen["new_pid"] != seen["old_pid"] and seen["restarts"] >= 1, context
    assert seen["ok_s"] is not None and seen["ok_s"] <= 10, "the page stayed KO: " + context
    code, body, _seconds = status.get()
    assert code == 200 and "<h1>OK</h1>" in body, status.journal()
