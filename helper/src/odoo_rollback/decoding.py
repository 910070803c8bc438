"""Reading the changes of a logical replication slot that uses PostgreSQL's built-in ``test_decoding``.

``test_decoding`` ships with every PostgreSQL server (no extension to install), which is why the
helper uses it rather than wal2json. Its output is one text line per row change::

    table public.res_partner: INSERT: id[integer]:51 name[character varying]:'O''Neil' note[text]:null
    table public.res_partner: UPDATE: old-key: id[integer]:3 new-tuple: id[integer]:4 ...
    table public.account_move: DELETE: id[integer]:5
    table public.a, public.b: TRUNCATE: (no-flags)

(contrib/test_decoding/test_decoding.c: identifiers as ``quote_identifier`` writes them, types as
``format_type_be``, numbers and booleans bare, every other value single-quoted with ``'`` doubled, and
``unchanged-toast-datum`` for a large value an UPDATE did not touch.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INTEGER_TYPES = {"smallint", "integer", "bigint", "oid"}
FLOAT_TYPES = {"real", "double precision"}
UNCHANGED_TOAST = "unchanged-toast-datum"
# A value an UPDATE did not send (a large value stored out of line): unknown, not NULL.
UNKNOWN = object()


@dataclass(frozen=True)
class DecodedChange:
    """One row change as the slot reports it."""

    tables: tuple[str, ...]  # one table, or several for a TRUNCATE
    action: str  # INSERT, UPDATE, DELETE, TRUNCATE
    new: dict[str, Any] | None  # the row after the change (INSERT, UPDATE)
    old: dict[str, Any] | None  # the replica identity before it (DELETE; UPDATE when the key changed)


class DecodeError(ValueError):
    pass


def _bare(raw: str, type_name: str) -> Any:
    """A value test_decoding writes unquoted: null, a number, a boolean."""
    special = {"null": None, UNCHANGED_TOAST: UNKNOWN}
    if raw in special:
        return special[raw]
    if type_name == "boolean":
        return raw == "true"
    if type_name in INTEGER_TYPES:
        return int(raw)
    if type_name in FLOAT_TYPES:
        return float(raw)
    return raw  # numeric: kept as text, exactly


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def rest(self) -> str:
        return self.text[self.pos :]

    def startswith(self, prefix: str) -> bool:
        return self.text.startswith(prefix, self.pos)

    def expect(self, literal: str) -> None:
        if not self.startswith(literal):
            raise DecodeError(f"expected {literal!r} at {self.pos} in {self.text[:200]!r}")
        self.pos += len(literal)

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def quoted(self, quote: str) -> str:
        """A value between *quote* characters, the quote doubled inside."""
        self.expect(quote)
        parts = []
        while True:
            end = self.text.find(quote, self.pos)
            if end < 0:
                raise DecodeError(f"unterminated {quote} in {self.text[:200]!r}")
            parts.append(self.text[self.pos : end])
            if self.text.startswith(quote * 2, end):
                parts.append(quote)
                self.pos = end + 2
                continue
            self.pos = end + 1
            return "".join(parts)

    def identifier(self, stops: str) -> str:
        if self.startswith('"'):
            return self.quoted('"')
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start : self.pos]

    def qualified_name(self) -> str:
        first = self.identifier(".:,")
        if self.startswith("."):
            self.pos += 1
            second = self.identifier(":,")
            return second if first == "public" else f"{first}.{second}"
        return first

    def value(self, type_name: str) -> Any:
        if self.startswith("'"):
            return self.quoted("'")
        if self.startswith("B'"):
            self.pos += 1
            return self.quoted("'")
        end = self.text.find(" ", self.pos)
        end = len(self.text) if end < 0 else end
        raw = self.text[self.pos : end]
        self.pos = end
        return _bare(raw, type_name)

    def tuple_(self) -> dict[str, Any] | None:
        self.skip_spaces()
        if self.startswith("(no-tuple-data)"):
            self.pos += len("(no-tuple-data)")
            return None
        row: dict[str, Any] = {}
        while self.pos < len(self.text):
            self.skip_spaces()
            if self.pos >= len(self.text) or self.startswith("new-tuple:"):
                break
            name = self.identifier("[")
            self.expect("[")
            end = self.text.find("]:", self.pos)
            if end < 0:
                raise DecodeError(f"no type for column {name!r} in {self.text[:200]!r}")
            type_name = self.text[self.pos : end]
            self.pos = end + 2
            value = self.value(type_name)
            if value is not UNKNOWN:
                row[name] = value
        return row


def parse_change(line: str) -> DecodedChange | None:
    """The change a ``test_decoding`` line describes; None for BEGIN, COMMIT and messages."""
    if not line.startswith("table "):
        return None
    scan = _Scanner(line)
    scan.expect("table ")
    tables = [scan.qualified_name()]
    while scan.startswith(", "):
        scan.pos += 2
        tables.append(scan.qualified_name())
    scan.expect(": ")
    action = scan.identifier(":")
    scan.expect(":")
    if action == "TRUNCATE":
        return DecodedChange(tuple(tables), action, None, None)
    if action == "INSERT":
        return DecodedChange(tuple(tables), action, scan.tuple_(), None)
    if action == "DELETE":
        return DecodedChange(tuple(tables), action, None, scan.tuple_())
    if action == "UPDATE":
        old = None
        scan.skip_spaces()
        if scan.startswith("old-key:"):
            scan.pos += len("old-key:")
            old = scan.tuple_()
            scan.skip_spaces()
            scan.expect("new-tuple:")
        return DecodedChange(tuple(tables), action, scan.tuple_(), old)
    raise DecodeError(f"unknown change {action!r} in {line[:200]!r}")
