"""The deployed code: a git work tree whose revision is reverted with the database.

Every git command of the helper is here, run through :mod:`odoo_rollback.process`, and so is the one
idea of a "clean" work tree (:func:`stray_paths`) that both a deployment and a restore demand.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .errors import OperationFailed, PreconditionError, UsageError
from .process import call, last_line

# Files that Python writes by itself beside the code: never the operator's work, never in the way.
CACHE_PATH = re.compile(r"(^|/)__pycache__(/|$)|\.py[co]$")


def git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``git -C path args``; its exit status is for the caller to read (some commands answer by it)."""
    return call(["git", "-C", str(path), *args], what=f"git {args[0]}")


def head(path: Path) -> str:
    result = git(path, "rev-parse", "HEAD")
    if result.returncode != 0:
        raise PreconditionError(f"code folder {path} is not a git work tree: {last_line(result.stderr)}")
    return result.stdout.strip()


def head_or_none(path: Path | None) -> str | None:
    """git HEAD of the configured code folder; None when no folder is configured or it is no work tree."""
    if path is None:
        return None
    result = git(path, "rev-parse", "HEAD")
    return result.stdout.strip() if result.returncode == 0 else None


def resolve_revision(path: Path, revision: str) -> str:
    """The commit id of *revision* (a commit, tag or branch the work tree already has)."""
    if not revision or revision.startswith("-"):
        raise UsageError(f"{revision!r} is not a revision")
    result = git(path, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
    if result.returncode != 0:
        raise PreconditionError(f"code folder {path} does not have revision {revision!r} (git fetch it first)")
    return result.stdout.strip()


def stray_paths(path: Path) -> list[str]:
    """What makes the work tree not clean: changed tracked files and untracked files (ignored files and
    Python's caches aside). A checkout over them could lose work or fail."""
    result = git(path, "status", "--porcelain", "--untracked-files=all")
    if result.returncode != 0:
        raise PreconditionError(f"code folder {path} is not a git work tree: {last_line(result.stderr)}")
    paths = [line[3:] for line in result.stdout.splitlines() if line.strip()]
    return [p for p in paths if not CACHE_PATH.search(p)]


def check_clean(path: Path, before: str) -> None:
    stray = stray_paths(path)
    if stray:
        shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        raise PreconditionError(f"code folder {path} is not clean ({shown}); commit or remove the changes {before}")


def check_revertable(path: Path, revision: str) -> None:
    """The work tree is clean and knows *revision*: a checkout cannot lose anything or fail."""
    head(path)
    check_clean(path, "before restoring")
    if git(path, "cat-file", "-e", f"{revision}^{{commit}}").returncode != 0:
        raise PreconditionError(f"code folder {path} does not have revision {revision}")


def changed_modules(path: Path, from_revision: str, to_revision: str) -> list[str]:
    """Top-level folders of the code tree holding a ``__manifest__.py`` at *to_revision* whose files
    differ between the two revisions."""
    diff = git(path, "diff", "--name-only", "--relative", from_revision, to_revision, "--")
    if diff.returncode != 0:
        raise PreconditionError(f"git diff {from_revision}..{to_revision} failed: {last_line(diff.stderr)}")
    folders = sorted({name.split("/", 1)[0] for name in diff.stdout.splitlines() if "/" in name})
    modules = []
    for folder in folders:
        listed = git(path, "ls-tree", "--name-only", to_revision, "--", f"{folder}/__manifest__.py")
        if listed.returncode != 0:
            raise OperationFailed(f"git ls-tree {to_revision} in {path} failed: {last_line(listed.stderr)}")
        if listed.stdout.strip():
            modules.append(folder)
    return modules


def checkout(path: Path, revision: str) -> None:
    result = git(path, "checkout", "--quiet", "--detach", revision)
    if result.returncode != 0:
        raise OperationFailed(f"git checkout {revision} in {path} failed: {last_line(result.stderr)}")


def discard_changes(path: Path) -> None:
    """Back to the checked-out revision exactly: changed files reset, untracked files removed."""
    for args in (("reset", "--hard", "--quiet"), ("clean", "-d", "--force", "--quiet")):
        result = git(path, *args)
        if result.returncode != 0:
            raise OperationFailed(f"git {args[0]} in {path} failed: {last_line(result.stderr)}")
