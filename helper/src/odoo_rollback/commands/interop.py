"""export, import and copy: snapshots to and from Odoo's backup zip, plain pg_dump files, new databases."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..config import Config
from ..copies import copy_snapshot
from ..errors import EXIT_OK, UsageError
from ..importer import import_backup
from ..journal import Journal
from ..odoo_zip import write_odoo_zip
from ..output import Output, human_size, table
from ..remote import ensure_local


def export(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    snapshot = ensure_local(cfg, args.id, Journal(cfg.storage.journal_path))
    if args.file == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write a zip to a terminal: give a FILE or redirect the output")
        write_odoo_zip(cfg.storage, snapshot, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return EXIT_OK
    target = Path(args.file)
    if target.exists():
        raise UsageError(f"{target} already exists; refusing to overwrite it")
    if not target.parent.is_dir():
        raise UsageError(f"folder {target.parent} does not exist")
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("xb") as handle:
            write_odoo_zip(cfg.storage, snapshot, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    doc = {"id": snapshot.id, "file": str(target), "format": args.format, "size": target.stat().st_size}
    out.emit(doc, lambda d: f"snapshot {d['id']} written to {d['file']} as an Odoo zip ({human_size(d['size'])})")
    return EXIT_OK


def import_file(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    snapshot, notes = import_backup(cfg, Path(args.file), args.label, Journal(cfg.storage.journal_path))
    doc = {**snapshot.summary(), "notes": notes}

    def human(d: dict[str, Any]) -> str:
        counts = table(["table", "rows"], [(t, "absent" if c is None else c) for t, c in d["counts"].items()])
        lines = [f"imported as snapshot {d['id']} ({human_size(d['size'])}), verified", counts]
        return "\n".join([*lines, *(f"note: {n}" for n in d["notes"])])

    out.emit(doc, human)
    return EXIT_OK


def copy(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    snapshot = ensure_local(cfg, args.id, Journal(cfg.storage.journal_path))
    result = copy_snapshot(cfg, snapshot, args.to, args.neutralize, Journal(cfg.storage.journal_path))

    def human(d: dict[str, Any]) -> str:
        text = f"snapshot {d['snapshot']} copied to database {d['database']}, filestore {d['filestore']}"
        if d["neutralized"]:
            text += f"\nneutralized ({len(d['neutralize_modules'])} modules' data/neutralize.sql)"
        return text

    out.emit(result, human)
    return EXIT_OK
