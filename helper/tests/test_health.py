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
    next(c for c in compose_project.containers if c.labels["com.docker.compose.service"] == "nginx").stop(timeout=1)
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
