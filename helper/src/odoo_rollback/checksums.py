"""sha256 and size of every file of a snapshot."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .errors import OperationFailed

CHUNK = 1 << 20


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


def describe_files(root: Path, on_bytes: Callable[[int], None] | None = None) -> dict[str, dict[str, Any]]:
    """{relative path: {"size", "sha256"}} for every regular file below *root*.

    hashlib releases the GIL on large buffers, so two threads hash two files at once.
    """
    files = sorted(p for p in root.rglob("*") if p.is_file())
    with ThreadPoolExecutor(max_workers=2) as pool:
        digests = list(pool.map(lambda p: sha256_file(p, on_bytes), files))
    return {
        str(path.relative_to(root)): {"size": path.stat().st_size, "sha256": digest}
        for path, digest in zip(files, digests, strict=True)
    }


def check_files(root: Path, expected: dict[str, dict[str, Any]]) -> list[str]:
    """Problems found comparing the files below *root* with *expected*; empty when all is well."""
    problems: list[str] = []
    for name, entry in sorted(expected.items()):
        path = root / name
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            problems.append(f"{name}: missing")
            continue
        if not stat.S_ISREG(mode):
            # A link could point at anything, and change between the check and the read.
            problems.append(f"{name}: not a regular file (a link or a special file)")
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            problems.append(f"{name}: size {size} differs from {entry['size']} (truncated or altered)")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: checksum differs (file altered)")
    return problems


def unlisted_entries(root: Path, listed: Iterable[str]) -> list[str]:
    """Problems for everything below *root* that *listed* does not name: files, links, special files,
    folders holding no listed file. pg_restore reads a directory-format dump by file names and prefers a
    plain ``NNNN.dat`` over the checksummed ``NNNN.dat.gz``: nothing unlisted may sit in a snapshot."""
    names = set(listed)
    folders = {str(parent) for name in names for parent in PurePosixPath(name).parents if str(parent) != "."}
    problems = []
    for folder, subfolders, files in os.walk(root):  # links to folders are listed, never followed
        for name in sorted([*subfolders, *files]):
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                if relative not in folders:
                    problems.append(f"{relative}/: a folder the manifest does not list")
                    subfolders.remove(name)
            elif relative not in names:
                problems.append(f"{relative}: not in the manifest (pg_restore or tar could read it)")
    return problems


def copy_verified(src: Path, dst: Path, entry: dict[str, Any]) -> str | None:
    """Copy *src* to the new file *dst*, hashing the bytes as they are copied; the problem, or None when
    the copy holds exactly the bytes the manifest describes."""
    digest = hashlib.sha256()
    size = 0
    # O_NOFOLLOW: a link put in place of a checked file since is refused, not followed.
    with open(os.open(src, os.O_RDONLY | os.O_NOFOLLOW), "rb") as source, dst.open("xb") as target:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            target.write(chunk)
            size += len(chunk)
    if size != entry["size"]:
        return f"size {size} differs from {entry['size']} (truncated or altered)"
    if digest.hexdigest() != entry["sha256"]:
        return "checksum differs (file altered)"
    return None


class HashingReader:
    """A file's bytes as its reader (tarfile, a copy) takes them, hashed: what is used is what is checked."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def matches(self, entry: dict[str, Any]) -> bool:
        return self.size == int(entry["size"]) and self.digest.hexdigest() == str(entry["sha256"])


@contextmanager
def read_verified(path: Path, entry: dict[str, Any]) -> Iterator[HashingReader]:
    """*path* opened for one pass (a link in its place is refused, not followed), hashed as it is read.

    On leaving, the rest of the file is read too and the whole compared with *entry* (the manifest's
    size and sha256): OperationFailed when it differs, so the caller discards what it made of the bytes
    (they were read from the file itself, which can change after any earlier check)."""
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
        reader = HashingReader(handle)
        yield reader
        reader.drain()
    if not reader.matches(entry):
        raise OperationFailed(
            f"{path.name} differs from its checksum in the manifest (damaged or altered since it was checked)"
        )
