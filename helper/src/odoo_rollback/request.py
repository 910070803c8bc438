"""What Odoo asks of a restore besides the snapshot: its rollback record and whom to keep informed.

Odoo sends it in ``POST /v1/restores``; the API writes it to ``<storage>/requests/<job>.json`` and the
job runs ``restore ID --yes --request FILE``. The same checks apply to the API body and to the file, so
that a bad request is refused before anything is started::

    {
      "rollback": {...},                  # any JSON object: Odoo's rollback record, journaled as is
      "notify": {
        "recipients": ["ops@example.com"],
        "subject": "...", "body": "...", # string.Template texts, see notify.py for the placeholders
        "escalation": [{"minutes": 30, "role": "DevOps manager", "name": "Ann", "email": "ann@example.com"}]
      }
    }
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

REQUEST_KEYS = frozenset({"rollback", "notify"})
NOTIFY_KEYS = frozenset({"recipients", "subject", "body", "escalation"})
CONTACT_KEYS = frozenset({"minutes", "role", "name", "email"})
# One address, no display name: anything that could add a header or a second address is refused.
EMAIL_PATTERN = re.compile(r"^[^@\s,;:<>()\[\]\"\\]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
MAX_ADDRESSES = 50
MAX_TEXT = 20_000


@dataclass(frozen=True)
class EscalationContact:
    minutes: float
    role: str
    email: str
    name: str = ""

    def label(self) -> str:
        who = f"{self.name} <{self.email}>" if self.name else self.email
        return f"{self.role} {who}" if self.role else who

    def as_dict(self) -> dict[str, Any]:
        return {"minutes": self.minutes, "role": self.role, "name": self.name, "email": self.email}


@dataclass(frozen=True)
class NotifyRequest:
    recipients: tuple[str, ...] = ()
    subject: str | None = None
    body: str | None = None
    escalation: tuple[EscalationContact, ...] = ()  # sorted by minutes

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipients": list(self.recipients),
            "subject": self.subject,
            "body": self.body,
            "escalation": [c.as_dict() for c in self.escalation],
        }


@dataclass(frozen=True)
class RestoreRequest:
    # Odoo's own record, kept opaque: the helper journals it so that Odoo can re-create the record
    # after the restore replaced its database. Not to be mutated (a dict cannot be frozen).
    rollback: dict[str, Any] | None = None
    notify: NotifyRequest = NotifyRequest()

    def as_dict(self) -> dict[str, Any]:
        return {"rollback": self.rollback, "notify": self.notify.as_dict()}


def _check_keys(value: dict[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(value) - known)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or not EMAIL_PATTERN.match(value):
        raise UsageError(f"{where} must be one e-mail address like name@example.com, not {value!r}")
    return value


def _text(value: Any, where: str, single_line: bool = False) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{where} must be a string, not {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise UsageError(f"{where} is longer than {MAX_TEXT} characters")
    if single_line and ("\n" in value or "\r" in value):
        raise UsageError(f"{where} must be one line")
    return value


def _contact(value: Any, where: str) -> EscalationContact:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be an object with minutes, role, name, email")
    _check_keys(value, CONTACT_KEYS, where)
    minutes = value.get("minutes")
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not math.isfinite(minutes) or minutes < 0:
        raise UsageError(f"{where}.minutes must be a number of minutes >= 0, not {minutes!r}")
    role = _text(value.get("role"), f"{where}.role", single_line=True) or ""
    name = _text(value.get("name"), f"{where}.name", single_line=True) or ""
    return EscalationContact(float(minutes), role, _address(value.get("email"), f"{where}.email"), name)


def _notify(value: Any) -> NotifyRequest:
    if value is None:
        return NotifyRequest()
    if not isinstance(value, dict):
        raise UsageError(f"notify must be an object, not {type(value).__name__}")
    _check_keys(value, NOTIFY_KEYS, "notify")
    recipients = value.get("recipients") or []
    if not isinstance(recipients, list):
        raise UsageError(f"notify.recipients must be a list of e-mail addresses, not {type(recipients).__name__}")
    escalation = value.get("escalation") or []
    if not isinstance(escalation, list):
        raise UsageError(f"notify.escalation must be a list of contacts, not {type(escalation).__name__}")
    if len(recipients) + len(escalation) > MAX_ADDRESSES:
        raise UsageError(f"notify: more than {MAX_ADDRESSES} recipients and escalation contacts")
    contacts = [_contact(c, f"notify.escalation[{i}]") for i, c in enumerate(escalation)]
    return NotifyRequest(
        recipients=tuple(_address(r, f"notify.recipients[{i}]") for i, r in enumerate(recipients)),
        subject=_text(value.get("subject"), "notify.subject", single_line=True),
        body=_text(value.get("body"), "notify.body"),
        escalation=tuple(sorted(contacts, key=lambda c: c.minutes)),
    )


def parse_request(data: Any, known: frozenset[str] = REQUEST_KEYS) -> RestoreRequest:
    """Check a request document; every problem is a UsageError naming the key.

    *known* lets the API accept its own keys (snapshot, confirm_database) beside the request's.
    """
    if not isinstance(data, dict):
        raise UsageError(f"the request must be a JSON object, not {type(data).__name__}")
    _check_keys(data, known, "request")
    rollback = data.get("rollback")
    if rollback is not None and not isinstance(rollback, dict):
        raise UsageError(f"rollback must be an object, not {type(rollback).__name__}")
    return RestoreRequest(rollback=rollback, notify=_notify(data.get("notify")))


def load_request(path: str | os.PathLike[str]) -> RestoreRequest:
    """Read and check a request file (``--request FILE``)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"request file {file} does not exist") from exc
    except OSError as exc:
        raise UsageError(f"cannot read request file {file}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"request file {file} is not UTF-8 text") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"request file {file} is not valid JSON: {exc}") from exc
    try:
        return parse_request(data)
    except UsageError as exc:
        raise UsageError(f"request file {file}: {exc}") from exc


def write_request(folder: Path, name: str, request: RestoreRequest) -> Path:
    """Write *request* to ``folder/name.json``, readable by the helper's user only (it names people)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / f"{name}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # a job's file is never rewritten
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"rollback": request.rollback, "notify": request.notify.as_dict()}, handle, sort_keys=True)
    return path
