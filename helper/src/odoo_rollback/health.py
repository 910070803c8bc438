"""HTTP health check of the configured URL, with attempts and a timeout."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

from .config import HealthConfig


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    url: str | None
    status: int | None
    seconds: float
    attempts: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(url: str, timeout: float) -> tuple[int | None, float, str | None]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - configured http(s) URL
            return response.status, time.monotonic() - started, None
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - started, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, time.monotonic() - started, str(reason)


def http_check(cfg: HealthConfig, attempts: int | None = None) -> HealthResult:
    """Try the URL until it answers 2xx/3xx or the attempts run out. No URL configured: ok, not checked."""
    if not cfg.url:
        return HealthResult(ok=True, url=None, status=None, seconds=0.0, attempts=0, error="no [health] url")
    if not cfg.url.startswith(("http://", "https://")):
        return HealthResult(False, cfg.url, None, 0.0, 0, "health.url must be http:// or https://")
    tries = attempts or cfg.attempts
    status, seconds, error = None, 0.0, None
    for attempt in range(1, tries + 1):
        status, seconds, error = probe(cfg.url, cfg.timeout)
        if status is not None and status < 400:
            return HealthResult(True, cfg.url, status, seconds, attempt)
        if attempt < tries:
            time.sleep(cfg.interval)
    return HealthResult(False, cfg.url, status, seconds, tries, error)
