"""Progress e-mails during a restore, received by a real SMTP server on loopback (aiosmtpd).

The schedule is driven by calling ``ProgressNotifier.tick`` with chosen elapsed times; the restores run
through the real command line, with services whose stop takes long enough for several updates.
"""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from conftest import HelperEnv, Served, database_counts
from odoo_rollback.config import load_config
from odoo_rollback.journal import Journal
from odoo_rollback.notify import ProgressNotifier
from odoo_rollback.request import parse_request
from odoo_rollback.restore import RestoreRun
from odoo_rollback.storage import SnapshotStore

SNAPSHOT_COUNTS = {"account_move": 200, "res_partner": 50}
CHANGED_COUNTS = {"account_move": 180, "res_partner": 57}

ESCALATION = [
    {"minutes": 60, "role": "CTO", "name": "Carla", "email": "cto@example.com"},
    {"minutes": 0, "role": "Technical lead", "name": "Tom", "email": "lead@example.com"},
    {"minutes": 30, "role": "DevOps manager", "name": "Dana", "email": "devops@example.com"},
]
# As Odoo renders its mail template: its own values filled in, the helper's left as placeholders.
SUBJECT = "Rollback of v2.3 on $database: $status ($elapsed_minutes min)"
BODY = (
    "Snapshot $snapshot, now at $step.\n"
    "Elapsed $elapsed_minutes min, about $eta_minutes min left. Issues: $issues.\n"
    "Escalation level $escalation_level. Budget: US$100 per $hour, unchanged.\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mailbox:
    """Collects what the SMTP server accepts: envelope recipients and the parsed message."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for _, message in self.received]

    def bodies(self) -> list[str]:
        return [message.get_content() for _, message in self.received]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


def smtp_section(port: int, update_minutes: float) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "sender": "rollback@example.com",
        "recipients": ["ops@example.com"],
        "update_minutes": update_minutes,
    }


def write_request(path: Path, **notify: Any) -> Path:
    document = {
        "rollback": {"id": 42, "name": "Rollback of v2.3", "reason": "invoices fail", "user": "admin"},
        "notify": {"recipients": ["odoo-team@example.com"], "escalation": ESCALATION, **notify},
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def restore_operation(helper_env: HelperEnv) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    journal = helper_env.run_json("journal")
    operation = next(op for op in journal["operations"] if op["kind"] == "restore")
    events = [e for e in journal["events"] if e["operation_id"] == operation["id"]]
    return operation, events


# -- the schedule, tick by tick ----------------------------------------------------------------------
def test_updates_follow_the_schedule_and_escalate(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], smtp_server: tuple[Controller, Mailbox]
) -> None:
    controller, mailbox = smtp_server
    helper_env.write(smtp=smtp_section(controller.port, 15), rto={"target_minutes": 20, "max_minutes": 60})
    cfg = load_config(helper_env.config_path)
    journal = Journal(cfg.storage.journal_path)
    run = RestoreRun(cfg, SnapshotStore(cfg.storage).get(snapshot_then_changes["id"]), journal)
    run.op = journal.begin("restore", cfg.database.name, {"snapshot": run.snapshot.id})
    notify = {"recipients": ["odoo-team@example.com"], "subject": SUBJECT, "body": BODY, "escalation": ESCALATION}
    notifier = ProgressNotifier(cfg, run.progress, journal, parse_request({"notify": notify}))
    minute = 60.0

    with run.step("staging"):
        assert notifier.tick(0) is False
        assert notifier.tick(14 * minute) is False
        assert mailbox.received == []

        assert notifier.tick(15 * minute) is True

        assert len(mailbox.received) == 1
        recipients, message = mailbox.received[0]
        # Whoever was due at the start (the technical lead) is informed, the later levels not yet.
        assert sorted(recipients) == ["lead@example.com", "odoo-team@example.com", "ops@example.com"]
        assert str(message["Subject"]) == f"Rollback of v2.3 on {cfg.database.name}: running (15 min)"
        body = message.get_content()
        assert f"Snapshot {run.snapshot.id}, now at staging (restoring the snapshot" in body
        assert "Elapsed 15 min, about 5 min left. Issues: none." in body
        assert "Escalation level 1." in body
        assert "US$100 per $hour" in body  # not a placeholder: left as written
        assert "ESCALATION" not in body

        assert notifier.tick(20 * minute) is False  # the next one is due at 30

    with run.step("stop", backend="none"):
        assert notifier.tick(30 * minute) is True

    recipients, message = mailbox.received[1]
    assert sorted(recipients) == sorted(
        ["devops@example.com", "lead@example.com", "odoo-team@example.com", "ops@example.com"]
    )
    assert str(message["Subject"]).startswith("Escalation level 2: Rollback of v2.3")
    body = message.get_content()
    assert "escalation level 2 is reached and now also informed: DevOps manager Dana <devops@example.com>" in body
    assert "now at stop (stopping the services)" in body and "about 0 min left" in body

    # Late by more than an interval: one update, not the missed ones; no new level at 45 min.
    assert notifier.tick(47 * minute) is True
    assert len(mailbox.received) == 3 and "ESCALATION" not in mailbox.bodies()[2]
    assert notifier.tick(59 * minute) is False
    assert notifier.tick(60 * minute) is True
    assert "cto@example.com" in mailbox.received[3][0] and mailbox.subjects()[3].startswith("Escalation level 3: ")

    events = [e for e in journal.events(operation_id=run.op) if e.step == "notify"]
    assert [e.status for e in events] == ["done", "escalated", "done", "done", "escalated", "done"]
    escalated = events[1]
    assert escalated.data["level"] == 2 and escalated.data["contacts"][0]["email"] == "devops@example.com"
    assert "ops@example.com" in events[0].message and events[0].data["kind"] == "progress"


def test_without_an_smtp_host_one_journal_line_says_no_mail_is_sent(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    cfg = load_config(helper_env.write(smtp={"recipients": ["ops@example.com"], "update_minutes": 0.001}))
    journal = Journal(cfg.storage.journal_path)
    run = RestoreRun(cfg, SnapshotStore(cfg.storage).get(snapshot_then_changes["id"]), journal)
    run.op = journal.begin("restore", cfg.database.name)

    request = parse_request({"notify": {"escalation": ESCALATION}})
    with ProgressNotifier(cfg, run.progress, journal, request) as notifier:
        assert notifier._thread is None

    events = [e for e in journal.events(operation_id=run.op) if e.step == "notify"]
    assert len(events) == 1 and events[0].status == "info"
    assert "no SMTP host" in events[0].message and "cto@example.com" in events[0].message


def test_updates_log_in_with_the_configured_user(helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]) -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        # handled=False: the server itself answers 535 to a refused login.
        return AuthResult(success=data.password == b"s3cret", handled=False)

    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), authenticator=authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        password_file = helper_env.tmp_path / "smtp-password"
        password_file.write_text("wrong\n")
        password_file.chmod(0o600)  # a secret readable by others is refused
        cfg = load_config(
            helper_env.write(
                smtp={**smtp_section(controller.port, 1), "user": "rollback", "password_file": str(password_file)}
            )
        )
        journal = Journal(cfg.storage.journal_path)
        run = RestoreRun(cfg, SnapshotStore(cfg.storage).get(snapshot_then_changes["id"]), journal)
        run.op = journal.begin("restore", cfg.database.name)
        ProgressNotifier(cfg, run.progress, journal).tick(60)
        password_file.write_text("s3cret\n")
        ProgressNotifier(load_config(helper_env.config_path), run.progress, journal).tick(60)
    finally:
        controller.stop()

    # smtplib tries each mechanism the server offers before it gives up on a refused password.
    assert set(logins[:-1]) == {(b"rollback", b"wrong")} and logins[-1] == (b"rollback", b"s3cret")
    assert len(mailbox.received) == 1 and mailbox.received[0][0] == ["ops@example.com"]
    events = [e for e in journal.events(operation_id=run.op) if e.step == "notify"]
    assert [e.status for e in events] == ["failed", "done"]
    assert events[0].message == (
        "progress mail to ops@example.com failed: the mail server answered 535 5.7.8 Authentication credentials invalid"
    )


# -- real restores through the command line ----------------------------------------------------------
def test_a_long_restore_mails_its_progress_and_journals_the_rollback(
    helper_env: HelperEnv,
    snapshot_then_changes: dict[str, Any],
    smtp_server: tuple[Controller, Mailbox],
    tmp_path: Path,
) -> None:
    controller, mailbox = smtp_server
    # Updates every 0.3 s, and a stop that takes 2 s: several updates certainly fall inside the restore.
    helper_env.write(
        smtp=smtp_section(controller.port, 0.005),
        services={"backend": "command", "stop_command": ["sleep", "2"], "start_command": ["true"]},
    )
    request = write_request(tmp_path / "request.json", subject=SUBJECT, body=BODY)

    result = helper_env.run_json("restore", snapshot_then_changes["id"], "--yes", "--request", str(request))

    assert result["ok"] is True
    assert database_counts(helper_env.db.name) == SNAPSHOT_COUNTS
    assert len(mailbox.received) >= 2
    assert all(s.startswith(f"Rollback of v2.3 on {helper_env.db.name}: running") for s in mailbox.subjects())
    assert any("now at stop (stopping the services)." in body for body in mailbox.bodies())
    assert all("Issues: none." in body for body in mailbox.bodies())
    assert all("odoo-team@example.com" in recipients for recipients, _ in mailbox.received)
    assert not any("FINAL UPDATE" in body for body in mailbox.bodies())  # Odoo sends the completion notice

    operation, events = restore_operation(helper_env)
    # After the swap replaced Odoo's database, its rollback record is still in the journal.
    assert operation["data"]["rollback"] == json.loads(request.read_text())["rollback"]
    assert operation["data"]["notify_recipients"] == ["odoo-team@example.com"]
    assert [c["role"] for c in operation["data"]["notify_escalation"]] == ["Technical lead", "DevOps manager", "CTO"]
    sent = [e for e in events if e["step"] == "notify" and e["status"] == "done"]
    assert len(sent) == len(mailbox.received)
    assert all(e["data"]["kind"] == "progress" and "ops@example.com" in e["message"] for e in sent)


def test_a_failed_restore_sends_a_final_mail(
    helper_env: HelperEnv,
    snapshot_then_changes: dict[str, Any],
    smtp_server: tuple[Controller, Mailbox],
    tmp_path: Path,
) -> None:
    controller, mailbox = smtp_server
    helper_env.write(
        smtp=smtp_section(controller.port, 15),
        services={"backend": "command", "stop_command": ["true"], "start_command": ["false"]},
    )
    request = write_request(tmp_path / "request.json")

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes", "--request", str(request))

    assert result.returncode == 4 and "was undone" in result.stderr
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    assert len(mailbox.received) == 1  # no progress update was due: only the final one
    recipients, message = mailbox.received[0]
    assert sorted(recipients) == ["lead@example.com", "odoo-team@example.com", "ops@example.com"]
    assert str(message["Subject"]).startswith(f"Restore of {helper_env.db.name}: undone after ")
    body = message.get_content()
    assert body.startswith("FINAL UPDATE: restore failed after the swap and was undone")
    assert "Problems so far: start: start command failed" in body
    operation, events = restore_operation(helper_env)
    assert operation["state"] == "undone"
    final = [e for e in events if e["step"] == "notify"]
    assert len(final) == 1 and final[0]["status"] == "done" and final[0]["data"]["kind"] == "final"


def test_a_dead_mail_server_does_not_stop_the_restore(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], tmp_path: Path
) -> None:
    helper_env.write(
        smtp=smtp_section(free_port(), 0.005),  # nothing listens there
        services={"backend": "command", "stop_command": ["sleep", "1"], "start_command": ["true"]},
    )

    result = helper_env.run_json(
        "restore", snapshot_then_changes["id"], "--yes", "--request", str(write_request(tmp_path / "r.json"))
    )

    assert result["ok"] is True
    assert database_counts(helper_env.db.name) == SNAPSHOT_COUNTS
    operation, events = restore_operation(helper_env)
    assert operation["state"] == "done"
    failed = [e for e in events if e["step"] == "notify"]
    assert failed and all(e["status"] == "failed" for e in failed)
    assert "cannot talk to the mail server 127.0.0.1:" in failed[0]["message"]
    assert "Connection refused" in failed[0]["message"] and "ops@example.com" in failed[0]["message"]


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("[]", "must be a JSON object"),
        ("{not json", "not valid JSON"),
        ('{"notify": "ops@example.com"}', "notify must be an object"),
        ('{"rollback": [1]}', "rollback must be an object"),
        ('{"notify": {"recipients": ["ops@example.com\\nBcc: x@y.z"]}}', "notify.recipients[0]"),
        ('{"notify": {"escalation": [{"minutes": "30", "email": "a@b.cd"}]}}', "escalation[0].minutes"),
        ('{"notify": {"subject": "two\\nlines"}}', "notify.subject must be one line"),
        ('{"notfy": {}}', "unknown key(s) notfy"),
    ],
)
def test_a_bad_request_file_is_refused_before_anything_is_done(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], tmp_path: Path, document: str, words: str
) -> None:
    request = tmp_path / "request.json"
    request.write_text(document, encoding="utf-8")

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes", "--request", str(request))

    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    assert not [op for op in helper_env.run_json("journal")["operations"] if op["kind"] == "restore"]
    missing = helper_env.run("rollback", "--yes", "--request", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


# -- the API -----------------------------------------------------------------------------------------
def test_api_refuses_a_bad_notify_and_hands_a_good_request_to_the_restore(
    served: Served, helper_env: HelperEnv
) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    body: dict[str, Any] = {"snapshot": snap["id"], "confirm_database": helper_env.db.name}

    for bad, words in (
        ({"notify": ["ops@example.com"]}, "notify must be an object"),
        ({"notify": {"escalation": [{"minutes": 5, "role": "x", "email": "not-an-address"}]}}, "escalation[0].email"),
        ({"rollback": "yes"}, "rollback must be an object"),
    ):
        status, reply = served.client.request("POST", "/v1/restores", {**body, **bad})
        assert status == 400 and words in reply["error"]
    assert served.client.request("GET", "/v1/health")[1]["running_job"] is None
    assert not (helper_env.storage / "requests").exists()

    rollback = {"id": 7, "name": "Rollback after v2.3", "lines": [{"check": "invoices", "ok": False}]}
    status, reply = served.client.request(
        "POST", "/v1/restores", {**body, "rollback": rollback, "notify": {"recipients": ["ops@example.com"]}}
    )
    assert status == 202
    job = served.wait_job(reply["job"]["id"])

    assert job["state"] == "done", job
    operation, _ = restore_operation(helper_env)
    assert operation["data"]["rollback"] == rollback and operation["data"]["job_id"] == job["id"]
    request_file = helper_env.storage / "requests" / f"{job['id']}.json"
    assert stat.S_IMODE(request_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(request_file.parent.stat().st_mode) == 0o700
    assert json.loads(request_file.read_text())["notify"]["recipients"] == ["ops@example.com"]
