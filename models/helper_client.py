# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The client of the privileged helper's API (odoo-rollback serve).

Every request is signed with HMAC-SHA256 (the helper's README gives the message layout, and
helper/tests/data/signing_vectors.json the test vectors both sides check). The secret is read from the
file named by the ``deployment_rollback_secret_file`` option of odoo.conf: it is never stored in the
database. Every failure becomes a UserError that says what to do, never a traceback.
"""

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import time

from odoo import _, api, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import config

_logger = logging.getLogger(__name__)

ADDRESS_PARAM = "deployment_rollback.helper_address"
DEFAULT_ADDRESS = "unix:/run/odoo-rollback/api.sock"
SECRET_OPTION = "deployment_rollback_secret_file"  # noqa: S105 - the option naming the file
TIMEOUT = 30
# A preview reads every change made since the snapshot: after a deployment that rewrote a large table
# that is a minute's work. Under Odoo's default limit_time_real (120 s), so that the worker is not killed.
PREVIEW_TIMEOUT = 110
# The settings page asks for the helper's configuration: a helper that does not answer must not hang it.
CONFIG_TIMEOUT = 5
# Reading from the helper (health, jobs, journal, previews, logs) is for Deployment Rollback users; making
# it act (snapshot, verify, restore, drill: every POST) is for managers.
READ_GROUP = "deployment_rollback.group_deployment_rollback_user"
ACT_GROUP = "deployment_rollback.group_deployment_rollback_manager"


def sign(secret, method, path, timestamp, nonce, database, body):
    """Hex HMAC-SHA256 of the canonical message; the helper computes the same.

    *database* is this Odoo database: every database of the instance reads the same secret from
    odoo.conf, and the helper acts only for the one it serves.
    """
    message = "\n".join([method.upper(), path, timestamp, nonce, database, hashlib.sha256(body).hexdigest()]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


class HelperRefusal(UserError):
    """The helper answered and refused the request: it is reachable, and says why."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class DeploymentRollbackHelper(models.AbstractModel):
    _name = "deployment.rollback.helper"
    _description = "Deployment Rollback Helper Client"

    @api.model
    def _configured(self):
        """Whether odoo.conf names the helper's secret file: until it does, nothing asks the helper."""
        return bool(config.get(SECRET_OPTION))

    @api.model
    def _config(self):
        """The helper's configuration as ``GET /v1/config`` shows it: the truth for what the helper does
        (RTO, the tables it counts, how many snapshots it keeps), shown read-only in Odoo's settings."""
        return self._request("GET", "/v1/config", timeout=CONFIG_TIMEOUT)

    @api.model
    def _rto(self):
        """(target, maximum) minutes of the helper's [rto]; the helper measures restores against them."""
        rto = self._config().get("rto") or {}
        return int(rto.get("target_minutes") or 0), int(rto.get("max_minutes") or 0)

    @api.model
    def _address(self):
        return self.env["ir.config_parameter"].sudo().get_param(ADDRESS_PARAM) or DEFAULT_ADDRESS

    @api.model
    def _secret(self):
        path = config.get(SECRET_OPTION)
        if not path:
            raise UserError(
                _(
                    "The helper's shared secret is not configured: set %(option)s "
                    "in the Odoo configuration file to the helper's secret file.",
                    option=SECRET_OPTION,
                )
            )
        try:
            with open(path, encoding="utf-8") as handle:
                secret = handle.read().strip()
        except OSError as exc:
            raise UserError(
                _(
                    "Cannot read the helper's secret file %(path)s: %(error)s",
                    path=path,
                    error=exc.strerror,
                )
            ) from exc
        if not secret:
            raise UserError(_("The helper's secret file %s is empty.", path))
        return secret.encode()

    @api.model
    def _connection(self, address, timeout=TIMEOUT):
        if address.startswith("unix:"):
            return _UnixConnection(address[len("unix:") :], timeout)
        if address.startswith("http://"):
            host, _sep, port = address[len("http://") :].rstrip("/").partition(":")
            return http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
        raise UserError(
            _(
                "The helper address %s is not valid: use unix:/path/to/socket or http://127.0.0.1:PORT.",
                address,
            )
        )

    @api.model
    def _check_caller(self, method, path):
        """Refuse the request unless the user behind it has the group it needs.

        ``env.user`` is the real user under ``sudo()`` too, so a public method that reaches the helper
        from a sudo'ed record cannot lend its privilege to a portal or plain internal user's RPC call.
        Crons run as OdooBot, a manager.
        """
        group = READ_GROUP if method.upper() == "GET" else ACT_GROUP
        if not self.env.user.has_group(group):
            _logger.warning("refused %s %s to user %s: not in %s", method, path, self.env.uid, group)
            raise AccessError(
                _("Only Deployment Rollback managers can make the rollback helper act.")
                if group == ACT_GROUP
                else _("Only Deployment Rollback users can read from the rollback helper.")
            )

    @api.model
    def _health_problems(self, health):
        """The helper's failing checks in one sentence ("" when it is healthy), so that a warning
        says what to fix: the helper's details are its own (a grant to give, a service down)."""
        failing = [check for check in health.get("checks") or [] if not check.get("ok")]
        if not failing:
            return ""
        return _(
            "Failing: %s.",
            "; ".join(f"{check.get('name')}: {check.get('detail')}" for check in failing),
        )

    @api.model
    def _signed_headers(self, method, path, payload):
        """The signing headers of a request made for this database (the helper refuses any other's)."""
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        database = self.env.cr.dbname
        return {
            "X-Rollback-Timestamp": timestamp,
            "X-Rollback-Nonce": nonce,
            "X-Rollback-Database": database,
            "X-Rollback-Signature": sign(self._secret(), method, path, timestamp, nonce, database, payload),
        }

    @api.model
    def _request(self, method, path, body=None, timeout=TIMEOUT):
        """Send a signed request; return the decoded JSON answer of a 2xx reply."""
        self._check_caller(method, path)
        address = self._address()
        payload = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json", **self._signed_headers(method, path, payload)}
        conn = self._connection(address, timeout)
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except TimeoutError as exc:
            _logger.warning("helper at %s did not answer %s %s within %s s", address, method, path, timeout)
            raise UserError(
                _(
                    "The rollback helper at %(address)s did not answer within %(seconds)s seconds. It may still be "
                    "working: look at its journal (odoo-rollback journal) before trying again.",
                    address=address,
                    seconds=timeout,
                )
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            _logger.warning("helper at %s unreachable: %s", address, exc)
            raise UserError(
                _(
                    "The rollback helper at %(address)s cannot be reached (%(error)s). Is odoo-rollback serve running?",
                    address=address,
                    error=exc,
                )
            ) from exc
        finally:
            conn.close()
        try:
            document = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise UserError(_("The rollback helper sent an answer that is not JSON.")) from exc
        if response.status == 401:
            raise HelperRefusal(
                _(
                    "The rollback helper refused the request: the shared secret "
                    "does not match the helper's, or the clocks differ, or the helper and this addon "
                    "sign requests differently (upgrade both together)."
                )
            )
        if response.status >= 400:
            raise HelperRefusal(
                _(
                    "The rollback helper refused the request (%(status)s): %(error)s",
                    status=response.status,
                    error=document.get("error", raw[:200]),
                )
            )
        return document

    @api.model
    def _open_stream(self, path):
        """GET a reply the helper streams (a snapshot as a zip): (response, connection), read by the caller,
        who closes the connection. A refusal is a UserError before any byte is passed on."""
        address = self._address()
        headers = self._signed_headers("GET", path, b"")
        conn = self._connection(address)
        try:
            conn.request("GET", path, body=b"", headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise UserError(
                _(
                    "The rollback helper at %(address)s cannot be reached (%(error)s). Is odoo-rollback serve running?",
                    address=address,
                    error=exc,
                )
            ) from exc
        if response.status != 200:
            raw = response.read()
            conn.close()
            try:
                error = json.loads(raw).get("error")
            except ValueError:
                error = raw[:200]
            raise HelperRefusal(
                _(
                    "The rollback helper refused the request (%(status)s): %(error)s",
                    status=response.status,
                    error=error,
                )
            )
        return response, conn
