"""odoo-rollback health, against a real database, a real Docker engine and a real HTTP server."""

from __future__ import annotations

import json

from conftest import ComposeStandIn, HelperEnv


def test_healthy_stack(helper_env: HelperEnv, compose_project: ComposeStandIn) -> None:
    helper_env.write(
        services={"backend": "docker", "docker": {"project": compose_project.project}},
        health={"url": compose_project.url, "timeout": 2},
    )
    report = helper_env.run_json("health")
    assert report["ok"] is True
    names = {c["name"]: c for c in report["checks"]}
    assert names["service odoo"]["detail"] == "running" and names["http"]["ok"] is True


def test_stopped_service_and_dead_url_are_unhealthy(helper_env: HelperEnv, compose_project: ComposeStandIn) -> None:
    compose_project.containers["nginx"].stop(timeout=1)
    helper_env.write(
        services={"backend": "docker", "docker": {"project": compose_project.project}},
        health={"url": "http://127.0.0.1:9/web/login", "timeout": 1},
    )
    result = helper_env.run("health", "--json")
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["service nginx"]["ok"] is False and checks["service odoo"]["ok"] is True
    assert checks["http"]["ok"] is False
    assert "UNHEALTHY" in helper_env.run("health").stdout


def test_unreachable_database_is_unhealthy(helper_env: HelperEnv) -> None:
    helper_env.write(database={"password": "wrong"})
    result = helper_env.run("health")
    assert result.returncode == 1 and "refused the credentials" in result.stdout


def test_storage_too_small_for_the_next_snapshot_is_unhealthy(helper_env: HelperEnv) -> None:
    helper_env.run_json("snapshot")
    checks = {c["name"]: c for c in helper_env.run_json("health")["checks"]}
    assert checks["storage"]["ok"] is True and "the next snapshot needs about" in checks["storage"]["detail"]
    # A margin no disk can offer: the same snapshot would now be refused, and health says so first.
    helper_env.write(storage={"free_space_margin": 1e12})
    result = helper_env.run("health", "--json")
    assert result.returncode == 1
    storage = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "storage")
    assert storage["ok"] is False and storage["detail"].endswith(": too little")
    assert helper_env.run("snapshot").returncode == 3
