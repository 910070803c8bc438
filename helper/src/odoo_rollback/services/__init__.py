"""Service control: stop Odoo (and its web front) before the swap, start it again after.

``backend_for(cfg)`` gives the configured backend. Every backend's ``check()`` runs in the restore's
preflight and raises ServiceError when the backend cannot do its job, before anything is changed.
"""

from __future__ import annotations

from ..config import ServicesConfig
from .base import ServiceBackend
from .command import CommandBackend
from .none import NoBackend
from .systemd import SystemdBackend


def backend_for(cfg: ServicesConfig) -> ServiceBackend:
    if cfg.backend == "docker":
        # The Docker SDK (and requests, urllib3) only where it is used: 45 ms of every command's start.
        from .docker_backend import DockerBackend  # noqa: PLC0415

        return DockerBackend(cfg)
    if cfg.backend == "systemd":
        return SystemdBackend(cfg)
    if cfg.backend == "command":
        return CommandBackend(cfg)
    return NoBackend(cfg)


__all__ = ["ServiceBackend", "backend_for"]
