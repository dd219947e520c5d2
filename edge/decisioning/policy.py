"""The one consent-and-erasure check (:class:`edge.types.ConsentPolicy`).

Asked where personal data is used (profiles, decisions, the profile route) and where it leaves
the store (the outbox, the running gateway's and ``edge sync drain``'s alike): a purpose is
allowed only if the person granted it and is not erased. Default deny: anonymous and unknown
persons are allowed nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from edge.config import Config
from edge.decisioning.consent import ConsentLedger
from edge.decisioning.erasure import Eraser
from edge.decisioning.identity import Identity, load_key
from edge.journal import Journal

__all__ = ["Policy", "key_file", "offline_policy"]


class Policy:
    def __init__(self, consent: ConsentLedger, eraser: Eraser) -> None:
        self._consent = consent
        self._eraser = eraser

    def allows(self, user_id: str | None, purpose: str) -> bool:
        return not self._eraser.is_suppressed(user_id) and self._consent.allows(user_id, purpose)

    def is_suppressed(self, user_id: str | None) -> bool:
        return self._eraser.is_suppressed(user_id)


def key_file(config: Config, state_dir: Path | None = None) -> Path:
    """The identity key: ``identity.key_file``, else ``identity.key`` in the state directory
    (``store.state_dir`` unless given)."""
    if config.identity.key_file:
        return Path(config.identity.key_file)
    return Path(state_dir if state_dir is not None else config.store.state_dir) / "identity.key"


def offline_policy(journal: Journal, config: Config) -> Policy:
    """The same check outside the gateway process (``edge sync drain``): the ledger and the
    suppression list the running gateway uses, read from its journal."""
    identity = Identity(load_key(key_file(config)), config.identity.default_region)
    return Policy(ConsentLedger(journal), Eraser(journal, identity, time.time))
