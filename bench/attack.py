"""Availability under slow clients: what share of /ping and /invocations requests a server answers while
``connections`` clients hold connections open by sending slowly, or nothing at all.

The attackers cycle through three kinds: headers sent one byte every ``interval`` seconds (slowloris), a body sent
one byte every ``interval`` after complete headers, and a connection opened and left idle. Each reconnects when
the server closes it. Meanwhile a prober sends, one after another on fresh connections as a health checker does,
``GET /ping`` and ``POST /invocations`` (the 1-row payload), each with a ``probe_timeout``; a request counts as
available when it answers 200 in time.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass

KINDS = ("slow-headers", "slow-body", "idle")


@dataclass
class Availability:
    ping: float  # share of /ping probes answered 200 in time
    invocations: float
    probes: int  # of each kind
    attackers: int
    seconds: float


def _attacker(port: int, kind: str, interval: float, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if kind == "slow-body":
                    sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100000\r\n\r\n")
                elif kind == "slow-headers":
                    sock.sendall(b"POST /invocations HTTP/1.1\r\n")
                while not stop.wait(interval):
                    if kind != "idle":
                        sock.sendall(b"a" if kind == "slow-body" else b"X")
                    else:
                        sock.settimeout(interval)
                        try:
                            if sock.recv(1) == b"":
                                break  # closed by the server: reconnect
                        except TimeoutError:
                            pass
        except OSError:
            stop.wait(0.05)  # refused or reset: try again


def _probe(port: int, method: str, path: str, body: bytes | None, content_type: str, timeout: float) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type} if body else {})
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def measure(port: int, infer_path: str, body: bytes, content_type: str, connections: int, seconds: float,
            interval: float = 0.5, probe_timeout: float = 2.0) -> Availability:
    """Attack with ``connections`` slow clients for ``seconds`` while probing; the shares answered."""
    stop = threading.Event()
    attackers = [threading.Thread(target=_attacker, args=(port, KINDS[i % len(KINDS)], interval, stop), daemon=True)
                 for i in range(connections)]
    for thread in attackers:
        thread.start()
    time.sleep(min(3.0, seconds / 4))  # let the attack take hold before probing
    ok = {"ping": 0, "invocations": 0}
    probes = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ok["ping"] += _probe(port, "GET", "/ping", None, content_type, probe_timeout)
        ok["invocations"] += _probe(port, "POST", infer_path, body, content_type, probe_timeout)
        probes += 1
        time.sleep(0.05)
    stop.set()
    for thread in attackers:
        thread.join(timeout=5)
    return Availability(ok["ping"] / probes, ok["invocations"] / probes, probes, connections, seconds)
