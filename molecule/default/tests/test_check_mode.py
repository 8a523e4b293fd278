"""Check mode on the converged hosts changes nothing: `ansible-playbook --check` of the
scenario's converge playbook reports changed=0 for every host (molecule's own `check`
step runs it too, but asserts nothing). Named test_check_mode so that it runs first,
before test_reload.py re-applies site.yml with other variables."""

import os
import re
import subprocess


def test_check_mode_on_converged_hosts_reports_no_change():
    playbook = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")
    result = subprocess.run(
        ["ansible-playbook", "--check", "--diff", "-i", os.environ["MOLECULE_INVENTORY_FILE"], playbook],
        capture_output=True, text=True, check=False)
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", result.stdout, re.M)
    assert recap, output
    changed = {host: int(count) for host, count, _unreachable, _failed in recap if int(count)}
    assert changed == {}, "check mode would change the converged hosts: %s\n%s" % (changed, output)
