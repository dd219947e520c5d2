"""The server certificate read without ``cryptography``, checked against two decoders we did not
write (``cryptography`` itself and the OpenSSL command line), and the gateway's steady state:
a start or an hourly check with nothing to issue never loads ``cryptography``."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509

from edge.certstate import BACKDATE, read_server_state, renewal_due
from edge.pki import StorePki

DAY = 86_400.0
ROOT = Path(__file__).resolve().parents[2]


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True).stdout


def test_the_store_pki_certificate_reads_as_cryptography_reads_it(tmp_path):
    now = [dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC).timestamp()]
    pki = StorePki(tmp_path / "pki", store_id="s1", server_days=90, clock=lambda: now[0])
    issued = pki.ensure()
    cert = x509.load_pem_x509_certificate(pki.server_cert_path.read_bytes())  # the leaf, before the CA
    state = read_server_state(pki.server_cert_path)
    assert state is not None and not state.renewed
    assert (state.not_before, state.not_after, state.serial) == (
        cert.not_valid_before_utc.timestamp(),
        cert.not_valid_after_utc.timestamp(),
        cert.serial_number,
    )
    assert (state.not_before, state.not_after, state.serial) == (issued.not_before, issued.not_after, issued.serial)
    for days in (0.0, 59.0, 60.5, 89.0, 91.0, -1.0):  # the same answer as StorePki's own check
        now[0] = issued.not_before + BACKDATE.total_seconds() + days * DAY
        assert renewal_due(state, now[0], pki.renew_fraction) is pki.renewal_due()


def test_a_certificate_made_by_the_openssl_cli_reads_as_openssl_prints_it(tmp_path):
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "400", "-subj", "/CN=retailer-box", "-set_serial", "0x7f3a00c1d2e3f4051627")  # fmt: skip
    printed = dict(
        line.split("=", 1) for line in _openssl("x509", "-in", str(cert), "-noout", "-serial", "-dates").splitlines()
    )
    state = read_server_state(cert)
    assert state is not None
    assert state.serial == int(printed["serial"], 16) == 0x7F3A00C1D2E3F4051627
    for field, value in (("notBefore", state.not_before), ("notAfter", state.not_after)):
        at = dt.datetime.strptime(printed[field], "%b %d %H:%M:%S %Y GMT").replace(tzinfo=dt.UTC)
        assert value == at.timestamp()


@pytest.mark.parametrize("content", [None, b"", b"-----BEGIN CERTIFICATE-----\nnot base64\n", b"\x00" * 64])
def test_what_cannot_be_read_is_none_so_the_pki_decides(tmp_path, content):
    path = tmp_path / "server.pem"
    if content is not None:
        path.write_bytes(content)
    assert read_server_state(path) is None


_STEADY = textwrap.dedent(
    """
    import json, sys, time
    from prometheus_client import CollectorRegistry
    import edge.cli, edge.gateway
    from edge import schema
    from edge.store_network import StoreNetwork
    config = schema.load(sys.argv[1])
    now = float(sys.argv[2])
    network = StoreNetwork(config, CollectorRegistry(), lambda: now)
    network.prepare(0)
    ssl_options = network.uvicorn_ssl()
    renewed = network.renew_now()
    print(json.dumps({"cryptography": "cryptography" in sys.modules, "not_after": network.not_after,
                      "renewed": renewed, "https": sorted(ssl_options)}))
    """
)


def _start(config_path: Path, now: float) -> dict[str, object]:
    """StoreNetwork's start and one renewal check, in a fresh interpreter (as the gateway's start)."""
    out = subprocess.run(
        [sys.executable, "-c", _STEADY, str(config_path), str(now)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_a_start_with_nothing_to_issue_loads_no_cryptography(tmp_path):
    state_dir = tmp_path / "state"
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(
        f'[store]\nid = "s1"\nstate_dir = "{state_dir}"\n[tls]\nhttp = true\nserver_cert_days = 90\n'
        '[http]\nhost = "127.0.0.1"\nport = 0\n'
    )
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
    first = _start(config_path, start)  # first start: the CA, CRL and server certificate are made
    assert first["cryptography"] is True and first["https"] == ["ssl_certfile", "ssl_keyfile"]
    serial = read_server_state(state_dir / "pki" / "server.pem")
    again = _start(config_path, start + 30 * DAY)  # a restart a month later: nothing due
    assert again == {**first, "cryptography": False}
    assert read_server_state(state_dir / "pki" / "server.pem") == serial
    due = _start(config_path, start + 61 * DAY)  # past 2/3 of 90 days: the PKI loads and renews
    assert due["cryptography"] is True and due["not_after"] == start + 61 * DAY + 90 * DAY
    assert read_server_state(state_dir / "pki" / "server.pem") != serial


def test_a_retailer_ca_is_always_checked_by_the_pki(tmp_path):
    state_dir = tmp_path / "state"
    key, cert = tmp_path / "ca.key", tmp_path / "ca.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "3650", "-subj", "/CN=retailer CA", "-addext", "basicConstraints=critical,CA:TRUE")  # fmt: skip
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(
        f'[store]\nid = "s1"\nstate_dir = "{state_dir}"\n[tls]\nhttp = true\nca_cert = "{cert}"\nca_key = "{key}"\n'
    )
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
    _start(config_path, start)
    assert _start(config_path, start + DAY)["cryptography"] is True  # its key is loaded (and checked) every start
