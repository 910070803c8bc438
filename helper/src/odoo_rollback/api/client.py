"""A small client of the API, for operators' scripts and the tests (Odoo has its own, same protocol)."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
from typing import IO, Any

from .signing import signed_headers


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class HelperClient:
    """Requests to the helper at *address* on behalf of *database*: the helper refuses any other database's."""

    def __init__(self, address: str, secret: bytes, database: str, timeout: float = 30) -> None:
        self.address = address
        self.secret = secret
        self.database = database
        self.timeout = timeout

    def _signed(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return signed_headers(self.secret, self.database, method, path, body)

    def _connection(self) -> http.client.HTTPConnection:
        if self.address.startswith("unix:"):
            return UnixHTTPConnection(self.address.removeprefix("unix:"), self.timeout)
        host, _, port = self.address.removeprefix("http://").partition(":")
        return http.client.HTTPConnection(host, int(port or 80), timeout=self.timeout)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else b""
        all_headers = {"Content-Type": "application/json", **self._signed(method, path, payload)}
        all_headers.update(headers or {})
        conn = self._connection()
        try:
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, json.loads(data) if data else None
        finally:
            conn.close()

    def download(self, path: str, target: IO[bytes]) -> int:
        """GET a streamed reply (a snapshot as a zip) into *target*; returns the HTTP status."""
        headers = {"Content-Type": "application/json", **self._signed("GET", path, b"")}
        conn = self._connection()
        try:
            conn.request("GET", path, body=b"", headers=headers)
            response = conn.getresponse()
            shutil.copyfileobj(response, target, 1 << 20)
            return response.status
        finally:
            conn.close()
