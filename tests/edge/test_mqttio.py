"""edge.mqttio: paho driven by the event loop, against a real Mosquitto and real paho publishers."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.paho import close_client
from support.services import free_port, mosquitto

from edge.mqttio import BufferedSocket, Connection, MqttError

TOPIC = "bench/t"


def _conf(tmp_path: Path, port: int) -> str:
    user = pwd.getpwuid(os.getuid()).pw_name
    return (f"user {user}\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"max_inflight_messages 1000\nmax_queued_messages 100000\n")  # fmt: skip


def _publish(port: int, payloads: list[bytes]) -> None:
    """A real paho publisher, in its own thread: QoS 1, waits for every PUBACK."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(TOPIC, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(20)
    close_client(c)


def _client(client_id: str, manual_ack: bool) -> mqtt.Client:
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                       manual_ack=manual_ack)  # fmt: skip


def _session() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    return props


def test_buffered_socket_hands_out_what_one_recv_read() -> None:
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        wrapped = BufferedSocket(b)
        with pytest.raises(BlockingIOError):
            wrapped.recv(1)
        a.sendall(b"\x30\x05hello\x30\x03abc")
        assert wrapped.recv(1) == b"\x30"
        assert wrapped.pending() == 11
        assert wrapped.recv(1) == b"\x05"
        assert wrapped.recv(100) == b"hello\x30\x03abc"[:100]  # at most what is buffered
        assert wrapped.pending() == 0
        assert wrapped.fileno() == b.fileno()  # everything else is the socket's
        assert wrapped.send(b"\x40\x02\x00\x01") == 4 and wrapped.send(b"\x40\x02\x00\x02") == 4
        a.setblocking(False)
        with pytest.raises(BlockingIOError):
            a.recv(100)  # gathered, not sent yet
        assert wrapped.flush()
        assert a.recv(100) == b"\x40\x02\x00\x01\x40\x02\x00\x02"  # both in one send
        a.setblocking(True)
        a.close()
        assert wrapped.recv(1) == b""  # the peer closed
    finally:
        a.close()
        b.close()


def test_messages_arrive_in_order_through_a_bounded_queue(tmp_path: Path) -> None:
    port = free_port()
    payloads = [f"m{i}:".encode() + b"x" * 190 for i in range(3000)]
    with mosquitto(_conf(tmp_path, port), tmp_path, port):

        async def main() -> tuple[list[bytes], int]:
            client = _client("sub", manual_ack=False)
            async with Connection(client, "127.0.0.1", port, queue_max=50) as conn:
                client.subscribe(TOPIC, qos=1)
                await asyncio.sleep(0.3)
                publisher = asyncio.create_task(asyncio.to_thread(_publish, port, payloads))
                await asyncio.sleep(1.0)  # nobody consumes: reading stops at the bound
                backlog = len(conn._queue)
                got = []
                async for message in conn.messages():
                    got.append(message.payload)
                    if len(got) == len(payloads):
                        break
                await publisher
            return got, backlog

        got, backlog = asyncio.run(main())
    assert got == payloads
    assert 50 <= backlog <= 50 + 1  # paused at the bound; TCP and the broker held the rest


async def _ended(conn: Connection) -> None:
    """Wait until the aborted connection's message stream ends with its MqttError."""
    with pytest.raises(MqttError):
        async for _ in conn.messages():
            pass


async def _redelivered(client: mqtt.Client, port: int, count: int, settle: float = 0.0) -> list[bytes]:
    """Reconnect the persistent session and take (and ack) ``count`` redelivered messages; with
    ``settle``, wait that long and check nothing more arrives."""
    again = []
    async with Connection(client, "127.0.0.1", port, clean_start=False, properties=_session()) as conn:
        async for message in conn.messages():
            again.append(message.payload)
            conn.ack(message.mid, 1)
            if len(again) == count:
                break
        if settle:
            await asyncio.sleep(settle)
            assert not conn._queue, "redelivered more than expected"
    return again


def test_acks_after_the_connection_ended_are_dropped_and_the_broker_redelivers(tmp_path: Path) -> None:
    port = free_port()
    with mosquitto(_conf(tmp_path, port), tmp_path, port):

        async def main() -> tuple[list[bytes], list[bytes]]:
            client = _client("gw", manual_ack=True)
            async with Connection(client, "127.0.0.1", port, clean_start=False, properties=_session()) as conn:
                client.subscribe(TOPIC, qos=1)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(_publish, port, [b"a", b"b", b"c"])
                first = []
                async for message in conn.messages():
                    first.append(message)
                    if len(first) == 3:
                        break
                conn.ack(first[0].mid, 1)  # "a" is durable
                await asyncio.sleep(0.3)
                conn.abort()  # lost before "b" and "c" were acknowledged
                conn.ack_threadsafe(first[1].mid, 1)  # a late ack: must not reach a later connection
                conn.ack(first[2].mid, 1)
                await _ended(conn)
            again = await _redelivered(client, port, 2)
            return [m.payload for m in first], again

        first, again = asyncio.run(main())
    assert first == [b"a", b"b", b"c"]
    assert again == [b"b", b"c"]  # redelivered; "a" was acknowledged and is not


def test_a_group_commit_s_acks_go_as_one_write_and_mosquitto_takes_every_one(tmp_path: Path) -> None:
    """The PUBACKs handed over together (a group commit's) leave in one write of paho's queue;
    Mosquitto must count each: acked messages are never redelivered, the rest all are."""
    port = free_port()
    payloads = [f"m{i}".encode() for i in range(300)]
    with mosquitto(_conf(tmp_path, port), tmp_path, port):

        async def main() -> tuple[int, bool, list[bytes]]:
            client = _client("gw", manual_ack=True)
            async with Connection(client, "127.0.0.1", port, clean_start=False, properties=_session()) as conn:
                client.subscribe(TOPIC, qos=1)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(_publish, port, payloads)
                first = []
                async for message in conn.messages():
                    first.append(message)
                    if len(first) == len(payloads):
                        break
                writes = []
                queue = client._packet_queue
                client._packet_queue = lambda *a: (writes.append((a[0], a[1])), queue(*a))[1]  # type: ignore[method-assign]

                def ack_200() -> None:  # as the journal writer does, from its own thread
                    for message in first[:200]:
                        conn.ack_threadsafe(message.mid, 1)

                await asyncio.to_thread(ack_200)
                await asyncio.sleep(0.5)
                client._packet_queue = queue  # type: ignore[method-assign]
                still_up = conn.connected
                conn.abort()
                await _ended(conn)
            again = await _redelivered(client, port, 100, settle=0.3)  # the 200 acked never come back
            pubacks = [data for command, data in writes if command == 0x40]
            assert len(pubacks) < 20  # gathered: one write per flush, not one per message
            sent = [int.from_bytes(w[i + 2 : i + 4], "big") for w in pubacks for i in range(0, len(w), 4)]
            assert all(w[i : i + 2] == b"\x40\x02" for w in pubacks for i in range(0, len(w), 4))
            assert sent == [m.mid for m in first[:200]]  # every one, in arrival order
            return len(sent), still_up, again

        acked, still_up, again = asyncio.run(main())
    assert acked == 200 and still_up  # the broker kept the connection: no malformed packet
    assert again == payloads[200:]


def test_a_refused_login_and_an_absent_broker_raise_mqtt_error(tmp_path: Path) -> None:
    port = free_port()
    user = pwd.getpwuid(os.getuid()).pw_name
    (tmp_path / "pw").write_text("")
    conf = f"user {user}\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {tmp_path / 'pw'}\n"
    with mosquitto(conf, tmp_path, port):

        async def refused() -> None:
            async with Connection(_client("x", False), "127.0.0.1", port):
                pass

        with pytest.raises(MqttError) as info:
            asyncio.run(refused())
        assert info.value.refused

    async def absent() -> None:
        async with Connection(_client("y", False), "127.0.0.1", free_port()):
            pass

    with pytest.raises(MqttError, match="cannot reach"):
        asyncio.run(absent())


def _stock(packet_type: int) -> Properties:
    """A Properties built by paho's own constructor (its per-instance tables)."""
    props = object.__new__(Properties)
    Properties._stock_init(props, packet_type)
    return props


@pytest.mark.parametrize("packet_type", [PacketTypes.PUBLISH, PacketTypes.PUBACK, PacketTypes.CONNECT])
def test_shared_property_tables_pack_and_unpack_as_paho_does(packet_type):
    """share_property_tables() changes where paho keeps its constant tables, nothing else: the
    same properties pack to the same bytes and unpack to the same values as with paho's own
    constructor, validation still refuses what paho refuses, and instances share no values."""
    values = {
        PacketTypes.PUBLISH: {"MessageExpiryInterval": 60, "ContentType": "application/json",
                              "CorrelationData": b"\x00\x01", "ResponseTopic": "r/1",
                              "UserProperty": [("k", "v"), ("k", "w")]},
        PacketTypes.PUBACK: {"ReasonString": "stored", "UserProperty": [("journal", "seq-7")]},
        PacketTypes.CONNECT: {"SessionExpiryInterval": 3600, "ReceiveMaximum": 20, "MaximumPacketSize": 65536},
    }[packet_type]  # fmt: skip
    ours, theirs = Properties(packet_type), _stock(packet_type)
    assert ours.names == theirs.names and ours.properties == theirs.properties and ours.types == theirs.types
    for props in (ours, theirs):
        for name, value in values.items():
            for item in value if isinstance(value, list) else [value]:
                setattr(props, name, item)
    packed = ours.pack()
    assert packed == theirs.pack()
    back, stock_back = Properties(packet_type), _stock(packet_type)
    back.unpack(packed)
    stock_back.unpack(packed)
    assert back.json() == stock_back.json() and str(back) == str(stock_back)
    assert Properties(packet_type).json() == {}  # a new instance holds none of those values
    reused, stock_reused = Properties(packet_type), _stock(packet_type)
    for props in (reused, stock_reused):
        props.unpack(packed)  # unpack clears first: into a used instance as into a fresh one
        props.unpack(packed)
    assert reused.json() == stock_reused.json() == back.json()
    Properties._stock_clear(stock_reused)
    reused.clear()
    assert reused.json() == stock_reused.json() == {} and vars(reused).keys() == vars(Properties(packet_type)).keys()
    with pytest.raises(Exception, match="does not apply|must be one of"):
        Properties(PacketTypes.PUBACK).ContentType = "text/plain"
    with pytest.raises(Exception, match="must be one of"):
        Properties(packet_type).NoSuchProperty = 1


def test_received_messages_make_no_condition_and_publishes_still_wait(tmp_path, monkeypatch):
    """defer_message_conditions(): an info object makes its Condition on first use only. A
    message as paho builds it for a PUBLISH it received makes none; a real QoS 1 publish to
    Mosquitto, waited on from this thread while paho's network thread acks it, still waits,
    completes and reports published; and threads racing for one info's Condition get one."""
    import threading

    made: list[object] = []
    stock = threading.Condition

    def counting(*args: object) -> threading.Condition:
        made.append(args)
        return stock(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(threading, "Condition", counting)
    received = mqtt.MQTTMessage(7, b"stores/s1/events")
    received.payload = b"{}"
    assert received.info.mid == 7 and list(received.info) == [mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS, 7]
    assert made == []  # nothing to wait on, nothing made
    monkeypatch.undo()

    racing = mqtt.MQTTMessageInfo(9)
    seen: list[object] = []
    start = threading.Barrier(8)

    def grab() -> None:
        start.wait()
        seen.append(racing._condition)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 1

    port = free_port()
    with mosquitto(_conf(tmp_path, port), tmp_path, port):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="waiter", protocol=mqtt.MQTTv5)
        c.connect("127.0.0.1", port)
        c.loop_start()
        try:
            infos = [c.publish(TOPIC, b"x%d" % i, qos=1) for i in range(50)]
            for info in infos:
                info.wait_for_publish(10)
            assert all(info.is_published() for info in infos)
        finally:
            close_client(c)


def _sockets() -> int:
    """Sockets this process holds open (Linux: their /proc/self/fd links)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # the listing's own descriptor, closed by now
            pass
    return count


def test_a_stop_during_the_connect_leaves_no_socket_behind(tmp_path: Path) -> None:
    """paho's blocking connect runs in a thread; a stop that lands meanwhile must not leave that
    thread's socket (and paho's wake-up pair) open, connected to the broker, for good."""
    port = free_port()
    with mosquitto(_conf(tmp_path, port), tmp_path, port):

        async def stopped_mid_connect() -> tuple[int, int, Connection]:
            before = _sockets()  # the loop's own included
            connection = Connection(_client("mid", False), "127.0.0.1", port)
            entering = asyncio.create_task(connection.__aenter__())
            await asyncio.sleep(0)  # the connect has started in its thread
            entering.cancel()
            with pytest.raises(asyncio.CancelledError):
                await entering
            for _ in range(200):  # the connect thread finishes on its own
                await asyncio.sleep(0.01)
                if _sockets() == before:
                    break
            return before, _sockets(), connection

        before, after, connection = asyncio.run(stopped_mid_connect())
        assert after == before, "the cancelled connect's sockets are still open"
        assert connection.client._sock is None and not connection.connected
