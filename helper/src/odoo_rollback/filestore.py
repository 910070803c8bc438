"""The filestore archive: a plain tar (attachments are mostly compressed already)."""

from __future__ import annotations

from pathlib import Path

from .errors import PreconditionError
from .process import run


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_filestore(path: Path) -> None:
    if not path.is_dir():
        raise PreconditionError(f"filestore folder {path} does not exist (check [filestore] path)")


def archive_filestore(src: Path, target_tar: Path) -> None:
    check_filestore(src)
    run(["tar", "--create", f"--file={target_tar}", f"--directory={src}", "."], what="tar of the filestore")


def extract_filestore(tar_path: Path, target_dir: Path) -> None:
    target_dir.mkdir(parents=True, exist_ok=False)
    run(["tar", "--extract", f"--file={tar_path}", f"--directory={target_dir}"], what="tar extract of the filestore")
