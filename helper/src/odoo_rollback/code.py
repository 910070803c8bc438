"""The deployed code: a git work tree whose revision is reverted with the database."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import OperationFailed, PreconditionError
from .process import last_line


def _git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=False)


def head(path: Path) -> str:
    result = _git(path, "rev-parse", "HEAD")
    if result.returncode != 0:
        raise PreconditionError(f"code folder {path} is not a git work tree: {last_line(result.stderr)}")
    return result.stdout.strip()


def check_revertable(path: Path, revision: str) -> None:
    """The work tree is clean and knows *revision*: a checkout cannot lose anything or fail."""
    head(path)
    if _git(path, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise PreconditionError(f"code folder {path} has uncommitted changes; commit or stash them first")
    if _git(path, "cat-file", "-e", f"{revision}^{{commit}}").returncode != 0:
        raise PreconditionError(f"code folder {path} does not have revision {revision}")


def checkout(path: Path, revision: str) -> None:
    result = _git(path, "checkout", "--quiet", "--detach", revision)
    if result.returncode != 0:
        raise OperationFailed(f"git checkout {revision} in {path} failed: {last_line(result.stderr)}")
