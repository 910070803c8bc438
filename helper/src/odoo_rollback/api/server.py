"""``odoo-rollback serve``: the signed HTTP API (stdlib http.server) on a Unix socket or loopback TCP."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import logging
import os
import re
import socket
import socketserver
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import __version__
from ..config import Config, StorageConfig, read_api_secret
from ..errors import ConfigError, RollbackError, SnapshotNotFound, SnapshotRefused, UsageError
from ..health import health_report
from ..journal import Journal
from ..kept import list_kept
from ..logs import log_source, parse_since, service_log_errors
from ..manifest import SNAPSHOT_KINDS
from ..odoo_zip import write_odoo_zip
from ..prune import retention_settings
from ..request import REQUEST_KEYS, RestoreRequest, parse_request
from ..restore_capture import plan_lost_changes
from ..storage import SnapshotStore
from .connections import MAX_HEADER_BYTES, ConnectionLimiter, DeadlineReader, RequestTooLarge, refuse_busy
from .jobs import JobConflict, JobRunner
from .nonces import FILE_NAME as NONCES_FILE
from .nonces import NonceStore
from .signing import SignatureError, Verifier, WrongDatabase

log = logging.getLogger("odoo_rollback.api")
MAX_BODY = 64 * 1024
SNAPSHOT_ROUTE = re.compile(r"^/v1/snapshots/([^/]+)/(verify|preview|odoo-zip)$")
JOB_ROUTE = re.compile(r"^/v1/jobs/([^/]+)$")
RESTORE_KEYS = REQUEST_KEYS | {"snapshot", "confirm_database"}


# The keys each POST accepts, and their types: anything else is refused, never ignored.
# standby: once verified, the snapshot is restored ahead of need in the background (snapshot --standby).
SNAPSHOT_BODY: dict[str, type] = {"kind": str, "label": str, "verify": bool, "standby": bool, "requested_by": str}
VERIFY_BODY: dict[str, type] = {"deep": bool}
DRILL_BODY: dict[str, type] = {"snapshot": str}
RESTORE_BODY: dict[str, type] = {"snapshot": str, "confirm_database": str}
MAX_FIELD = 200  # characters of a label, a login, a snapshot id


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_body(body: dict[str, Any], known: dict[str, type], where: str) -> None:
    """Refuse unknown keys and values of the wrong type (None stands for "not given")."""
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})",
        )
    for key, kind in known.items():
        value = body.get(key)
        if value is None:
            continue
        if type(value) is not kind:  # exact: True is not a str, 1 is not a bool
            raise ApiError(HTTPStatus.BAD_REQUEST, f"{where}: {key} must be a {kind.__name__}, not {value!r}")
        if isinstance(value, str) and (len(value) > MAX_FIELD or "\n" in value or "\r" in value):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"{where}: {key} must be one line of at most {MAX_FIELD} characters")


class Api:
    """The routes, independent of the transport."""

    def __init__(self, cfg: Config, config_path: Path, verifier: Verifier) -> None:
        self.cfg = cfg
        self.verifier = verifier
        self.journal = Journal(cfg.storage.journal_path)
        self.store = SnapshotStore(cfg.storage)
        self.jobs = JobRunner(config_path, self.journal)

    def handle(self, method: str, target: str, body: dict[str, Any]) -> tuple[HTTPStatus, Any]:  # noqa: PLR0911, PLR0912 - a router: one branch per route
        url = urlsplit(target)
        path, query = url.path, parse_qs(url.query)
        if method == "GET" and body:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"GET {path} takes no body")
        if method == "GET" and path == "/v1/health":
            return HTTPStatus.OK, self.health()
        if method == "GET" and path == "/v1/config":
            return HTTPStatus.OK, self.config_view()
        if method == "GET" and path == "/v1/snapshots":
            return HTTPStatus.OK, {"snapshots": [s.summary() for s in self.store.list()]}
        if method == "POST" and path == "/v1/snapshots":
            check_body(body, SNAPSHOT_BODY, "POST /v1/snapshots")
            kind = body.get("kind") or "pre_deploy"
            if kind not in SNAPSHOT_KINDS:
                raise ApiError(HTTPStatus.BAD_REQUEST, f"unknown snapshot kind {kind!r}")
            if body.get("requested_by"):
                log.info("snapshot requested by %s", body["requested_by"])
            # "--label=..." in one argument: a label that starts with "-" is not taken for an option.
            args = ["snapshot", "--kind", kind, f"--label={body.get('label') or ''}"]
            args += [f"--{flag}" for flag in ("verify", "standby") if body.get(flag)]
            return self.start_job("snapshot", args)
        if match := SNAPSHOT_ROUTE.match(path):
            snapshot_id, action = match.groups()
            if method == "POST" and action == "verify":
                check_body(body, VERIFY_BODY, f"POST {path}")
                snapshot = self.snapshot(snapshot_id)
                return self.start_job("verify", ["verify", snapshot.id, *(["--deep"] if body.get("deep") else [])])
            snapshot = self.snapshot(snapshot_id)
            if method == "GET" and action == "odoo-zip":
                return HTTPStatus.OK, odoo_zip_reply(self.cfg.storage, snapshot)
            if method == "GET" and action == "preview":
                lost = plan_lost_changes(self.cfg, snapshot).report()
                return HTTPStatus.OK, {
                    "snapshot": snapshot.id,
                    "database": self.cfg.database.name,
                    **lost,
                    "total": lost["lost_rows_total"],
                }
        if method == "POST" and path == "/v1/restores":
            try:
                request = parse_request(body, known=RESTORE_KEYS)
            except UsageError as exc:
                raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
            check_body({k: body.get(k) for k in ("snapshot", "confirm_database")}, RESTORE_BODY, "POST /v1/restores")
            snapshot = self.snapshot(str(body.get("snapshot", "")))
            if body.get("confirm_database") != self.cfg.database.name:
                raise ApiError(HTTPStatus.BAD_REQUEST, "confirm_database does not match the configured database")
            if snapshot.manifest.database != self.cfg.database.name:
                raise ApiError(HTTPStatus.BAD_REQUEST, f"snapshot {snapshot.id} is of another database")
            return self.start_job("restore", ["restore", snapshot.id, "--yes"], request)
        if method == "POST" and path == "/v1/drills":
            check_body(body, DRILL_BODY, "POST /v1/drills")
            args = ["drill"]
            if body.get("snapshot"):
                args.append(self.snapshot(str(body["snapshot"])).id)
            return self.start_job("drill", args)
        if method == "GET" and (match := JOB_ROUTE.match(path)):
            job = self.jobs.get(match.group(1))
            if job is None:
                raise ApiError(HTTPStatus.NOT_FOUND, f"no job {match.group(1)}")
            return HTTPStatus.OK, job.as_dict(self.journal)
        if method == "GET" and path == "/v1/kept":
            return HTTPStatus.OK, {"kept": [item.as_dict() for item in list_kept(self.cfg, self.journal)]}
        if method == "GET" and path == "/v1/journal":
            return HTTPStatus.OK, self.journal_since(query)
        if method == "GET" and path == "/v1/logs/errors":
            return HTTPStatus.OK, self.log_errors(query)
        raise ApiError(HTTPStatus.NOT_FOUND, f"no route {method} {path}")

    def snapshot(self, snapshot_id: str) -> Any:
        try:
            return self.store.get(snapshot_id)
        except SnapshotNotFound as exc:
            raise ApiError(HTTPStatus.NOT_FOUND, str(exc)) from exc
        except SnapshotRefused as exc:  # its folder holds another snapshot, another database's, a link
            raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc

    def start_job(self, kind: str, args: list[str], request: RestoreRequest | None = None) -> tuple[HTTPStatus, Any]:
        try:
            job = self.jobs.start(kind, args, request)
        except JobConflict as exc:
            raise ApiError(HTTPStatus.CONFLICT, str(exc)) from exc
        return HTTPStatus.ACCEPTED, {"job": job.as_dict(self.journal)}

    def health(self) -> dict[str, Any]:
        """The one health report (as ``odoo-rollback health --json`` prints it), with the API's version
        and running job."""
        running = self.jobs.running()
        return {
            **health_report(self.cfg).as_dict(),
            "version": __version__,
            "running_job": running.as_dict(self.journal) if running else None,
        }

    def config_view(self) -> dict[str, Any]:
        """The settings Odoo shows read-only: for what the helper does, its configuration is the truth."""
        view: dict[str, Any] = {
            "source": str(self.cfg.source) if self.cfg.source else None,
            "database": self.cfg.database.name,
            "rto": dataclasses.asdict(self.cfg.rto),
            "counts": {"tables": list(self.cfg.counts.tables)},
        }
        view["retention"] = retention_settings(self.cfg)
        return view

    def log_errors(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """Errors and tracebacks in Odoo's service log since a time (e.g. a restore's end)."""
        try:
            since = parse_since(query.get("since", [""])[0])
        except ValueError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"since: {exc}") from exc
        if since is None:
            raise ApiError(HTTPStatus.BAD_REQUEST, "since is required (ISO 8601), e.g. the end of a restore")
        scan = service_log_errors(self.cfg, since)
        return {**scan.as_dict(), "since": since.isoformat(), "checked": log_source(self.cfg) is not None}

    def journal_since(self, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            since = int(query.get("since", ["0"])[0])
            limit = min(int(query.get("limit", ["500"])[0]), 5000)
        except ValueError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, "since and limit must be integers") from exc
        events = self.journal.events(since=since, limit=limit)
        operations = {}
        for event in events:
            if event.operation_id not in operations:
                operation = self.journal.operation(event.operation_id)
                if operation:
                    operations[operation.id] = operation.as_dict()
        return {
            "events": [e.as_dict() for e in events],
            "operations": operations,
            "next": events[-1].seq if events else since,
        }


# Content-Length as HTTP defines it: digits only (no sign, no spaces, no "1_000"), at most 10 of them.
CONTENT_LENGTH = re.compile(r"^[0-9]{1,10}$")
WRITE_TIMEOUT = 30.0  # seconds a reply may take to be sent


@dataclasses.dataclass(frozen=True)
class StreamReply:
    """A reply written as it is produced (chunked), for what is too big to hold: a snapshot as a zip."""

    content_type: str
    filename: str
    write: Callable[[Any], None]


def odoo_zip_reply(storage: StorageConfig, snapshot: Any) -> StreamReply:
    """A snapshot as Odoo's backup zip, written into the reply as it is read."""
    return StreamReply(
        "application/zip", f"{snapshot.id}.zip", lambda stream: write_odoo_zip(storage, snapshot, stream)
    )


class ChunkedWriter:
    """A write-only file over an HTTP/1.1 chunked body; it cannot seek, which zipfile handles."""

    def __init__(self, wfile: Any) -> None:
        self.wfile = wfile

    def write(self, data: bytes) -> int:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), bytes(data)))
        return len(data)

    def flush(self) -> None:
        self.wfile.flush()

    def close(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Handler(BaseHTTPRequestHandler):
    """One request per connection: its deadline and byte budget cover the whole connection."""

    server: ApiServerMixin  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"
    timeout = WRITE_TIMEOUT

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + self.server.api.cfg.api.read_timeout
        self.rfile.close()  # the socket file the base class opened: it holds a reference to the socket
        # What a reply needs before the request line is parsed (a request line beyond the budget).
        self.command, self.path, self.requestline, self.request_version = "", "", "", self.protocol_version
        # The request line and headers get their own budget; the body's length is added once it is accepted.
        self.reader = DeadlineReader(self.connection, deadline, MAX_HEADER_BYTES)
        self.rfile = io.BufferedReader(self.reader)

    def handle(self) -> None:
        try:
            super().handle()
        except RequestTooLarge:
            self._reply(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                {"error": f"the request line and headers exceed {MAX_HEADER_BYTES} bytes"},
            )
        except OSError as exc:
            # Closed by its client, or by the server to make room: one line, not a traceback.
            log.info("connection from %s ended: %s", self.address_string(), exc)

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "unix-socket"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _stream(self, reply: StreamReply) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Disposition", f'attachment; filename="{reply.filename}"')
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        writer = ChunkedWriter(self.wfile)
        try:
            reply.write(writer)
        except Exception:
            # The status line is gone: a cut connection without the last chunk tells the client it failed.
            log.exception("streaming %s failed", reply.filename)
            self.close_connection = True
            return
        writer.close()

    def _reply(self, status: HTTPStatus, document: Any) -> None:
        if isinstance(document, StreamReply):
            self._stream(document)
            return
        payload = json.dumps(document, default=str).encode()
        self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError as exc:
            # The client left, or its connection was closed to make room: nobody is waiting for this reply.
            log.info("reply to %s %s not sent: %s", self.command, self.path, exc)

    def _body_length(self) -> int | None:
        """The body's length, or None once a reply refused the request (before anything of the body was read)."""
        if self.headers.get("Transfer-Encoding") is not None:
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "send the body with a Content-Length, not chunked"})
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            if self.command == "POST":
                self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "a POST request needs a Content-Length"})
                return None
            return 0
        if len(values) > 1 or not CONTENT_LENGTH.match(values[0]):
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "Content-Length must be one non-negative integer"})
            return None
        length = int(values[0])
        if length > MAX_BODY:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"request body larger than {MAX_BODY} bytes"})
            return None
        return length

    def _refuse_signature(self, exc: SignatureError) -> None:
        log.warning("refused %s %s: %s", self.command, self.path, exc)
        self._reply(HTTPStatus.UNAUTHORIZED, {"error": "request refused: bad or missing signature"})

    def _refuse_database(self, exc: WrongDatabase) -> None:
        log.warning("refused %s %s: %s", self.command, self.path, exc)
        # The database this helper serves is not named: the caller only needs to know it is not its own.
        self._reply(
            HTTPStatus.FORBIDDEN,
            {
                "error": f"this helper serves another database, not {exc.requested}: each database needs its "
                "own helper (set this database's helper address to it)"
            },
        )

    def _verified(self, raw: bytes) -> bool:
        """Whether the request is signed, new, and for this helper's database; else refused (replied)."""
        try:
            self.server.api.verifier.verify(self.command, self.path, self.headers, raw)
        except SignatureError as exc:
            self._refuse_signature(exc)
            return False
        except WrongDatabase as exc:
            self._refuse_database(exc)
            return False
        except RollbackError as exc:
            # The nonce could not be recorded: refused rather than accepted unrecorded (replayable).
            log.error("refused %s %s: %s", self.command, self.path, exc)
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
            return False
        return True

    def _dispatch(self) -> None:
        self.close_connection = True
        api = self.server.api
        length = self._body_length()
        if length is None:
            return
        try:
            # An unsigned or stale request costs no read of its body.
            api.verifier.check_headers(self.headers)
        except SignatureError as exc:
            self._refuse_signature(exc)
            return
        self.reader.budget += length
        try:
            raw = self.rfile.read(length) if length else b""
        except TimeoutError:
            self._reply(HTTPStatus.REQUEST_TIMEOUT, {"error": "the request body was not received in time"})
            return
        if len(raw) != length:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "the body is shorter than its Content-Length"})
            return
        if not self.server.limiter.request_read(self.connection):
            return  # closed to make room while its last bytes arrived
        self.connection.settimeout(WRITE_TIMEOUT)
        if not self._verified(raw):
            return
        try:
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            status, document = api.handle(self.command, self.path, body)
        except ValueError:
            status, document = HTTPStatus.BAD_REQUEST, {"error": "the body is not valid JSON"}
        except ApiError as exc:
            status, document = exc.status, {"error": exc.message}
        except RollbackError as exc:
            status, document = HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}
        except Exception as exc:
            log.exception("error in %s %s", self.command, self.path)
            status, document = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {exc}"}
        self._reply(status, document)

    do_GET = _dispatch
    do_POST = _dispatch


class ApiServerMixin:
    api: Api
    limiter: ConnectionLimiter
    # The socket file this server created and removes when it stops; None when it was given one.
    owned_path: Path | None = None
    where: str = ""
    # Connections waiting to be accepted: a burst queues here instead of being refused by the kernel.
    request_queue_size = 64

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.limiter.admit(request):
            refuse_busy(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        self.limiter.release(request)
        super().shutdown_request(request)  # type: ignore[misc]


class UnixApiServer(ApiServerMixin, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TcpApiServer(ApiServerMixin, ThreadingHTTPServer):
    daemon_threads = True


def _socket_in_use(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


# systemd's socket activation protocol (sd_listen_fds(3)): the sockets start at file descriptor 3.
LISTEN_FDS_START = 3


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd passed to this process (socket activation), or None."""
    count, pid = os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_PID")
    # The variables are meant for this process only, not for the jobs it runs.
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count is None or pid != str(os.getpid()):
        return None
    if count != "1":
        raise ConfigError(f"systemd passed {count} sockets; the API listens on one (one ListenStream= line)")
    try:
        sock = socket.socket(fileno=LISTEN_FDS_START)
    except OSError as exc:
        raise ConfigError(f"LISTEN_FDS=1 but file descriptor 3 is not a socket: {exc.strerror}") from exc
    sock.set_inheritable(False)
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ConfigError("the socket systemd passed is not a listening stream socket (ListenStream=)")
    return sock


def adopt_socket(sock: socket.socket) -> UnixApiServer | TcpApiServer:
    """A server on the already bound and listening *sock*: its owner (systemd) keeps the file and mode."""
    server: UnixApiServer | TcpApiServer
    if sock.family == socket.AF_UNIX:
        server = UnixApiServer(sock.getsockname(), Handler, bind_and_activate=False)
        server.where = f"{sock.getsockname()} (socket activation)"
    elif sock.family in (socket.AF_INET, socket.AF_INET6):
        host, port = sock.getsockname()[:2]
        if not ipaddress.ip_address(host).is_loopback:
            sock.close()
            raise ConfigError(f"the API listens on loopback only, not on {host} (ListenStream=)")
        server = TcpApiServer((host, port), Handler, bind_and_activate=False)
        server.server_name, server.server_port = host, port
        server.where = f"{host}:{port} (socket activation)"
    else:
        sock.close()
        raise ConfigError("the socket systemd passed is neither a Unix nor a TCP socket")
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()
    return server


def make_server(
    cfg: Config, config_path: Path, socket_path: Path | None, host: str | None, port: int | None
) -> UnixApiServer | TcpApiServer:
    secret_file = cfg.api.secret_file
    if secret_file is None:
        raise ConfigError("api.secret_file is required to serve the API")
    secret = read_api_secret(secret_file)
    nonces = NonceStore(cfg.storage.path / NONCES_FILE, cfg.api.max_clock_skew)
    api = Api(cfg, config_path, Verifier(secret, cfg.api.max_clock_skew, cfg.database.name, nonces))
    server: UnixApiServer | TcpApiServer
    inherited = inherited_socket()
    if inherited is not None:
        server = adopt_socket(inherited)
    elif host:
        if not ipaddress.ip_address(host).is_loopback:
            raise ConfigError(f"the API listens on loopback only, not on {host}")
        server = TcpApiServer((host, port or 8765), Handler)
        server.where = f"{host}:{port or 8765}"
    else:
        path = socket_path or cfg.api.socket
        if path is None:
            raise ConfigError("give api.socket (or api.host and api.port) to serve the API")
        if path.exists():
            if _socket_in_use(path):
                raise ConfigError(f"another server already answers on {path}")
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        server = UnixApiServer(str(path), Handler)
        os.chmod(path, 0o660)
        server.owned_path, server.where = path, str(path)
    server.api = api
    server.limiter = ConnectionLimiter(cfg.api.max_connections)
    return server
