"""What commands print: one JSON document with --json, readable text otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO


class Output:
    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout

    @property
    def interactive(self) -> bool:
        """True when a person watches: progress bars are shown only then."""
        return not self.as_json and sys.stderr.isatty()

    def emit(self, document: Any, human: Callable[[Any], str] | None = None) -> None:
        if self.as_json:
            self.stream.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
        else:
            text = human(document) if human else json.dumps(document, indent=2, default=str)
            self.stream.write(text.rstrip("\n") + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        """A human line on stderr (never mixed into JSON output)."""
        if not self.as_json:
            sys.stderr.write(message.rstrip("\n") + "\n")
            sys.stderr.flush()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover
