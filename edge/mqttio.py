"""One MQTT idiom for the gateway and the devices: a paho-mqtt 2.x client driven by asyncio.

:class:`Connection` is an async context manager for one MQTT connection of a paho client. The
running event loop does the I/O, as aiomqtt does on paho: the socket is watched with
``add_reader``/``add_writer`` and paho's ``loop_read``/``loop_write`` run in those callbacks,
``loop_misc`` (keepalive) once a second — no network thread of paho's, so every paho callback
(``on_message``, ``on_publish`` …) runs in the event loop's thread::

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    while True:                                  # reconnect: a loop around the context manager
        try:
            async with Connection(client, host, port) as conn:
                async for message in conn.messages():
                    ...                          # then conn.ack(message) once it is durable
        except MqttError:
            await asyncio.sleep(backoff)

Incoming messages go through a bounded queue: when ``queue_max`` are waiting, the connection
stops reading the socket (TCP and the broker then hold the rest) until the consumer catches up.
The connection's end — the broker gone, a keepalive missed, :meth:`Connection.abort` — ends
:meth:`Connection.messages` with :class:`MqttError`; :attr:`Connection.closed` resolves too.

One paho client may be used for many connections in turn (what it queued while disconnected is
sent after the next CONNACK). Acknowledgements are bound to the connection that received the
message: :meth:`Connection.ack` after that connection ended does nothing, so a PUBACK can never
reach a later connection where the same packet id names another message (the broker redelivers
the unacknowledged one instead). :meth:`Connection.ack_threadsafe` batches acks from another
thread (the journal writer) into one hop to the loop per batch, in the order given.

This module is edge core: it imports neither ``sync`` nor ``devices``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["BufferedSocket", "Connection", "MqttError", "defer_message_conditions", "share_property_tables"]

_CLOSED: Any = object()


_PUBACK = PacketTypes.PUBACK << 4  # paho.mqtt.client.PUBACK: 0x40
_pack_ack = struct.Struct("!BBH").pack


def share_property_tables() -> None:
    """Make paho's :class:`~paho.mqtt.properties.Properties` share its lookup tables.

    paho-mqtt 2.x builds three constant tables (the 7 type names, 27 property names, 27 property
    kinds) afresh in every ``Properties`` instance, and an MQTT 5 QoS 1 message makes two (the
    PUBLISH decoded, the PUBACK sent): in a 50k drain that was 30 % of the gateway's CPU. The
    tables are only ever read, so one copy serves every instance; instances keep their own
    property values, set and validated exactly as before (``tests/edge/test_mqttio.py`` packs and
    unpacks with both). ``clear()``, which every unpack calls first, deletes the values set
    instead of probing every name. Applied once, at import of this module."""
    if getattr(Properties, "_tables_shared", False):
        return
    template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    types, names, kinds = template.types, template.names, template.properties

    def __init__(self: Properties, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "properties", kinds)

    fixed = frozenset(("packetType", "types", "names", "properties"))

    def clear(self: Properties) -> None:
        # paho's clear() (the first step of every unpack) tries all 27 names with a string
        # replace and a hasattr each; the values set are exactly the instance's other attributes
        for name in [n for n in vars(self) if n not in fixed]:
            delattr(self, name)

    Properties._stock_init = Properties.__init__  # type: ignore[attr-defined]  # (the test compares the two)
    Properties._stock_clear = Properties.clear  # type: ignore[attr-defined]
    Properties.__init__ = __init__  # type: ignore[method-assign]
    Properties.clear = clear  # type: ignore[method-assign]
    Properties._tables_shared = True  # type: ignore[attr-defined]


def defer_message_conditions() -> None:
    """Make paho's :class:`~paho.mqtt.client.MQTTMessageInfo` build its ``threading.Condition``
    when first used, not in ``__init__``.

    paho gives every message an info object with a Condition (an RLock and a waiter deque) so
    that ``wait_for_publish()`` can block on an outgoing publish; a *received* message never
    waits, yet paid for one — 5 % of a drain's CPU. The Condition is now made on first use
    (``_set_as_published``, ``wait_for_publish``, ``is_published``), under a lock so two threads
    cannot each make their own; an outgoing publish gets one exactly as before
    (``tests/edge/test_mqttio.py`` waits on publishes across threads). Applied once, at import."""
    if getattr(mqtt.MQTTMessageInfo, "_conditions_deferred", False):
        return
    info = mqtt.MQTTMessageInfo
    slot = info.__dict__["_condition"]  # the slot's own descriptor: still reads and writes it
    made = threading.Lock()

    def condition(self: mqtt.MQTTMessageInfo) -> threading.Condition:
        try:
            return cast(threading.Condition, slot.__get__(self, info))
        except AttributeError:
            pass
        with made:
            try:
                return cast(threading.Condition, slot.__get__(self, info))
            except AttributeError:
                new = threading.Condition()
                slot.__set__(self, new)
                return new

    def __init__(self: mqtt.MQTTMessageInfo, mid: int) -> None:
        self.mid = mid
        self._published = False
        self.rc = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    info.__init__ = __init__  # type: ignore[method-assign]
    setattr(info, "_condition", property(condition))  # noqa: B010 - replaces the slot (kept as `slot`); mypy refuses the plain form
    info._conditions_deferred = True  # type: ignore[attr-defined]


share_property_tables()
defer_message_conditions()


class MqttError(Exception):
    """The connection could not be made, was refused, or ended."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused  # the broker answered and said no (bad credentials, not authorised …)


class BufferedSocket:
    """A plain TCP socket read in large chunks for paho.

    paho reads each packet with three or more ``recv`` calls (the command byte, each byte of the
    remaining length, then the rest): at thousands of messages a second those system calls, and
    a selector wakeup per message, are much of the gateway's cost. Reading what the kernel has
    (up to 64 KiB) at once and handing paho slices of it turns that into one ``recv`` and one
    wakeup for a few hundred messages; :meth:`pending` tells the reader to keep going while
    whole packets are buffered (as it does for TLS).

    Writes are gathered the same way: paho sends each packet (each PUBACK of a group commit)
    with its own ``send``; here they are kept until :meth:`flush`, which the connection calls
    after paho's ``loop_write`` — one ``send`` for all of them. :meth:`close` flushes first, so
    a DISCONNECT is never lost. Everything else goes to the socket.
    """

    __slots__ = ("_sock", "_buf", "_pos", "_out")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self._out = bytearray()

    def recv(self, size: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._sock.recv(65536)  # BlockingIOError when the kernel has nothing: paho waits
            if not buf:
                return b""  # the peer closed
            self._buf, pos = buf, 0
        end = pos + size
        self._pos = end
        return buf[pos:end]

    def pending(self) -> int:
        return max(0, len(self._buf) - self._pos)

    def send(self, data: bytes | bytearray) -> int:
        self._out += data
        return len(data)

    def flush(self) -> bool:
        """Send what was gathered; True when all of it went (else call again when writable)."""
        out = self._out
        while out:
            try:
                sent = self._sock.send(out)
            except (BlockingIOError, InterruptedError):
                return False
            del out[:sent]
        return True

    def close(self) -> None:
        try:
            self.flush()
        except OSError:
            pass
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Connection:
    """One MQTT connection of ``client``, driven by the running event loop (see the module)."""

    def __init__(
        self,
        client: mqtt.Client,
        host: str,
        port: int,
        *,
        keepalive: int = 30,
        clean_start: bool = True,
        properties: Properties | None = None,
        queue_max: int = 1000,
        timeout_s: float = 10.0,
    ) -> None:
        self.client = client
        self._host, self._port = host, port
        self._keepalive = keepalive
        self._clean_start = clean_start
        self._properties = properties
        self._queue_max = queue_max
        self._timeout_s = timeout_s
        self._queue: deque[mqtt.MQTTMessage] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._sock: Any = None
        self._writing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._misc: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[str] | None = None
        self.connected = False
        self._acks: list[tuple[int, int]] = []
        self._acks_lock = threading.Lock()

    # -- the context manager ---------------------------------------------------------------
    async def __aenter__(self) -> Connection:
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._connack = loop.create_future()
        self.closed = loop.create_future()
        c = self.client
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        # connect() resolves, connects and (TLS, WebSocket) handshakes: blocking, so in a thread
        connecting = loop.run_in_executor(None, self._connect)
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            # the thread cannot be stopped: once it is done, release the socket it opened (and
            # paho's socket pair), or they stay connected to the broker for good
            connecting.add_done_callback(self._abandon)
            raise
        except (OSError, ValueError) as exc:
            self._finish(f"cannot reach the broker at {self._host}:{self._port}: {exc}")
            self.abort()  # a socket the failed handshake left behind, paho's socket pair
            raise MqttError(f"cannot reach the broker at {self._host}:{self._port}: {exc}") from exc
        self._misc = loop.create_task(self._misc_loop())
        try:
            async with asyncio.timeout(self._timeout_s):
                await asyncio.shield(self._connack)
        except TimeoutError:
            await self._close()
            raise MqttError(f"no CONNACK from {self._host}:{self._port} within {self._timeout_s} s") from None
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    def _abandon(self, connecting: asyncio.Future[None]) -> None:
        """A connect nobody waits for any more has ended: drop whatever it opened."""
        if not connecting.cancelled():
            connecting.exception()  # retrieved: a failed connect is no news to anyone now
        self.abort()

    def _connect(self) -> None:
        self.client.connect(self._host, self._port, self._keepalive, clean_start=self._clean_start,
                            properties=self._properties)  # fmt: skip

    async def _close(self) -> None:
        """Disconnect cleanly (DISCONNECT sent) if still connected, then release the socket."""
        assert self.closed is not None
        if self._sock is not None and not self.closed.done():
            self.client.disconnect()
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.shield(self.closed)
            except TimeoutError:
                pass
        self.abort()
        if self._misc is not None:
            self._misc.cancel()
            self._misc = None

    def abort(self) -> None:
        """End the connection at once, sending nothing (as a power cut would)."""
        sock = self._sock
        if sock is not None:
            self._unwatch(sock)
            if isinstance(sock, BufferedSocket):
                sock = sock._sock  # not even what was gathered to send
            try:
                sock.close()
            except OSError:
                pass
        # and paho's own references (its socket, even one a failed connect left unwatched, and its
        # wake-up socket pair): released now, not by Client.__del__ in whatever thread and test
        # the garbage collector happens to run — when this loop may be closed already
        self.client._reset_sockets()
        self._finish("connection aborted")

    def _finish(self, reason: str) -> None:
        self.connected = False
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(MqttError(reason))
            self._connack.exception()  # retrieved: no "never retrieved" warning if nobody waits
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(reason)
            self._queue.append(_CLOSED)
            self._wake()

    # -- paho's socket callbacks (the loop's thread, or the executor's during connect) ------
    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        if self._loop.is_closed():  # paho releasing its socket late (Client.__del__): nothing left to unwatch
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        if type(sock) is socket.socket and getattr(client, "_sock", None) is sock:
            wrapped = BufferedSocket(cast(socket.socket, sock))  # paho reads through it from now on
            client._sock = wrapped
            sock = wrapped
        self._soon(self._watch, sock)

    def _watch(self, sock: Any) -> None:
        assert self._loop is not None
        if self.closed is not None and self.closed.done():
            return
        self._sock = sock
        if not self._paused:
            self._loop.add_reader(sock, self._readable)
        if self._writing:
            self._loop.add_writer(sock, self._writable)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._soon(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        assert self._loop is not None
        if sock is self._sock:
            self._sock = None
        try:
            fd = sock.fileno()
        except (OSError, ValueError):
            return
        if fd >= 0:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)

    def _on_register_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._soon(self._want_write, sock, True)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self._soon(self._want_write, sock, False)

    def _want_write(self, sock: Any, on: bool) -> None:
        assert self._loop is not None
        self._writing = on
        if sock is not self._sock or self._sock is None:
            return  # not watched yet (connect in progress): _watch adds the writer
        if on:
            self._loop.add_writer(sock, self._writable)
        elif not (isinstance(sock, BufferedSocket) and sock._out):
            self._loop.remove_writer(sock)

    def _readable(self) -> None:
        client = self.client
        sock = self._sock
        client.loop_read()
        # bytes already read (BufferedSocket) or decoded (TLS, WebSocket) the selector cannot see:
        # read every whole packet in them now, in one wakeup
        pending = getattr(sock, "pending", None)
        while pending is not None and self._sock is sock and not self._paused and pending() > 0:
            client.loop_read()

    def _writable(self) -> None:
        sock = self._sock
        self.client.loop_write()
        if isinstance(sock, BufferedSocket) and sock is self._sock:
            try:
                done = sock.flush()
            except OSError:
                return  # paho sees the broken socket at its next read
            assert self._loop is not None
            if not done:
                self._loop.add_writer(sock, self._writable)  # the rest when the kernel has room
            elif not self._writing:
                self._loop.remove_writer(sock)

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.client.loop_misc() == mqtt.MQTT_ERR_NO_CONN and self._sock is None:
                self._finish("connection lost")
                return

    # -- paho's protocol callbacks (the loop's thread) -------------------------------------
    def _on_connect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        assert self._connack is not None
        if self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(MqttError(f"the broker refused the connection: {reason}", refused=True))
            self._connack.exception()
        else:
            self.connected = True
            self._connack.set_result(None)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._soon(self._finish, f"disconnected: {reason}")

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._queue.append(message)
        if len(self._queue) >= self._queue_max and not self._paused and self._sock is not None:
            assert self._loop is not None
            self._paused = True
            self._loop.remove_reader(self._sock)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the consumer side -----------------------------------------------------------------
    async def messages(self) -> AsyncIterator[mqtt.MQTTMessage]:
        """Every message received, in order; ends with :class:`MqttError` when the connection does."""
        assert self._loop is not None and self.closed is not None
        queue = self._queue
        while True:
            if not queue:
                self._waiter = self._loop.create_future()
                await self._waiter
                self._waiter = None
                continue
            message = queue.popleft()
            if self._paused and len(queue) < self._queue_max // 2:
                self._paused = False
                if self._sock is not None:
                    self._loop.add_reader(self._sock, self._readable)
                    self._loop.call_soon(self._readable)
            if message is _CLOSED:
                raise MqttError(self.closed.result())
            yield message

    async def batch(self) -> list[mqtt.MQTTMessage]:
        """Every message waiting now, in order (waits for one); raises :class:`MqttError` once
        the connection ended and what it received was taken. One await for many messages."""
        assert self._loop is not None and self.closed is not None
        queue = self._queue
        while not queue:
            self._waiter = self._loop.create_future()
            await self._waiter
            self._waiter = None
        if queue[0] is _CLOSED:
            raise MqttError(self.closed.result())
        taken = []
        while queue and queue[0] is not _CLOSED:
            taken.append(queue.popleft())
        if self._paused:
            self._paused = False
            if self._sock is not None:
                self._loop.add_reader(self._sock, self._readable)
                self._loop.call_soon(self._readable)
        return taken

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message received on this connection (manual_ack); a no-op once it ended."""
        if qos and self.connected:
            self.client.ack(mid, qos)

    def ack_threadsafe(self, mid: int, qos: int) -> None:
        """:meth:`ack` from any thread; acks given together cross to the loop in one call."""
        if not qos:
            return
        with self._acks_lock:
            first = not self._acks
            self._acks.append((mid, qos))
        if first:
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._flush_acks)
            except RuntimeError:  # the loop is closed: the broker redelivers after a restart
                pass

    def _flush_acks(self) -> None:
        with self._acks_lock:
            acks, self._acks = self._acks, []
        if not self.connected:
            return
        client = self.client
        queue = getattr(client, "_packet_queue", None)
        if queue is None or any(qos != 1 for _, qos in acks) or not getattr(client, "_manual_ack", False):
            for mid, qos in acks:  # paho's own path, one packet at a time
                client.ack(mid, qos)
            return
        # the PUBACKs of a group commit as one write in paho's queue: each exactly the packet
        # paho's ack() → _send_puback builds (0x40, remaining length 2, packet id: success),
        # in arrival order, without its per-packet bookkeeping (1.1 → 0.06 µs an ack)
        queue(_PUBACK, b"".join([_pack_ack(_PUBACK, 2, mid) for mid, _ in acks]), 0, 1)

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the loop's thread (now if already there): for paho calls made
        from other threads, since paho's socket callbacks must run there."""
        self._soon(fn, *args)
