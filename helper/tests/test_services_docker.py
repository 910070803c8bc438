"""The docker backend against a real Docker engine, with containers of a local busybox image."""

from __future__ import annotations

from typing import Any

from conftest import ComposeStandIn, HelperEnv, database_counts

SNAPSHOT_COUNTS = {"account_move": 200, "res_partner": 50}


def test_restore_stops_odoo_and_nginx_keeps_db_and_checks_health(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], compose_project: ComposeStandIn
) -> None:
    helper_env.write(
        services={"backend": "docker", "stop_timeout": 5, "docker": {"project": compose_project.project}},
        health={"url": compose_project.url, "attempts": 20, "interval": 0.25, "timeout": 2},
    )
    containers = compose_project.containers
    for container in containers.values():
        container.reload()
    started_at = {name: container.attrs["State"]["StartedAt"] for name, container in containers.items()}

    result = helper_env.run_json("restore", snapshot_then_changes["id"], "--yes")

    assert result["ok"] is True
    assert database_counts(helper_env.db.name) == SNAPSHOT_COUNTS
    assert compose_project.states() == {"db": "running", "odoo": "running", "nginx": "running"}
    for container in containers.values():
        container.reload()
    # Odoo and nginx were stopped and started again; the database server never was.
    restarted = {name for name, c in containers.items() if c.attrs["State"]["StartedAt"] != started_at[name]}
    assert restarted == {"odoo", "nginx"}
    journal = helper_env.run_json("journal")
    assert journal["operations"][0]["data"]["health"]["ok"] is True


def test_missing_container_is_a_clear_error_before_anything_changes(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], compose_project: ComposeStandIn
) -> None:
    helper_env.write(
        services={"backend": "docker", "docker": {"project": compose_project.project, "services": ["odoo", "worker"]}}
    )

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes")

    assert result.returncode == 4 and "no container of service 'worker'" in result.stderr
    assert database_counts(helper_env.db.name) == {"account_move": 180, "res_partner": 57}
    assert compose_project.states()["odoo"] == "running"


def test_unreachable_docker_daemon_is_a_clear_error(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    helper_env.write(services={"backend": "docker", "docker": {"project": "p", "base_url": "unix:///nonexistent.sock"}})

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes")

    assert result.returncode == 4 and "cannot reach the Docker daemon" in result.stderr
    assert database_counts(helper_env.db.name) == {"account_move": 180, "res_partner": 57}
