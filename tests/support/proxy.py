"""An HTTP/1.1 forwarding proxy on 127.0.0.1 that loses the first answers on the way back.

It forwards each request to the gateway (which commits the events and answers) and, for the
first ``drop`` requests, closes the client's connection instead of relaying the answer — the
"committed, but the acknowledgement was lost" case that makes a client retry the same batch.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from edge.broker import free_port


def _read_request(conn: socket.socket) -> tuple[bytes, dict[str, str], bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return lines[0].encode("latin-1"), headers, body


@contextmanager
def dropping_proxy(upstream: str, drop: int) -> Iterator[tuple[str, dict[str, int]]]:
    """Yields (base URL, counters {"requests", "dropped"})."""
    counters = {"requests": 0, "dropped": 0}
    lock = threading.Lock()
    listener = socket.create_server(("127.0.0.1", free_port()))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, httpx.Client(base_url=upstream, timeout=30) as client:
            while True:
                request = _read_request(conn)
                if request is None:
                    return
                line, headers, body = request
                method, path, _ = line.decode().split(" ", 2)
                forward = {k: v for k, v in headers.items() if k not in ("host", "content-length", "connection")}
                answer = client.request(method, path, content=body, headers=forward)
                with lock:
                    counters["requests"] += 1
                    lose = counters["dropped"] < drop
                    if lose:
                        counters["dropped"] += 1
                if lose:
                    return  # the gateway committed; the client never hears of it
                payload = answer.content
                out = [f"HTTP/1.1 {answer.status_code} {answer.reason_phrase}"]
                out += [
                    f"{k}: {v}"
                    for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")
                ]
                out += [f"content-length: {len(payload)}", "connection: keep-alive", "", ""]
                conn.sendall("\r\n".join(out).encode("latin-1") + payload)

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", counters
    finally:
        stop.set()
        thread.join(5)
        listener.close()
