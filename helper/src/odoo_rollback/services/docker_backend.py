"""Containers of a docker compose project, found by their compose labels (Docker SDK for Python).

Only the configured services (default odoo and nginx) are stopped; the database container keeps
running, since the swap happens inside it.
"""

from __future__ import annotations

import time
from typing import Any

import docker
import docker.errors

from ..errors import ServiceError
from .base import ServiceBackend

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class DockerBackend(ServiceBackend):
    name = "docker"

    def _client(self) -> Any:
        try:
            client = (
                docker.DockerClient(base_url=self.cfg.docker.base_url)
                if self.cfg.docker.base_url
                else docker.from_env()
            )
            client.ping()
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot reach the Docker daemon: {exc}") from exc
        return client

    def _containers(self, client: Any, service: str) -> list[Any]:
        labels = [f"{PROJECT_LABEL}={self.cfg.docker.project}", f"{SERVICE_LABEL}={service}"]
        return list(client.containers.list(all=True, filters={"label": labels}))

    def check(self) -> None:
        client = self._client()
        try:
            for service in self.cfg.docker.services:
                if not self._containers(client, service):
                    raise ServiceError(
                        f"no container of service {service!r} in compose project {self.cfg.docker.project!r}"
                    )
        finally:
            client.close()

    def _wait(self, containers: list[Any], wanted: set[str], timeout: int, what: str) -> None:
        deadline = time.monotonic() + timeout
        for container in containers:
            while True:
                container.reload()
                if container.status in wanted:
                    break
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"container {container.name} did not {what} within {timeout} s (state {container.status})"
                    )
                time.sleep(0.2)

    def stop(self) -> None:
        client = self._client()
        try:
            for service in self.cfg.docker.services:
                containers = self._containers(client, service)
                for container in containers:
                    container.stop(timeout=self.cfg.stop_timeout)
                self._wait(containers, {"exited", "created", "dead"}, self.cfg.stop_timeout, "stop")
        except docker.errors.DockerException as exc:
            raise ServiceError(f"docker stop failed: {exc}") from exc
        finally:
            client.close()

    def start(self) -> None:
        client = self._client()
        try:
            for service in reversed(self.cfg.docker.services):
                containers = self._containers(client, service)
                if not containers:
                    raise ServiceError(f"no container of service {service!r} to start")
                for container in containers:
                    container.start()
                self._wait(containers, {"running"}, self.cfg.start_timeout, "start")
        except docker.errors.DockerException as exc:
            raise ServiceError(f"docker start failed: {exc}") from exc
        finally:
            client.close()

    def status(self) -> dict[str, str]:
        client = self._client()
        try:
            return {
                service: ",".join(c.status for c in self._containers(client, service)) or "missing"
                for service in self.cfg.docker.services
            }
        finally:
            client.close()
