"""The filestore archive: a plain tar (attachments are mostly compressed already)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from .checksums import CHUNK
from .errors import OperationFailed, PreconditionError
from .process import error_line, popen, run, stop


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_filestore(path: Path) -> None:
    if not path.is_dir():
        raise PreconditionError(f"filestore folder {path} does not exist (check [filestore] path)")


def archive_filestore(src: Path, target_tar: Path) -> None:
    check_filestore(src)
    run(["tar", "--create", f"--file={target_tar}", f"--directory={src}", "."], what="tar of the filestore")


def extract_filestore(tar_path: Path, target_dir: Path, expected: dict[str, Any]) -> None:
    """Extract the archive into the new folder *target_dir*, hashing its bytes as tar reads them.

    The helper reads the archive and hands tar exactly the bytes it hashes (on tar's standard input),
    so what lands in *target_dir* is what was checked, even if the file changes meanwhile. When the
    size or the sha256 differs from *expected* (the manifest's entry), OperationFailed is raised after
    tar ends: the caller discards *target_dir*, which never became live.
    """
    target_dir.mkdir(parents=True, exist_ok=False)
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryFile() as errors, open(os.open(tar_path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as archive:
        process = popen(
            ["tar", "--extract", "--file=-", f"--directory={target_dir}"], stdin=subprocess.PIPE, stderr=errors
        )
        reader = process.stdin
        try:
            while chunk := archive.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if reader is not None:
                    try:
                        reader.write(chunk)
                    except BrokenPipeError:
                        # tar stopped reading: at the archive's end marker, or on an error (a full disk)
                        # that it reports below. The rest is still hashed: the whole file must match.
                        reader = None
        except BaseException:
            stop(process)
            raise
        finally:
            with suppress(BrokenPipeError):
                if process.stdin is not None:
                    process.stdin.close()
        process.wait()
        errors.seek(0)
        detail = errors.read().decode(errors="replace")
    # A damaged archive is named first: tar's own complaint about it ("does not look like a tar
    # archive") does not say which file is wrong, and a drill reports exactly that to people.
    if size != expected["size"] or digest.hexdigest() != expected["sha256"]:
        failed = f" (tar: {error_line(detail) or process.returncode})" if process.returncode != 0 else ""
        raise OperationFailed(
            f"{tar_path.name} differs from its checksum in the manifest (damaged or altered since it was "
            f"checked){failed}: the extracted filestore was discarded"
        )
    if process.returncode != 0:
        raise OperationFailed(f"tar extract of the filestore failed: {error_line(detail) or process.returncode}")
