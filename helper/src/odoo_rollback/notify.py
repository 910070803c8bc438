"""Progress e-mails during a restore, sent by the helper itself: Odoo is stopped and cannot send mail.

Odoo sends the first notice before it asks for the restore, and the completion notice once it is back;
in between, every ``[smtp] update_minutes`` the helper mails the progress to ``[smtp] recipients``, the
request's ``notify.recipients`` and the escalation contacts whose ``minutes`` have passed. When the
restore fails or is undone, one final mail says so (Odoo may still be down).

The texts are Odoo's (rendered from its mail template) with ``string.Template`` placeholders for what
only the helper knows; see :data:`PLACEHOLDERS`. Every mail sent or failed is a journal line (step
``notify``). A mail never fails or slows the restore: it is sent from the notifier's own thread, with
socket timeouts, and every error is journaled and swallowed.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from string import Template
from types import TracebackType
from typing import Any

from .config import Config, SmtpConfig
from .events import ProgressView, RunProgress
from .journal import Journal
from .request import EscalationContact, NotifyRequest, RestoreRequest

STEP = "notify"
SMTP_TIMEOUT = 10.0  # seconds per SMTP socket operation: a dead server costs the notifier, never the restore

PLACEHOLDERS = (
    "database",
    "snapshot",
    "step",
    "status",
    "elapsed_minutes",
    "eta_minutes",
    "issues",
    "escalation_level",
)

DEFAULT_SUBJECT = "Restore of $database: $status after $elapsed_minutes min"
DEFAULT_BODY = """\
The restore of database $database from snapshot $snapshot is $status.

Current step: $step
Elapsed: $elapsed_minutes min; left within the RTO target: $eta_minutes min
Problems so far: $issues
Escalation level: $escalation_level

Odoo is stopped during the restore: this update comes from the odoo-rollback helper.
"""


def format_minutes(minutes: float) -> str:
    """15.0 -> "15", 0.25 -> "0.2": whole minutes stay whole, short runs still show something."""
    return f"{minutes:.1f}".removesuffix(".0")


def unique_addresses(addresses: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            result.append(address)
    return result


def send_mail(
    smtp: SmtpConfig, recipients: Sequence[str], subject: str, body: str, timeout: float = SMTP_TIMEOUT
) -> None:
    """One plain text mail through the configured server; raises what smtplib raises."""
    if not smtp.host:
        raise ValueError("no SMTP host configured")
    sender = smtp.sender or f"odoo-rollback@{socket.gethostname()}"
    # Lines up to RFC 5322's hard limit: the stdlib folds some 78+ character subjects right after
    # "Subject:", which readers then show with a leading blank.
    message = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = " ".join(subject.split())  # a substituted value must not break the header
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # no vacation replies to the helper
    message.set_content(body)
    with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as client:
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.user:
            client.login(smtp.user, smtp.password or "")
        client.send_message(message, from_addr=sender, to_addrs=list(recipients))


def mail_error(exc: BaseException, smtp: SmtpConfig) -> str:
    """One readable line for the journal, whatever smtplib or the network raised."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = (f"{address} ({code} {_text(reply)})" for address, (code, reply) in exc.recipients.items())
        return "the mail server refused " + ", ".join(refused)
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the mail server answered {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        return f"cannot talk to the mail server {smtp.host}:{smtp.port}: {exc.strerror or exc}"
    return str(exc) or exc.__class__.__name__


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


class ProgressNotifier:
    """Mails the progress of one restore on a schedule; a context manager around the restore's steps.

    It knows the restore only through the events the run publishes on *progress*, and reads their
    state from its own thread through :meth:`RunProgress.view` (a copy taken under a lock).
    :meth:`tick` decides and sends, given the time elapsed since the start; the thread only calls it,
    so a test drives the schedule by calling ``tick`` with chosen times (``now`` is injectable too).
    """

    def __init__(
        self,
        cfg: Config,
        progress: RunProgress,
        journal: Journal,
        request: RestoreRequest | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.smtp = cfg.smtp
        self.rto_target_minutes = cfg.rto.target_minutes
        self.progress = progress
        self.journal = journal
        self.notify: NotifyRequest = request.notify if request else NotifyRequest()
        self.now = now
        self.interval = cfg.smtp.update_minutes * 60
        self.base_recipients = unique_addresses([*cfg.smtp.recipients, *self.notify.recipients])
        # Escalation levels are the contacts' distinct thresholds; level 0 is "nobody to escalate to".
        self.thresholds = sorted({c.minutes for c in self.notify.escalation})
        # Those due at the start got Odoo's first notice: only later levels are announced as escalations.
        self.level = self.level_at(0)
        self.next_due = self.interval
        self.started_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what to send ------------------------------------------------------------------------------
    @property
    def anyone(self) -> list[str]:
        return unique_addresses([*self.base_recipients, *(c.email for c in self.notify.escalation)])

    def level_at(self, minutes: float) -> int:
        return sum(1 for threshold in self.thresholds if threshold <= minutes)

    def contacts_at(self, minutes: float) -> list[EscalationContact]:
        return [c for c in self.notify.escalation if c.minutes <= minutes]

    @staticmethod
    def issues(state: ProgressView, error: str | None = None) -> str:
        if error:
            return f"{', '.join(state.failed) or state.step or 'restore'}: {error}"
        return ", ".join(state.failed) or "none"

    def values(
        self, state: ProgressView, elapsed_minutes: float, status: str, level: int, error: str | None = None
    ) -> dict[str, str]:
        return {
            "database": state.database,
            "snapshot": state.snapshot,
            "step": state.text or "starting",
            "status": status,
            "elapsed_minutes": format_minutes(elapsed_minutes),
            "eta_minutes": format_minutes(max(0.0, self.rto_target_minutes - elapsed_minutes)),
            "issues": self.issues(state, error),
            "escalation_level": str(level),
        }

    def compose(
        self, values: dict[str, str], new_contacts: Sequence[EscalationContact], lead: str = ""
    ) -> tuple[str, str]:
        subject = Template(self.notify.subject or DEFAULT_SUBJECT).safe_substitute(values)
        body = Template(self.notify.body or DEFAULT_BODY).safe_substitute(values)
        if new_contacts:
            subject = f"Escalation level {values['escalation_level']}: {subject}"
            lead += (
                f"ESCALATION: the restore has run for {values['elapsed_minutes']} min; escalation level "
                f"{values['escalation_level']} is reached and now also informed: "
                + "; ".join(c.label() for c in new_contacts)
                + ".\n\n"
            )
        return subject, lead + body

    # -- sending -------------------------------------------------------------------------------------
    def tick(self, elapsed_seconds: float) -> bool:
        """Send the update that is due at *elapsed_seconds*, if any; True when one was attempted."""
        if elapsed_seconds < self.next_due:
            return False
        while self.next_due <= elapsed_seconds:  # a late tick sends one update, not the missed ones
            self.next_due += self.interval
        # After a failure the restore is being undone; the final mail follows once it is.
        self._send(elapsed_seconds / 60, "undoing" if self.progress.view().error else "running", "progress")
        return True

    def final(self, status: str, message: str) -> None:
        """The restore failed or was undone: stop the updates and send one last mail saying so."""
        self.stop()
        if not self.smtp.host or self.started_at is None:
            return
        # Called while the restore's own error propagates: nothing here may replace that error.
        with contextlib.suppress(Exception):
            minutes = (self.now() - self.started_at) / 60
            self._send(minutes, status, "final", error=self.progress.view().error, lead=message)

    def _send(self, minutes: float, status: str, kind: str, error: str | None = None, lead: str = "") -> None:
        level = self.level_at(minutes)
        new_contacts = [c for c in self.notify.escalation if c.minutes in self.thresholds[self.level : level]]
        state = self.progress.view()
        values = self.values(state, minutes, status, level, error)
        recipients = unique_addresses([*self.base_recipients, *(c.email for c in self.contacts_at(minutes))])
        if not recipients:
            return
        if new_contacts:
            self.level = level
            self.journal.event(
                state.operation,
                STEP,
                "escalated",
                f"escalation level {level} reached after {values['elapsed_minutes']} min: "
                + "; ".join(c.label() for c in new_contacts),
                data={
                    "level": level,
                    "elapsed_minutes": round(minutes, 2),
                    "contacts": [c.as_dict() for c in new_contacts],
                },
            )
        subject, body = self.compose(values, new_contacts, f"FINAL UPDATE: {lead}\n\n" if lead else "")
        data: dict[str, Any] = {
            "kind": kind,
            "recipients": recipients,
            "subject": subject,
            "step": state.step,
            "elapsed_minutes": round(minutes, 2),
            "escalation_level": level,
        }
        try:
            send_mail(self.smtp, recipients, subject, body)
        except Exception as exc:  # whatever the mail server does, the restore goes on
            reason = mail_error(exc, self.smtp)
            self.journal.event(
                state.operation,
                STEP,
                "failed",
                f"{kind} mail to {', '.join(recipients)} failed: {reason}",
                data={**data, "error": reason},
            )
            return
        self.journal.event(state.operation, STEP, "done", f"{kind} mail sent to {', '.join(recipients)}", data=data)

    # -- the thread ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        assert self.started_at is not None
        while not self._stop.wait(max(0.0, self.next_due - (self.now() - self.started_at))):
            # A journal or mail error must not end the updates, nor reach the restore's stderr.
            with contextlib.suppress(Exception):
                self.tick(self.now() - self.started_at)

    def start(self) -> None:
        self.started_at = self.now()
        if not self.anyone:
            return
        if not self.smtp.host:
            self.journal.event(
                self.progress.operation,
                STEP,
                "info",
                f"no SMTP host configured ([smtp] host): no progress mails to {', '.join(self.anyone)}",
                data={"recipients": self.anyone},
            )
            return
        self._thread = threading.Thread(target=self._loop, name="progress-mails", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # A mail being sent is given its timeouts; after that the daemon thread is abandoned.
            self._thread.join(timeout=3 * SMTP_TIMEOUT)
            self._thread = None

    def __enter__(self) -> ProgressNotifier:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
