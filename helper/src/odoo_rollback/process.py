"""Running external programs: argument lists only, exit codes always checked.

Every program the helper starts dies with it. Each child asks the kernel, between fork and exec, for
SIGTERM when its parent ends (``PR_SET_PDEATHSIG``), so a helper killed with ``kill -9`` leaves no
pg_dump still writing a snapshot nobody will commit, no pg_restore filling a staging database that
``resume`` is about to drop, no tar or git changing files behind the next run. SIGTERM rather than
SIGKILL: pg_dump and pg_restore then cancel their queries and end their parallel workers themselves.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import OperationFailed

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# Looked up once, in the parent: the child between fork and exec must not load libraries.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when this process ends (Linux)."""
    if _prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would ever come, so the
        # child ends here, before it execs.
        if os.getppid() != parent:
            os._exit(1)

    return arm


def popen(args: Sequence[str], env: Mapping[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen for a child that dies with the helper; FileNotFoundError becomes one line."""
    try:
        return subprocess.Popen(
            list(args),
            env=dict(env) if env else None,
            # Only prctl and getppid run between fork and exec, looked up beforehand: safe with threads.
            preexec_fn=die_with_parent(),  # noqa: PLW1509
            **kwargs,
        )
    except FileNotFoundError as exc:
        raise OperationFailed(f"{args[0]} is not installed or not on PATH") from exc


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


def stop(process: subprocess.Popen[Any], grace: float = 10) -> None:
    """End *process*: SIGTERM (pg_restore then ends its workers), SIGKILL if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def call(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    what: str | None = None,
    timeout: float | None = None,
    *,
    merge_output: bool = False,
    errors: str = "strict",
) -> subprocess.CompletedProcess[str]:
    """Run *args* and return how it ended, whatever its exit status.

    For the programs whose exit status is the answer (``git cat-file -e``, ``systemctl is-active``, a
    status command): the caller reads ``returncode``. A missing program or one that outlives *timeout*
    raises OperationFailed. *merge_output* puts stderr into stdout, in the order written; *errors* is
    how undecodable output is read (``"replace"`` for logs).
    """
    stderr = subprocess.STDOUT if merge_output else subprocess.PIPE
    with popen(args, env, stdout=subprocess.PIPE, stderr=stderr, text=True, errors=errors) as process:
        try:
            stdout, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise OperationFailed(f"{what or args[0]} did not finish within {timeout} s") from exc
        except BaseException:
            stop(process)  # interrupted (Ctrl-C): the program must not outlive the step it served
            raise
    return subprocess.CompletedProcess(list(args), process.returncode, stdout, err or "")


def run(
    args: Sequence[str], env: Mapping[str, str] | None = None, what: str | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run *args*; a non-zero exit raises OperationFailed with the program's last error line."""
    result = call(args, env, what, timeout)
    if result.returncode != 0:
        detail = error_line(result.stderr) or last_line(result.stdout) or f"exit status {result.returncode}"
        raise OperationFailed(f"{what or args[0]} failed: {detail}")
    return result


def run_streaming(
    args: Sequence[str], env: Mapping[str, str] | None, what: str, on_line: Callable[[str], None]
) -> None:
    """Run *args*, handing each stderr line to *on_line* as it comes (for progress); errors as run()."""
    process = popen(args, env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    kept: list[str] = []
    with process:
        try:
            for line in process.stderr or ():
                on_line(line)
                kept = [*kept[-200:], line]
        except BaseException:
            stop(process)
            raise
    if process.returncode != 0:
        detail = error_line("".join(kept)) or f"exit status {process.returncode}"
        raise OperationFailed(f"{what} failed: {detail}")
