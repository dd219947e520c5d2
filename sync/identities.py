"""One least-privilege NATS identity per store, and the hub's ``authorization`` block.

The centre keeps a *fleet directory*::

    <fleet>/central.nk          the centre's own nkey seed (full rights: streams, consumers, fan-out)
    <fleet>/stores/<id>.nk      one nkey seed per store, copied to that store only
    <fleet>/auth.conf           generated: ``include`` it from every hub node's nats-server config

A store's identity may (and nothing else — NATS denies what is not allowed):

* publish its events to ``cdp.events.{id}`` and its health to ``cdp.status.{id}``;
* pull from its own downlink consumer (``$JS.API.CONSUMER.MSG.NEXT.CDP_DOWNLINK.store-{id}``)
  and acknowledge what it was given (``$JS.ACK.CDP_DOWNLINK.store-{id}.>``);
* receive replies on its own inbox prefix ``_INBOX_{id}.>`` (publish acks, fetched messages) —
  so no store sees another's acks or downlink.

No ``$JS.API.STREAM.*`` or ``CONSUMER.CREATE/DELETE`` subject is granted: a store creates,
changes and deletes nothing, not even reads stream info. Seeds are written 0600 and reused, so
adding a store leaves the others' keys as they were; ``auth.conf`` is rewritten each time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nkeys

__all__ = [
    "FleetIdentities",
    "STORE_ID_PATTERN",
    "hub_authorization",
    "inbox_prefix",
    "public_key",
    "store_permissions",
]

#: Store ids become NATS subject tokens and file names: keep them to a safe alphabet.
STORE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def inbox_prefix(store_id: str) -> str:
    """The reply-subject prefix a store's connections use (and are allowed to subscribe to)."""
    return f"_INBOX_{store_id}"


def store_permissions(store_id: str, downlink_stream: str = "CDP_DOWNLINK") -> dict[str, dict[str, list[str]]]:
    consumer = f"store-{store_id}"
    return {
        "publish": {
            "allow": [
                f"cdp.events.{store_id}",
                f"cdp.status.{store_id}",
                f"$JS.API.CONSUMER.MSG.NEXT.{downlink_stream}.{consumer}",
                f"$JS.ACK.{downlink_stream}.{consumer}.>",
            ]
        },
        "subscribe": {"allow": [f"{inbox_prefix(store_id)}.>"]},
    }


def hub_authorization(central_public: str, stores: dict[str, str], downlink_stream: str = "CDP_DOWNLINK") -> str:
    """nats-server ``authorization`` block: the centre unrestricted, each store its own rights."""
    users = [f"    {{ nkey: {json.dumps(central_public)} }}  # the centre"]
    for store_id, public in sorted(stores.items()):
        perms = json.dumps(store_permissions(store_id, downlink_stream))
        users.append(f"    {{ nkey: {json.dumps(public)}, permissions: {perms} }}  # store {store_id}")
    return "authorization {\n  users = [\n" + "\n".join(users) + "\n  ]\n}\n"


def _new_seed() -> bytes:
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    key = nkeys.from_seed(bytearray(seed.strip()))
    return str(key.public_key.decode())


@dataclass(frozen=True)
class FleetIdentities:
    """The fleet directory (see the module docstring)."""

    root: Path

    @property
    def central_seed(self) -> Path:
        return self.root / "central.nk"

    @property
    def auth_conf(self) -> Path:
        return self.root / "auth.conf"

    def store_seed(self, store_id: str) -> Path:
        return self.root / "stores" / f"{store_id}.nk"

    def stores(self) -> list[str]:
        directory = self.root / "stores"
        return sorted(p.stem for p in directory.glob("*.nk")) if directory.is_dir() else []

    def add(self, store_ids: list[str]) -> list[str]:
        """Create missing seeds (the centre's and the stores'), rewrite auth.conf; new ids."""
        bad = [s for s in store_ids if not STORE_ID_PATTERN.match(s)]
        if bad:
            raise ValueError(f"store ids must match {STORE_ID_PATTERN.pattern}: {bad}")
        (self.root / "stores").mkdir(parents=True, exist_ok=True)
        created = []
        for path, name in [(self.central_seed, None)] + [(self.store_seed(s), s) for s in store_ids]:
            if not path.exists():
                _write_private(path, _new_seed())
                if name is not None:
                    created.append(name)
        self.write_auth()
        return created

    def write_auth(self) -> Path:
        stores = {s: public_key(self.store_seed(s).read_bytes()) for s in self.stores()}
        text = hub_authorization(public_key(self.central_seed.read_bytes()), stores)
        tmp = self.auth_conf.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.auth_conf)
        return self.auth_conf


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data + b"\n")
