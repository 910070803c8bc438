"""What every service backend offers."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..config import ServicesConfig


class ServiceBackend(ABC):
    name = "base"

    def __init__(self, cfg: ServicesConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def check(self) -> None:
        """Raise ServiceError if stop() and start() could not work; change nothing."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the services and wait until they are stopped."""

    @abstractmethod
    def start(self) -> None:
        """Start the services and wait until they run."""

    @abstractmethod
    def status(self) -> dict[str, str]:
        """{service: state} for the health report."""
