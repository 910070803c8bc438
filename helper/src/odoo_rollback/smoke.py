"""The runbook's functional checks, without a browser: is Odoo really working after a deploy or restore?

Odoo is asked over its stateless JSON-RPC endpoint (``/jsonrpc``, services ``common`` and ``object``),
which accepts a password or an API key, with the standard library only. The row counts of the tracked
tables must not be lower than a snapshot's, and the operator's own SQL and URL checks must pass.
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from typing import Any

import psycopg2

from .config import Config, SmokeConfig, read_private_file
from .counts import exact_counts
from .db import connect, explain_connect_error
from .errors import ConfigError, RollbackError
from .health import probe
from .storage import SnapshotStore

Check = dict[str, Any]
_request_ids = itertools.count(1)


class RpcError(Exception):
    """Odoo answered the call with an error, or did not answer it."""


def check(name: str, ok: bool, detail: str) -> Check:
    return {"name": name, "ok": bool(ok), "detail": detail}


def read_credentials(cfg: SmokeConfig) -> str:
    """The RPC user's password or API key, from a file that not everyone can read."""
    path = cfg.credentials_file
    if path is None:
        raise ConfigError("smoke.credentials_file is not configured")
    secret = read_private_file(path, "smoke.credentials_file")
    if not secret:
        raise ConfigError(f"smoke.credentials_file {path} is empty")
    return secret


def check_smoke_config(cfg: Config) -> str:
    """The RPC user's secret, once everything the smoke needs is configured; else a ConfigError."""
    if not cfg.smoke.url:
        raise ConfigError("smoke needs Odoo's address: set [smoke] url (or [health] url)")
    if not cfg.smoke.login:
        raise ConfigError("smoke needs [smoke] login and credentials_file for its JSON-RPC checks")
    return read_credentials(cfg.smoke)


class OdooRpc:
    """A JSON-RPC client of one Odoo database, logged in as one user."""

    def __init__(self, url: str, database: str, timeout: float) -> None:
        self.endpoint = f"{url}/jsonrpc"
        self.database = database
        self.timeout = timeout
        self.uid: int | None = None
        self.secret = ""

    def call(self, service: str, method: str, *args: Any) -> Any:
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "params": {"service": service, "method": method, "args": list(args)},
            "id": next(_request_ids),
        }
        request = urllib.request.Request(  # noqa: S310 - http(s) only: checked in config.parse_smoke
            self.endpoint,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - configured URL
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RpcError(f"{self.endpoint} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RpcError(f"{self.endpoint}: {getattr(exc, 'reason', exc)}") from exc
        except ValueError as exc:
            raise RpcError(f"{self.endpoint} did not answer JSON") from exc
        if not isinstance(answer, dict):
            raise RpcError(f"{self.endpoint} did not answer JSON-RPC")
        error = answer.get("error")
        if error:
            data = error.get("data") if isinstance(error, dict) else None
            message = (data.get("message") if isinstance(data, dict) else None) or (
                error.get("message") if isinstance(error, dict) else None
            )
            raise RpcError(str(message or error))
        return answer.get("result")

    def login(self, login: str, secret: str) -> int | None:
        uid = self.call("common", "login", self.database, login, secret)
        if isinstance(uid, int) and uid > 0:
            self.uid, self.secret = uid, secret
            return uid
        return None

    def execute_kw(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
        return self.call(
            "object", "execute_kw", self.database, self.uid, self.secret, model, method, args, kwargs or {}
        )


def login_page_check(url: str, timeout: float) -> Check:
    target = f"{url}/web/login"
    request = urllib.request.Request(target, headers={"Accept": "text/html"})  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured URL
            status, body, final = response.status, response.read(512 * 1024), response.geturl()
    except urllib.error.HTTPError as exc:
        return check("login page", False, f"{target}: HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        return check("login page", False, f"{target}: {getattr(exc, 'reason', exc)}")
    # Odoo's form, not any page: a proxy's error page or a database selector answers 200 too.
    if b'name="password"' not in body:
        return check("login page", False, f"{target}: HTTP {status} at {final}, but no login form")
    return check("login page", True, f"{target}: HTTP {status}")


def rpc_checks(cfg: Config, secret: str) -> list[Check]:
    smoke = cfg.smoke
    rpc = OdooRpc(smoke.url or "", cfg.database.name, smoke.timeout)
    try:
        uid = rpc.login(smoke.login or "", secret)
    except RpcError as exc:
        return [check("rpc login", False, f"JSON-RPC login failed: {exc}")]
    if uid is None:
        return [
            check(
                "rpc login",
                False,
                f"Odoo refused the credentials of {smoke.login!r} on database {cfg.database.name!r} "
                f"(see smoke.credentials_file)",
            )
        ]
    checks = [check("rpc login", True, f"{smoke.login} is uid {uid} on {cfg.database.name}")]
    try:
        installed = rpc.execute_kw(
            "ir.module.module", "search_count", [[("name", "=", "account"), ("state", "=", "installed")]]
        )
        if installed:
            moves = rpc.execute_kw(
                "account.move",
                "search_read",
                [[("move_type", "=", "out_invoice")]],
                {"fields": ["name", "state", "amount_total"], "order": "id desc", "limit": 1},
            )
            detail = (
                f"{moves[0]['name']} ({moves[0]['state']}, {moves[0]['amount_total']})"
                if moves
                else "no customer invoice yet"
            )
            checks.append(check("newest customer invoice", True, detail))
        else:
            checks.append(check("newest customer invoice", True, "account is not installed: not checked"))
    except (RpcError, LookupError, TypeError) as exc:
        # LookupError, TypeError: an answer not shaped like Odoo's (a proxy in between, another app).
        checks.append(check("newest customer invoice", False, f"reading account.move failed: {exc!s}"))
    try:
        partners = rpc.execute_kw("res.partner", "search_read", [[]], {"fields": ["name"], "limit": 1})
        if partners:
            checks.append(check("a partner", True, f"res.partner {partners[0]['id']}: {partners[0]['name']}"))
        else:
            checks.append(check("a partner", False, "res.partner returned no record"))
    except (RpcError, LookupError, TypeError) as exc:
        checks.append(check("a partner", False, f"reading res.partner failed: {exc!s}"))
    return checks


def default_snapshot_counts(cfg: Config) -> tuple[dict[str, int | None] | None, str | None]:
    """The newest verified pre_deploy snapshot's counts for this database, and its id."""
    snapshot = SnapshotStore(cfg.storage).newest("pre_deploy", verified=True, database=cfg.database.name)
    if snapshot is None:
        return None, None
    return dict(snapshot.manifest.counts), snapshot.id


def count_checks(cfg: Config, snapshot_counts: dict[str, int | None] | None, source: str) -> list[Check]:
    if snapshot_counts is None:
        return [check("counts", True, "no verified pre_deploy snapshot to compare with")]
    tables = [table for table, count in snapshot_counts.items() if count is not None]
    if not tables:
        return [check("counts", True, f"{source} has no counts to compare with")]
    try:
        with connect(cfg.database) as conn:
            live = exact_counts(conn, tables)
    except RollbackError as exc:
        return [check("counts", False, str(exc))]
    checks = []
    for table in tables:
        before, now = snapshot_counts[table], live.get(table)
        if now is None:
            checks.append(check(f"count {table}", False, f"table is missing; {before} rows in {source}"))
        else:
            ok = now >= (before or 0)
            checks.append(check(f"count {table}", ok, f"{now} rows now, {before} in {source}"))
    return checks


def sql_checks(cfg: Config) -> list[Check]:
    if not cfg.smoke.sql_checks:
        return []
    params = cfg.database.connect_params()
    # Read-only and time-limited for the whole session, not only for the transaction opened here.
    timeout_ms = int(cfg.smoke.timeout * 1000)
    params["options"] = f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"
    checks = []
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.OperationalError as exc:
        message = explain_connect_error(exc, params)
        return [check(f"sql {n}", False, message) for n, _ in enumerate(cfg.smoke.sql_checks, 1)]
    try:
        conn.set_session(readonly=True)
        for number, statement in enumerate(cfg.smoke.sql_checks, 1):
            name = f"sql {number}"
            shown = statement if len(statement) <= 80 else statement[:77] + "..."
            try:
                with conn.cursor() as cur:
                    cur.execute(statement)
                    rows = cur.fetchmany(1) if cur.description else []
                if rows:
                    checks.append(check(name, True, f"returned rows: {shown}"))
                else:
                    checks.append(check(name, False, f"returned no row: {shown}"))
            except psycopg2.Error as exc:
                first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
                checks.append(check(name, False, f"{first_line}: {shown}"))
            finally:
                conn.rollback()
    finally:
        conn.close()
    return checks


def url_checks(cfg: Config) -> list[Check]:
    checks = []
    for target in cfg.smoke.url_checks:
        url = f"{cfg.smoke.url}{target}" if target.startswith("/") else target
        status, seconds, error = probe(url, cfg.smoke.timeout)
        ok = status is not None and status < 400
        checks.append(check(f"url {url}", ok, f"{status or error} in {seconds:.2f} s"))
    return checks


def smoke_report(
    cfg: Config, snapshot_counts: dict[str, int | None] | None = None, *, configured_only: bool = False
) -> dict[str, Any]:
    """Run every smoke check; ``{"ok", "checks": [{"name", "ok", "detail"}]}``. Never raises for a failure.

    *snapshot_counts* defaults to the newest verified pre_deploy snapshot's manifest counts. With
    *configured_only* (the deployment's analysis), a smoke without its JSON-RPC user runs the checks that
    need none (counts, SQL, URLs) and says the others were not configured, instead of failing: a deployment
    must not be rolled back because a check was never set up.
    """
    try:
        secret: str | None = check_smoke_config(cfg)
    except ConfigError as exc:
        if not configured_only or (cfg.smoke.login and cfg.smoke.credentials_file):
            return {"ok": False, "checks": [check("configuration", False, str(exc))]}
        secret = None
        skipped = check("rpc", True, f"not configured: {exc}")
    url = cfg.smoke.url or ""
    source = "the given counts"
    if snapshot_counts is None:
        snapshot_counts, snapshot_id = default_snapshot_counts(cfg)
        source = f"snapshot {snapshot_id}"
    if secret is None:
        checks = [skipped]
    else:
        checks = [login_page_check(url, cfg.smoke.timeout)]
        checks += rpc_checks(cfg, secret)
    checks += count_checks(cfg, snapshot_counts, source)
    checks += sql_checks(cfg)
    checks += url_checks(cfg)
    return {"ok": all(c["ok"] for c in checks), "checks": checks}
