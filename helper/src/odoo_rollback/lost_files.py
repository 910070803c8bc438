"""The filestore's side of the lost changes: the files of the attachments written after the snapshot.

An ``ir_attachment`` row inserted or updated after the snapshot is exported with the other lost rows,
but its content is a file in the filestore (``store_fname``, named by the sha1 of its content): the
restored filestore is the snapshot's and lacks it, and the only copy is in the filestore the restore
kept aside (``<filestore>__failed_<time>``), which kept retention drops in time. So the export takes a
copy of each such file (a hard link when both are on one file system: no room, no time), verified
against its name, into ``filestore/`` of the export folder, in the filestore's own layout: copied into
the live filestore, the imported attachments find their files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .lost_rows import LostRow

ATTACHMENT_TABLE = "ir_attachment"
FILES_FOLDER = "filestore"
# Odoo's store_fname: "<first 2 hex digits of the sha1>/<sha1>" (older releases: the same, or a bare
# name for files stored before checksums); anything else is not a path the helper follows.
SHA1_NAME = re.compile(r"^[0-9a-f]{40}$")
CHUNK = 1 << 20


@dataclass
class LostFiles:
    """What the export did with the files of the lost attachments."""

    folder: Path
    copied: int = 0
    bytes: int = 0
    present: int = 0  # the restored filestore already has them (same name, so the same content)
    limits: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "files": self.copied,
            "bytes": self.bytes,
            "folder": str(self.folder) if self.copied else None,
            "already_in_restored_filestore": self.present,
            "problems": list(self.limits),
        }


def attachment_files(rows: Iterable[LostRow]) -> Iterator[tuple[str, Any]]:
    """(store_fname, attachment id) of every attachment row written after the snapshot that names a
    file (a deleted one's file was in the snapshot: the restored filestore has it)."""
    for row in rows:
        # Inserted or updated (exact mode), or written (the fallback tells them apart only in the
        # tracked tables): whatever leaves a row, and so a file it names.
        if row.table != ATTACHMENT_TABLE or row.kind == "deleted" or not row.after:
            continue
        fname = row.after.get("store_fname")
        if isinstance(fname, str) and fname:
            yield fname, row.after.get("id")


def inside(root: Path, fname: str) -> Path | None:
    """*fname* under *root*, or None when it would lead elsewhere (an absolute path, ``..``, a link
    out): the name comes from a database row, and only the filestore's own files are copied."""
    if fname.startswith("/") or "\\" in fname or any(part in ("", ".", "..") for part in fname.split("/")):
        return None
    path = root / fname
    try:
        if not path.resolve().is_relative_to(root.resolve()):
            return None
    except OSError:
        return None
    return path


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()  # noqa: S324 - Odoo's own naming of filestore files, not a security hash
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def place(source: Path, target: Path) -> None:
    """A hard link when both are on one file system, else a copy (written aside, then renamed: a file
    under its final name is whole)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
        return
    except FileExistsError:
        return
    except OSError:
        pass  # another file system, or links not allowed there: copied
    partial = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def export_files(rows: Iterable[LostRow], kept: Path, restored: Path, folder: Path) -> LostFiles:
    """Copy into *folder*/filestore the files of the lost attachments that the *restored* filestore
    lacks, from the *kept* one, each verified by the sha1 of its content when its name is one. A file
    that cannot be found or verified is named in the limits. An OSError while copying is raised: the
    export is then incomplete, and the kept filestore stays with the kept database (kept.unexported)."""
    result = LostFiles(folder / FILES_FOLDER)
    seen: set[str] = set()
    for fname, attachment in attachment_files(rows):
        if fname in seen:
            continue
        seen.add(fname)
        which = f"the file {fname!r} of the lost attachment {attachment}"
        source, already = inside(kept, fname), inside(restored, fname)
        if source is None or already is None:
            result.limits.append(f"{which} is not a filestore path: not copied")
            continue
        if already.is_file():
            result.present += 1
            continue
        if not source.is_file():
            result.limits.append(f"{which} is in neither the restored filestore nor the kept one {kept}")
            continue
        name = fname.rsplit("/", 1)[-1]
        target = result.folder / fname
        place(source, target)
        if SHA1_NAME.match(name) and sha1_of(target) != name:
            result.limits.append(
                f"{which} was copied to {target}, but its content does not match its name (sha1): it was "
                "damaged or changed in the filestore"
            )
        result.copied += 1
        result.bytes += target.stat().st_size
    return result
