"""deploy, logs."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from ..config import Config
from ..deploy import DEPLOYED, PAUSED, ROLLED_BACK, DeployRequest, deploy, plan_deploy
from ..errors import EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_OK, EXIT_PAUSED, EXIT_ROLLED_BACK, UsageError
from ..journal import Journal
from ..logs import parse_since, read_service_log, scan_lines
from ..output import Output, table

EXIT_FOR_OUTCOME = {DEPLOYED: EXIT_OK, ROLLED_BACK: EXIT_ROLLED_BACK, PAUSED: EXIT_PAUSED}
DEFAULT_LOG_HOURS = 1


def _modules(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    modules = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modules:
        raise UsageError("--modules needs at least one module name")
    return modules


def _plan_text(doc: dict[str, Any]) -> str:
    snapshot = doc["snapshot"]
    lines = [
        f"Plan: deploy {doc['requested']} to {doc['database']} from the code in {doc['code_path']}.",
        f"Revision: {doc['from_revision'][:12]} -> {doc['to_revision'][:12]}",
        "Modules to update: " + (", ".join(doc["modules"]) or "none (only the code changes)"),
    ]
    if doc["changed_but_not_installed"]:
        lines.append("Changed but not installed (not updated): " + ", ".join(doc["changed_but_not_installed"]))
    lines.append(
        f"Snapshot: reuse {snapshot['reuse']}" if "reuse" in snapshot else "Snapshot: take and verify a pre_deploy one"
    )
    if doc["update_command"]:
        lines.append("Update command: " + " ".join(doc["update_command"]))
    rollback = "rolled back automatically" if doc["auto_rollback"] else "left to you (--no-auto-rollback)"
    lines.append(f"Analysis: {doc['analysis_seconds']} s, a failed deployment is {rollback}.")
    lines.append("Nothing was changed. Run again with --yes to deploy.")
    return "\n".join(lines)


def _result_text(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc['outcome'].upper()}: {doc['reason']}",
        f"Revision {str(doc['from_revision'])[:12]} -> {str(doc['to_revision'])[:12]}, snapshot {doc['snapshot']}"
        + (" (reused)" if doc["snapshot_reused"] else ""),
        table(["step", "seconds", "ok"], [(s["name"], s["seconds"], "yes" if s["ok"] else "NO") for s in doc["steps"]]),
    ]
    if doc["analysis"]:
        lines.append(
            table(
                ["check", "state", "detail"],
                [(c["name"], "ok" if c["ok"] else (c["trigger"] or "FAIL"), c["detail"]) for c in doc["analysis"]],
            )
        )
    if doc["rollback_operation"]:
        lines.append(f"Rollback: restore operation {doc['rollback_operation']} (see 'odoo-rollback journal')")
    if doc["update_log"]:
        lines.append(f"Update output: {doc['update_log']}")
    return "\n".join(lines)


def _ask_on_terminal(question: str) -> bool:
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def deploy_command(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    request = DeployRequest(
        revision=args.to,
        modules=_modules(args.modules),
        changed=args.changed,
        auto_rollback=not args.no_auto_rollback,
    )
    journal = Journal(cfg.storage.journal_path)
    if not args.yes:
        plan = plan_deploy(cfg, request, journal)
        out.emit(plan.as_dict(cfg), _plan_text)
        return EXIT_OK
    # Only a person at a terminal is asked; a job, a pipe or --json gets the paused exit status.
    ask = _ask_on_terminal if (not out.as_json and sys.stdin.isatty() and sys.stderr.isatty()) else None
    result = deploy(cfg, request, journal, ask=ask, show_progress=out.interactive)
    out.emit(result.as_dict(), _result_text)
    return EXIT_FOR_OUTCOME.get(result.outcome, EXIT_FAILED)


def logs_command(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from exc
    if since is None:
        since = datetime.now(timezone.utc) - timedelta(hours=DEFAULT_LOG_HOURS)
    lines, source = read_service_log(cfg, since)
    if source is None:
        raise UsageError(
            f"no service log to read with services.backend = {cfg.services.backend!r}: set [deploy] log_file"
        )
    scan = scan_lines(lines, source)
    doc: dict[str, Any] = {**scan.as_dict(), "since": since.isoformat()}
    if not args.errors:
        doc["lines"] = lines

    def human(d: dict[str, Any]) -> str:
        if "lines" in d:
            return "\n".join(d["lines"]) or f"(no log lines since {d['since']})"
        if not d["errors"]:
            return f"no errors in {d['lines_read']} line(s) from {d['source']} since {d['since']}"
        return "\n\n".join(
            "\n".join([f"{e['at'] or ''} {e['level']} {e['logger'] or ''}: {e['message']}".strip(), *e["lines"]])
            for e in d["errors"]
        )

    out.emit(doc, human)
    # With --errors it is a check, usable from monitoring: 1 when the log has errors.
    return EXIT_CHECK_FAILED if args.errors and scan.errors else EXIT_OK
