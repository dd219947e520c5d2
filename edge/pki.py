"""The store PKI: a store CA (or the retailer's), the box's server certificate, device client
certificates and their revocation list, with ``cryptography``.

Files live in ``<state_dir>/pki/`` (directory 0700, every key 0600; no key or secret is ever
logged):

* ``ca.pem`` / ``ca.key`` — the store CA, created on first start unless ``tls.ca_cert`` and
  ``tls.ca_key`` name the retailer's CA (then it signs instead); with ``tls.server_cert`` and
  ``tls.server_key`` the retailer's server certificate is used as it is and never renewed here.
* ``server.pem`` (leaf + CA) / ``server.key`` — for Mosquitto's TLS listeners and the HTTPS API,
  naming the configured DNS names and addresses (and 127.0.0.1, for the gateway's own bridge).
* ``crl.pem`` — revoked client certificates, read by Mosquitto's ``crlfile``; ``issued.json``
  maps each device to the serials issued to it, so ``edge devices remove`` revokes them all.

Renewal (:meth:`StorePki.ensure_server`) happens at ``tls.renew_fraction`` of the lifetime, and
at once when the clock has gone back before the certificate was issued or past its end, so a
clock jumping ±30 days never leaves the box with a certificate its devices refuse. Every
certificate is back-dated by ``BACKDATE`` so a device whose clock lags the box's still accepts it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.atomic import write_private
from edge.certstate import BACKDATE, PkiFiles, ServerCertState, renewal_due
from edge.errors import ConfigError

__all__ = ["BACKDATE", "ClientCert", "ServerCertState", "StorePki"]

CA_DAYS = 3650
Clock = Callable[[], float]


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class ClientCert:
    device_id: str
    serial: int
    cert_pem: str
    key_pem: str


class StorePki(PkiFiles):
    def __init__(
        self,
        directory: Path,
        *,
        store_id: str,
        names: Iterable[str] = (),
        addresses: Iterable[str] = (),
        server_days: int = 90,
        client_days: int = 365,
        renew_fraction: float = 2 / 3,
        ca_cert: Path | None = None,
        ca_key: Path | None = None,
        server_cert: Path | None = None,
        server_key: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(directory, ca_cert=ca_cert, ca_key=ca_key, server_cert=server_cert, server_key=server_key)
        self.store_id = store_id
        self.names = sorted({*names, "localhost", socket.gethostname()})
        self.addresses = sorted({*(a for a in addresses if a not in ("0.0.0.0", "::")), "127.0.0.1"})
        self.server_days = server_days
        self.client_days = client_days
        self.renew_fraction = renew_fraction
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC).timestamp())

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    # -- the CA ----------------------------------------------------------------------------
    def ensure(self) -> ServerCertState:
        """First start: CA, CRL and server certificate; later: renew the server certificate if due."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._ca()
        if not self.crl_path.exists():
            self.write_crl()
        return self.ensure_server()

    def _ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if self._external_ca:
            cert_path, key_path = self._external_ca
            try:
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except (OSError, ValueError) as exc:
                raise ConfigError([("tls.ca_cert", f"cannot load the retailer CA: {type(exc).__name__}")]) from None
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ConfigError([("tls.ca_key", "the retailer CA key must be an EC key (P-256 or P-384)")])
            return cert, key
        cert_path, key_path = self.directory / "ca.pem", self.directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            return x509.load_pem_x509_certificate(cert_path.read_bytes()), loaded
        key = ec.generate_private_key(ec.SECP256R1())
        now = self._now()
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edge-gateway"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"store CA {self.store_id}")])  # fmt: skip
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        write_private(key_path, _key_pem(key))
        _write_public(cert_path, _pem(cert))
        return cert, key

    def ca_pem(self) -> str:
        return self.ca_path.read_text()

    # -- the server certificate ------------------------------------------------------------
    def server_state(self) -> ServerCertState:
        cert = x509.load_pem_x509_certificate(self.server_cert_path.read_bytes())
        return ServerCertState(cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp(),
                               cert.serial_number, False)  # fmt: skip

    def renewal_due(self) -> bool:
        """At ``renew_fraction`` of the lifetime, or at once when the clock left [issued, end)."""
        if self._external_server:
            return False
        try:
            state = self.server_state()
        except (FileNotFoundError, ValueError):
            return True
        return renewal_due(state, self._clock(), self.renew_fraction)

    def ensure_server(self) -> ServerCertState:
        """Issue a new server certificate when :meth:`renewal_due`; returns the current one."""
        if not self.renewal_due():
            return self.server_state()
        ca_cert, ca_key = self._ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = self._now()
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in self.names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in self.addresses]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"edge-gateway {self.store_id}")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=self.server_days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        write_private(self.directory / "server.key", _key_pem(key))
        _write_public(self.directory / "server.pem", _pem(cert) + _pem(ca_cert))
        state = self.server_state()
        return ServerCertState(state.not_before, state.not_after, state.serial, True)

    # -- device certificates and revocation --------------------------------------------------
    def issue_client(self, device_id: str) -> ClientCert:
        """A client certificate whose CN is the device id (Mosquitto ``use_identity_as_username``)."""
        ca_cert, ca_key = self._ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = self._now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=self.client_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        issued = self._issued()
        issued.setdefault(device_id, []).append(str(cert.serial_number))
        write_private(self.directory / "issued.json", json.dumps(issued).encode())
        return ClientCert(device_id, cert.serial_number, _pem(cert).decode(), _key_pem(key).decode())

    def _issued(self) -> dict[str, list[str]]:
        try:
            data = json.loads((self.directory / "issued.json").read_text())
        except FileNotFoundError:
            return {}
        return {str(k): [str(s) for s in v] for k, v in data.items()}

    def _revoked(self) -> dict[str, float]:
        try:
            return {str(k): float(v) for k, v in json.loads((self.directory / "revoked.json").read_text()).items()}
        except FileNotFoundError:
            return {}

    def revoke_device(self, device_id: str) -> int:
        """Revoke every certificate issued to ``device_id``; rewrites the CRL. Returns how many."""
        issued = self._issued()
        serials = issued.pop(device_id, [])
        revoked = self._revoked()
        now = self._clock()
        for serial in serials:
            revoked.setdefault(serial, now)
        write_private(self.directory / "revoked.json", json.dumps(revoked).encode())
        write_private(self.directory / "issued.json", json.dumps(issued).encode())
        self.write_crl()
        return len(serials)

    def write_crl(self) -> None:
        ca_cert, ca_key = self._ca()
        now = self._now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - BACKDATE).next_update(now + dt.timedelta(days=CA_DAYS))
        )  # fmt: skip
        for serial, at in self._revoked().items():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(int(serial))
                .revocation_date(dt.datetime.fromtimestamp(at, dt.UTC)).build()
            )  # fmt: skip
        crl = builder.sign(ca_key, hashes.SHA256())
        _write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
