"""The ``odoo-rollback`` command line.

This module only declares the commands and their arguments; each command's work is done by a
function in :mod:`odoo_rollback.commands`, imported when that command runs so that ``--help`` and
quick commands stay fast. Errors are printed as one line on stderr with a meaningful exit status
(see :mod:`odoo_rollback.errors`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

import psycopg2

from . import __version__
from .config import ENV_VAR, Config, load_config
from .errors import EXIT_FAILED, RollbackError, os_failure
from .manifest import SNAPSHOT_KINDS
from .output import Output

Handler = Callable[[Config, argparse.Namespace, Output], int]


def _handler(target: str) -> Callable[[Config, argparse.Namespace, Output], int]:
    """Resolve "module:function" under odoo_rollback.commands lazily."""

    def run(cfg: Config, args: argparse.Namespace, out: Output) -> int:
        module_name, function_name = target.split(":")
        module = importlib.import_module(f"odoo_rollback.commands.{module_name}")
        return int(getattr(module, function_name)(cfg, args, out))

    return run


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one declaration per command
    # The global options are accepted before or after the command. After it they must not reset what
    # was given before it, so the sub-commands' copies default to SUPPRESS (parents share action objects,
    # hence one parent parser for each level).
    def global_options(default_config: object, default_json: object) -> argparse.ArgumentParser:
        options = argparse.ArgumentParser(add_help=False)
        options.add_argument(
            "--config", metavar="FILE", default=default_config, help=f"configuration file (default: ${ENV_VAR})"
        )
        options.add_argument(
            "--json", action="store_true", default=default_json, help="print one JSON document, for machines"
        )
        return options

    common = global_options(argparse.SUPPRESS, argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="odoo-rollback",
        description="Snapshots, verification and safe restores of an Odoo deployment.",
        parents=[global_options(None, False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, target: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=_handler(target))
        return p

    p = command("snapshot", "snapshots:snapshot", "dump the database and archive the filestore")
    p.add_argument("--kind", choices=SNAPSHOT_KINDS, default="manual")
    p.add_argument("--label", default="", help="a note saying why the snapshot was taken")
    p.add_argument("--verify", action="store_true", help="verify the snapshot once it is complete")
    p.add_argument(
        "--standby",
        action="store_true",
        help="once verified, build its warm standby in the background (default: [standby] after_snapshot)",
    )

    command("list", "snapshots:list_snapshots", "list complete snapshots, newest first")

    p = command("verify", "snapshots:verify", "check a snapshot's checksums and that its dump is readable")
    p.add_argument("id", help="snapshot id")
    p.add_argument(
        "--deep", action="store_true", help="also restore into a scratch database and compare its row counts"
    )

    p = command("standby", "standby:standby", "build (at low priority) or drop the warm standby of a snapshot")
    p.add_argument("action", choices=("build", "drop"))
    p.add_argument("id", help="snapshot id")

    command("counts", "snapshots:counts", "exact live row counts of the tracked tables")

    p = command("prune", "snapshots:prune", "apply the retention of [retention] to snapshots and kept databases")
    p.add_argument(
        "--keep", type=int, metavar="N", help="this once: keep the N newest snapshots of each kind, whatever the age"
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")

    request_help = "JSON file of Odoo's rollback record and whom to mail the progress to (see README)"
    p = command("restore", "restore:restore", "restore a snapshot in place of the live database")
    p.add_argument("id", help="snapshot id")
    p.add_argument("--yes", action="store_true", help="do it; without --yes only the plan is printed")
    p.add_argument("--request", metavar="FILE", help=request_help)

    p = command("rollback", "restore:rollback", "restore the newest verified pre_deploy snapshot")
    p.add_argument("--yes", action="store_true", help="do it; without --yes only the plan is printed")
    p.add_argument("--request", metavar="FILE", help=request_help)

    p = command("resume", "restore:resume", "finish or undo a restore that was interrupted")
    p.add_argument(
        "--wait", action="store_true", help="while another operation runs, wait for it to end instead of refusing"
    )

    p = command("journal", "restore:journal", "show the journal of snapshots, restores and drills")
    p.add_argument("--since", type=int, default=0, metavar="SEQ", help="only events after this sequence number")
    p.add_argument("--limit", type=int, default=200)

    p = command("drill", "restore:drill", "restore a snapshot into a scratch database and time it")
    p.add_argument("id", nargs="?", help="snapshot id (default: the newest verified pre_deploy one)")
    p.add_argument(
        "--no-neutralize", action="store_true", help="leave the scratch database as it is (default: neutralized)"
    )

    p = command("serve", "serve:serve", "serve the HTTP API for Odoo")
    p.add_argument("--socket", help="Unix socket path (overrides [api] socket)")
    p.add_argument("--host", help="loopback address to listen on instead of a socket")
    p.add_argument("--port", type=int)

    command("health", "checks:health", "check services, HTTP, database and free disk (exit 1 when unhealthy)")
    command(
        "smoke",
        "checks:smoke",
        "functional checks: login page, JSON-RPC reads, counts, configured SQL and URLs (exit 1 on a failure)",
    )

    _deploy_commands(command)
    _backup_commands(command)
    return parser


def _deploy_commands(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """deploy and logs: the guarded deployment and the log it is judged by."""
    p = command(
        "deploy", "deploy:deploy_command", "deploy a code revision behind a verified snapshot, roll back if it fails"
    )
    p.add_argument("--to", required=True, metavar="REVISION", help="git commit, tag or branch to deploy")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--modules", metavar="A,B", help="modules to update (comma-separated)")
    which.add_argument(
        "--changed", action="store_true", help="update the modules whose files differ between the two revisions"
    )
    p.add_argument(
        "--no-auto-rollback", action="store_true", help="on a failed analysis, pause instead of rolling back"
    )
    p.add_argument("--yes", action="store_true", help="do it; without --yes only the plan is printed")

    p = command("logs", "deploy:logs_command", "read Odoo's service log (docker, systemd or [deploy] log_file)")
    p.add_argument("--since", metavar="ISO", help="ISO 8601 time, UTC without a zone (default: one hour ago)")
    p.add_argument("--errors", action="store_true", help="only the errors and tracebacks (exit 1 when there are)")


def _backup_commands(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """export, import, copy, push, kept: snapshots to and from the rest of the Odoo world."""
    p = command("push", "snapshots:push", "copy a verified snapshot to the remotes of [remotes] and check the copy")
    p.add_argument("id", help="snapshot id")
    p.add_argument("--remote", metavar="NAME", help="only this remote")

    p = command(
        "kept", "snapshots:kept", "list the databases and filestores kept beside the live ones, with their size"
    )
    p.add_argument("--drop", metavar="NAME", help="drop this kept database and its filestore instead of listing")
    p.add_argument(
        "--force",
        action="store_true",
        help="with --drop: also one retention protects (the only copy of changes no export has, the newest restore's)",
    )

    p = command("export", "interop:export", "write a snapshot as an Odoo backup zip (dump.sql, filestore/)")
    p.add_argument("id", help="snapshot id")
    p.add_argument("--format", choices=["odoo-zip"], default="odoo-zip")
    p.add_argument("file", metavar="FILE", help="the zip to write ('-': standard output)")

    p = command("import", "interop:import_file", "make a verified snapshot of an Odoo backup zip or a pg_dump file")
    p.add_argument("file", metavar="FILE", help="Odoo zip, pg_dump custom or plain file, or pg_dump directory")
    p.add_argument("--label", default="", help="a note on where the backup comes from")

    p = command("copy", "interop:copy", "restore a snapshot into a new database and filestore, beside the live one")
    p.add_argument("id", help="snapshot id")
    p.add_argument("--to", required=True, metavar="NAME", help="the new database's name (must not exist)")
    p.add_argument(
        "--neutralize", action="store_true", help="run each installed module's data/neutralize.sql, as Odoo does"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(as_json=args.json)
    try:
        cfg = load_config(args.config)
        code: int = args.handler(cfg, args, out)
        return code
    except RollbackError as exc:
        sys.stderr.write(f"odoo-rollback: error: {exc}\n")
        return exc.exit_code
    except OSError as exc:
        # The checks before each step leave few of these (a disk filling up meanwhile): one line still.
        sys.stderr.write(f"odoo-rollback: error: {os_failure(exc, args.command)}\n")
        return EXIT_FAILED
    except psycopg2.Error as exc:
        # The checks before each step leave few of these too (a grant revoked meanwhile): one line,
        # the server's own words; the journal says what state the operation left.
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        sys.stderr.write(f"odoo-rollback: error: {args.command}: the database refused: {first}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("odoo-rollback: interrupted; see 'odoo-rollback journal' for the state left\n")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
