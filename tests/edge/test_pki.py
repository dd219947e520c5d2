"""The store PKI on its own: when it renews, what it backdates, how it revokes, file modes."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from prometheus_client import CollectorRegistry
from support.gateway import make_config

from edge.pki import BACKDATE, StorePki
from edge.store_network import StoreNetwork

DAY = 86_400.0


def _pki(tmp_path, now: list[float], **options) -> StorePki:
    return StorePki(
        tmp_path / "pki", store_id="s1", addresses=["127.0.0.2"], server_days=90, clock=lambda: now[0], **options
    )


def test_renewal_at_two_thirds_and_on_clock_jumps(tmp_path):
    start = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
    now = [start]
    pki = _pki(tmp_path, now)
    first = pki.ensure()
    assert first.renewed and first.not_before == start - BACKDATE.total_seconds()
    for days, due in ((59.0, False), (60.5, True)):  # 2/3 of 90 days
        now[0] = start + days * DAY
        assert pki.renewal_due() is due
    now[0] = start + 30 * DAY
    assert not pki.renewal_due()
    now[0] = start - 1  # the clock went back before the issue: renew at once
    assert pki.renewal_due()
    second = pki.ensure_server()
    assert second.renewed and second.serial != first.serial and second.not_after == start - 1 + 90 * DAY
    now[0] = start + 30 * DAY  # a device 31 days ahead of the box still accepts it (back-dated)
    assert second.not_before < now[0] - 30 * DAY
    for name in ("ca.key", "server.key"):
        assert (tmp_path / "pki" / name).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "pki").stat().st_mode & 0o777 == 0o700
    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "server.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(a) for a in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "127.0.0.2"}


def test_revocation_lists_every_certificate_of_the_device(tmp_path):
    now = [dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()]
    pki = _pki(tmp_path, now)
    pki.ensure()
    issued = [pki.issue_client("k1"), pki.issue_client("k1"), pki.issue_client("k2")]
    assert pki.revoke_device("k1") == 2
    crl = x509.load_pem_x509_crl(pki.crl_path.read_bytes())
    revoked = {r.serial_number for r in crl}
    assert revoked == {issued[0].serial, issued[1].serial}
    ca = x509.load_pem_x509_certificate(pki.ca_path.read_bytes())
    assert crl.is_signature_valid(ca.public_key())


def test_readyz_warns_before_the_certificate_ends(tmp_path):
    config = make_config(tmp_path / "state", tls={"http": True, "server_cert_days": 20})
    now = [dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()]
    network = StoreNetwork(config, CollectorRegistry(), lambda: now[0])
    network.pki = StorePki(tmp_path / "state" / "pki", store_id="s1", server_days=20, clock=lambda: now[0])
    network.prepare(0)
    assert network.expiry_warning() is None  # 20 days left
    now[0] += 7 * DAY
    assert network.expiry_warning() == "the server certificate ends in 13.0 days"
