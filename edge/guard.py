"""The decode guard: every string of every event checked before anything keeps it.

:meth:`IdentifierGuard.clean` walks one raw event (any depth: properties, context, traits,
arrays, and the keys too) in the caller's thread, before the identity stage, the journal, the
outbox, a log line or a dead letter sees it, and

* refuses what the journal could not store or a CDP could not read: a string that is not
  Unicode scalar text (a lone surrogate from a ``"\\ud800"`` escape) → ``bad_text``; a number
  that is not finite (``NaN``, ``Infinity``, ``1e400``) or outside the 64-bit range →
  ``bad_number``; nesting deeper than :data:`MAX_DEPTH` → ``too_deep``;
* replaces, in place, every raw identifier it finds outside the identifier fields by a marker
  naming its kind (``[email]``, ``[phone]``, ``[card]``, ``[loyaltyId]``, ``[appId]``): e-mail
  addresses (also URL-encoded), phone numbers (``phonenumbers``' matcher, valid numbers for the
  store's region or in international form), payment card numbers (13–19 digits passing Luhn) and
  the configured loyalty and app-id patterns; counted by kind;
* drops personal traits (names, addresses, birth dates, free text) from ``traits`` and
  ``context.traits`` unless :attr:`GuardConfig.trait_allow` keeps them.

Identifier fields (``userId``, ``properties.identifiers``, the identifier keys of ``traits``
and ``context.traits``) are only checked for valid text here: the identity stage turns them into
customer tokens next, and the envelope parser refuses any it did not.

Cost: C-speed checks decide whether a string can hold an identifier at all (an ``@``, a ``%``,
at least seven digits, or a configured pattern); only those strings go to the matchers. The
phone matcher (≈20–30 µs a short string, far more a long one) is skipped for a token it provably
refuses (:func:`_no_phone`: every digit run glued to a letter), and has a budget per input — 256 calls —
and skips texts over 1,024 characters: past either, every run of seven or more digits is masked
as a phone number. Over-masking, never a stall of the ingest thread. :meth:`excerpt` makes the text a dead letter keeps.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import phonenumbers

from edge.config import doc
from edge.errors import InvalidEvent

__all__ = ["IDENTIFIER_KEYS", "MARKERS", "MAX_DEPTH", "GuardConfig", "IdentifierGuard", "skeleton"]

MAX_DEPTH = 32
_INT_LIMIT = 2**63
#: Keys of ``traits``/``context.traits`` that are identifiers: tokenised, never masked or dropped.
IDENTIFIER_KEYS = frozenset({"email", "phone", "loyaltyId", "appId"})
MARKERS = {kind: f"[{kind}]" for kind in ("email", "phone", "card", "loyaltyId", "appId")}
_DIGITS = b"0123456789"
_CACHED_CHARS = 64
_CACHE_SIZE = 4096
_MATCHER_MAX_CHARS = 1024  # longer texts skip the phone matcher (its cost grows with the text)
# any local part; domain labels of any characters but separators (internationalised names carry
# combining marks that \w does not match)
_LABEL = r"[^\s@\"<>(),;:\[\]\\/?#=&%.'`{|}~!*+$^]"
_EMAIL = re.compile(r"[^\s@\"<>(),;:\[\]\\]{1,64}@(?:" + _LABEL + r"{1,63}\.)+" + _LABEL + r"{2,63}")
# issuer prefixes (IIN) of the card networks: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|6011|64[4-9]|65|35|30[0-5]|36|38|62|5[06-9]|6[37])")
_DIGIT_RUN = re.compile(r"\+?\d(?:[\s().\-/]{0,2}\d){6,}")
# what phonenumbers' matcher can never accept (see _no_phone): a token of ASCII letters, digits,
# "_" and "-"; its digit runs, blocks joined by up to four hyphens as the matcher joins them
_TOKEN = re.compile(r"[A-Za-z0-9_-]*")
_TOKEN_RUN = re.compile(r"[0-9]+(?:-{1,4}[0-9]+)*")
_EXTENSION_START = re.compile(r"[0-9][aAeEiIxX]")  # "x12", "ext12", "int12", "anexo12" after a number
_NO_IDENTIFIER = re.compile(
    r"^(?:ct_[0-9a-f]{32}"  # a customer token
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # a UUID
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?)$"  # ISO time
)


DEFAULT_TRAIT_ALLOW = ("plan", "tier", "locale", "language", "timezone", "createdAt", "logins")


def _patterns(value: list[str]) -> str | None:
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            return f"{pattern!r} is not a regular expression: {exc}"
    return None


@dataclass(frozen=True)
class GuardConfig:
    loyalty_patterns: list[str] = doc(
        [],
        "Regular expressions of this retailer's loyalty numbers as they may appear in free text"
        " (e.g. `LOY-\\d{4}-\\d{4}-\\d{4}`); found anywhere outside identifier fields they are"
        " replaced by `[loyaltyId]`.",
        _patterns,
    )
    app_id_patterns: list[str] = doc(
        [],
        "Regular expressions of the store app's ids (e.g. `app-[a-z0-9]{3}-[0-9a-f]{12}`);"
        " found outside identifier fields they are replaced by `[appId]`.",
        _patterns,
    )
    trait_allow: list[str] = doc(
        list(DEFAULT_TRAIT_ALLOW),
        "Keys of `traits` and `context.traits` kept besides the identifiers (which are tokenised);"
        " every other trait (names, addresses, birth dates, free text) is dropped at ingest.",
    )
    identifiers: bool = doc(
        True,
        "Look for identifiers in every string. Turn off only to measure the guard's cost"
        " (`bench/ingest.py`): text, numbers and nesting are still checked, identifiers outside"
        " identifier fields are then stored as sent.",
    )


class _Found(dict[str, int]):
    """Markers placed, by kind, and what is left of the phone matcher's budget for this input."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget


class IdentifierGuard:
    """Validates and masks raw events in place; ``count(kind)`` is told of every marker placed."""

    def __init__(
        self,
        region: str = "US",
        *,
        loyalty_patterns: Sequence[str] = (),
        app_id_patterns: Sequence[str] = (),
        trait_allow: Sequence[str] = DEFAULT_TRAIT_ALLOW,
        identifiers: bool = True,
        matcher_budget: int = 256,
        count: Callable[[str, int], None] | None = None,
        dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.region = region
        self.identifiers = identifiers
        self.matcher_budget = matcher_budget
        # short strings already found valid (and, in _checked, free of identifiers): a bounded
        # memo, cleared when full; holds nothing the matchers would flag
        self._valid: set[str] = set()
        self._checked: set[str] = set()
        self.trait_allow = frozenset(trait_allow) | IDENTIFIER_KEYS
        self._count = count
        self._dropped = dropped
        configured = [(f"loyaltyId{i}", p) for i, p in enumerate(loyalty_patterns)]
        configured += [(f"appId{i}", p) for i, p in enumerate(app_id_patterns)]
        self._configured = re.compile("|".join(f"(?P<{n}>{p})" for n, p in configured)) if configured else None

    # -- the hot path ----------------------------------------------------------------------
    def budget(self) -> _Found:
        """A fresh tally for one input (a payload): pass it to every :meth:`clean` of its events."""
        return _Found(self.matcher_budget)

    def clean(self, raw: dict[str, Any], found: _Found | None = None) -> dict[str, Any]:
        """Check and mask one raw event in place; InvalidEvent names what was wrong.

        ``found`` (from :meth:`budget`) shares one phone-matcher budget among the events of one
        payload: once spent, every run of seven or more digits is masked as a phone without
        asking the matcher, so no payload can hold the ingest thread for long."""
        if found is None:
            found = self.budget()
        found.clear()
        for key in list(raw):
            value = raw[key]
            masked = self._check_key(key, found)
            if masked is not key:  # an identifier as a top-level key: keep the field, masked
                del raw[key]
                raw[masked] = self._value(value, 1, found)
                continue
            if key == "userId":
                raw[key] = self._value(value, 1, found, mask=False)
            elif key == "messageId" and isinstance(value, str):
                self._text(value, found, mask=False)
                if self.identifiers and self._suspect(value) and self._find(value, found):
                    raise InvalidEvent("raw_identifier", "messageId holds a raw identifier; send a UUID")
            elif key == "properties" and isinstance(value, dict):
                raw[key] = self._mapping(value, 2, found, keep=("identifiers",))
            elif key == "traits" and isinstance(value, dict):
                raw[key] = self._traits(value, 2, found)
            elif key == "context" and isinstance(value, dict):
                traits = value.get("traits")
                if isinstance(traits, dict):
                    value["traits"] = self._traits(traits, 3, found)
                raw[key] = self._mapping(value, 2, found, keep=("traits",))
            else:
                raw[key] = self._value(value, 1, found)
        if found and self._count is not None:
            for kind, n in found.items():
                self._count(kind, n)
        return raw

    def _traits(self, traits: dict[str, Any], depth: int, found: _Found) -> dict[str, Any]:
        kept = {k: v for k, v in traits.items() if k in self.trait_allow}
        if len(kept) != len(traits) and self._dropped is not None:
            self._dropped(len(traits) - len(kept))
        for key in list(kept):
            kept[key] = self._value(kept[key], depth + 1, found, mask=key not in IDENTIFIER_KEYS)
        return kept

    def _mapping(self, value: dict[str, Any], depth: int, found: _Found, keep: tuple[str, ...] = ()) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise InvalidEvent("too_deep", f"event nests deeper than {MAX_DEPTH} levels")
        rebuilt: dict[str, Any] | None = None
        for key, item in value.items():
            new_key = self._check_key(key, found)
            new_item = self._value(item, depth + 1, found, mask=key not in keep)
            if new_key is not key and rebuilt is None:
                rebuilt = {}
                for k, v in value.items():
                    if k == key:
                        break
                    rebuilt[k] = v
            if rebuilt is not None:
                rebuilt[new_key] = new_item
            elif new_item is not item:
                value[key] = new_item
        return value if rebuilt is None else rebuilt

    def _value(self, value: Any, depth: int, found: _Found, mask: bool = True) -> Any:
        if isinstance(value, str):
            return self._text(value, found, mask)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            if not -_INT_LIMIT < value < _INT_LIMIT:
                raise InvalidEvent("bad_number", "a number is outside the 64-bit integer range")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidEvent("bad_number", "numbers must be finite (no NaN, Infinity or overflow)")
            return value
        if isinstance(value, dict):
            if not mask:
                if depth > MAX_DEPTH:
                    raise InvalidEvent("too_deep", f"event nests deeper than {MAX_DEPTH} levels")
                for key, item in value.items():
                    self._value(key, depth + 1, found, False)
                    self._value(item, depth + 1, found, False)
                return value
            return self._mapping(value, depth, found)
        if isinstance(value, list):
            if depth > MAX_DEPTH:
                raise InvalidEvent("too_deep", f"event nests deeper than {MAX_DEPTH} levels")
            for i, item in enumerate(value):
                new = self._value(item, depth + 1, found, mask)
                if new is not item:
                    value[i] = new
            return value
        raise InvalidEvent("wrong_type", f"values must be JSON, not {type(value).__name__}")

    def _check_key(self, key: Any, found: _Found) -> Any:
        if not isinstance(key, str):
            raise InvalidEvent("wrong_type", "object keys must be strings")
        return self._text(key, found, True)

    def _text(self, text: str, found: _Found, mask: bool) -> str:
        checked = self._checked if mask and self.identifiers else self._valid
        if text in checked:  # keys, names, SKUs repeat from event to event
            return text
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEvent("bad_text", "a string is not valid Unicode text (a lone surrogate)") from None
        if mask and self.identifiers and self._suspect(text, data):
            return self._mask(text, found)
        if len(text) <= _CACHED_CHARS:
            if len(checked) >= _CACHE_SIZE:
                checked.clear()
            checked.add(text)
        return text

    def _suspect(self, text: str, data: bytes | None = None) -> bool:
        """The cheap pre-filter: could ``text`` hold an identifier at all? (C-speed checks only)"""
        if len(text) < 6:
            return False
        if data is None:
            data = text.encode("utf-8", errors="replace")
        if not (
            "@" in text
            or "%" in text
            or len(data) - len(data.translate(None, _DIGITS)) >= 7
            or (self._configured is not None and self._configured.search(text) is not None)
        ):
            return False
        return _NO_IDENTIFIER.match(text) is None

    # -- the matchers ----------------------------------------------------------------------
    def _mask(self, text: str, found: _Found) -> str:
        if "%" in text:
            decoded = unquote(text, errors="replace")
            if decoded != text and self._find(decoded, found):
                text = decoded  # an identifier hides behind URL-encoding: keep the masked plain text
        spans = self._spans(text, found)
        if not spans:
            return text
        out, last = [], 0
        for start, end, kind in spans:
            out.append(text[last:start])
            out.append(MARKERS[kind])
            found[kind] = found.get(kind, 0) + 1
            last = end
        out.append(text[last:])
        return "".join(out)

    def _find(self, text: str, found: _Found) -> bool:
        return bool(self._spans(text, found))

    def _spans(self, text: str, found: _Found) -> list[tuple[int, int, str]]:
        spans: list[tuple[int, int, str]] = []
        if self._configured is not None:
            for m in self._configured.finditer(text):
                kind = "loyaltyId" if (m.lastgroup or "").startswith("loyalty") else "appId"
                spans.append((m.start(), m.end(), kind))
        if "@" in text:
            spans.extend((m.start(), m.end(), "email") for m in _EMAIL.finditer(text))
        runs = list(_DIGIT_RUN.finditer(text))
        for m in runs:
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and _luhn(digits) and _standalone(text, m):
                spans.append((m.start(), m.end(), "card"))
        if runs and (found.budget <= 0 or len(text) > _MATCHER_MAX_CHARS):
            # spent, or a text so long the matcher would hold the thread: every run of seven or
            # more digits is taken for a phone number
            spans.extend((m.start(), m.end(), "phone") for m in runs)
        elif runs and not _no_phone(text):
            found.budget -= 1
            try:
                matches = phonenumbers.PhoneNumberMatcher(text, self.region, leniency=phonenumbers.Leniency.VALID)
                spans.extend((m.start, m.end, "phone") for m in matches)
            except Exception:  # the matcher is third-party code: a failure must not let text through
                spans.append((0, len(text), "phone"))
        return _merge(spans)

    # -- dead letters ----------------------------------------------------------------------
    def excerpt(self, raw: Any, limit: int = 512) -> str:
        """What a dead letter keeps of a refused event: its shape, every string guarded.

        Lenient where :meth:`clean` refuses (bad text becomes U+FFFD, odd numbers their names,
        deep nesting ``…``), and identifier fields are masked too."""
        text = json.dumps(self._lenient(raw, 0), ensure_ascii=False, allow_nan=False)
        return text[:limit]

    def _lenient(self, value: Any, depth: int) -> Any:
        if depth > 8:
            return "…"
        if isinstance(value, str):
            text = value.encode("utf-8", errors="replace").decode("utf-8")
            if len(text) > 256:
                text = text[:256] + "…"
            return self._mask(text, _Found(8)) if self._suspect(text) else text
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            return value if -_INT_LIMIT < value < _INT_LIMIT else "[big number]"
        if isinstance(value, float):
            return value if math.isfinite(value) else "[non-finite number]"
        if isinstance(value, dict):
            out = {}
            for i, (key, item) in enumerate(value.items()):
                if i >= 32:
                    out["…"] = "…"
                    break
                name = self._lenient(str(key), depth + 1)
                out[name] = (
                    "[identifier]"
                    if key in IDENTIFIER_KEYS or key in ("identifiers", "userId", "previousId")
                    else self._lenient(item, depth + 1)
                )
            return out
        if isinstance(value, list):
            return [self._lenient(v, depth + 1) for v in value[:16]]
        return f"[{type(value).__name__}]"


def skeleton(payload: bytes, limit: int = 512) -> str:
    """The excerpt of a body that does not parse: its character classes, never its characters.

    Letters become ``a``/``A``, digits ``#``, other non-ASCII ``~``; JSON punctuation and spaces
    stay, so an operator still sees where it broke — but no identifier can survive."""
    text = payload[: limit * 2].decode("utf-8", errors="replace")
    return text.translate(_SKELETON)[:limit]


class _Skeleton(dict[int, str]):
    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if ch in '{}[]":,. \n\t-_':
            out = ch
        elif ch.isdigit():
            out = "#"
        elif ch.isalpha():
            out = "A" if ch.isupper() else "a"
        else:
            out = "~"
        self[code] = out
        return out


_SKELETON = _Skeleton()


def _standalone(text: str, match: re.Match[str]) -> bool:
    """Not part of a longer word (a hex id, a timestamp inside a message id)."""
    before = text[match.start() - 1] if match.start() else " "
    after = text[match.end()] if match.end() < len(text) else " "
    return not (before.isalnum() or after.isalnum())


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _no_phone(text: str) -> bool:
    """True when phonenumbers' matcher (Leniency.VALID) cannot find a number in ``text``, decided
    in a few regular-expression passes instead of its ≈ 20 µs: a message id such as
    ``flood1796235342-123`` or ``ajs-next-…`` sends most events of a store through it otherwise.

    The matcher (phonenumbers 9.x, ``PhoneNumberMatcher._find``) takes each candidate — a digit
    (or an opening bracket or plus sign, which a token has none of) and what follows it of digit
    blocks, up to 21 of at most 20 digits with up to four punctuation characters between them,
    and an optional extension — and at Leniency.VALID refuses one not at the text's start whose
    previous character is a Latin letter ("abc8005001234"); then it looks for inner numbers
    after a slash, bracket, dot, space or Unicode dash in the candidate. So in a token of ASCII
    letters, digits, ``_`` and ``-`` where
    * every digit run (blocks joined by one to four hyphens, ``-`` being the only punctuation of
      the matcher's in a token once a digit is never followed by ``x``) directly follows a letter,
      and holds at most 20 digits (so one candidate takes all of it: the next starts at the next
      run, after a letter again), and
    * no digit is followed by a letter that opens an extension (``x``, ``ext``, ``int``, ``anexo``),
      which could carry a candidate past a letter and end it inside a run,
    every candidate starts after a letter and holds no inner-match separator: none can match.
    tests/edge/test_guard.py holds this to the matcher itself on generated tokens, real example
    numbers of 40 regions among them."""
    if _TOKEN.fullmatch(text) is None or _EXTENSION_START.search(text) is not None:
        return False
    for run in _TOKEN_RUN.finditer(text):
        start, digits = run.start(), run.group()
        if start == 0 or not text[start - 1].isalpha() or len(digits) - digits.count("-") > 20:
            return False
    return True


def _merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    if len(spans) < 2:
        return spans
    spans.sort()
    merged = [spans[0]]
    for start, end, kind in spans[1:]:
        last_start, last_end, last_kind = merged[-1]
        if start < last_end:
            merged[-1] = (last_start, max(end, last_end), last_kind)
        else:
            merged.append((start, end, kind))
    return merged
