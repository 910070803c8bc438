"""sha256 and size of every file of a snapshot."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            problems.append(f"{name}: size {size} differs from {entry['size']} (truncated or altered)")
            continue
        if sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: checksum differs (file altered)")
    return problems
