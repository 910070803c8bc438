"""Reading Odoo's log for errors: the parser, a log file, a real container's output, and the API route."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import docker
import pytest
from conftest import HelperEnv, Served
from odoo_rollback.logs import scan_text

# What Odoo 16 prints (format of odoo/netsvc.py), with a ParseError wrapping the ValueError that
# names the bad field, as a failed module update shows it.
ODOO_OUTPUT = """\
2026-11-25 10:00:00,001 4242 INFO prod odoo.modules.loading: loading 12 modules...
2026-11-25 10:00:00,002 4242 WARNING prod odoo.models: rb.deploy.probe: no access rules
2026-11-25 10:00:01,003 4242 ERROR prod odoo.http: a report template is missing
2026-11-25 10:00:02,004 4242 CRITICAL prod odoo.service.server: Failed to initialize database `prod`.
Traceback (most recent call last):
  File "/opt/odoo/odoo/tools/convert.py", line 698, in _tag_root
    f(rec)
ValueError: Invalid field 'no_such_field' on model 'rb.deploy.probe'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/opt/odoo/odoo/service/server.py", line 1310, in preload_registries
    registry = Registry.new(dbname, update_module=update_module)
odoo.tools.convert.ParseError: while parsing /opt/addons/rb_deploy_probe_ui/data/probe_data.xml:3
2026-11-25 10:00:03,005 4242 INFO prod odoo.service.server: Initiating shutdown
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/werkzeug/serving.py", line 10, in run
    raise OSError("Address already in use")
OSError: Address already in use
2026-11-25 10:00:04,006 4242 \x1b[1;31m\x1b[1;49mERROR\x1b[0m prod odoo.addons.base.models.ir_cron: cron failed
"""


def test_scan_finds_error_lines_and_tracebacks_and_their_causes() -> None:
    scan = scan_text(ODOO_OUTPUT)

    assert scan.lines_read == len(ODOO_OUTPUT.splitlines())
    assert [(e.level, e.logger) for e in scan.errors] == [
        ("ERROR", "odoo.http"),
        ("CRITICAL", "odoo.service.server"),
        ("TRACEBACK", None),
        ("ERROR", "odoo.addons.base.models.ir_cron"),
    ]
    plain, critical, stray, coloured = scan.errors
    assert not plain.serious and plain.cause == "a report template is missing"
    # The root cause, not the wrapper: it names what is wrong.
    assert critical.serious and critical.cause == "ValueError: Invalid field 'no_such_field' on model 'rb.deploy.probe'"
    assert critical.following[-1].startswith("odoo.tools.convert.ParseError")
    assert stray.serious and stray.cause == "OSError: Address already in use"
    assert coloured.message == "cron failed" and not coloured.serious
    assert next(e.summary() for e in scan.serious).startswith("CRITICAL odoo.service.server: Failed to initialize")


def _local(at: str) -> str:
    """An Odoo log time (local, no zone) as an ISO time with the zone, as an operator would give it."""
    return datetime.strptime(at, "%Y-%m-%d %H:%M:%S").astimezone().isoformat()


def test_logs_command_reads_a_log_file_from_a_time(helper_env: HelperEnv, tmp_path: Path) -> None:
    log_file = tmp_path / "odoo.log"
    log_file.write_text(ODOO_OUTPUT)
    helper_env.write(deploy={"log_file": str(log_file)})

    result = helper_env.run("logs", "--errors", "--since", _local("2026-11-25 10:00:02"), "--json")

    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert [e["level"] for e in doc["errors"]] == ["CRITICAL", "TRACEBACK", "ERROR"]
    assert doc["source"] == f"file {log_file}"
    later = helper_env.run("logs", "--errors", "--since", _local("2026-11-25 10:00:05"), "--json")
    assert later.returncode == 0 and json.loads(later.stdout)["errors"] == []
    everything = helper_env.run_json("logs", "--since", _local("2026-11-25 09:00:00"))
    assert everything["lines"] == ODOO_OUTPUT.splitlines() and everything["lines_read"] == len(everything["lines"])


def test_logs_without_a_log_to_read_is_a_clear_error(helper_env: HelperEnv) -> None:
    result = helper_env.run("logs", "--errors")
    assert result.returncode == 2 and "set [deploy] log_file" in result.stderr
    bad = helper_env.run("logs", "--since", "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr


@pytest.fixture
def logging_container(docker_image: str, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A container of service "odoo" in its own compose project that prints Odoo's log lines."""
    client = docker.from_env()
    project = f"rblogs{uuid.uuid4().hex[:8]}"
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "odoo.log").write_text(ODOO_OUTPUT)
    container = client.containers.run(
        docker_image,
        ["/bin/sh", "-c", "cat /log/odoo.log; exec /bin/sleep 3600"],
        detach=True,
        network_mode="none",
        labels={"com.docker.compose.project": project, "com.docker.compose.service": "odoo"},
        volumes={str(tmp_path / "log"): {"bind": "/log", "mode": "ro"}},
        name=f"{project}-odoo",
    )
    try:
        deadline = time.monotonic() + 30
        while b"cron failed" not in container.logs():
            assert time.monotonic() < deadline, "the container printed nothing"
            time.sleep(0.1)
        yield project, container
    finally:
        container.remove(force=True)
        client.close()


def test_logs_of_the_docker_service(helper_env: HelperEnv, logging_container: tuple[str, Any]) -> None:
    project, _ = logging_container
    helper_env.write(services={"backend": "docker", "docker": {"project": project, "services": ["odoo"]}})

    result = helper_env.run("logs", "--errors", "--json")

    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == "docker service odoo"
    assert [e["level"] for e in doc["errors"]] == ["ERROR", "CRITICAL", "TRACEBACK", "ERROR"]
    assert doc["errors"][1]["cause"] == "ValueError: Invalid field 'no_such_field' on model 'rb.deploy.probe'"
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert helper_env.run_json("logs", "--errors", "--since", future)["errors"] == []
    helper_env.write(deploy={"log_service": "worker"})
    missing = helper_env.run("logs", "--errors")
    assert missing.returncode == 4 and "no container of service 'worker'" in missing.stderr


@pytest.fixture
def log_file_config(helper_env: HelperEnv, tmp_path: Path) -> Path:
    log_file = tmp_path / "odoo.log"
    log_file.write_text(ODOO_OUTPUT)
    helper_env.write(deploy={"log_file": str(log_file)})
    return log_file


def test_api_log_errors_route(log_file_config: Path, served: Served) -> None:
    since = _local("2026-11-25 10:00:02").replace("+", "%2B")

    status, doc = served.client.request("GET", f"/v1/logs/errors?since={since}")

    assert status == 200, doc
    assert [e["level"] for e in doc["errors"]] == ["CRITICAL", "TRACEBACK", "ERROR"] and doc["checked"] is True
    status, doc = served.client.request("GET", "/v1/logs/errors")
    assert status == 400 and "since is required" in doc["error"]
    status, doc = served.client.request("GET", "/v1/logs/errors?since=soon")
    assert status == 400


def test_logs_of_a_systemd_unit_go_through_journalctl(helper_env: HelperEnv) -> None:
    # The test machine runs no systemd: the unit has no journal, but the real journalctl must accept
    # the arguments (an unparsable --since would make it fail).
    helper_env.write(services={"backend": "systemd", "units": ["rbtest-odoo-absent.service"]})

    doc = helper_env.run_json("logs", "--errors", "--since", "2026-11-25T10:00:00Z")

    assert doc["source"] == "systemd unit rbtest-odoo-absent.service"
    assert doc["errors"] == [] and doc["lines_read"] == 0
