"""Running external programs: argument lists only, exit codes always checked."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence

from .errors import OperationFailed


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def error_line(text: str) -> str:
    """The line of a program's stderr that says what went wrong.

    tar and pg_restore print the cause first and a summary ("Exiting with failure status...", "errors
    ignored on restore") last, so the first line naming an error wins over the last line.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    causes = [line for line in lines if "exiting with failure status" not in line.lower()]
    return next(
        (line for line in causes if "error" in line.lower() or "cannot" in line.lower()),
        causes[-1] if causes else last_line(text),
    )


def run(
    args: Sequence[str], env: Mapping[str, str] | None = None, what: str | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run *args*; a non-zero exit raises OperationFailed with the program's last error line."""
    try:
        result = subprocess.run(
            list(args), env=dict(env) if env else None, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise OperationFailed(f"{args[0]} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise OperationFailed(f"{what or args[0]} did not finish within {timeout} s") from exc
    if result.returncode != 0:
        detail = error_line(result.stderr) or last_line(result.stdout) or f"exit status {result.returncode}"
        raise OperationFailed(f"{what or args[0]} failed: {detail}")
    return result


def run_streaming(
    args: Sequence[str], env: Mapping[str, str] | None, what: str, on_line: Callable[[str], None]
) -> None:
    """Run *args*, handing each stderr line to *on_line* as it comes (for progress); errors as run()."""
    try:
        process = subprocess.Popen(
            list(args), env=dict(env) if env else None, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    except FileNotFoundError as exc:
        raise OperationFailed(f"{args[0]} is not installed or not on PATH") from exc
    kept: list[str] = []
    with process:
        for line in process.stderr or ():
            on_line(line)
            kept = [*kept[-200:], line]
    if process.returncode != 0:
        detail = error_line("".join(kept)) or f"exit status {process.returncode}"
        raise OperationFailed(f"{what} failed: {detail}")
