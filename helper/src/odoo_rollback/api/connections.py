"""What a connection to the API may cost: a deadline for its request, a byte budget, and a bounded count.

A client that sends its request slowly, or never finishes it (slowloris), would otherwise hold a thread
and a socket forever. Each connection therefore gets a deadline for its whole request (request line,
headers and body, from the moment it is accepted) and a budget of bytes; and the server serves at most
a fixed number of connections at once. When a new connection arrives and every place is taken, the
oldest connection still sending its request is closed to make room (nginx's answer when it runs out
of connections), so that a flood of half-sent requests never keeps ``GET /v1/health`` from answering.
Connections whose request was read (signed requests being handled) are never closed this way; when
all places hold one, the newcomer gets ``503`` at once.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger("odoo_rollback.api")

# Request line and headers together: Odoo's requests carry a handful of short headers.
MAX_HEADER_BYTES = 16 * 1024
_BUSY_BODY = b'{"error": "the helper is busy: try again shortly"}'
BUSY_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class RequestTooLarge(OSError):
    """The client sent more than the request it announced may hold (a header block beyond the limit)."""


class DeadlineReader(io.RawIOBase):
    """The bytes of one connection, until *deadline* (time.monotonic()) and for at most *budget* bytes.

    Every read waits only for the time left, so that a client sending one byte at a time cannot stretch
    the request beyond the deadline (a per-read timeout alone would allow that). Reading past the budget
    raises RequestTooLarge: no request the API accepts is that large.
    """

    def __init__(self, sock: socket.socket, deadline: float, budget: int) -> None:
        super().__init__()
        self.sock = sock
        self.deadline = deadline
        self.budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request was not received in time")
        if self.budget <= 0:
            raise RequestTooLarge("the request is larger than any the API accepts")
        self.sock.settimeout(left)
        with memoryview(buffer) as view:
            received = self.sock.recv_into(view[: self.budget])
        self.budget -= received
        return received


class ConnectionLimiter:
    """At most *limit* connections at once; a newcomer takes the place of the oldest one still reading."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._reading: dict[socket.socket, None] = {}  # insertion order: the oldest first
        self._handling: set[socket.socket] = set()

    def admit(self, sock: socket.socket) -> bool:
        """Take a place for *sock*, closing the oldest reading connection if needed; False if none is free."""
        with self._lock:
            if len(self._reading) + len(self._handling) >= self.limit:
                if not self._reading:
                    return False
                oldest = next(iter(self._reading))
                del self._reading[oldest]
                # shutdown, not close: its own thread is blocked reading it and closes it when it wakes.
                _shutdown(oldest)
            self._reading[sock] = None
            return True

    def request_read(self, sock: socket.socket) -> bool:
        """*sock* sent its whole request: it is no longer a candidate for closing. False if it was closed."""
        with self._lock:
            if sock not in self._reading:
                return False
            del self._reading[sock]
            self._handling.add(sock)
            return True

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._reading.pop(sock, None)
            self._handling.discard(sock)


def refuse_busy(sock: socket.socket) -> None:
    """Answer 503 without reading anything; a client that does not take it is not waited for."""
    try:
        sock.setblocking(False)
        sock.send(BUSY_REPLY)
    except OSError as exc:
        # The client is gone or not reading: it gets the connection closed instead.
        log.debug("busy reply not sent: %s", exc)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:
        log.debug("connection already closed by its client: %s", exc)
