"""Raw identifiers → customer tokens, at the moment they arrive.

A token is ``"ct_" + hex(HMAC-SHA256(key, f"{kind}:{normalised}"))[:32]``. The key is 32 random
bytes in a file created on first start with mode 0600. :class:`IdentityStage` is the ingest
pre-stage: it reads ``properties.identifiers`` (and e-mail/phone ``traits`` of identify calls),
sets ``userId`` and deletes the raw values from the dict before anything else sees it. Errors
name the identifier *kind*, never its value.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import phonenumbers

from edge.bus import Source
from edge.errors import InvalidEvent
from edge.events import TOKEN_PATTERN

__all__ = ["IDENTIFIER_KINDS", "Identity", "IdentityStage", "load_key", "normalise"]

IDENTIFIER_KINDS = ("email", "phone", "loyaltyId", "appId")
#: The kind of an SDK app's own ``userId`` (its account id): an identifier of its own kind.
APP_USER_KIND = "userId"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_RAW = 256


def load_key(path: Path) -> bytes:
    """Read the HMAC key, creating it (0600, parent 0700) on first use."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
    if len(key) < 16:
        raise ValueError(f"identity key file {path} is shorter than 16 bytes; restore it from backup")
    return key


def normalise(kind: str, value: Any, default_region: str) -> str:
    """The canonical form of a raw identifier; InvalidEvent naming only the kind if unusable."""
    if kind not in IDENTIFIER_KINDS and kind != APP_USER_KIND:
        raise InvalidEvent("bad_identifier", f"unknown identifier kind {kind[:20]!r}")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidEvent("bad_identifier", f"identifier {kind} must be a string")
    text = str(value).strip()
    if not text or len(text) > _MAX_RAW:
        raise InvalidEvent("bad_identifier", f"identifier {kind} is empty or too long")
    if kind == "email":
        text = text.lower()
        if not _EMAIL.match(text):
            raise InvalidEvent("bad_identifier", "identifier email is not an e-mail address")
        return text
    if kind == "phone":
        try:
            number = phonenumbers.parse(text, default_region)
        except phonenumbers.NumberParseException:
            raise InvalidEvent("bad_identifier", "identifier phone is not a phone number") from None
        if not phonenumbers.is_possible_number(number):
            raise InvalidEvent("bad_identifier", "identifier phone is not a possible number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind == "loyaltyId":
        digits = "".join(ch for ch in text if ch.isdigit())
        if not digits:
            raise InvalidEvent("bad_identifier", "identifier loyaltyId has no digits")
        return digits
    return text  # appId, userId: opaque, as issued by the app


class Identity:
    """Tokenises raw identifiers with the store's key."""

    def __init__(self, key: bytes, default_region: str = "US") -> None:
        self._key = key
        self.default_region = default_region

    def token(self, kind: str, value: Any) -> str:
        canonical = normalise(kind, value, self.default_region)
        digest = hmac.new(self._key, f"{kind}:{canonical}".encode(), hashlib.sha256).hexdigest()
        return "ct_" + digest[:32]

    def keyed_digest(self, purpose: str, text: str) -> str:
        """A keyed one-way digest of ``text`` (used to keep suppressed tokens without the token)."""
        return hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()

    def resolve(self, identifiers: Mapping[str, Any]) -> str:
        """One token for a set of identifiers of one person (the first kind in a fixed order)."""
        for kind in IDENTIFIER_KINDS:
            if kind in identifiers and identifiers[kind] not in (None, ""):
                return self.token(kind, identifiers[kind])
        unknown = sorted(set(identifiers) - set(IDENTIFIER_KINDS))
        if unknown:
            raise InvalidEvent("bad_identifier", f"unknown identifier kind {unknown[0][:20]!r}")
        raise InvalidEvent("bad_identifier", "identifiers carry no usable value")

    def user_id(self, body: Mapping[str, Any]) -> str:
        """``userId`` (a token) or the token of ``identifiers`` from an API body."""
        user_id = body.get("userId")
        identifiers = body.get("identifiers")
        if isinstance(identifiers, Mapping) and identifiers:
            return self.resolve(identifiers)
        if isinstance(user_id, str) and TOKEN_PATTERN.match(user_id):
            return user_id
        raise InvalidEvent("bad_identifier", "send userId (a ct_… token) or identifiers {email|phone|loyaltyId|appId}")


class IdentityStage:
    """The ingest pre-stage: pseudonymise in place, then refuse suppressed persons.

    * ``properties.identifiers`` → the customer token in ``userId`` (the raw values removed);
    * ``userId`` that is not a token (an SDK app's own account id) → the token of kind
      ``userId`` (or ``email`` when it is an e-mail address);
    * the identifier keys of ``traits`` and ``context.traits`` (``email``, ``phone``,
      ``loyaltyId``, ``appId``) → each replaced by its own token; the first one is the
      ``userId`` when nothing above gave one.

    The raw values are replaced in the *same* dict the ingestor holds, so even a later refusal
    (whose dead letter keeps an excerpt of the dict) cannot carry them.
    """

    def __init__(self, identity: Identity, is_suppressed: Callable[[str], bool]) -> None:
        self.identity = identity
        self.is_suppressed = is_suppressed

    def __call__(self, raw: dict[str, Any], source: Source) -> dict[str, Any]:
        token: str | None = None
        problem: InvalidEvent | None = None
        properties = raw.get("properties")
        if isinstance(properties, dict) and "identifiers" in properties:
            identifiers = properties.pop("identifiers")
            if isinstance(identifiers, dict):
                try:
                    token = self.identity.resolve(identifiers)
                except InvalidEvent as exc:
                    problem = exc
                identifiers.clear()
            else:
                problem = InvalidEvent("bad_identifier", "properties.identifiers must be an object")
        claimed = raw.get("userId")
        claimed_token = claimed if isinstance(claimed, str) and TOKEN_PATTERN.match(claimed) else None
        app_token: str | None = None
        if isinstance(claimed, str) and claimed_token is None:
            raw.pop("userId")  # the app's own id: never kept raw
            kind = "email" if _EMAIL.match(claimed.strip().lower()) else APP_USER_KIND
            try:
                app_token = self.identity.token(kind, claimed)
            except InvalidEvent as exc:
                problem = problem or exc
        trait_token: str | None = None
        for traits in (raw.get("traits"), _context_traits(raw)):
            if isinstance(traits, dict):
                found = self._tokenise_traits(traits)
                if isinstance(found, InvalidEvent):
                    problem = problem or found
                else:
                    trait_token = trait_token or found
        if problem is not None:
            raise problem
        if token is not None and claimed_token is not None and claimed_token != token:
            raw.pop("userId", None)
            raise InvalidEvent("identity_mismatch", "userId does not match the identifiers sent")
        final = token or claimed_token or app_token or trait_token
        if final is not None:
            raw["userId"] = final
        user_id = raw.get("userId")
        if isinstance(user_id, str) and self.is_suppressed(user_id):
            raw.clear()  # the dead letter keeps an excerpt: leave nothing about the person in it
            raise InvalidEvent("suppressed", "the customer was erased; event dropped")
        return raw

    def _tokenise_traits(self, traits: dict[str, Any]) -> str | InvalidEvent | None:
        """Replace each identifier trait by its token; the first token, or the first problem."""
        first: str | None = None
        for kind in IDENTIFIER_KINDS:
            if kind not in traits:
                continue
            value = traits[kind]
            if isinstance(value, str) and TOKEN_PATTERN.match(value):
                first = first or value
                continue
            try:
                traits[kind] = self.identity.token(kind, value)
            except InvalidEvent as exc:
                for k in IDENTIFIER_KINDS:
                    traits.pop(k, None)
                return exc
            first = first or traits[kind]
        return first


def _context_traits(raw: dict[str, Any]) -> Any:
    context = raw.get("context")
    return context.get("traits") if isinstance(context, dict) else None
