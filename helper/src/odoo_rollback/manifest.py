"""The manifest of a snapshot: what it holds and how to check it, as one JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
DUMP_NAME = "db.dump"
FILESTORE_NAME = "filestore.tar"
# scheduled: taken by the Odoo cron or the systemd timer; imported: made from an Odoo zip or a pg_dump file.
SNAPSHOT_KINDS = ("pre_deploy", "manual", "drill", "scheduled")


@dataclass
class Manifest:
    id: str
    kind: str
    label: str
    created_at: str
    database: str
    server_version: str
    modules: dict[str, str]
    code_revision: str | None
    counts: dict[str, int | None]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    dump_format: str = "directory"
    verified_at: str | None = None
    verified_deep: bool = False
    format_version: int = 1
    # How the changes made after this snapshot are found (see capture.py): mode, slot, the dump's
    # pg_current_snapshot(), the database's oid, and the tables and columns it had.
    capture: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        return sum(int(entry["size"]) for entry in self.files.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})

    def summary(self, path: Path | None = None) -> dict[str, Any]:
        """The object that ``snapshot --json`` and ``list --json`` print."""
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "path": str(path) if path else None,
            "created_at": self.created_at,
            "database": self.database,
            "server_version": self.server_version,
            "counts": self.counts,
            "size": self.size,
            "verified_at": self.verified_at,
            "verified_deep": self.verified_deep,
            "code_revision": self.code_revision,
            "modules": self.modules,
            "capture": {k: v for k, v in (self.capture or {}).items() if k in ("mode", "slot", "reason")},
        }
