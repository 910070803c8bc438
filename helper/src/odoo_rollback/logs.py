"""Odoo's log, read for errors: the module update's output and the running service's log.

An Odoo log line is ``2026-11-25 14:55:01,123 4242 ERROR prod odoo.modules.loading: message``; the lines
that follow it without that prefix (a traceback, the rest of a multi-line message) belong to it. A
traceback that follows no error line (printed by Python itself, not by Odoo's logger) is an error too.

The service log is read from ``[deploy] log_file`` when set, else from the service backend: the
containers' output (docker) or the unit's journal (systemd). The ``none`` and ``command`` backends have
no log of their own, so without ``log_file`` there is nothing to read (said, not hidden).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import Config
from .errors import OperationFailed, ServiceError
from .process import call, last_line

ODOO_LINE = re.compile(
    r"^(?P<at>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),\d{3} \d+ (?P<level>[A-Z]+) (?P<db>\S+) (?P<logger>[^\s:]+): ?"
    r"(?P<message>.*)$"
)
# Odoo colours the level on a terminal (a container with a TTY, for instance).
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
TRACEBACK_START = "Traceback (most recent call last):"
ERROR_LEVELS = ("CRITICAL", "ERROR")
# Lines kept after an error line: enough for a deep traceback, bounded for a runaway one.
MAX_FOLLOWING_LINES = 200
MAX_ERRORS = 500


@dataclass
class LogError:
    level: str  # CRITICAL, ERROR, or TRACEBACK for a traceback that no error line introduced
    message: str
    at: str | None = None
    logger: str | None = None
    following: list[str] = field(default_factory=list)

    @property
    def has_traceback(self) -> bool:
        return any(line.startswith(TRACEBACK_START) for line in self.following) or self.level == "TRACEBACK"

    @property
    def serious(self) -> bool:
        """CRITICAL or with a traceback: what makes a deployment fail, not a user's bad request."""
        return self.level in ("CRITICAL", "TRACEBACK") or self.has_traceback

    @property
    def cause(self) -> str:
        """The exception line of the traceback, else the message. Of chained exceptions the first is
        the root cause (Odoo wraps a ValueError naming the bad field in a ParseError naming the file)."""
        frames_seen = False
        for line in self.following:
            if line.startswith("  File "):
                frames_seen = True
            elif frames_seen and line and not line[0].isspace():
                return line
        return self.message

    def summary(self) -> str:
        where = f"{self.logger}: " if self.logger else ""
        text = f"{self.level} {where}{self.message}"
        cause = self.cause
        return text if cause == self.message else f"{text} ({cause})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "at": self.at,
            "logger": self.logger,
            "message": self.message,
            "cause": self.cause,
            "serious": self.serious,
            "lines": self.following,
        }


@dataclass
class LogScan:
    errors: list[LogError]
    lines_read: int
    source: str

    @property
    def serious(self) -> list[LogError]:
        return [e for e in self.errors if e.serious]

    def as_dict(self) -> dict[str, Any]:
        return {"errors": [e.as_dict() for e in self.errors], "lines_read": self.lines_read, "source": self.source}


def scan_lines(lines: Iterable[str], source: str = "text") -> LogScan:
    """Find the error lines (with what follows them) and stray tracebacks in *lines*."""
    errors: list[LogError] = []
    current: LogError | None = None
    count = 0
    for raw in lines:
        count += 1
        line = ANSI_ESCAPE.sub("", raw.rstrip("\r\n"))
        match = ODOO_LINE.match(line)
        if match:
            current = None
            if match["level"] in ERROR_LEVELS and len(errors) < MAX_ERRORS:
                current = LogError(match["level"], match["message"].rstrip(), match["at"], match["logger"])
                errors.append(current)
            continue
        if current is None and line.startswith(TRACEBACK_START) and len(errors) < MAX_ERRORS:
            current = LogError("TRACEBACK", "Python traceback")
            errors.append(current)
        if current is not None and len(current.following) < MAX_FOLLOWING_LINES:
            current.following.append(line)
    return LogScan(errors, count, source)


def scan_text(text: str, source: str = "text") -> LogScan:
    return scan_lines(text.splitlines(), source)


def _line_time(at: str) -> datetime:
    # Odoo writes its log in the local time of its machine, without a zone.
    return datetime.strptime(at, "%Y-%m-%d %H:%M:%S").astimezone()


def lines_since(lines: Iterable[str], since: datetime | None) -> Iterator[str]:
    """The lines of an Odoo log file written at or after *since* (to the second)."""
    keep = since is None
    floor = since.replace(microsecond=0) if since else None
    for line in lines:
        match = ODOO_LINE.match(ANSI_ESCAPE.sub("", line))
        if match and floor is not None:
            try:
                keep = _line_time(match["at"]) >= floor
            except ValueError:
                keep = True
        if keep:
            yield line


def _read_file(path: Path, since: datetime | None) -> list[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\r\n") for line in lines_since(handle, since)]
    except OSError as exc:
        raise OperationFailed(f"cannot read the Odoo log file {path}: {exc.strerror}") from exc


def _read_docker(cfg: Config, service: str, since: datetime | None) -> list[str]:
    # The Docker SDK is imported only when the docker backend is used.
    import docker.errors  # noqa: PLC0415

    from .services.docker_backend import DockerBackend  # noqa: PLC0415

    backend = DockerBackend(cfg.services)
    client = backend._client()
    try:
        containers = backend._containers(client, service)
        if not containers:
            project = cfg.services.docker.project
            raise ServiceError(f"no container of service {service!r} in compose project {project!r}")
        lines: list[str] = []
        for container in containers:
            options: dict[str, Any] = {"stdout": True, "stderr": True}
            if since is not None:
                options["since"] = since.timestamp()
            lines.extend(container.logs(**options).decode("utf-8", errors="replace").splitlines())
        return lines
    except docker.errors.DockerException as exc:
        raise ServiceError(f"cannot read the logs of service {service!r}: {exc}") from exc
    finally:
        client.close()


def _read_journal(unit: str, since: datetime | None) -> list[str]:
    args = ["journalctl", "--unit", unit, "--output", "cat", "--no-pager", "--quiet"]
    if since is not None:
        args += ["--since", f"@{int(since.timestamp())}"]
    try:
        result = call(args, timeout=120, errors="replace")
    except OperationFailed as exc:  # not installed, or no answer in time
        raise ServiceError(f"journalctl --unit {unit}: {exc}") from exc
    if result.returncode != 0:
        raise ServiceError(f"journalctl --unit {unit} failed: {last_line(result.stderr)}")
    return result.stdout.splitlines()


def log_source(cfg: Config) -> str | None:
    """Where the service log is read from, or None when nothing is configured to read."""
    if cfg.deploy.log_file:
        return f"file {cfg.deploy.log_file}"
    if cfg.services.backend == "docker":
        return f"docker service {cfg.deploy.log_service or cfg.services.docker.services[0]}"
    if cfg.services.backend == "systemd":
        return f"systemd unit {cfg.deploy.log_service or cfg.services.units[0]}"
    return None


def read_service_log(cfg: Config, since: datetime | None) -> tuple[list[str], str | None]:
    """(lines of Odoo's service log since *since*, where they came from)."""
    source = log_source(cfg)
    if cfg.deploy.log_file:
        return _read_file(cfg.deploy.log_file, since), source
    if cfg.services.backend == "docker":
        return _read_docker(cfg, cfg.deploy.log_service or cfg.services.docker.services[0], since), source
    if cfg.services.backend == "systemd":
        return _read_journal(cfg.deploy.log_service or cfg.services.units[0], since), source
    return [], None


def service_log_errors(cfg: Config, since: datetime | None) -> LogScan:
    lines, source = read_service_log(cfg, since)
    return scan_lines(lines, source or "none")


def parse_since(text: str | None) -> datetime | None:
    """An ISO 8601 time; without a zone it is UTC (as the helper's journal writes times)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO 8601 time such as 2026-11-25T14:00:00Z") from exc
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


__all__ = [
    "LogError",
    "LogScan",
    "log_source",
    "parse_since",
    "read_service_log",
    "scan_lines",
    "scan_text",
    "service_log_errors",
]
