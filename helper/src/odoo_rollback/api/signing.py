"""HMAC-SHA256 request signing, shared with the Odoo addon (which implements the same few lines).

message = METHOD "\n" PATH_WITH_QUERY "\n" TIMESTAMP "\n" NONCE "\n" sha256_hex(BODY)
signature = hex(HMAC-SHA256(secret, message)), sent with the timestamp and nonce in headers.
A request is refused if its timestamp is outside the allowed clock skew, or its nonce was seen before
within that window (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time

TIMESTAMP_HEADER = "X-Rollback-Timestamp"
NONCE_HEADER = "X-Rollback-Nonce"
SIGNATURE_HEADER = "X-Rollback-Signature"
NONCE_PATTERN = re.compile(r"^[0-9a-f]{16,64}$")


class SignatureError(Exception):
    """The request is not signed correctly; the message says why (for the log, not the client)."""


def canonical_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join([method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest()]).encode()


def sign(secret: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac.new(secret, canonical_message(method, path, timestamp, nonce, body), hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, method: str, path: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(now if now is not None else time.time()))
    nonce = secrets.token_hex(16)
    return {
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(secret, method, path, timestamp, nonce, body),
    }


class NonceCache:
    """Nonces seen within the clock-skew window; older ones are forgotten, as their timestamps expire."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, nonce: str, now: float) -> bool:
        """Remember *nonce*; False if it was already seen (a replay)."""
        with self._lock:
            for old, at in list(self._seen.items()):
                if now - at > 2 * self.window:
                    del self._seen[old]
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


class Verifier:
    def __init__(self, secret: bytes, max_clock_skew: int) -> None:
        self.secret = secret
        self.max_clock_skew = max_clock_skew
        self.nonces = NonceCache(max_clock_skew)

    def check_headers(self, headers: dict[str, str], now: float | None = None) -> None:
        """What can be checked without the body: a request failing this is refused before it is read."""
        now = time.time() if now is None else now
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        nonce = headers.get(NONCE_HEADER, "")
        signature = headers.get(SIGNATURE_HEADER, "")
        if not (timestamp and nonce and signature):
            raise SignatureError("unsigned request")
        if not timestamp.isdigit() or abs(now - int(timestamp)) > self.max_clock_skew:
            raise SignatureError(f"timestamp {timestamp!r} outside the allowed window")
        if not NONCE_PATTERN.match(nonce):
            raise SignatureError("malformed nonce")

    def verify(self, method: str, path: str, headers: dict[str, str], body: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.check_headers(headers, now)
        timestamp, nonce = headers[TIMESTAMP_HEADER], headers[NONCE_HEADER]
        signature = headers[SIGNATURE_HEADER]
        expected = sign(self.secret, method, path, timestamp, nonce, body)
        if not hmac.compare_digest(expected, signature.lower()):
            raise SignatureError("bad signature")
        if not self.nonces.add(nonce, now):
            raise SignatureError(f"nonce {nonce} already used (replay)")
