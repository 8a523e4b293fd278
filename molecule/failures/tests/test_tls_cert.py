"""A certificate the user gives (haproxy_status_tls_cert): copied readable by root only,
never shown in a diff, and served; a rotated one is served after the run (HAProxy reloads).
"""

import hashlib
import ssl
import subprocess
import time

import pytest

from conftest import quote  # pylint: disable=import-error

DEST = "/etc/haproxy/ssl/checktcp-status.pem"
TLS_PORT = 8443
COPY_TASK = "Install the given certificate and key of the status page"
WAIT_TASK = "Wait until HAProxy runs the new files"
# Run inside the host: the certificate HAProxy serves there, as PEM.
SERVED = ("import ssl; print(ssl.get_server_certificate(('127.0.0.1', %d)))" % TLS_PORT)


def _make_pem(folder, name):
    """A self-signed certificate and its key in one PEM (what HAProxy's crt loads)."""
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    pem = folder / f"{name}.pem"
    pem.write_text(cert.read_text() + key.read_text())
    return pem, ssl.PEM_cert_to_DER_cert(cert.read_text()), key.read_text()


def _key_lines(key_pem):
    """The base64 lines of a private key: none may appear in any output."""
    return [line for line in key_pem.splitlines() if line and not line.startswith("-----")]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    return [_make_pem(folder, name) for name in ("checktcp-first", "checktcp-rotated")]


@pytest.fixture(scope="module")
def default_after(playbook, status):
    yield
    run = playbook.run()
    assert run.returncode == 0, run.tail()
    code, _body, _seconds = status.wait_for(200)
    assert code == 200, status.journal()


def _served_der(host, wanted, within=10.0):
    """Poll until HAProxy serves `wanted` (DER); return what it served last."""
    deadline = time.monotonic() + within
    while True:
        result = host.run(f"python3 -c {quote(SERVED)}")
        served = ssl.PEM_cert_to_DER_cert(result.stdout) if result.rc == 0 else None
        if served == wanted or time.monotonic() > deadline:
            return served
        time.sleep(0.2)


def _tls_vars(pem):
    return {"haproxy_status_tls": True, "haproxy_status_bind": f"127.0.0.1:{TLS_PORT}",
            "haproxy_status_tls_cert": str(pem)}


def test_a_given_certificate_is_copied_private_served_and_rotated(
        default_after, certificates, host, playbook, status, monkeypatch):
    # A diff of every change is asked for: the key must still not be shown.
    monkeypatch.setenv("ANSIBLE_DIFF_ALWAYS", "true")
    (first, first_der, first_key), (rotated, rotated_der, rotated_key) = certificates

    run = playbook.run(_tls_vars(first))
    context = f"\n--- run ---\n{run.tail()}\n--- journal ---\n{status.journal()}"
    assert run.returncode == 0, context
    assert run.task_status(COPY_TASK) == ["changed"], context
    copied = host.file(DEST)
    assert (copied.user, copied.group, copied.mode) == ("root", "root", 0o600), context
    assert copied.sha256sum == hashlib.sha256(first.read_bytes()).hexdigest(), context
    assert _served_der(host, first_der) == first_der, "HAProxy does not serve the given certificate" + context

    again = playbook.run(_tls_vars(rotated))
    context = f"\n--- run ---\n{again.tail()}\n--- journal ---\n{status.journal()}"
    assert again.returncode == 0, context
    assert again.task_status(COPY_TASK) == ["changed"], context
    assert "changed" in again.task_status("Reload HAProxy"), "the rotated certificate was not reloaded" + context
    assert again.task_status(WAIT_TASK) == ["ok"], context
    assert host.file(DEST).sha256sum == hashlib.sha256(rotated.read_bytes()).hexdigest(), context
    assert _served_der(host, rotated_der) == rotated_der, "HAProxy still serves the old certificate" + context

    for output in (run.output, again.output):
        assert "PRIVATE KEY" not in output
        for line in _key_lines(first_key) + _key_lines(rotated_key):
            assert line not in output, "a line of the private key is in the output"
