"""Downlink consumer: applies what the centre sends to this store, in order, then acks.

A JetStream durable pull consumer ``store-{storeId}`` on ``cdp.downlink.{storeId}`` (stream
``CDP_DOWNLINK`` over ``cdp.downlink.>``), both created by the centre (:mod:`sync.backbone`);
the store only binds to it. Handlers are injected (:class:`DownlinkHandlers`):

* consent → ``record_consent(change)`` when given (the decisioning component journals it as a
  ``Consent Updated`` event with messageId ``cdp-consent-{id}`` and the change's timestamp, so it
  merges by the same ordered rule as a device's), else ``apply_consent(user_id, prefs, source)``;
* erasure → ``erase(user_id, request_id)``: the decisioning component puts the person on the
  suppression list before anything else is queued, erases journal, profile and presence, and
  journals the ``Customer Erased`` confirmation (only the ``requestId``) that the outbox sends;
* offers → ``install_offers(catalog bytes)`` (:class:`OffersFile` writes the file atomically);
* model → signature, catalog and file digests verified (:mod:`sync.manifest`), files unpacked
  into ``<state>/<model_dir>/<version>/`` (with the signed manifest as ``signed-update.json``
  and ``.sig``) then ``swap_model(dir)`` (the runtime swaps atomically and keeps the old model
  on a failed smoke test; any exception from it refuses the update and removes the directory).

A refused message (malformed, bad signature, wrong catalog, a handler raising an EdgeError or
ValueError, a failed swap) is acked, logged in ``sync_downlink`` and counted — redelivering it
cannot help. A handler that raises anything else gets the message redelivered (nak, 30 s).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.backoff import backoff_delay, raise_if_cancelled
from edge.errors import EdgeError
from edge.journal import Journal
from sync import tables
from sync.config import DownlinkConfig
from sync.errors import DownlinkRefused, TransientSinkError
from sync.messages import (
    ConsentChange,
    DownlinkMessage,
    ErasureRequest,
    ModelUpdate,
    OfferCatalog,
    message_ref,
    parse_downlink,
)
from sync.metrics import SyncMetrics

__all__ = ["DOWNLINK_SUBJECTS", "Downlink", "DownlinkHandlers", "OffersFile"]

log = logging.getLogger(__name__)

DOWNLINK_SUBJECTS = "cdp.downlink.>"


@dataclass(frozen=True)
class DownlinkHandlers:
    apply_consent: Callable[[str, Mapping[str, bool], str], object]
    erase: Callable[[str, str], object]
    install_offers: Callable[[bytes], object]
    swap_model: Callable[[Path], object]
    #: the version of the installed offer catalog; a model built for another one is refused
    catalog_version: Callable[[], str | None] = field(default=lambda: None)
    #: consent through the store's ordered log (messageId and event time); preferred when set
    record_consent: Callable[[ConsentChange], object] | None = None


class OffersFile:
    """The offers file the decisioning component watches: atomic replace, version lookup."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def install(self, catalog: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".offers-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(catalog)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)

    def version(self) -> str | None:
        """The catalog's top-level ``version`` (TOML), else the file's sha256; None if absent."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            version = tomllib.loads(data.decode("utf-8")).get("version")
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            version = None
        if isinstance(version, str) and version:
            return version
        return hashlib.sha256(data).hexdigest()


class Downlink:
    def __init__(
        self,
        journal: Journal,
        config: DownlinkConfig,
        handlers: DownlinkHandlers,
        store_id: str,
        state_dir: Path,
        metrics: SyncMetrics,
    ) -> None:
        self.journal = journal
        self.config = config
        self.handlers = handlers
        self.store_id = store_id
        self.model_root = state_dir / config.model_dir
        self.metrics = metrics
        #: called on the event loop after each message was applied or refused (health reports)
        self.after_message: Callable[[], None] | None = None
        # sync.manifest (and cryptography, ≈ 9 MB) loads with a downlink only, not with the module
        from sync.manifest import load_public_key

        key = config.model_public_key
        self._public_key = load_public_key(key) if key else None

    # -- applying one message (no NATS involved; tested directly) --------------------------
    def apply(self, payload: bytes) -> str:
        """Apply one message; returns the outcome label. Raises only for a retryable failure."""
        try:
            message = parse_downlink(payload, self.config.max_message_bytes)
        except DownlinkRefused as exc:
            self._record("unknown", "-", exc)
            return "refused"
        try:
            self._apply(message)
        except DownlinkRefused as exc:
            self._record(_kind(message), message_ref(message), exc)
            return "refused"
        except (EdgeError, ValueError) as exc:  # the handler refused it: retrying cannot help
            detail = f"{type(exc).__name__}: {exc}"[:300]
            self._record(_kind(message), message_ref(message),
                         DownlinkRefused("handler_refused", detail))  # fmt: skip
            return "refused"
        tables.record_downlink(self.journal, _kind(message), message_ref(message), "applied", "")
        self.metrics.downlink.labels(_kind(message), "applied").inc()
        return "applied"

    def _record(self, kind: str, ref: str, exc: DownlinkRefused) -> None:
        log.warning("downlink %s %s refused: %s", kind, ref, exc)
        tables.record_downlink(self.journal, kind, ref, "refused", f"{exc.reason}: {exc.detail}")
        self.metrics.downlink.labels(kind, "refused").inc()

    def _apply(self, message: DownlinkMessage) -> None:
        if isinstance(message, ConsentChange):
            if self.handlers.record_consent is not None:
                self.handlers.record_consent(message)
            else:
                self.handlers.apply_consent(message.user_id, message.preferences, message.source)
        elif isinstance(message, ErasureRequest):
            self.handlers.erase(message.user_id, message.request_id)
        elif isinstance(message, OfferCatalog):
            if self._public_key is not None:  # a store that verifies models verifies offers too
                from sync.manifest import verify_offers

                verify_offers(self._public_key, message.catalog, message.signature)
            self.handlers.install_offers(message.catalog)
        else:
            directory = self._unpack_model(message)
            try:
                self.handlers.swap_model(directory)
            except Exception as exc:  # the runtime kept (rolled back to) the old model
                shutil.rmtree(directory, ignore_errors=True)
                raise DownlinkRefused("swap_failed", f"{type(exc).__name__}: {exc}"[:300]) from None

    def _unpack_model(self, message: ModelUpdate) -> Path:
        if self._public_key is None:
            raise DownlinkRefused("no_public_key", "set downlink.model_public_key to accept models")
        from sync.manifest import verify_manifest

        manifest = verify_manifest(
            self._public_key, message.manifest, message.signature, message.files,
            self.handlers.catalog_version(),
        )  # fmt: skip
        target = self.model_root / manifest.version
        self.model_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.model_root, prefix=".incoming-"))
        try:
            for name, content in message.files.items():
                (staging / name).write_bytes(content)
            (staging / "signed-update.json").write_bytes(message.manifest)
            (staging / "signed-update.sig").write_bytes(message.signature)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    # -- the consumer loop -----------------------------------------------------------------
    async def run(self, *, sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        """Consume forever; the reconnect loop around the connection (house rule 5)."""
        import nats.errors  # loaded by a store with a downlink only (see sync.health.run)

        attempt = 0
        while True:
            try:
                await self._consume()
                attempt = 0
            except (TimeoutError, TransientSinkError, nats.errors.Error, OSError) as exc:
                raise_if_cancelled()
                log.warning("downlink disconnected: %s", exc)
                await sleep(backoff_delay(attempt))
                attempt += 1

    async def _consume(self, idle_exit: bool = False, wait_s: float = 2.0) -> int:
        import nats.errors

        from sync.nats_sink import close_quietly, connect

        nc = await connect(self.config.servers, self.config.credentials,
                           name=f"edge-downlink-{self.store_id}", store_id=self.store_id)  # fmt: skip
        applied = 0
        try:
            # bind only: the centre created the consumer (sync.backbone); the store's identity
            # may pull from it and ack, nothing else
            sub = await nc.jetstream().pull_subscribe_bind(f"store-{self.store_id}", stream=self.config.stream)
            while not nc.is_closed:
                raise_if_cancelled()  # a fetch that lost our cancellation must not loop on
                try:
                    messages = await sub.fetch(16, timeout=wait_s)
                except (TimeoutError, nats.errors.TimeoutError):
                    if idle_exit:
                        return applied
                    continue
                except nats.errors.NoRespondersError:
                    raise TransientSinkError(
                        f"no downlink consumer store-{self.store_id} on {self.config.stream}: the"
                        " centre creates it with `edge central streams`"
                    ) from None
                for msg in messages:
                    try:
                        await asyncio.to_thread(self.apply, msg.data)
                    except Exception:
                        log.exception("downlink handler failed; message will be redelivered")
                        await msg.nak(delay=30)
                        continue
                    await msg.ack()
                    applied += 1
                    if self.after_message is not None:
                        self.after_message()
            raise TransientSinkError("downlink connection closed")
        finally:
            await close_quietly(nc)

    async def consume_available(self, wait_s: float = 2.0) -> int:
        """Apply everything queued for this store, then return (CLI and tests)."""
        return await self._consume(idle_exit=True, wait_s=wait_s)


def _kind(message: DownlinkMessage) -> str:
    return {ConsentChange: "consent", ErasureRequest: "erasure", OfferCatalog: "offers"}.get(type(message), "model")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
