"""Who may make the helper act: a real ``odoo-rollback serve``, requests signed for a database, raw headers.

Every database of one Odoo instance reads the same secret (odoo.conf): the helper must act only for the
database it serves. A captured request must stay refused after a restart, and no header a client sends
may cost more than a 401.
"""

from __future__ import annotations

import hashlib
import hmac
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERVED_SECRET, HelperEnv, Served, tmpfs
from odoo_rollback.api.client import HelperClient
from odoo_rollback.api.nonces import FILE_NAME, NonceStore
from odoo_rollback.api.signing import (
    DATABASE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signed_headers,
)
from test_api_abuse import SECRET, TcpServed, _free_port, _head, _status, tcp_served  # noqa: F401
from test_disk_full import fill

# Every route, as Odoo calls it: none may answer another database, whatever its arguments.
ROUTES = [
    ("GET", "/v1/health", None),
    ("GET", "/v1/config", None),
    ("GET", "/v1/snapshots", None),
    ("GET", "/v1/kept", None),
    ("GET", "/v1/journal?since=0", None),
    ("GET", "/v1/logs/errors?since=2026-01-01T00:00:00Z", None),
    ("GET", "/v1/jobs/job-unknown", None),
    ("GET", "/v1/snapshots/20990101T000000Z-manual-abcdef/preview", None),
    ("GET", "/v1/snapshots/20990101T000000Z-manual-abcdef/odoo-zip", None),
    ("POST", "/v1/snapshots", {"kind": "manual", "label": "from another database"}),
    ("POST", "/v1/snapshots/20990101T000000Z-manual-abcdef/verify", {}),
    ("POST", "/v1/drills", {}),
    ("POST", "/v1/restores", {"snapshot": "20990101T000000Z-manual-abcdef", "confirm_database": "x"}),
    ("GET", "/v1/no-such-route", None),
]


def _send(served: TcpServed, raw: bytes) -> int:
    sock = served.connect()
    sock.sendall(raw)
    return _status(sock)


def _raw_get(headers: dict[str, str]) -> bytes:
    lines = ["GET /v1/health HTTP/1.1", "Host: x", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _good(served: TcpServed) -> dict[str, str]:
    return signed_headers(SECRET, served.client.database, "GET", "/v1/health", b"")


def test_a_request_signed_for_another_database_is_refused_on_every_route(served: Served, helper_env: HelperEnv) -> None:
    other_database = f"{helper_env.db.name}_b"
    other = HelperClient(f"unix:{served.socket_path}", SERVED_SECRET, other_database)
    for method, path, body in ROUTES:
        status, reply = other.request(method, path, body)
        # 403 before any route runs: not the 404 of an unknown snapshot or route, not a 202 of a job started.
        assert status == 403, (method, path, reply)
        assert reply["error"].startswith(f"this helper serves another database, not {other_database}")
        # The database it serves is not told: the caller only learns that it is not its own.
        assert helper_env.db.name not in reply["error"].replace(other_database, "")
    log = served.log.read_text()
    assert log.count(f"signed for database '{other_database}'; this helper serves '{helper_env.db.name}'") == len(
        ROUTES
    )
    # Nothing was done: no job, no snapshot, no line in the journal.
    assert served.client.request("GET", "/v1/snapshots")[1] == {"snapshots": []}
    assert served.client.request("GET", "/v1/journal?since=0")[1]["events"] == []
    assert served.client.request("GET", "/v1/health")[1]["running_job"] is None


def test_only_the_served_database_is_answered(served: Served, helper_env: HelperEnv) -> None:
    status, health = served.client.request("GET", "/v1/health")
    assert status == 200 and health["database"] == helper_env.db.name
    # Database names are compared exactly: PostgreSQL tells PROD from prod.
    upper = HelperClient(f"unix:{served.socket_path}", SERVED_SECRET, helper_env.db.name.upper())
    assert upper.request("GET", "/v1/health")[0] == 403


def test_a_request_without_a_database_is_refused_as_unsigned(tcp_served: TcpServed) -> None:  # noqa: F811
    """What an addon older than this helper sends: signed the old way, without a database. No silent
    compatibility: it would let every database of the instance through."""
    now, nonce = str(int(time.time())), "ef" * 16
    old_message = "\n".join(["GET", "/v1/health", now, nonce, hashlib.sha256(b"").hexdigest()]).encode()
    headers = {
        TIMESTAMP_HEADER: now,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: hmac.new(SECRET, old_message, hashlib.sha256).hexdigest(),
    }
    assert _send(tcp_served, _raw_get(headers)) == 401
    assert f"unsigned request: no {DATABASE_HEADER} header" in tcp_served.log.read_text()


def test_the_database_is_signed(served: Served, helper_env: HelperEnv) -> None:
    """A request signed for database B whose database header is changed to the helper's is refused: the
    header cannot be rewritten without the secret's signature."""
    headers = signed_headers(SERVED_SECRET, f"{helper_env.db.name}_b", "GET", "/v1/health", b"")
    headers[DATABASE_HEADER] = helper_env.db.name
    assert served.client.request("GET", "/v1/health", headers=headers)[0] == 401
    assert "bad signature" in served.log.read_text()


JUNK: dict[str, tuple[str, str]] = {
    # A superscript two passes str.isdigit(), then int() raises.
    "non-ASCII digit timestamp": (TIMESTAMP_HEADER, "\xb2"),
    "5000-digit timestamp": (TIMESTAMP_HEADER, "1" * 5000),
    "13-digit timestamp": (TIMESTAMP_HEADER, "1" * 13),
    "signed timestamp": (TIMESTAMP_HEADER, "+1795560000"),
    "non-ASCII signature": (SIGNATURE_HEADER, "\xe9" * 64),
    "short signature": (SIGNATURE_HEADER, "00" * 31),
    "uppercase signature": (SIGNATURE_HEADER, "AB" * 32),
    "non-ASCII nonce": (NONCE_HEADER, "\xe9" * 32),
    "non-ASCII database": (DATABASE_HEADER, "prod\xe9"),
    "database with a space": (DATABASE_HEADER, "prod x"),
    "overlong database": (DATABASE_HEADER, "p" * 64),
}


@pytest.mark.parametrize(("header", "value"), JUNK.values(), ids=JUNK.keys())
def test_a_malformed_signing_header_gets_a_401_not_a_dropped_connection(
    tcp_served: TcpServed,  # noqa: F811
    header: str,
    value: str,
) -> None:
    headers = {**_good(tcp_served), header: value}
    assert _send(tcp_served, _raw_get(headers)) == 401
    log = tcp_served.log.read_text()
    assert f"malformed {header}" in log and "Traceback" not in log
    assert tcp_served.client.request("GET", "/v1/health")[0] == 200


def test_signing_headers_are_case_insensitive(tcp_served: TcpServed) -> None:  # noqa: F811
    # HTTP header names are case-insensitive (RFC 9110 5.1): a correctly signed request whose client
    # (or a proxy, or an HTTP/2 hop) lowercases them is understood.
    lower = {k.lower(): v for k, v in _good(tcp_served).items()}
    assert _send(tcp_served, _raw_get(lower)) == 200
    upper = {k.upper(): v for k, v in _good(tcp_served).items()}
    assert _send(tcp_served, _raw_get(upper)) == 200


@pytest.mark.parametrize("header", [TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER, DATABASE_HEADER])
def test_a_signing_header_given_twice_is_refused(tcp_served: TcpServed, header: str) -> None:  # noqa: F811
    headers = _good(tcp_served)
    # The same value again, under another case: which copy is signed and which is checked must never differ.
    raw = _raw_get(headers).replace(b"\r\n\r\n", f"\r\n{header.lower()}: {headers[header]}\r\n\r\n".encode())
    assert _send(tcp_served, raw) == 401
    assert f"{header} given 2 times" in tcp_served.log.read_text()


# -- replays across restarts ------------------------------------------------------------------------
def _start(helper_env: HelperEnv, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("a") as handle:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "odoo_rollback.cli", "--config", str(helper_env.config_path), "serve"),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes], how: signal.Signals = signal.SIGTERM) -> None:
    proc.send_signal(how)
    proc.wait(timeout=20)


def _post(port: int, raw: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        return _status(sock)


@pytest.fixture
def secret_env(helper_env: HelperEnv, tmp_path: Path) -> Iterator[HelperEnv]:
    secret_file = tmp_path / "api-secret"
    secret_file.write_bytes(SECRET)
    secret_file.chmod(0o600)
    helper_env.write(api={"secret_file": str(secret_file)})
    yield helper_env


def _signed_request(helper_env: HelperEnv, method: str, path: str, body: bytes) -> bytes:
    headers = {
        **signed_headers(SECRET, helper_env.db.name, method, path, body),
        "Content-Length": str(len(body)),
    }
    return _head(method, path, headers) + body


def test_a_captured_request_stays_refused_after_a_restart(secret_env: HelperEnv, tmp_path: Path) -> None:
    port, log = _free_port(), tmp_path / "serve.log"
    # Signed before the server runs, as when socket activation starts it for this very request: accepted.
    request = _signed_request(secret_env, "GET", "/v1/health", b"")
    first = _start(secret_env, port, log)
    try:
        assert _post(port, request) == 200
        assert _post(port, request) == 401  # a replay
    finally:
        _stop(first)
    # Restarted (an upgrade, Restart=), then killed outright: the nonce is remembered each time.
    second = _start(secret_env, port, log)
    try:
        assert _post(port, request) == 401, "the same captured request was accepted again after a restart"
        # Signed and accepted, then refused by its route (an unknown kind): nothing runs after the kill.
        acting = _signed_request(secret_env, "POST", "/v1/snapshots", b'{"kind": "nope"}')
        assert _post(port, acting) == 400
    finally:
        _stop(second, signal.SIGKILL)
    third = _start(secret_env, port, log)
    try:
        assert _post(port, request) == 401
        assert _post(port, acting) == 401, "a POST was accepted again after a crash"
    finally:
        _stop(third)
    assert (secret_env.storage / FILE_NAME).exists()
    assert log.read_text().count("already used (replay)") == 4


def test_two_servers_on_one_storage_accept_a_request_once(secret_env: HelperEnv, tmp_path: Path) -> None:
    """The nonce's key is unique in the file: the same request sent at once to two processes (an old one
    still draining while a new one starts) is accepted by exactly one."""
    ports = [_free_port(), _free_port()]
    procs = [_start(secret_env, port, tmp_path / f"serve-{port}.log") for port in ports]
    try:
        for _round in range(5):
            request = _signed_request(secret_env, "GET", "/v1/health", b"")
            statuses: list[int] = []
            go = threading.Barrier(2)

            def send(port: int, request: bytes, statuses: list[int], go: threading.Barrier) -> None:
                go.wait()
                statuses.append(_post(port, request))

            threads = [threading.Thread(target=send, args=(port, request, statuses, go)) for port in ports]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert sorted(statuses) == [200, 401]
    finally:
        for proc in procs:
            _stop(proc)


def test_nonces_are_forgotten_once_their_timestamp_has_expired(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / "storage" / FILE_NAME, window=300)
    now = 1_795_560_000
    assert store.add("ab" * 16, now, now) is True
    assert store.add("ab" * 16, now, now + 599) is False  # still a replay, with the margin for a clock set back
    assert store.add("cd" * 16, now + 601, now + 601) is True  # prunes the first, whose timestamp is long refused
    assert store.add("ab" * 16, now, now + 601) is True
    # A fresh store on the same file (a restart) knows what the old one accepted.
    assert NonceStore(tmp_path / "storage" / FILE_NAME, window=300).add("cd" * 16, now + 601, now + 602) is False


def test_serve_refuses_to_start_without_a_writable_nonce_file(secret_env: HelperEnv, tmp_path: Path) -> None:
    # The nonce file's place is a folder: serve stops with one line rather than accept replayable requests.
    (secret_env.storage / FILE_NAME).mkdir(parents=True)
    result = secret_env.run("serve", "--host", "127.0.0.1", "--port", str(_free_port()), timeout=30)
    assert result.returncode != 0
    assert f"the API's nonce file {secret_env.storage / FILE_NAME} cannot be written" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_full_storage_refuses_requests_rather_than_forget_their_nonces(secret_env: HelperEnv, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 4 * 2**20) as mount:
        secret_env.write(storage={"path": str(mount / "storage")})
        port, log = _free_port(), tmp_path / "serve.log"
        proc = _start(secret_env, port, log)
        try:
            assert _post(port, _signed_request(secret_env, "GET", "/v1/health", b"")) == 200
            filler = fill(mount)
            request = _signed_request(secret_env, "POST", "/v1/snapshots", b'{"kind": "nope"}')
            # 503, not the route's 400: the request was refused before anything, as it could not be recorded.
            assert _post(port, request) == 503
            filler.unlink()
            # Not recorded, so not a replay: sent again with room, it reaches its route.
            assert _post(port, request) == 400
            assert _post(port, request) == 401
        finally:
            _stop(proc)
    text = log.read_text()
    assert f"the API's nonce file {mount / 'storage' / FILE_NAME} cannot be written: No space left on device" in text
    assert "Traceback" not in text
