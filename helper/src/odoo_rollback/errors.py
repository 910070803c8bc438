"""Errors the helper reports to the operator.

Each error carries one line of text for stderr and an exit status, so that the command line, the API
and the tests all see the same outcome.
"""

from __future__ import annotations

# Exit statuses of the command line.
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # the command ran, and what it checked is not good (verify, health, smoke)
EXIT_USAGE = 2  # bad configuration or arguments
EXIT_REFUSED = 3  # a precondition does not hold: nothing was changed
EXIT_FAILED = 4  # the operation failed; the journal says in what state things were left
EXIT_PAUSED = 5  # a deployment's analysis was inconclusive: the operator decides
EXIT_ROLLED_BACK = 6  # a deployment failed its analysis and was rolled back to its pre_deploy snapshot


class RollbackError(Exception):
    """Base class: a clear, one-line explanation for the operator."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(RollbackError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = EXIT_USAGE


class UsageError(RollbackError):
    """The arguments given do not make sense (unknown snapshot id, bad name...)."""

    exit_code = EXIT_USAGE


class PreconditionError(RollbackError):
    """A check made before a change failed; nothing was changed."""

    exit_code = EXIT_REFUSED


class DatabaseError(PreconditionError):
    """The database server cannot be reached or refuses the credentials."""


class StorageError(PreconditionError):
    """The snapshot storage is missing, not writable, or too full."""


class SnapshotNotFound(UsageError):
    """No complete snapshot has that id."""


class SnapshotRefused(UsageError):
    """The folder under a snapshot's id does not hold that snapshot of the configured database (another
    snapshot's files, another database's snapshot, a link to elsewhere): nothing is read from it."""


class ServiceError(RollbackError):
    """A service backend failed (daemon down, container missing, unit will not start)."""


class OperationFailed(RollbackError):
    """A step of a multi-step operation failed after something was changed."""


def os_failure(exc: OSError, what: str) -> OperationFailed:
    """One line for a file-system error met while doing *what* (a full disk above all)."""
    where = f" ({exc.filename})" if exc.filename else ""
    return OperationFailed(f"{what} failed: {exc.strerror or exc}{where}")
