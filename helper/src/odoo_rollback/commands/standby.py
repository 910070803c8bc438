"""standby: build or drop the warm standby of a snapshot."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Config
from ..errors import EXIT_OK, UsageError
from ..journal import Journal
from ..output import Output, human_size
from ..standby import build_standby, drop_standby
from ..storage import SnapshotStore


def standby(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    snapshot = SnapshotStore(cfg.storage).get(args.id)
    journal = Journal(cfg.storage.journal_path)
    if args.action == "build":
        state = build_standby(cfg, snapshot, journal)
        doc: dict[str, Any] = {"snapshot": snapshot.id, **state.summary()}
    elif args.action == "drop":
        dropped = drop_standby(cfg, snapshot, journal, "dropped on request")
        doc = {"snapshot": snapshot.id, "dropped": dropped}
    else:  # pragma: no cover - argparse's choices
        raise UsageError(f"unknown standby action {args.action!r}")

    def human(d: dict[str, Any]) -> str:
        if "dropped" in d:
            return f"standby of {d['snapshot']} dropped" if d["dropped"] else f"{d['snapshot']} had no standby"
        return (
            f"standby of {d['snapshot']} ready as {d['database']} ({human_size(d['size'])}); "
            f"filestore: {d['linked']} file(s) linked, {d['copied']} copied"
            + (f" ({d['link_problem']})" if d["link_problem"] else "")
        )

    out.emit(doc, human)
    return EXIT_OK
