"""What the gateway reads of the store PKI's files without ``cryptography``.

The store PKI (:mod:`edge.pki`) needs ``cryptography`` to make keys and sign certificates, which
it does on first start and at each renewal (every 60 days by default). Between those, the
gateway only reads the server certificate's dates and serial — for ``/metrics``, ``/readyz``
and the hourly renewal check — which the standard library's ``ssl`` module decodes. So the
gateway loads ``cryptography`` (≈ 9 MB of its RSS) only when something is to be issued:
:class:`edge.store_network.StoreNetwork` asks :func:`read_server_state` and
:func:`renewal_due` first.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BACKDATE", "PkiFiles", "ServerCertState", "read_server_state", "renewal_due"]

BACKDATE = dt.timedelta(days=31)  # a device clock up to a month behind the box still accepts the certificate


@dataclass(frozen=True)
class ServerCertState:
    """What /metrics and /readyz show about the server certificate."""

    not_before: float
    not_after: float
    serial: int
    renewed: bool  # True when :meth:`StorePki.ensure_server` issued a new one just now


class PkiFiles:
    """Where the store PKI keeps its files (or the retailer's, when configured)."""

    def __init__(
        self,
        directory: Path,
        *,
        ca_cert: Path | None = None,
        ca_key: Path | None = None,
        server_cert: Path | None = None,
        server_key: Path | None = None,
    ) -> None:
        self.directory = directory
        self._external_ca = (ca_cert, ca_key) if ca_cert and ca_key else None
        self._external_server = (server_cert, server_key) if server_cert and server_key else None

    @property
    def external(self) -> bool:
        """The retailer's CA or server certificate is configured (loaded and checked by edge.pki)."""
        return self._external_ca is not None or self._external_server is not None

    @property
    def ca_path(self) -> Path:
        if self._external_ca:
            return self._external_ca[0]
        return self.directory / "ca.pem"

    @property
    def ca_key_path(self) -> Path:
        return self._external_ca[1] if self._external_ca else self.directory / "ca.key"

    @property
    def server_cert_path(self) -> Path:
        return self._external_server[0] if self._external_server else self.directory / "server.pem"

    @property
    def server_key_path(self) -> Path:
        return self._external_server[1] if self._external_server else self.directory / "server.key"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    def complete(self) -> bool:
        """The store's own CA, CRL and server certificate are all on disk (nothing external)."""
        return not self.external and all(
            p.exists() for p in (self.ca_path, self.ca_key_path, self.crl_path, self.server_cert_path)
        )


def read_server_state(path: Path) -> ServerCertState | None:
    """The first certificate in ``path`` (the leaf of ``server.pem``), decoded by ``ssl``; None when
    it cannot be read that way (missing, malformed, or an interpreter without the decoder), so the
    caller falls back to :mod:`edge.pki`."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:
        return None
    try:
        fields = decode(str(path))
        return ServerCertState(
            float(ssl.cert_time_to_seconds(fields["notBefore"])),
            float(ssl.cert_time_to_seconds(fields["notAfter"])),
            int(fields["serialNumber"], 16),
            False,
        )
    except (OSError, ssl.SSLError, KeyError, ValueError, TypeError):
        return None


def renewal_due(state: ServerCertState, now: float, renew_fraction: float) -> bool:
    """At ``renew_fraction`` of the lifetime, or at once when the clock left [issued, end)."""
    issued = state.not_before + BACKDATE.total_seconds()
    lifetime = state.not_after - issued
    return now < issued or now >= issued + renew_fraction * lifetime or now >= state.not_after
