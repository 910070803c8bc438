"""HMAC-SHA256 request signing, shared with the Odoo addon (which implements the same few lines).

message = METHOD "\n" PATH_WITH_QUERY "\n" TIMESTAMP "\n" NONCE "\n" DATABASE "\n" sha256_hex(BODY)
signature = hex(HMAC-SHA256(secret, message)), sent with the timestamp, nonce and database in headers.

DATABASE is the Odoo database the request is made for: every database of one Odoo instance reads the same
secret (odoo.conf), so without it a manager of any database could make another database's helper act.
A request is refused if a signing header is missing, given twice or malformed, if its timestamp is outside
the allowed clock skew, if its nonce was seen before (a replay), or if it is for another database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from email.message import Message
from typing import Protocol

from ..config import DBNAME_PATTERN

TIMESTAMP_HEADER = "X-Rollback-Timestamp"
NONCE_HEADER = "X-Rollback-Nonce"
SIGNATURE_HEADER = "X-Rollback-Signature"
DATABASE_HEADER = "X-Rollback-Database"
NONCE_PATTERN = re.compile(r"[0-9a-f]{16,64}")
# Each signing header's exact form, ASCII only: anything else (a superscript digit that str.isdigit()
# accepts, a 5000-digit number, a latin-1 letter) is refused as a bad signature before it is parsed.
HEADER_FORMATS: dict[str, re.Pattern[str]] = {
    TIMESTAMP_HEADER: re.compile(r"[0-9]{1,12}"),
    NONCE_HEADER: NONCE_PATTERN,
    SIGNATURE_HEADER: re.compile(r"[0-9a-f]{64}"),
    DATABASE_HEADER: DBNAME_PATTERN,
}


class SignatureError(Exception):
    """The request is not signed correctly; the message says why (for the log, not the client)."""


class WrongDatabase(Exception):
    """A correctly signed request made for another database than the one this helper serves."""

    def __init__(self, requested: str, served: str) -> None:
        super().__init__(f"signed for database {requested!r}; this helper serves {served!r}")
        self.requested = requested


class SeenNonces(Protocol):
    def add(self, nonce: str, timestamp: int, now: float) -> bool:
        """Remember *nonce*; False if it was already seen (a replay)."""
        ...


def canonical_message(method: str, path: str, timestamp: str, nonce: str, database: str, body: bytes) -> bytes:
    return "\n".join([method.upper(), path, timestamp, nonce, database, hashlib.sha256(body).hexdigest()]).encode()


def sign(secret: bytes, method: str, path: str, timestamp: str, nonce: str, database: str, body: bytes) -> str:
    message = canonical_message(method, path, timestamp, nonce, database, body)
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signed_headers(
    secret: bytes, database: str, method: str, path: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    timestamp = str(int(now if now is not None else time.time()))
    nonce = secrets.token_hex(16)
    return {
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        DATABASE_HEADER: database,
        SIGNATURE_HEADER: sign(secret, method, path, timestamp, nonce, database, body),
    }


@dataclass(frozen=True)
class SignedFields:
    timestamp: str
    nonce: str
    database: str
    signature: str


def signing_fields(headers: Message) -> SignedFields:
    """The signing headers, each present once and in its exact form; a SignatureError otherwise.

    *headers* is the request's header object, whose names are case-insensitive (RFC 9110 5.1): a
    client or proxy that lowercases them is still understood. A header given twice is refused: which
    copy was signed and which one would be checked must never differ.
    """
    values: dict[str, str] = {}
    for name, pattern in HEADER_FORMATS.items():
        found = headers.get_all(name) or []
        if not found:
            hint = " (a client older than this helper? upgrade the addon with it)" if name == DATABASE_HEADER else ""
            raise SignatureError(f"unsigned request: no {name} header{hint}")
        if len(found) > 1:
            raise SignatureError(f"{name} given {len(found)} times")
        value = found[0]
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise SignatureError(f"malformed {name}: {str(value)[:80]!r}")
        values[name] = value
    return SignedFields(
        timestamp=values[TIMESTAMP_HEADER],
        nonce=values[NONCE_HEADER],
        database=values[DATABASE_HEADER],
        signature=values[SIGNATURE_HEADER],
    )


class Verifier:
    def __init__(self, secret: bytes, max_clock_skew: int, database: str, nonces: SeenNonces) -> None:
        self.secret = secret
        self.max_clock_skew = max_clock_skew
        self.database = database
        self.nonces = nonces

    def check_headers(self, headers: Message, now: float | None = None) -> SignedFields:
        """What can be checked without the body: a request failing this is refused before it is read."""
        now = time.time() if now is None else now
        fields = signing_fields(headers)
        if abs(now - int(fields.timestamp)) > self.max_clock_skew:
            raise SignatureError(f"timestamp {fields.timestamp} outside the allowed window")
        return fields

    def verify(self, method: str, path: str, headers: Message, body: bytes, now: float | None = None) -> None:
        """Accept a request signed with the secret, fresh, never seen before, and for this helper's database."""
        now = time.time() if now is None else now
        fields = self.check_headers(headers, now)
        expected = sign(self.secret, method, path, fields.timestamp, fields.nonce, fields.database, body)
        # Both ASCII (checked above): bytes, so that compare_digest never raises on what a client sent.
        if not hmac.compare_digest(expected.encode("ascii"), fields.signature.encode("ascii")):
            raise SignatureError("bad signature")
        if not self.nonces.add(fields.nonce, int(fields.timestamp), now):
            raise SignatureError(f"nonce {fields.nonce} already used (replay)")
        # Checked once the signature holds: only a holder of the secret learns that the database differs.
        if fields.database != self.database:
            raise WrongDatabase(fields.database, self.database)
