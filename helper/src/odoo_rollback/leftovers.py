"""What a dead run left behind, cleaned by the next snapshot, prune or resume, under the lock.

- ``snapshots/.partial-*`` folders: a snapshot being written, a snapshot being deleted
  (``.partial-deleting-``), a dump being copied for a restore (``.partial-read-``). Only runs holding
  the operation lock make them, so once the lock is taken every one of them, but this process's own,
  is a dead run's.
  An export, which runs without the lock, makes its checked copy in ``reading/`` instead, flock-held
  while in use: the next export removes a killed one's (verify.unlocked_read_root).
- operations the journal still shows ``running`` whose process has ended: closed as ``failed``, with
  the step they reached. Not restores, which ``resume`` finishes or undoes from what they did, nor
  deployments, which the next deployment closes after judging the state they left.
- the scratch database of a dead drill or deep verify, named in its journal.
"""

from __future__ import annotations

from contextlib import suppress

from .config import Config
from .db import database_exists, maintenance
from .dump import drop_database
from .errors import RollbackError
from .journal import FAILED, Journal, Operation, owner_of
from .storage import SnapshotStore

# Operations closed here; all but a shallow verify and the standby's (which run beside a deployment,
# under a lock of their own) hold the lock while they run. A dead standby build's copy is dropped by
# the next build, a restore of its snapshot or a prune (see odoo_rollback.standby).
CLOSED_HERE = ("snapshot", "drill", "verify", "prune", "standby", "standby_drop")


def _locked(op: Operation) -> bool:
    if op.kind.startswith("standby"):
        return False
    return op.kind != "verify" or bool(op.data.get("deep"))


def is_dead(op: Operation) -> bool:
    """Whether *op*'s process has ended; asked by a run that holds the lock."""
    owner = owner_of(op)
    if owner is None:  # recorded before owners were: only the lock can tell
        return _locked(op)
    return not owner.alive()


def _scratch_database(cfg: Config, journal: Journal, op: Operation) -> str | None:
    if op.kind == "drill":
        name = op.data.get("scratch")
    else:
        name = next(
            (e.data.get("database") for e in journal.events(operation_id=op.id) if e.step == "scratch_restore"), None
        )
    purpose = "__drill_" if op.kind == "drill" else "__verify_"
    if isinstance(name, str) and name.startswith(f"{cfg.database.name}{purpose}"):
        return name
    return None


def close_dead_operations(cfg: Config, journal: Journal, by: str) -> list[str]:
    """Close the dead runs' operations as failed, dropping the scratch databases they named."""
    closed = []
    for op in journal.unfinished():
        if op.kind not in CLOSED_HERE or not is_dead(op):
            continue
        scratch = _scratch_database(cfg, journal, op) if op.kind in ("drill", "verify") and _locked(op) else None
        if scratch:
            exists = False
            with suppress(RollbackError), maintenance(cfg.database) as conn:
                exists = database_exists(conn, scratch)
            if exists:
                drop_database(cfg.database, scratch)
                journal.event(op.id, "cleanup", "done", f"scratch database {scratch} dropped by {by}")
        last = journal.last_event(op.id)
        owner = owner_of(op)
        journal.finish(
            op.id,
            FAILED,
            f"interrupted: process {owner.pid if owner else '(unknown)'} ended during step "
            f"{last.step if last else op.kind}; closed by {by}",
        )
        closed.append(op.id)
    return closed


def clean_dead_runs(cfg: Config, journal: Journal, by: str) -> dict[str, list[str]]:
    """Everything :mod:`leftovers` describes; call it holding the operation lock."""
    removed = SnapshotStore(cfg.storage).remove_partials()
    return {"partial_folders_removed": removed, "operations_closed": close_dead_operations(cfg, journal, by)}
