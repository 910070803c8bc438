"""health: is the deployment up? smoke: does Odoo work? Both usable from monitoring; exit 1 when not."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Config
from ..errors import EXIT_CHECK_FAILED, EXIT_OK
from ..health import health_report
from ..output import Output, table
from ..smoke import check_smoke_config, smoke_report


def emit_checks(out: Output, report: dict[str, Any], passed: str, failed: str) -> int:
    """Print a ``{"ok", "checks"}`` report as a table (or JSON); exit status 1 when a check failed."""

    def human(doc: dict[str, Any]) -> str:
        rows = [(c["name"], "ok" if c["ok"] else "FAIL", c["detail"]) for c in doc["checks"]]
        return table(["check", "state", "detail"], rows) + "\n" + (passed if doc["ok"] else failed)

    out.emit(report, human)
    return EXIT_OK if report["ok"] else EXIT_CHECK_FAILED


def health(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    return emit_checks(out, health_report(cfg).as_dict(), "healthy", "UNHEALTHY")


def smoke(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    # A configuration problem is the operator's to fix (exit 2), not a failed check.
    check_smoke_config(cfg)
    return emit_checks(out, smoke_report(cfg), "smoke passed", "SMOKE FAILED")
